"""Reading pretrained word-vector files: word2vec text and binary, GloVe text, fastText .vec, gzip or not.

A reader of our own rather than gensim's ``load_word2vec_format`` because every bad line must be named
(file, line number, reason) and memory must stay near the matrix itself: the matrix is allocated once
at its final size and filled in place. It is as fast as gensim's reader (``scripts/measure/bench_vectors.py``
measures both in the same run) and gives the same vectors (``tests/test_vectors.py`` checks against gensim).
"""

import gzip
import logging
import os
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

FORMATS = ("auto", "word2vec", "word2vec_binary", "glove", "fasttext")
ON_DUPLICATE = ("error", "first", "last")


class VectorFileError(ValueError):
    """A vector file that cannot be read as it is; the message names the file, the line and the fix."""


@dataclass
class WordVectors:
    """Words and their vectors, row i of ``vectors`` belonging to ``words[i]`` (file order = frequency order)."""

    words: list
    vectors: np.ndarray  # (num_words, dim) float32
    source: str = ""
    duplicates: list = field(default_factory=list)  # (word, kept_line, dropped_line)
    buffer: np.ndarray | None = None  # `vectors` plus the reserved rows in front of it, when reserve_rows > 0

    def __post_init__(self):
        if len(self.words) != len(self.vectors):
            raise ValueError(f"{len(self.words)} words but {len(self.vectors)} vectors: they must match row for row.")
        self.index = {word: i for i, word in enumerate(self.words)}

    def __len__(self):
        return len(self.words)

    def __contains__(self, word):
        return word in self.index

    @property
    def dim(self):
        return self.vectors.shape[1]

    def lookup(self, word):
        """Row of `word`, trying the exact form first and then its lowercase form; None if neither exists."""
        row = self.index.get(word)
        if row is None:
            row = self.index.get(word.lower())
        return row

    def is_cased(self):
        """True if the vocabulary keeps upper case (more than 1% of the words carry some)."""
        sample = self.words[:50000]
        upper = sum(1 for w in sample if w != w.lower())
        return upper > 0.01 * max(len(sample), 1)


def _open(path):
    with open(path, "rb") as probe:
        magic = probe.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def _decode(raw, path, where):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise VectorFileError(
            f"{path}, {where}: bytes {raw[max(error.start - 8, 0):error.end + 8]!r} are not UTF-8 ({error.reason}). "
            "Re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)."
        ) from None


def _header(line):
    parts = line.split()
    if len(parts) == 2 and all(p.isdigit() for p in parts):
        return int(parts[0]), int(parts[1])
    return None


def detect_format(path):
    """word2vec_binary for *.bin[.gz], word2vec (header line "count dim") or glove (no header) for text."""
    name = os.fspath(path).lower()
    if name.endswith((".bin", ".bin.gz")):
        return "word2vec_binary"
    with _open(path) as handle:
        first = handle.readline()
    return "word2vec" if _header(first) else "glove"


def _count_lines(path):
    count, last = 0, b"\n"
    with _open(path) as handle:
        while chunk := handle.read(1 << 24):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count + (last != b"\n")


class _Filler:
    """Fills a preallocated matrix row by row and applies the duplicate rule."""

    def __init__(self, path, rows, dim, on_duplicate, reserve=0):
        self.path, self.on_duplicate, self.reserve = path, on_duplicate, reserve
        self.buffer = np.empty((reserve + rows, dim), dtype=np.float32)
        self.vectors = self.buffer[reserve:]
        self.words, self.where, self.index, self.duplicates = [], [], {}, []

    def add(self, word, values, where):
        row = self.index.get(word)
        if row is not None:
            kept = where if self.on_duplicate == "last" else self.where[row]
            if self.on_duplicate == "error":
                raise VectorFileError(
                    f"{self.path}, {where}: the word {word!r} was already defined at {self.where[row]}. Pass "
                    f"on_duplicate='first' to keep {self.where[row]} or on_duplicate='last' to keep {where}."
                )
            self.duplicates.append((word, kept, where if kept != where else self.where[row]))
            if self.on_duplicate == "last":
                self.vectors[row] = values
                self.where[row] = where
            return
        row = len(self.words)
        self.vectors[row] = values
        self.index[word] = row
        self.words.append(word)
        self.where.append(where)

    @property
    def full(self):
        return len(self.words) == len(self.vectors)

    def result(self, source):
        if self.duplicates:
            word, kept, dropped = self.duplicates[0]
            logger.warning("%s: %d duplicated word(s); e.g. %r: kept %s, ignored %s (on_duplicate=%r).",
                           self.path, len(self.duplicates), word, kept, dropped, self.on_duplicate)
        buffer = self.buffer[: self.reserve + len(self.words)]
        if len(buffer) < len(self.buffer):
            buffer = buffer.copy()  # release the unused tail
        return WordVectors(self.words, buffer[self.reserve :], source=source, duplicates=self.duplicates,
                           buffer=buffer if self.reserve else None)


def _parse_values(parts, dim, path, line_no):
    if len(parts) != dim:
        raise VectorFileError(
            f"{path}, line {line_no}: {len(parts)} values where the file has {dim} per word. The line is truncated "
            "or malformed: fix or delete it."
        )
    try:
        values = np.array(parts, dtype=np.float32)
    except ValueError:
        bad = next(p for p in parts if not _is_float(p))
        raise VectorFileError(f"{path}, line {line_no}: {bad!r} is not a number.") from None
    if not np.isfinite(values).all():
        raise VectorFileError(f"{path}, line {line_no}: the vector holds NaN or infinite values.")
    return values


def _is_float(text):
    try:
        float(text)
        return True
    except ValueError:
        return False


def _read_text(path, fmt, limit, on_duplicate, progress, reserve):
    with _open(path) as handle:
        first = handle.readline()
    header = _header(first)
    if fmt == "glove" and header:
        raise VectorFileError(f"{path}: the first line {first.strip()!r} is a word2vec header; use format='word2vec'.")
    if fmt in ("word2vec", "fasttext") and not header:
        raise VectorFileError(f"{path}: the first line is not a 'count dim' header; for GloVe files use "
                              "format='glove'.")
    if header:
        total, dim = header
    else:
        first_parts = _decode(first, path, "line 1").rstrip().split(" ")
        total, dim = _count_lines(path), len(first_parts) - 1
        if dim < 1:
            raise VectorFileError(f"{path}, line 1: no vector values after the word.")
    rows = min(total, limit) if limit else total
    filler = _Filler(path, rows, dim, on_duplicate, reserve)
    line_no = 0
    with _open(path) as handle, tqdm(total=rows, desc=f"reading {os.path.basename(path)}", unit=" words",
                                     disable=not progress, mininterval=1.0) as bar:
        if header:
            handle.readline()
            line_no = 1
        for raw in handle:
            line_no += 1
            line = _decode(raw, path, f"line {line_no}").rstrip("\r\n")
            if not line.strip():
                continue
            parts = line.rstrip(" ").split(" ")
            word, values = parts[0], parts[1:]
            if len(values) > dim and any(not _is_float(p) for p in values[: len(values) - dim]):
                # A multi-word token (GloVe 840B has some): the last `dim` fields are the vector.
                word, values = " ".join(parts[: len(parts) - dim]), parts[len(parts) - dim :]
            if filler.full:
                if limit:
                    break
                raise VectorFileError(f"{path}, line {line_no}: more words than the {total} the header promises.")
            filler.add(word, _parse_values(values, dim, path, line_no), f"line {line_no}")
            bar.update(1)
    if header and not limit and len(filler.words) + len(filler.duplicates) < total:
        raise VectorFileError(f"{path}: the header promises {total} words but the file holds "
                              f"{len(filler.words) + len(filler.duplicates)}; the file is truncated.")
    return filler.result(os.fspath(path))


def _read_binary(path, limit, on_duplicate, progress, reserve):
    with _open(path) as handle:
        header = _header(handle.readline())
        if not header:
            raise VectorFileError(f"{path}: a word2vec binary file starts with a 'count dim' header line.")
        total, dim = header
        rows = min(total, limit) if limit else total
        filler = _Filler(path, rows, dim, on_duplicate, reserve)
        record_bytes = 4 * dim
        for entry in tqdm(range(1, rows + 1), desc=f"reading {os.path.basename(path)}", unit=" words",
                          disable=not progress, mininterval=1.0):
            word = bytearray()
            while (char := handle.read(1)) != b" ":
                if not char:
                    raise VectorFileError(f"{path}, entry {entry} of {total}: the file ends inside a word; it is "
                                          "truncated.")
                if char != b"\n" or word:
                    word += char
            data = handle.read(record_bytes)
            if len(data) != record_bytes:
                raise VectorFileError(f"{path}, entry {entry} of {total}: {len(data)} bytes of vector where "
                                      f"{record_bytes} are needed; the file is truncated.")
            values = np.frombuffer(data, dtype="<f4")
            if not np.isfinite(values).all():
                raise VectorFileError(f"{path}, entry {entry}: the vector holds NaN or infinite values.")
            filler.add(_decode(bytes(word), path, f"entry {entry}"), values, f"entry {entry}")
    return filler.result(os.fspath(path))


def load_vectors(path, format="auto", limit=None, on_duplicate="error", progress=True, reserve_rows=0):
    """Read a vector file into :class:`WordVectors`.

    Args:
        path: word2vec text/binary, GloVe text or fastText .vec; gzip-compressed files are recognised by content.
        format: one of FORMATS; "auto" picks binary for *.bin, else looks for a "count dim" header line.
        limit: keep only the first `limit` words (vector files are sorted by frequency).
        on_duplicate: "error" (default), or keep the "first" / "last" occurrence of a repeated word.
        progress: show a progress bar.
        reserve_rows: allocate this many extra rows in front of the vectors (`WordVectors.buffer`), so that
            special tokens can be added without copying the matrix.
    """
    if format not in FORMATS:
        raise ValueError(f"format={format!r} is not supported; choose one of {', '.join(map(repr, FORMATS))}.")
    if on_duplicate not in ON_DUPLICATE:
        raise ValueError(f"on_duplicate={on_duplicate!r} is not supported; choose one of {ON_DUPLICATE}.")
    if limit is not None and limit < 1:
        raise ValueError(f"limit={limit!r} must be a positive number of words.")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"vector file {os.fspath(path)!r} does not exist.")
    fmt = detect_format(path) if format == "auto" else format
    if fmt == "word2vec_binary":
        return _read_binary(path, limit, on_duplicate, progress, reserve_rows)
    return _read_text(path, fmt, limit, on_duplicate, progress, reserve_rows)
