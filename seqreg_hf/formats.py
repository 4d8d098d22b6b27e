"""The file types seqreg-hf reads and writes, in one table.

A file's name says its format (.csv, .tsv, .jsonl, .json, .parquet; .txt, one text per line, for input only) and,
after it, an optional compression (.gz, .bz2, .xz, .zst; Parquet compresses inside the file, so it takes none).
Every file train, evaluate and predict read is opened and read here (whole into a `datasets.Dataset`, streamed, or
in DataFrame chunks), and the writers of `seqreg-hf predict` (`writers.py`) look names up in the same table, so a
name that one of them accepts means the same thing to all of them, and any other name is refused before work
starts. Bytes that are not UTF-8 are named by row and column; a whole file is written with `atomic_write`.
"""

import bz2
import contextlib
import gzip
import importlib.util
import io
import logging
import lzma
import os
import secrets
from dataclasses import dataclass, field


class DataError(ValueError):
    """Data that cannot be used as it is; the message names the file, column and row."""


@dataclass(frozen=True)
class Format:
    name: str  # as a person says it
    builder: str | None  # the `datasets` builder that reads it (None: .txt, read line by line)
    options: dict = field(default_factory=dict)  # the builder's options
    writable: bool = True  # seqreg-hf predict can write it
    compressible: bool = True  # takes a .gz / .bz2 / .xz / .zst suffix


FORMATS = {
    ".csv": Format("CSV", "csv"),
    ".tsv": Format("TSV", "csv", {"delimiter": "\t"}),
    ".jsonl": Format("JSON Lines", "json"),
    ".json": Format("JSON", "json"),
    ".parquet": Format("Parquet", "parquet", compressible=False),
    ".txt": Format("text, one per line", None, writable=False),
}
COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst")


def accepted_names(writing=False):
    """The names the table accepts, in one line (for the error that refuses any other)."""
    kinds = [ext for ext, f in FORMATS.items() if f.writable or not writing]
    plain = [ext for ext in kinds if FORMATS[ext].compressible]
    whole = [ext for ext in kinds if not FORMATS[ext].compressible]
    return (f"{', '.join(plain)} (each optionally compressed: {', '.join(COMPRESSIONS)}) or "
            f"{', '.join(whole)}")


def split_name(path):
    """(format extension, compression suffix or "") of a file name, in lower case: data.tsv.gz -> (.tsv, .gz)."""
    name = os.path.basename(os.fspath(path)).lower()
    compression = next((c for c in COMPRESSIONS if name.endswith(c)), "")
    return os.path.splitext(name.removesuffix(compression))[1], compression


def file_format(path, writing=False):
    """(extension, Format, compression suffix) of `path`, or a DataError that lists the accepted names."""
    ext, compression = split_name(path)
    found = FORMATS.get(ext)
    doing = "write" if writing else "read"
    if found is None or (writing and not found.writable) or (compression and not found.compressible):
        what = f"{ext}{compression}" if ext else os.path.basename(os.fspath(path))
        raise DataError(f"{path}: unsupported file type {what!r} for seqreg-hf to {doing}; name the file "
                        f"{accepted_names(writing)}.")
    if compression == ".zst" and not zstd_available():
        raise DataError(f"{path}: {doing}ing .zst needs zstd, which neither the zstandard package nor pyarrow provides "
                        "here: pip install zstandard, or use .gz / .xz.")
    return ext, found, compression


def zstd_available():
    import pyarrow as pa

    return importlib.util.find_spec("zstandard") is not None or pa.Codec.is_available("zstd")


def open_binary(path, mode="rb", compression=None):
    """A binary handle on `path`, (de)compressed by its suffix (or by `compression`, for a temporary name). Written
    streams are reproducible byte for byte: gzip gets no file name and no time stamp in its header."""
    compression = split_name(path)[1] if compression is None else compression
    if compression == ".gz":
        return gzip.open(path, "rb") if mode == "rb" else _GzipWriter(path)
    if compression == ".bz2":
        return bz2.open(path, mode)
    if compression == ".xz":
        return lzma.open(path, mode)
    if compression == ".zst":
        if importlib.util.find_spec("zstandard") is not None:
            import zstandard

            return zstandard.open(path, mode)
        import pyarrow as pa  # every pyarrow wheel has zstd; a stream of several frames reads whole

        return pa.input_stream(path, compression="zstd") if mode == "rb" else pa.output_stream(path, "zstd")
    return open(path, mode)


class _GzipWriter(gzip.GzipFile):
    """gzip without the file's name and time in its header, so that one content gives one file, byte for byte."""

    def __init__(self, path):
        self._raw = open(path, "wb")
        super().__init__(filename="", mode="wb", fileobj=self._raw, mtime=0)

    def close(self):
        try:
            super().close()
        finally:
            self._raw.close()


def open_text(path):
    """A UTF-8 text handle on `path`, decompressed by its suffix; a byte-order mark is not part of the text."""
    return io.TextIOWrapper(open_binary(path), encoding="utf-8-sig")


def read_lines(path):
    """The texts of a .txt file, one per line."""
    with open_text(path) as handle:
        return [line.rstrip("\n") for line in handle]


def check_input(path):
    """Refuse an input name that the format table does not know, before the model is loaded ('-': stdin)."""
    if path not in (None, "-"):
        file_format(path)


def check_header(path):
    """Refuse a CSV / TSV file whose header names one column twice: its reader would silently rename the second
    one 'NAME.1', and the run would train on (or ignore) a column the user never named."""
    import collections
    import csv

    _, found, _ = file_format(path)  # the format table alone: predict reads .zst where `datasets` cannot
    if found.builder != "csv":
        return
    with open_binary(path) as binary:
        text = io.TextIOWrapper(binary, encoding="utf-8", errors="replace", newline="")
        header = next(csv.reader(text, delimiter=found.options.get("delimiter", ",")), [])
    counts = collections.Counter(name for name in header if name)  # empty names become "Unnamed: N", not dupes
    for name, count in counts.items():
        if count > 1:
            positions = [str(i + 1) for i, other in enumerate(header) if other == name]
            times = "twice" if count == 2 else f"{count} times"
            raise DataError(f"{os.fspath(path)}: the header names column {name!r} {times} (columns "
                            f"{', '.join(positions[:-1])} and {positions[-1]}), and the reader would rename the "
                            f"copy to '{name}.1'. Rename or remove the duplicate column.")


def _has_bad_bytes(value):
    return isinstance(value, str) and any("\udc80" <= ch <= "\udcff" for ch in value)


def undecodable(path):
    """None if `path` is UTF-8 throughout, else 'row R (0-based, header excluded), column C' where it is not.

    The file is decoded with surrogateescape, so every byte that is not UTF-8 survives as a marker character and
    the row and field holding the first one can be named, quoted newlines included."""
    import csv
    import json

    _, found, _ = file_format(path)
    if found.builder == "parquet":
        return None
    with open_binary(path) as binary:
        text = io.TextIOWrapper(binary, encoding="utf-8", errors="surrogateescape", newline="")
        if found.builder == "csv":
            rows = csv.reader(text, delimiter=found.options.get("delimiter", ","))
            header = next(rows, [])
            if any(_has_bad_bytes(name) for name in header):
                return "the header row"
            for index, row in enumerate(rows):
                for position, value in enumerate(row):
                    if _has_bad_bytes(value):
                        column = header[position] if position < len(header) else f"#{position + 1}"
                        return f"row {index} (0-based, header excluded), column {column!r}"
            return None
        content = text.read()
    lines = content.splitlines() if split_name(path)[0] in (".jsonl", ".txt") else [content]
    for index, line in enumerate(lines):
        if not _has_bad_bytes(line):
            continue
        try:
            record = json.loads(line)
        except ValueError:
            return f"line {index + 1}"
        if isinstance(record, dict):
            for key, value in record.items():
                if _has_bad_bytes(value):
                    return f"row {index} (0-based), column {key!r}"
        if isinstance(record, list):  # a .json array of records
            for row, item in enumerate(record):
                for key, value in (item.items() if isinstance(item, dict) else ()):
                    if _has_bad_bytes(value):
                        return f"row {row} (0-based), column {key!r}"
        return f"line {index + 1}"
    return None


def read_error(paths, error):
    """A DataError for a file that could not be read: where its bytes are not UTF-8, or the reader's own reason."""
    paths = [os.fspath(p) for p in paths]
    for path in paths:
        try:
            where = undecodable(path)
        except Exception:  # a file too broken to scan: fall back to the reader's reason below
            where = None
        if where:
            return DataError(f"{path}: {where} holds bytes that are not UTF-8. Re-encode the file as UTF-8 (for "
                             f"example `iconv -f cp1252 -t utf-8 {os.path.basename(path)} > utf8.csv`), or fix that "
                             "row.")
    cause = error
    while cause.__cause__ is not None or cause.__context__ is not None:
        cause = cause.__cause__ or cause.__context__
    what = " or ".join(paths)
    return DataError(f"{what}: cannot be read ({type(cause).__name__}: {cause}). Check that the file is whole and "
                     "in the format its name says (CSV with a header row, TSV, JSON Lines, JSON or Parquet).")


def dataset_builder(path):
    """(datasets builder, its options) that read one data file with columns, by its name."""
    _, found, compression = file_format(path)
    if found.builder is None:
        raise DataError(f"{path}: a .txt file holds texts without labels; give labelled data as "
                        f"{accepted_names(writing=True)}.")
    if compression == ".zst" and importlib.util.find_spec("zstandard") is None:
        raise DataError(f"{path}: the `datasets` library reads .zst only with the zstandard package: pip install "
                        "zstandard, or decompress the file (zstd -d).")
    return found.builder, dict(found.options)


class _ReadFailures(logging.Filter):
    """Drops datasets' own "Failed to read file" record: the DataError raised after it says it better."""

    def filter(self, record):
        return not str(record.msg).startswith("Failed to read file")


def read_dataset(path, cache_dir=None):
    """One data file read whole into a `datasets.Dataset` (through the Arrow cache); a file it cannot read becomes
    one DataError naming it and the fix."""
    from datasets import load_dataset
    from datasets.exceptions import DatasetGenerationError

    builder, options = dataset_builder(path)
    quiet = _ReadFailures()
    builders = sorted({f.builder for f in FORMATS.values() if f.builder})
    readers = [logging.getLogger(f"datasets.packaged_modules.{name}.{name}") for name in builders]
    for reader in readers:
        reader.addFilter(quiet)
    try:
        return load_dataset(builder, data_files={"train": os.fspath(path)}, cache_dir=cache_dir, **options)["train"]
    except (DatasetGenerationError, UnicodeDecodeError) as error:
        raise read_error([path], error) from None
    finally:
        for reader in readers:
            reader.removeFilter(quiet)


def stream_dataset(path):
    """A `datasets.IterableDataset` over one data file: rows are read as they are iterated, nothing held whole."""
    from datasets import load_dataset

    builder, options = dataset_builder(path)
    return load_dataset(builder, data_files={"train": os.fspath(path)}, streaming=True, **options)["train"]


def read_chunks(path, text_column, chunk_rows):
    """DataFrames of at most `chunk_rows` rows from a file named as the format table says (CSV, TSV, JSON Lines, a
    JSON array, Parquet, or .txt with one text per line, in column `text_column`; compressed or not) or from stdin
    ('-'), read lazily so that memory stays constant (a JSON array is read whole). A file that cannot be read stops
    with one line naming it (and the row, for bytes that are not UTF-8)."""
    import sys

    import pandas as pd

    def lines(handle):
        chunk = []
        for line in handle:
            chunk.append(line.rstrip("\n"))
            if len(chunk) == chunk_rows:
                yield pd.DataFrame({text_column: chunk})
                chunk = []
        if chunk:
            yield pd.DataFrame({text_column: chunk})

    if path in (None, "-"):
        yield from lines(sys.stdin)
        return
    if not os.path.isfile(path):
        raise FileNotFoundError(f"input file {path!r} does not exist.")
    ext, found, _ = file_format(path)
    if found.builder == "csv":
        check_header(path)  # pandas would rename a repeated column 'NAME.1' and score the wrong one
    try:
        if found.builder is None:
            with open_text(path) as handle:  # a byte-order mark is not part of the first text
                yield from lines(handle)
        elif found.builder == "parquet":
            yield from _parquet_chunks(path, chunk_rows)
        else:
            with open_binary(path) as handle:
                if found.builder == "csv":
                    chunks = pd.read_csv(handle, sep=found.options.get("delimiter", ","), dtype=str,
                                         keep_default_na=False, na_values=[], chunksize=chunk_rows,
                                         encoding="utf-8-sig")
                elif ext == ".jsonl":
                    chunks = pd.read_json(handle, lines=True, dtype=False, chunksize=chunk_rows, encoding="utf-8-sig")
                else:
                    chunks = [pd.read_json(handle, dtype=False, encoding="utf-8-sig")]
                yield from chunks
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, OSError, EOFError) as error:
        raise read_error([path], error) from None  # pandas' JSON reader and pyarrow raise ValueError; gzip OSError


def _parquet_chunks(path, chunk_rows):
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    rows = 0
    for batch in parquet.iter_batches(batch_size=chunk_rows):
        rows += batch.num_rows
        yield batch.to_pandas()
    if rows == 0:  # no rows: the columns still name the output's
        yield parquet.schema_arrow.empty_table().to_pandas()


@contextlib.contextmanager
def atomic_write(path, tag=None):
    """A temporary name beside `path` to write the whole file under; when the block ends without an error the file
    is flushed to disk and renamed to `path` in one step (os.replace), so a reader sees the old file or the new one,
    whole, never half of one. On any error (Ctrl-C and SIGTERM's SystemExit included) the temporary file is removed
    and `path` is left as it was. `tag` goes into the temporary name (default: this process and a random suffix):
    writers of one path, in threads, processes or runs, never share a temporary file."""
    target = os.path.abspath(os.fspath(path))
    tag = tag or f"{os.getpid()}-{secrets.token_hex(4)}"
    partial = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.{tag}.part")
    try:
        yield partial
        with open(partial, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(partial, target)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
