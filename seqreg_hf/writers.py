"""The files `seqreg-hf predict` writes, in the format their name says (the table of `formats.py`).

The output is checked before anything is scored (its name, its folder, that the folder takes new files), then
written in parts, one per chunk of rows, by whichever process scored the chunk; the parts are joined in order under a
temporary name and renamed to the output in one step (`formats.atomic_write`).
"""

import os

from .formats import FORMATS, DataError, file_format, open_binary


def check_output(output_file):
    """The writer of `output_file`, checked before anything is scored: a name of the format table, in a folder that
    exists and takes new files (a probe file is made and removed: permission bits do not tell, e.g. to root on a
    read-only mount)."""
    import tempfile

    if output_file == "-":
        return OutputWriter(output_file)
    if os.path.isdir(output_file):
        raise IsADirectoryError(f"--output_file {output_file} is a folder; name a file in it, e.g. "
                                f"{os.path.join(output_file, 'predictions.csv')}.")
    writer = OutputWriter(output_file)
    target = os.path.abspath(output_file)
    folder = os.path.dirname(target)
    if not os.path.isdir(folder):
        what = "is not a folder" if os.path.exists(folder) else "does not exist"
        raise FileNotFoundError(f"--output_file {output_file}: {folder} {what}; create the folder or choose another "
                                "--output_file.")
    try:
        handle, probe = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".probe", dir=folder)
        os.close(handle)
        os.remove(probe)
    except OSError as error:
        raise PermissionError(f"--output_file {output_file}: cannot write in {folder} ({error.strerror}); make the "
                              "folder writable or choose another --output_file.") from None
    return writer


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
        # The separator is the table's, the one the readers split on: a writer and a reader never disagree on a name.
        self.delimiter = self.format.options.get("delimiter", ",")

    def chunk_text(self, frame, first):
        """One chunk as text: CSV / TSV (the header with the first chunk), JSON Lines, or the records of a JSON
        array separated by commas (the brackets come when joining)."""
        if self.format.builder == "csv":
            return frame.to_csv(index=False, header=first, sep=self.delimiter)
        lines = frame.to_json(orient="records", lines=True, force_ascii=False).rstrip("\n")
        if self.ext == ".json":  # JSON escapes every newline inside a string: each line is one record
            return lines.replace("\n", ",\n")
        return lines + "\n" if lines else ""

    def write_part(self, frame, part, first):
        if self.format.builder == "parquet":
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

    def join(self, parts, header, target, texts=1):
        """Write the parts, in order, as one file at `target` (header: the columns, for an input without rows; its
        first `texts` are text columns, the rest scores)."""
        if self.format.builder == "parquet":
            return self._join_parquet(parts, header, target, texts)
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
            elif not parts and self.format.builder == "csv":  # no rows: the header alone
                out.write((self.delimiter.join(header) + "\n").encode("utf-8"))

    def _join_parquet(self, parts, header, target, texts=1):
        import pyarrow as pa
        import pyarrow.parquet as pq

        if not parts:
            empty = pa.schema([(name, pa.string()) for name in header[:texts]]
                              + [(name, pa.float32()) for name in header[texts:]])
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
