"""Loading, splitting, cleaning and tokenizing data with `datasets`."""

import json

import pandas as pd
import pytest

from seqreg_hf.data import DataError, clean_split, label_statistics, load_raw_datasets, tokenize_splits
from seqreg_hf.tokenization import build_word_tokenizer


@pytest.fixture
def table(tmp_path):
    frame = pd.DataFrame({
        "id": range(8),
        "split": ["train", "train", "train", "dev", "test", "train", "train", "test"],
        "text": ["good day", "", "bad day", "fine", "ok then", None, "nice", "meh"],
        "V": [3.5, 3.0, 2.0, 3.1, 2.9, 3.0, float("nan"), 3.3],
        "A": [3.0, 3.0, 2.5, 3.0, 3.0, 3.0, 3.0, "high"],
    })
    path = tmp_path / "data.csv"
    frame.to_csv(path, index=False)
    return path


def test_split_column_makes_train_validation_test(table):
    raw = load_raw_datasets(train_file=table, split_column="split")
    assert {name: len(d) for name, d in raw.items()} == {"train": 5, "validation": 1, "test": 2}


def test_bad_rows_are_counted_then_dropped(table):
    raw = load_raw_datasets(train_file=table, split_column="split")
    clean, report = clean_split(raw["train"], "train", "text", ["V", "A"])
    assert clean["text"] == ["good day", "bad day"]
    assert report["rows"] == 5 and report["dropped"] == 3
    assert report["examples"] == ["row 1: empty text in column 'text'", "row 3: empty text in column 'text'",
                                  "row 4: label 'V' is None, not a finite number"]  # CSV NaN reads as null
    test, test_report = clean_split(raw["test"], "test", "text", ["V", "A"])
    assert test_report["examples"] == ["row 1: label 'A' is 'high', not a finite number"]


def test_bad_rows_stop_the_run_under_the_error_policy(table):
    raw = load_raw_datasets(train_file=table, split_column="split")
    with pytest.raises(DataError, match=r"train split, row 1 .*: empty text in column 'text'. 3 bad row\(s\)"):
        clean_split(raw["train"], "train", "text", ["V", "A"], on_bad_rows="error")


def test_missing_columns_are_named(table):
    raw = load_raw_datasets(train_file=table)
    with pytest.raises(DataError, match=r"column\(s\) \['D'\] not found.*--label_columns"):
        clean_split(raw["train"], "train", "text", ["V", "D"])


def test_label_statistics_use_the_given_split_only(table):
    raw = load_raw_datasets(train_file=table, split_column="split")
    clean, _ = clean_split(raw["train"], "train", "text", ["V"])
    means, stds = label_statistics(clean, ["V"])
    assert means == pytest.approx([2.75]) and stds == pytest.approx([0.75])


def test_constant_label_is_refused(tmp_path):
    path = tmp_path / "flat.jsonl"
    path.write_text("\n".join(json.dumps({"text": t, "y": 1.0}) for t in ["a", "b", "c"]))
    raw = load_raw_datasets(train_file=path)
    with pytest.raises(DataError, match=r"\['y'\] are constant"):
        label_statistics(raw["train"], ["y"])


def test_separate_files_jsonl_and_parquet(tmp_path):
    rows = [{"text": "a b", "y": 1.0}, {"text": "b", "y": 2.0}]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    pd.DataFrame(rows).to_parquet(tmp_path / "dev.parquet")
    mixed = load_raw_datasets(tmp_path / "train.jsonl", tmp_path / "dev.parquet")  # each file read its own way
    assert mixed["train"]["text"] == ["a b", "b"] and mixed["validation"]["y"] == [1.0, 2.0]
    pd.DataFrame(rows).to_parquet(tmp_path / "train.parquet")
    raw = load_raw_datasets(tmp_path / "train.parquet", tmp_path / "dev.parquet")
    assert set(raw) == {"train", "validation"} and raw["validation"]["y"] == [1.0, 2.0]


def test_unknown_split_values_and_file_types(tmp_path, table):
    with pytest.raises(DataError, match="unsupported file type '.xlsx'"):
        load_raw_datasets(train_file=tmp_path / "x.xlsx")
    with pytest.raises(DataError, match="split column 'id' holds"):
        load_raw_datasets(train_file=table, split_column="id")
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        load_raw_datasets(train_file=tmp_path / "missing.csv")


def test_tokenize_splits_gives_ids_masks_and_float_labels(table):
    raw = load_raw_datasets(train_file=table, split_column="split")
    for split in raw:
        raw[split], _ = clean_split(raw[split], split, "text", ["V", "A"])
    tokenizer = build_word_tokenizer(["good", "bad", "day"], lowercase=True)
    tokenized = tokenize_splits(raw, tokenizer, "text", ["V", "A"], max_length=1)
    first = tokenized["train"][0]
    assert first["input_ids"] == [2] and first["attention_mask"] == [1]  # truncated to max_length
    assert first["labels"] == [3.5, 3.0]


def test_streamed_train_split_counts_drops_and_standardizes_like_the_whole_file(table):
    import numpy as np

    from seqreg_hf.data import clean_stream, stream_split

    stream = stream_split(table, "train", split_column="split")
    clean, report, means, stds = clean_stream(stream, "train", "text", ["V", "A"])
    assert report["rows"] == 5 and report["dropped"] == 3
    assert [row["text"] for row in clean] == ["good day", "bad day"]
    np.testing.assert_allclose(means, [2.75, 2.75])
    np.testing.assert_allclose(stds, [0.75, 0.25])
    with pytest.raises(DataError, match=r"train split, row 1 .*: empty text in column 'text'"):
        clean_stream(stream_split(table, "train", split_column="split"), "train", "text", ["V"], on_bad_rows="error")


def test_vectorized_bad_row_scan_agrees_with_the_row_rule():
    """The column-wise scan finds exactly the rows that row_problem refuses, whatever the column types."""
    from datasets import Dataset

    from seqreg_hf.data import bad_row_mask, row_problem

    texts = ["fine", "", "   ", None, "ok", "7", "tab\t", "x", "y", "z", "w"]
    as_strings = ["1.5", "nan", "2", "3", " 4.5 ", "abc", "inf", "", None, "1_0", "True"]  # "1_0": float() reads it
    as_floats = [1.0, 2.0, float("nan"), 4.0, float("inf"), 6.0, 7.0, None, 9.0, -10.0, 11.0]
    data = Dataset.from_dict({"text": texts, "s": as_strings, "f": as_floats, "i": list(range(11))})
    expected = [row_problem(t, (("s", s), ("f", f), ("i", i)), "text") is not None
                for t, s, f, i in zip(texts, as_strings, as_floats, range(11))]
    assert bad_row_mask(data, "text", ["s", "f", "i"]).tolist() == expected
    numbers = Dataset.from_dict({"text": [1, 2, None], "y": [True, False, True]})  # a numeric text, boolean labels
    assert bad_row_mask(numbers, "text", []).tolist() == [False, False, True]
    assert bad_row_mask(numbers, "text", ["y"]).tolist() == [True, True, True]
    cleaned, report = clean_split(data.select([9, 0, 1, 4]), "train", "text", ["s", "f"])
    assert list(cleaned["text"]) == ["z", "fine"] and report["dropped"] == 2  # row 9 is valid: "1_0" and -10.0
    assert report["examples"] == ["row 2: empty text in column 'text'", "row 3: label 'f' is inf, not a finite number"]


def test_split_column_is_matched_case_insensitively_and_unknown_values_are_named(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("text,y,split\na,1,TRAIN\nb,2,Dev\nc,3,test\nd,4,train\n")
    raw = load_raw_datasets(train_file=path, split_column="split")
    assert {k: v["text"] for k, v in raw.items()} == {"train": ["a", "d"], "validation": ["b"], "test": ["c"]}
    path.write_text("text,y,split\na,1,train\nb,2,holdout\n")
    with pytest.raises(DataError, match=r"holds \['holdout'\]"):
        load_raw_datasets(train_file=path, split_column="split")
