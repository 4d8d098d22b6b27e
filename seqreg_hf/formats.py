"""The file types seqreg-hf reads and writes, in one table.

A file's name says its format (.csv, .tsv, .jsonl, .json, .parquet; .txt, one text per line, for input only) and,
after it, an optional compression (.gz, .bz2, .xz, .zst; Parquet compresses inside the file, so it takes none).
The readers of `data.py` and `prediction.py` and the writers of `seqreg-hf predict` all look names up here, so a
name that one of them accepts means the same thing to all of them, and any other name is refused before work starts.
"""

import bz2
import gzip
import importlib.util
import io
import lzma
import os
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


class OutputWriter:
    """Writes `seqreg-hf predict`'s output in the format its name says, in parts: each chunk of rows is written to
    a part file of its own (by whichever process scored it), then the parts are joined in order, compressed on the
    way when the name asks for it. Parts are never compressed, so joining is copying."""

    def __init__(self, path):
        self.path = path
        if path == "-":  # stdout carries JSON Lines
            self.ext, self.format, self.compression = ".jsonl", FORMATS[".jsonl"], ""
        else:
            self.ext, self.format, self.compression = file_format(path, writing=True)

    def chunk_text(self, frame, first):
        """One chunk as text: CSV / TSV (the header with the first chunk), JSON Lines, or the records of a JSON
        array separated by commas (the brackets come when joining)."""
        if self.ext in (".csv", ".tsv"):
            return frame.to_csv(index=False, header=first, sep="\t" if self.ext == ".tsv" else ",")
        lines = frame.to_json(orient="records", lines=True, force_ascii=False).rstrip("\n")
        if self.ext == ".json":  # JSON escapes every newline inside a string: each line is one record
            return lines.replace("\n", ",\n")
        return lines + "\n" if lines else ""

    def write_part(self, frame, part, first):
        if self.ext == ".parquet":
            import pyarrow.parquet as pq

            pq.write_table(self._table(frame), part)
            return
        with open(part, "w", encoding="utf-8", newline="") as handle:
            handle.write(self.chunk_text(frame, first))

    def _table(self, frame):
        import pyarrow as pa

        try:
            return pa.Table.from_pandas(frame, preserve_index=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as error:  # e.g. numbers and strings in one JSON column
            raise DataError(f"{self.path}: Parquet needs one type per column ({error}); make the column's values "
                            "one type, or write CSV / JSON Lines.") from None

    def join(self, parts, header, target):
        """Write the parts, in order, as one file at `target` (header: the columns, for an input without rows)."""
        if self.ext == ".parquet":
            return self._join_parquet(parts, header, target)
        with open_binary(target, "wb", self.compression) as out:  # target: a temporary name, so say how
            if self.ext == ".json":
                out.write(b"[")
            written = False
            for part in parts:
                if self.ext == ".json" and os.path.getsize(part) == 0:
                    continue
                if self.ext == ".json" and written:
                    out.write(b",\n")
                with open(part, "rb") as handle:
                    _copy(handle, out)
                written = True
            if self.ext == ".json":
                out.write(b"]\n")
            elif not parts and self.ext in (".csv", ".tsv"):  # no rows: the header alone
                out.write((("\t" if self.ext == ".tsv" else ",").join(header) + "\n").encode("utf-8"))

    def _join_parquet(self, parts, header, target):
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not parts:
            empty = pa.schema([(header[0], pa.string())] + [(name, pa.float32()) for name in header[1:]])
            pq.write_table(empty.empty_table(), target)
            return
        try:  # a JSON column may be integers in one chunk and floats (a null) in the next
            schema = pa.unify_schemas([pq.read_schema(p) for p in parts], promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
            raise DataError(f"{self.path}: a column changes type between chunks ({error}); make its values one type, "
                            "or write CSV / JSON Lines.") from None
        with pq.ParquetWriter(target, schema) as writer:
            for part in parts:  # one chunk in memory at a time
                writer.write_table(pq.read_table(part).cast(schema))


def _copy(source, target, size=1 << 20):
    while block := source.read(size):
        target.write(block)
