"""Loading, cleaning and tokenizing regression data with `datasets`.

Files (CSV / JSON / JSONL / Parquet, read through the format table of `formats.py`) or a Hub dataset id; splits
from separate files or from a split column.
Bad rows (empty or null text, NaN / infinite / non-numeric labels) are counted and reported, then dropped,
or with ``on_bad_rows="error"`` the first one stops the run with its row and column named.
"""

import json
import logging
import math
import os
import re
import shutil
import time

import numpy as np
from datasets import Dataset, DatasetDict, IterableDataset, load_dataset
from datasets.exceptions import DatasetGenerationError
from transformers import DataCollatorWithPadding

from .formats import (
    DataError,
    atomic_write,
    check_header,
    dataset_builder,
    file_format,
    read_dataset,
    read_error,
    read_lines,
    stream_dataset,
)
from .tokenization import encode_texts

logger = logging.getLogger(__name__)

SPLIT_ALIASES = {"train": "train", "dev": "validation", "validation": "validation", "valid": "validation",
                 "val": "validation", "test": "test"}
BAD_ROW_POLICIES = ("drop", "error")


def load_raw_datasets(train_file=None, validation_file=None, test_file=None, dataset_name=None,
                      dataset_config_name=None, split_column=None, cache_dir=None):
    """A DatasetDict with any of "train", "validation", "test"."""
    files = {name: os.fspath(path) for name, path in
             (("train", train_file), ("validation", validation_file), ("test", test_file)) if path}
    if dataset_name:
        raw = load_dataset(dataset_name, dataset_config_name, cache_dir=cache_dir)
    elif files:
        for path in files.values():  # every name is checked before any file is looked for
            dataset_builder(path)
        for path in files.values():
            if not os.path.isfile(path):
                raise FileNotFoundError(f"data file {path!r} does not exist.")
            check_header(path)
        # Each file is read on its own, even when all share one format: read together, a column missing from one
        # file would be filled with nulls, and a value of another type in one file would fail all of them.
        raw = DatasetDict({split: read_dataset(path, cache_dir) for split, path in files.items()})
    else:
        raise DataError("no data: give --train_file (and --validation_file / --test_file) or --dataset_name.")
    if split_column:
        raw = split_by_column(raw, split_column)
    return raw


def read_split(path, split, split_column=None):
    """The rows of one file, or with `split_column` only its `split` rows (train, validation or test)."""
    raw = load_raw_datasets(train_file=path, split_column=split_column)
    if not split_column:
        return raw["train"]
    if split not in raw:
        raise DataError(f"{path}: no {split!r} rows in column {split_column!r}; it has {list(raw)}.")
    return raw[split]


def _arrow_column(dataset, name):
    """One column of a Dataset as a pyarrow ChunkedArray, in the dataset's row order (indices applied)."""
    return dataset.with_format("arrow").select_columns([name])[:][name]


def split_by_column(raw, split_column):
    """Re-split every row by the value of `split_column` (train / dev|validation / test), vectorized."""
    import pyarrow as pa
    import pyarrow.compute as pc

    source = raw["train"] if len(raw) == 1 else None
    if source is None:
        raise DataError("split_column needs one data file holding every split.")
    if split_column not in source.column_names:
        raise DataError(f"split column {split_column!r} is not in the data; columns: {source.column_names}.")
    values = pc.utf8_lower(pc.fill_null(_arrow_column(source, split_column).cast(pa.string()), "<null>"))
    unknown = pc.unique(pc.filter(values, pc.invert(pc.is_in(values, pa.array(list(SPLIT_ALIASES)))))).to_pylist()
    if unknown:
        raise DataError(f"split column {split_column!r} holds {sorted(unknown)}; expected train, dev/validation, "
                        "test.")
    splits = {}
    for name in ("train", "validation", "test"):
        aliases = pa.array([alias for alias, split in SPLIT_ALIASES.items() if split == name])
        rows = np.flatnonzero(pc.is_in(values, aliases).to_numpy(zero_copy_only=False))
        if len(rows):
            splits[name] = source.select(rows)
    return DatasetDict(splits)


# The largest label magnitude accepted. The model computes in float32 (largest number 3.4e38): labels up to 1e18
# keep every difference of two labels, and its square in a loss or an error metric, finite there (4e36). A label
# such as 1e300 would turn the label statistics, the standardized targets and the loss into inf.
LABEL_LIMIT = 1e18

_DECIMAL_COMMA = re.compile(r"^\s*[+-]?\d*,\d+\s*$")
_THOUSANDS_COMMA = re.compile(r"^\s*[+-]?\d{1,3}(,\d{3})+\s*$")  # "1,000": a decimal comma or a thousands separator


def _number(value):
    """float(value), or None for a missing, boolean or non-numeric value."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _as_float(value):
    """The value as a usable label (a finite number within ±LABEL_LIMIT), or None."""
    number = _number(value)
    return number if number is not None and math.isfinite(number) and abs(number) <= LABEL_LIMIT else None


def label_problem(column, value):
    """Why one label value cannot be trained on, with the fix where there is one; None for a usable label."""
    if _as_float(value) is not None:
        return None
    if isinstance(value, str) and _THOUSANDS_COMMA.match(value):
        plain = value.strip()
        decimal = f"a decimal point ({plain.replace(',', '.')}) or " if plain.count(",") == 1 else ""
        return (f"label {column!r} is {value!r}: its comma is {decimal}a thousands separator "
                f"({plain.replace(',', '')}); write the number it means without the comma")
    if isinstance(value, str) and _DECIMAL_COMMA.match(value):
        return (f"label {column!r} is {value!r}, a number written with a comma: write it with a decimal point "
                f"({value.strip().replace(',', '.')})")
    number = _number(value)
    if number is not None and math.isfinite(number):
        return (f"label {column!r} is {number:g}, beyond ±{LABEL_LIMIT:g}, where float32 arithmetic overflows: "
                "rescale the column")
    return f"label {column!r} is {value!r}, not a finite number"


def row_problem(text, labels, text_column, text_pair=None, text_pair_column=None):
    """Why a row cannot be trained on (an empty/null text, or a missing/NaN/infinite/non-numeric/huge label), or
    None.

    `labels` yields (column, value) pairs. With `text_pair_column` (a model of pairs) the second text `text_pair`
    follows the first text's rule. The one rule for files read whole and for streamed ones.
    """
    for value, column in ((text, text_column), (text_pair, text_pair_column)):
        if column is not None and (value is None or not str(value).strip()):
            return f"empty text in column {column!r}"
    for column, value in labels:
        problem = label_problem(column, value)
        if problem:
            return problem
    return None


def _parse_strings(array, decode=None):
    """Strings as float64 (NaN where a string is not a usable label), vectorized by pandas; the strings pandas
    cannot read go through `decode` (JSON texts) and the one rule, :func:`_as_float`, one by one."""
    import pandas as pd

    strings = array.to_pandas()
    values = pd.to_numeric(strings, errors="coerce")
    retry = values.isna() & strings.notna()  # forms float() reads and pandas does not ("1_0", other digits)
    if retry.any():
        values[retry] = [np.nan if (v := _as_float(decode(s) if decode else s)) is None else v
                         for s in strings[retry]]
    return values.to_numpy(dtype=np.float64)


def _json_text(text):
    try:
        return json.loads(text)
    except ValueError:
        return None


def label_values(dataset, column):
    """A label column as float64, NaN where a value is not a usable label (:func:`_as_float`): missing,
    non-numeric, a boolean, not finite or beyond ±LABEL_LIMIT (vectorized)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    array = _arrow_column(dataset, column)
    if pa.types.is_integer(array.type) or pa.types.is_floating(array.type) or pa.types.is_decimal(array.type):
        values = pc.fill_null(array.cast(pa.float64()), float("nan")).to_numpy()
    elif pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        values = _parse_strings(array)
    elif isinstance(array.type, pa.BaseExtensionType) and (pa.types.is_string(array.type.storage_type)
                                                         or pa.types.is_large_string(array.type.storage_type)):
        # A JSON column mixing numbers with a string ("NaN", "2.5") is read as JSON texts, one per value: parse
        # each, so that one bad value costs one row and not the whole column.
        storage = pa.chunked_array([chunk.storage for chunk in array.chunks], type=array.type.storage_type)
        values = _parse_strings(storage, decode=_json_text)
    else:
        return np.full(len(array), np.nan)  # booleans, lists, structs: not a score
    with np.errstate(invalid="ignore"):
        return np.where(np.abs(values) > LABEL_LIMIT, np.nan, values)


def _empty_texts(dataset, column):
    """True for each row whose text in `column` is null or only whitespace (a nested value is refused)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    texts = _arrow_column(dataset, column)
    if pa.types.is_nested(texts.type):
        refuse_nested_text(texts.to_pylist(), column)
    if not (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)):
        texts = texts.cast(pa.string())
    empty = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(texts), ""), True).to_numpy(zero_copy_only=False)
    return np.asarray(empty, dtype=bool)


def _bad_masks(dataset, text_column, label_columns, text_pair_column=None):
    """(bad text mask, {label column: bad value mask}): what :func:`row_problem` refuses, column by column. A pair's
    row is bad when either of its texts is empty."""
    empty = _empty_texts(dataset, text_column)
    if text_pair_column is not None:
        empty = empty | _empty_texts(dataset, text_pair_column)
    return empty, {c: ~np.isfinite(label_values(dataset, c)) for c in label_columns}


def refuse_nested_text(values, text_column, first_row=0, where=""):
    """A DataError naming the first row whose text is a JSON object or list (a wrong --text_column, most likely):
    such a value has no one text to score."""
    for row, value in enumerate(values, start=first_row):
        if isinstance(value, dict | list | tuple):
            raise DataError(f"{where}row {row} (0-based), column {text_column!r} holds a JSON {type(value).__name__}, "
                            f"not a text: {str(value)[:60]}. Point --text_column (or --text_pair_column) at a column "
                            "of strings, or make that value a string.")


def bad_row_mask(dataset, text_column, label_columns, text_pair_column=None):
    """True for each row that :func:`row_problem` refuses, computed column-wise with pyarrow and numpy."""
    return _any_bad(*_bad_masks(dataset, text_column, label_columns, text_pair_column))


def _any_bad(empty_texts, bad_labels):
    return np.logical_or.reduce([empty_texts, *bad_labels.values()])


def _as_written(dataset, row, column, value):
    """The value to quote in a reason: a JSON column's NaN decodes to None, so quote the text the file holds."""
    import pyarrow as pa

    if value is not None:
        return value
    array = _arrow_column(dataset.select([row]), column).combine_chunks()
    return array.storage[0].as_py() if isinstance(array.type, pa.BaseExtensionType) else None


def _reasons(dataset, rows, text_column, label_columns, text_pair_column=None):
    """{row: reason} for `rows`, from the one rule."""
    reasons = {}
    for row in rows:
        record = dataset[row]
        labels = ((c, _as_written(dataset, row, c, record[c])) for c in label_columns)
        pair = record[text_pair_column] if text_pair_column is not None else None
        reasons[row] = (row_problem(record[text_column], labels, text_column, pair, text_pair_column)
                        or "a label is not a finite number")
    return reasons


def _of(source):
    return f" of {os.fspath(source)}" if source else ""


def describe_split(split, source=None):
    """How messages name a split: 'validation split', or 'validation split of dev.csv' when a file holds it."""
    return f"{split} split{_of(source)}"


def check_columns(column_names, split, text_column, label_columns=(), source=None, text_pair_column=None):
    if text_pair_column is not None and text_pair_column not in column_names:
        raise DataError(f"{describe_split(split, source)}: the second-text column {text_pair_column!r} is not in the "
                        f"data, which has {list(column_names)}. Set --text_pair_column to the column of second texts.")
    missing = [c for c in [text_column, *label_columns] if c not in column_names]
    if missing:
        raise DataError(f"{describe_split(split, source)}: column(s) {missing} not found; the data has "
                        f"{list(column_names)}. Set --text_column / --label_columns to the right names.")


def _refuse_unusable(dataset, where, text_column, label_columns, empty_texts, bad_labels, text_pair_column=None):
    """A split that has rows but not one usable row, or a label column without one usable value, is refused
    whatever the bad-row policy: dropping would leave nothing to train or evaluate on."""
    if len(dataset) == 0:
        return
    for column, mask in bad_labels.items():
        if mask.all():
            first = label_problem(column, _as_written(dataset, 0, column, dataset[0][column]))
            raise DataError(f"{where}: label column {column!r} has no usable value: none of its {len(dataset)} "
                            f"rows holds a usable number (row 0: {first}). Fix the column, or name another one "
                            "in --label_columns.")
    if empty_texts.all():
        if text_pair_column is not None:
            raise DataError(f"{where}: none of its {len(dataset)} rows is usable: every row has an empty text in "
                            f"column {text_column!r} or {text_pair_column!r}. Fix the file, or name the text columns "
                            "in --text_column and --text_pair_column.")
        raise DataError(f"{where}: none of its {len(dataset)} rows is usable: empty text in every row of column "
                        f"{text_column!r}. Fix the file, or name the text column in --text_column.")
    if _any_bad(empty_texts, bad_labels).all():
        reasons = _reasons(dataset, range(min(3, len(dataset))), text_column, label_columns, text_pair_column)
        examples = "; ".join(f"row {row}: {why}" for row, why in reasons.items())
        raise DataError(f"{where}: none of its {len(dataset)} rows is usable ({examples}). Fix the file.")


def clean_split(dataset, split, text_column, label_columns, on_bad_rows="drop", source=None, text_pair_column=None):
    """Drop (or refuse) bad rows; returns (dataset, report) where report counts what was dropped and why.

    `source`, the file the split was read from, is named in every message about it. With `text_pair_column` each
    row is a pair, and an empty second text makes a row bad as an empty first text does."""
    if on_bad_rows not in BAD_ROW_POLICIES:
        raise ValueError(f"on_bad_rows={on_bad_rows!r} is not supported; choose one of {BAD_ROW_POLICIES}.")
    check_columns(dataset.column_names, split, text_column, label_columns, source, text_pair_column)
    start = time.perf_counter()
    empty_texts, bad_labels = _bad_masks(dataset, text_column, label_columns, text_pair_column)
    _refuse_unusable(dataset, describe_split(split, source), text_column, label_columns, empty_texts, bad_labels,
                     text_pair_column)
    rows = np.flatnonzero(_any_bad(empty_texts, bad_labels))
    reasons = _reasons(dataset, rows[:5].tolist(), text_column, label_columns, text_pair_column)
    report = {"rows": len(dataset), "dropped": len(rows), "examples": [f"row {r}: {why}" for r, why in reasons.items()]}
    if len(rows) and on_bad_rows == "error":
        row, why = next(iter(reasons.items()))
        raise DataError(f"{split} split, row {row} (0-based, header excluded){_of(source)}: {why}. {len(rows)} bad "
                        "row(s) in all; fix them, or pass --on_bad_rows drop to drop and count them.")
    if len(rows):
        logger.warning("%s split: dropping %d of %d rows%s: %s", split, len(rows), len(dataset), _of(source),
                       "; ".join(report["examples"]))
        keep = np.ones(len(dataset), dtype=bool)
        keep[rows] = False
        dataset = dataset.select(np.flatnonzero(keep))
    report["seconds"] = round(time.perf_counter() - start, 3)
    return dataset, report


def check_selection_split(dataset, split, label_columns):
    """Refuse a split on which the selection metric (Pearson r per target) is undefined: fewer than 2 rows, or a
    constant target. NaN would otherwise be compared at every evaluation and no epoch ever chosen."""
    fix = (f"Give a {split} split with at least 2 rows whose targets vary, or train without selection: "
           "--eval_strategy no --save_strategy no --load_best_model_at_end false.")
    if len(dataset) < 2:
        raise DataError(f"{split} split: {len(dataset)} usable row(s), and Pearson r, the metric that picks the best "
                        f"epoch, needs at least 2. {fix}")
    for column in label_columns:
        values = label_values(dataset, column)
        if np.ptp(values) == 0:
            raise DataError(f"{split} split: target {column!r} is constant ({values[0]:g}), so its Pearson r, the "
                            f"metric that picks the best epoch, is undefined. {fix}")


def label_statistics(dataset, label_columns):
    """Per-target mean and standard deviation of the (clean) train split."""
    if len(dataset) == 0:
        raise DataError("the train split has no rows: there is nothing to learn from. Give a train file with rows.")
    values = np.stack([label_values(dataset, c) for c in label_columns])
    stds = values.std(axis=1)
    if (stds == 0).any():
        flat = [c for c, s in zip(label_columns, stds) if s == 0]
        raise DataError(f"label column(s) {flat} are constant in the train split: there is nothing to regress.")
    return values.mean(axis=1).tolist(), stds.tolist()


# A text is cut to this many characters per token of max_length before it is tokenized: tokenizers build per-character
# alignments and the whole token list before truncating (a 25 MB line took 3.2 GB), so the cut bounds memory per row.
# The first max_length tokens of a text reach past the cut only if they average more than 64 characters each; a token
# of English covers about 4.5 (EmoBank with MiniLM's WordPiece: 4.5 on average, 13 at most in any one text), and
# WordPiece maps a word of over 100 characters to one [UNK]. Only text made mostly of such words, or of whitespace and
# characters the tokenizer drops, can lose tokens to the cut; those rows are counted as truncated.
CHARS_PER_TOKEN = 64


def cut_long_texts(texts, max_length):
    """(texts, cut): each text longer than max_length * CHARS_PER_TOKEN characters cut there, at the last whitespace
    before the bound when there is one in its second half (so no word is split and the tokens kept are the same as
    from the whole text), and which texts were cut. max_length None: no cut."""
    if not max_length:
        return list(texts), [False] * len(texts)
    bound = max_length * CHARS_PER_TOKEN
    kept, cut = [], []
    for text in texts:
        if len(text) <= bound:
            kept.append(text)
            cut.append(False)
            continue
        end = bound
        while end > bound // 2 and not text[end].isspace():  # text[end] is the first character dropped
            end -= 1
        kept.append(text[: end if end > bound // 2 else bound])
        cut.append(True)
    return kept, cut


def tokenize_splits(raw, tokenizer, text_column, label_columns, max_length, num_proc=None, text_pair_column=None,
                    pair_encoding=None):
    """Batched map through the model's tokenizer (`tokenization.encode_texts`): input_ids, attention_mask, a float
    `labels` list per row and the `length` that length-grouped sampling reads, and nothing else: the raw columns are
    removed, so no stray column (a `label`, say, which the collator would rename to `labels`) can reach the model.
    Streamed splits are mapped lazily.

    A model of pairs (`pair_encoding`, the second texts in `text_pair_column`): "siamese" / "cosine" add
    pair_input_ids / pair_attention_mask, each side tokenized on its own, and `length` is the longer side's; "cross"
    joins each pair into one sequence."""
    if (text_pair_column is None) != (pair_encoding is None):
        raise DataError(f"this model reads pairs of texts (pair_encoding={pair_encoding!r}): name the column of second "
                        "texts with --text_pair_column." if text_pair_column is None else
                        f"--text_pair_column {text_pair_column!r} was given, but the model reads one text per row; "
                        "drop --text_pair_column, or train a model of pairs (--pair_encoding siamese).")

    def encode(batch):
        texts, _ = cut_long_texts([str(t) for t in batch[text_column]], max_length)
        pairs = cut_long_texts([str(t) for t in batch[text_pair_column]], max_length)[0] if text_pair_column else None
        encoded = encode_texts(tokenizer, texts, pairs, pair_encoding, max_length)
        if label_columns and all(c in batch for c in label_columns):
            encoded["labels"] = [[float(v) for v in row] for row in zip(*(batch[c] for c in label_columns))]
        encoded["length"] = [len(ids) for ids in encoded["input_ids"]]
        if "pair_input_ids" in encoded:  # length buckets group pairs by their longer side (the sides are padded)
            encoded["length"] = [max(n, len(ids)) for n, ids in zip(encoded["length"], encoded["pair_input_ids"])]
        return encoded

    tokenized = {}
    for split, dataset in raw.items():
        if isinstance(dataset, IterableDataset):
            columns = list(next(iter(dataset.take(1))))
            tokenized[split] = dataset.map(encode, batched=True, remove_columns=columns)
        else:
            tokenized[split] = dataset.map(encode, batched=True, num_proc=num_proc, desc=f"tokenizing {split}",
                                           remove_columns=dataset.column_names)
    return tokenized


PAIR_INPUTS = ("pair_input_ids", "pair_attention_mask")


class PairCollator(DataCollatorWithPadding):
    """DataCollatorWithPadding for rows of either kind: it pads input_ids / attention_mask (and labels) as its base
    does, and a siamese pair's second side (pair_input_ids / pair_attention_mask, which the base would leave ragged)
    on its own, to the longest second text of the batch. Right padding either way, which the model is exact under."""

    def __call__(self, features):
        if PAIR_INPUTS[0] not in features[0]:
            return super().__call__(features)
        second = [{"input_ids": f.pop(PAIR_INPUTS[0]), "attention_mask": f.pop(PAIR_INPUTS[1])} for f in features]
        batch = super().__call__(features)
        padded = self.tokenizer.pad(second, padding=self.padding, max_length=self.max_length,
                                    pad_to_multiple_of=self.pad_to_multiple_of, return_tensors=self.return_tensors)
        batch[PAIR_INPUTS[0]], batch[PAIR_INPUTS[1]] = padded["input_ids"], padded["attention_mask"]
        return batch


def exact_length_batches(lengths, batch_size, generator=None):
    """Row indices cut into batches of at most `batch_size` rows that all have exactly one length (no padding).

    Without `generator`: in order of length, rows in input order. With a `random.Random`: rows shuffled within
    each length, then the batches shuffled. Training's length buckets and prediction both batch this way.
    """
    by_length = {}
    for row, length in enumerate(lengths):
        by_length.setdefault(length, []).append(row)
    batches = []
    for length in sorted(by_length):
        rows = by_length[length]
        if generator is not None:
            generator.shuffle(rows)
        batches += [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]
    if generator is not None:
        generator.shuffle(batches)
    return batches


def row_inputs(dataset, text_column, text_pair_column=None):
    """What `Predictor.predict` takes for the rows of `dataset`: its texts, or with `text_pair_column` its
    (text, text_pair) tuples."""
    texts = dataset[text_column]
    return texts if text_pair_column is None else list(zip(texts, dataset[text_pair_column]))


def row_texts(dataset, text_column, text_pair_column=None):
    """Every text of `dataset`'s rows (both texts of each pair): the corpus whose words a trimmed vocabulary keeps."""
    texts = list(dataset[text_column])
    return texts + list(dataset[text_pair_column]) if text_pair_column else texts


def check_pair_data(config, text_pair_column, name):
    """One line when the data and the model `name` disagree on pairs: a pair model without --text_pair_column, or a
    model of single texts given one."""
    if config.reads_pairs and text_pair_column is None:
        raise DataError(f"{name} reads pairs of texts (pair_encoding={config.pair_encoding!r}); name the column of "
                        "second texts with --text_pair_column.")
    if not config.reads_pairs and text_pair_column is not None:
        raise DataError(f"{name} reads one text per row, and --text_pair_column {text_pair_column!r} gives pairs; "
                        "drop --text_pair_column, or use a model of pairs (trained with --text_pair_column).")


def read_texts(path, text_column="text", text_pair_column=None):
    """Texts of one file (CSV / TSV / JSON / JSONL / Parquet, or .txt with one text per line; see `formats.py`);
    with `text_pair_column`, (text, text_pair) tuples."""
    if file_format(path)[1].builder is None:
        if text_pair_column is not None:
            raise DataError(f"{path}: a text file holds one text per line and no column {text_pair_column!r}; give "
                            "pairs in a CSV / TSV / JSON / JSONL / Parquet file with --text_pair_column.")
        return read_lines(path)
    dataset = load_raw_datasets(train_file=path)["train"]
    check_columns(dataset.column_names, os.fspath(path), text_column, text_pair_column=text_pair_column)
    texts = ["" if t is None else str(t) for t in dataset[text_column]]
    if text_pair_column is None:
        return texts
    return list(zip(texts, ("" if t is None else str(t) for t in dataset[text_pair_column])))


def _stream_row_problem(row, text_column, label_columns, text_pair_column=None):
    pair = row.get(text_pair_column) if text_pair_column is not None else None
    return row_problem(row.get(text_column), ((c, row.get(c)) for c in label_columns), text_column, pair,
                       text_pair_column)


def stream_split(path, split, split_column=None):
    """An IterableDataset over one file (rows read lazily, nothing held in memory), filtered to `split`."""
    stream = stream_dataset(path)
    if split_column:
        stream = stream.filter(lambda row: SPLIT_ALIASES.get(str(row[split_column]).lower()) == split)
    return stream


def clean_stream(stream, split, text_column, label_columns, on_bad_rows="drop", text_pair_column=None):
    """One pass over a stream: count bad rows and compute label statistics (Welford), in constant memory.

    Returns (filtered stream, report, means, stds); the filter drops the same rows lazily during training.
    """
    count, bad, examples = 0, 0, []
    mean = np.zeros(len(label_columns))
    m2 = np.zeros(len(label_columns))
    for index, row in enumerate(stream):
        if index == 0:
            check_columns(list(row), split, text_column, label_columns, text_pair_column=text_pair_column)
        for column in filter(None, (text_column, text_pair_column)):
            refuse_nested_text([row.get(column)], column, first_row=index, where=f"{split} split, ")
        problem = _stream_row_problem(row, text_column, label_columns, text_pair_column)
        if problem:
            if on_bad_rows == "error":
                raise DataError(f"{split} split, row {index} (0-based, header excluded): {problem}. Fix it, or pass "
                                "--on_bad_rows drop to drop and count such rows.")
            bad += 1
            if len(examples) < 5:
                examples.append(f"row {index}: {problem}")
            continue
        values = np.array([float(row[c]) for c in label_columns])
        count += 1
        delta = values - mean
        mean += delta / count
        m2 += delta * (values - mean)
    if count == 0:
        raise DataError(f"{split} split: no usable rows.")
    report = {"rows": count + bad, "dropped": bad, "examples": examples}
    if bad:
        logger.warning("%s split: dropping %d of %d rows: %s", split, bad, count + bad, "; ".join(examples))
    stds = np.sqrt(m2 / count)
    if (stds == 0).any():
        raise DataError(f"label column(s) {[c for c, s in zip(label_columns, stds) if s == 0]} are constant.")
    clean = stream.filter(lambda row: _stream_row_problem(row, text_column, label_columns, text_pair_column) is None)
    return clean, report, mean.tolist(), stds.tolist()


def fetch_train_file(data_args, progress=True):
    """When `train_file` is missing and `data_url` is set, download it through `datasets`' download cache and train
    on the cached copy. Offline (HF_DATASETS_OFFLINE / HF_HUB_OFFLINE) only an earlier download is used."""
    path, url = data_args.train_file, data_args.data_url
    if not path or os.path.exists(path) or not url:
        return
    from datasets import DownloadConfig, config
    from datasets.utils.file_utils import cached_path, hash_url_to_filename

    cached = os.path.join(config.DOWNLOADED_DATASETS_PATH, hash_url_to_filename(url))
    if config.HF_HUB_OFFLINE and not os.path.exists(cached):
        raise OSError(f"{path} does not exist, and offline mode (HF_DATASETS_OFFLINE / HF_HUB_OFFLINE) forbids "
                      f"downloading {url}. Put a local copy there, point --train_file at one, or go online once.")
    logger.warning("%s not found; using %s (cached under %s)", path, url, config.DOWNLOADED_DATASETS_PATH)
    try:
        local = cached_path(url, download_config=DownloadConfig(use_etag=False, disable_tqdm=not progress))
    except Exception as error:  # fsspec / httpx raise many types for one failed download
        raise OSError(f"{path} does not exist and downloading {url} failed ({type(error).__name__}: {error}). Put "
                      "a local copy there or point --train_file at one.") from None
    # The cache names files by a hash of the URL; the reader picks its format from the name, so give it one.
    named = f"{local}-{os.path.basename(path)}"
    if not os.path.exists(named):  # every rank of a torchrun job may get here: each copies under its own name
        with atomic_write(named) as partial:
            shutil.copyfile(local, partial)
    data_args.train_file = named


def load_clean_data(data_args, seed=42, progress=True):
    """(splits, bad-row reports, (label means, stds)); the train split is an IterableDataset when streaming."""
    if not data_args.label_columns:
        raise DataError("--label_columns is required: the column(s) holding the scores to learn.")
    fetch_train_file(data_args, progress)
    text, labels = data_args.text_column, data_args.label_columns
    limits = {"train": data_args.max_train_samples, "validation": data_args.max_eval_samples,
              "test": data_args.max_test_samples}
    if data_args.streaming:
        raw, reports = _load_eval_splits_for_streaming(data_args)
        check_header(data_args.train_file)
        train = stream_split(data_args.train_file, "train", data_args.split_column)
        if limits["train"]:
            train = train.take(limits["train"])
        try:
            train, reports["train"], means, stds = clean_stream(train, "train", text, labels, data_args.on_bad_rows,
                                                                data_args.text_pair_column)
        except (DatasetGenerationError, UnicodeDecodeError) as error:
            raise read_error([data_args.train_file], error) from None
        raw["train"] = train.shuffle(seed=seed, buffer_size=data_args.shuffle_buffer)
    else:
        raw = load_raw_datasets(data_args.train_file, data_args.validation_file, data_args.test_file,
                                data_args.dataset_name, data_args.dataset_config_name, data_args.split_column)
        reports = {}
        for split in list(raw):
            raw[split], reports[split] = clean_split(raw[split], split, text, labels, data_args.on_bad_rows,
                                                     source=split_source(data_args, split),
                                                     text_pair_column=data_args.text_pair_column)
    for split in ("validation", "test") if data_args.streaming else list(raw):
        if split in raw and limits.get(split):
            raw[split] = raw[split].select(range(min(limits[split], len(raw[split]))))
    if "train" not in raw:
        raise DataError("no train split: give --train_file, or a split column with 'train' rows.")
    if not data_args.streaming:
        means, stds = label_statistics(raw["train"], labels)
    return raw, reports, (means, stds)


def _load_eval_splits_for_streaming(data_args):
    """Validation / test are small: read them whole, from their own files or from the split column."""
    raw, reports = DatasetDict(), {}
    for split, path in (("validation", data_args.validation_file), ("test", data_args.test_file)):
        if path:
            dataset = load_raw_datasets(train_file=path)["train"]
        elif data_args.split_column:
            try:
                rows = list(stream_split(data_args.train_file, split, data_args.split_column))
            except (DatasetGenerationError, UnicodeDecodeError) as error:
                raise read_error([data_args.train_file], error) from None
            if not rows:
                continue
            dataset = Dataset.from_list(rows)
        else:
            continue
        raw[split], reports[split] = clean_split(dataset, split, data_args.text_column, data_args.label_columns,
                                                 data_args.on_bad_rows, source=split_source(data_args, split),
                                                 text_pair_column=data_args.text_pair_column)
    return raw, reports


def split_source(data_args, split):
    """The file a split was read from (its own file, or the one file a split column divides); None for a Hub
    dataset."""
    own = {"train": data_args.train_file, "validation": data_args.validation_file, "test": data_args.test_file}
    return own.get(split) or (data_args.train_file if data_args.split_column else None)
