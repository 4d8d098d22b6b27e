"""Bad labels, headers, options and metrics (issue 19): each one is refused in one line that names the file, row,
column or option and the fix, before anything is written; or, where the data is usable, handled and reported."""

import json
import math

import numpy as np
import pandas as pd
import pytest

import seqreg_hf
from seqreg_hf.cli import main as cli

WORDS = ["calm", "angry", "happy", "sad", "bright", "dark", "loud", "quiet"]


def texts_and_scores(n):
    return pd.DataFrame([{"text": " ".join(WORDS[(k + i) % len(WORDS)] for i in range(2 + k % 3)),
                          "y": float(k % 5), "z": float(k % 3) + 0.5} for k in range(n)])


@pytest.fixture
def vectors(tmp_path):
    """A word2vec text file of the eight words, 4 dimensions: builds and trains in a second."""
    rng = np.random.default_rng(0)
    lines = [f"{len(WORDS)} 4"] + [f"{w} " + " ".join(f"{v:.4f}" for v in rng.normal(size=4)) for w in WORDS]
    path = tmp_path / "vectors.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def files(tmp_path):
    texts_and_scores(40).to_csv(tmp_path / "train.csv", index=False)
    texts_and_scores(20).to_csv(tmp_path / "dev.csv", index=False)
    return tmp_path


def fast(vectors):
    return ["--embeddings", str(vectors), "--hidden_size", "8", "--ensemble_size", "1", "--num_train_epochs", "1",
            "--report_to", "none", "--plots", "false", "--disable_tqdm", "true"]


def train(tmp_path, vectors, *args, train_file="train.csv", dev="dev.csv", labels=("y",)):
    return cli(["train", "--train_file", str(tmp_path / train_file), "--validation_file", str(tmp_path / dev),
                "--label_columns", *labels, "--output_dir", str(tmp_path / "out"), *fast(vectors), *args])


def one_error(err, command="train"):
    """The one line a refused command prints; nothing else on stderr is an error or a traceback."""
    lines = [line for line in err.splitlines() if line.startswith(f"seqreg-hf {command}: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def refused(tmp_path, capsys, code, command="train"):
    assert code == 1
    line = one_error(capsys.readouterr().err, command)
    assert not (tmp_path / "out").exists()  # refused before anything was written
    return line


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


# 1. A "NaN" string in a JSON Lines label column: the column mixes numbers and a string.


def test_one_nan_string_in_a_jsonl_label_names_that_row_only(files, vectors, capsys):
    rows = texts_and_scores(40).to_dict("records")
    rows[0]["y"], rows[3]["y"] = 2.8, "NaN"
    write_jsonl(files / "train.jsonl", rows)
    line = refused(files, capsys, train(files, vectors, "--on_bad_rows", "error", train_file="train.jsonl"))
    assert "row 3 (0-based" in line and "label 'y' is 'NaN', not a finite number" in line
    assert "1 bad row(s)" in line and "row 0" not in line


def test_one_nan_string_in_a_jsonl_label_drops_that_row_only_through_the_python_api(files, vectors):
    rows = texts_and_scores(40).to_dict("records")
    rows[0]["y"], rows[3]["y"], rows[5]["y"] = 2.8, "NaN", "4.5"  # a quoted number is a number, as in a CSV
    write_jsonl(files / "train.jsonl", rows)
    seqreg_hf.train(train_file=str(files / "train.jsonl"), validation_file=str(files / "dev.csv"),
                    label_columns=["y"], output_dir=str(files / "out"), embeddings=str(vectors), hidden_size=8,
                    ensemble_size=1, num_train_epochs=1, report_to="none", plots=False, disable_tqdm=True,
                    metric_for_best_model="eval_r2_y")  # the eval_ spelling of a metric name is valid too
    metrics = json.loads((files / "out" / "metrics.json").read_text())
    assert metrics["bad_rows"]["train"]["dropped"] == 1
    assert metrics["bad_rows"]["train"]["examples"] == ["row 3: label 'y' is 'NaN', not a finite number"]
    kept = [float(r["y"]) for i, r in enumerate(rows) if i != 3]
    config = json.loads((files / "out" / "config.json").read_text())
    assert config["label_means"] == pytest.approx([np.mean(kept)]) and config["label_stds"] == pytest.approx(
        [np.std(kept)])


# 2. A duplicate header.


@pytest.mark.parametrize("name, streaming", [("train.csv", []), ("train.tsv", []),
                                             ("train.csv", ["--streaming", "--max_steps", "2"])])
def test_a_duplicate_header_is_refused_naming_the_file_and_the_column(files, vectors, capsys, name, streaming):
    frame = texts_and_scores(40)
    sep = "\t" if name.endswith(".tsv") else ","
    lines = [sep.join(["text", "y", "z", "y"])] + [sep.join([t, str(y), str(z), str(y + 1)])
                                                   for t, y, z in zip(frame.text, frame.y, frame.z)]
    (files / name).write_text("\n".join(lines) + "\n")
    line = refused(files, capsys, train(files, vectors, *streaming, train_file=name))
    assert str(files / name) in line and "'y'" in line and "twice" in line and "columns 2 and 4" in line
    assert "rename" in line.lower()


def test_a_duplicate_header_is_refused_by_evaluate_too(files, vectors, capsys):
    seqreg_hf.init_model_dir(files / "model", str(vectors), id2label={0: "y"}, hidden_size=8)
    (files / "test.csv").write_text("text,y,y\ncalm day,1,2\nsad day,2,3\n")
    code = cli(["evaluate", "--model_name_or_path", str(files / "model"), "--test_file", str(files / "test.csv"),
                "--output_dir", str(files / "out")])
    line = refused(files, capsys, code, "evaluate")
    assert str(files / "test.csv") in line and "'y'" in line and "twice" in line


def test_a_duplicate_header_is_refused_by_predict_too(files, vectors, capsys):
    """pandas would rename the second `text` column 'text.1' and score the first one without a word."""
    seqreg_hf.init_model_dir(files / "model", str(vectors), id2label={0: "y"}, hidden_size=8)
    (files / "texts.csv").write_text("text,text\ncalm day,sad day\n")
    code = cli(["predict", "--model_name_or_path", str(files / "model"), "--test_file", str(files / "texts.csv"),
                "--output_file", str(files / "scored.csv")])
    line = refused(files, capsys, code, "predict")
    assert str(files / "texts.csv") in line and "'text'" in line and "twice" in line
    assert not (files / "scored.csv").exists()


# 3. A validation file missing one label column.


def test_a_validation_file_missing_a_label_column_is_named(files, vectors, capsys):
    texts_and_scores(20).drop(columns="z").to_csv(files / "dev_noz.csv", index=False)
    line = refused(files, capsys, train(files, vectors, dev="dev_noz.csv", labels=("y", "z")))
    assert str(files / "dev_noz.csv") in line and "['z'] not found" in line and "usable" not in line


# 4. A non-numeric label in a separate validation or test file.


@pytest.mark.parametrize("split", ["validation", "test"])
def test_a_non_numeric_label_in_another_file_names_that_file_and_row(files, vectors, capsys, split):
    bad = texts_and_scores(20).astype({"y": object})
    bad.loc[4, "y"] = "high"
    bad.to_csv(files / "bad.csv", index=False)
    extra = ["--test_file", str(files / "bad.csv")] if split == "test" else []
    code = train(files, vectors, "--on_bad_rows", "error", *extra, dev="bad.csv" if split == "validation" else "dev.csv")
    line = refused(files, capsys, code)
    assert f"{split} split, row 4 (0-based, header excluded) of {files / 'bad.csv'}: label 'y' is 'high'" in line
    assert str(files / "train.csv") not in line and "cannot be read" not in line


# 5. Decimal commas; a label column without any number.


def test_labels_with_decimal_commas_name_the_column_and_the_fix(files, vectors, capsys):
    frame = texts_and_scores(40)
    frame["y"] = [f"{v + 0.5:.1f}".replace(".", ",") for v in frame.y]
    frame.to_csv(files / "comma.csv", index=False)
    line = refused(files, capsys, train(files, vectors, train_file="comma.csv"))
    assert f"train split of {files / 'comma.csv'}" in line and "label column 'y'" in line
    assert "'0,5'" in line and "decimal point" in line and "label_means" not in line


def test_one_decimal_comma_names_its_row_and_the_fix(files, vectors, capsys):
    frame = texts_and_scores(40).astype({"y": object})
    frame.loc[6, "y"] = "3,5"
    frame.to_csv(files / "comma.csv", index=False)
    line = refused(files, capsys, train(files, vectors, "--on_bad_rows", "error", train_file="comma.csv"))
    assert "row 6" in line and "label 'y' is '3,5'" in line and "decimal point" in line


@pytest.mark.parametrize("written,meanings", [("1,000", ("1.000", "1000")), ("-2,500,000", ("-2500000",))])
def test_a_comma_that_may_separate_thousands_names_both_readings(files, vectors, capsys, written, meanings):
    frame = texts_and_scores(40).astype({"y": object})
    frame.loc[3, "y"] = written
    frame.to_csv(files / "comma.csv", index=False)
    line = refused(files, capsys, train(files, vectors, "--on_bad_rows", "error", train_file="comma.csv"))
    assert "row 3" in line and f"label 'y' is '{written}'" in line and "thousands separator" in line
    assert all(f"({meaning})" in line for meaning in meanings) and ("decimal point" in line) == (len(meanings) == 2)


@pytest.mark.parametrize("name", ["allnan.csv", "allnan.jsonl"])
def test_a_label_column_without_any_number_is_named(files, vectors, capsys, name):
    frame = texts_and_scores(40)
    frame["y"] = float("nan")
    if name.endswith(".csv"):
        frame.to_csv(files / name, index=False)
    else:
        write_jsonl(files / name, [{**r, "y": None} for r in frame.to_dict("records")])
    line = refused(files, capsys, train(files, vectors, train_file=name))
    assert f"train split of {files / name}" in line and "label column 'y'" in line and "none of its 40 rows" in line
    assert "label_means" not in line


# 6. A label too large for float32 arithmetic.


@pytest.mark.parametrize("value", [1e300, 1e19, -1e300])
def test_a_huge_label_names_its_row(files, vectors, capsys, value):
    frame = texts_and_scores(40)
    frame.loc[7, "y"] = value
    frame.to_csv(files / "huge.csv", index=False)
    line = refused(files, capsys, train(files, vectors, "--on_bad_rows", "error", train_file="huge.csv"))
    assert "row 7" in line and f"label 'y' is {value:g}" in line and "rescale" in line and "label_stds" not in line


def test_a_huge_label_is_dropped_and_named_and_the_rest_trains(files, vectors, caplog):
    frame = texts_and_scores(40)
    frame.loc[7, "y"] = 1e300
    frame.to_csv(files / "huge.csv", index=False)
    assert train(files, vectors, train_file="huge.csv") == 0
    report = json.loads((files / "out" / "metrics.json").read_text())["bad_rows"]["train"]
    assert report["dropped"] == 1 and report["examples"][0].startswith("row 7: label 'y' is 1e+300")
    kept = frame.y.drop(index=7)
    config = json.loads((files / "out" / "config.json").read_text())
    assert config["label_means"] == pytest.approx([kept.mean()]) and config["label_stds"] == pytest.approx(
        [kept.std(ddof=0)])


# 7. A typo in --metric_for_best_model.


def test_a_misspelt_selection_metric_is_refused_before_training(files, vectors, capsys):
    line = refused(files, capsys, train(files, vectors, "--metric_for_best_model", "pearsn_mean"))
    assert "--metric_for_best_model 'pearsn_mean'" in line and "pearson_mean" in line and "pearson_y" in line
    assert "mse_mean" in line and "loss" in line


# 8. train CONFIG --help with a bad config file.


@pytest.mark.parametrize("content, reason", [("{", "cannot be parsed"), ('{"lerning_rate": 1}', "lerning_rate"),
                                             ('{"learning_rate": "fast"}', "learning_rate='fast'"),
                                             (None, "does not exist")])
def test_help_with_a_bad_config_file_is_one_line(tmp_path, capsys, content, reason):
    config = tmp_path / "config.json"
    if content is not None:
        config.write_text(content)
    assert cli(["train", str(config), "--help"]) == 1
    captured = capsys.readouterr()
    line = one_error(captured.err)
    assert str(config) in line and reason in line and "Traceback" not in captured.out


def test_help_with_a_good_config_file_shows_its_values(tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text('{"learning_rate": 0.125}')
    assert cli(["train", str(config), "--help"]) == 0
    assert "0.125" in capsys.readouterr().out


# 9. A label name that matplotlib would read as mathtext.


def test_a_label_name_with_dollars_is_plotted_literally_and_the_card_written(files, vectors):
    name = r"$\frac{$"
    for split in ("train", "dev"):
        frame = texts_and_scores(40 if split == "train" else 20).rename(columns={"y": name})
        frame.to_csv(files / f"{split}.csv", index=False)
    args = [a for a in fast(vectors) if a not in ("--plots", "false")]
    assert cli(["train", "--train_file", str(files / "train.csv"), "--validation_file", str(files / "dev.csv"),
                "--label_columns", name, "--output_dir", str(files / "out"), *args]) == 0
    out = files / "out"
    for picture in ("scatter_validation.png", "learning_curves.png"):
        assert (out / picture).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert name in (out / "README.md").read_text()


# 10. evaluate on a file without any usable row, and on one row.


@pytest.fixture
def model(files, vectors):
    folder = files / "model"
    seqreg_hf.init_model_dir(folder, str(vectors), id2label={0: "y"}, hidden_size=8)
    return folder


def test_evaluate_on_a_file_without_a_usable_row_is_one_line_and_writes_nothing(files, model, capsys):
    frame = texts_and_scores(6)
    frame["y"] = ["unknown"] * 6
    frame.to_csv(files / "bad.csv", index=False)
    code = cli(["evaluate", "--model_name_or_path", str(model), "--validation_file", str(files / "dev.csv"),
                "--test_file", str(files / "bad.csv"), "--output_dir", str(files / "out")])
    line = refused(files, capsys, code, "evaluate")  # the good validation file's results are not written either
    assert f"test split of {files / 'bad.csv'}" in line and "none of its 6 rows" in line and "'unknown'" in line
    frame["y"], frame["text"] = 1.0, ""
    frame.to_csv(files / "bad.csv", index=False)
    code = cli(["evaluate", "--model_name_or_path", str(model), "--test_file", str(files / "bad.csv")])
    line = refused(files, capsys, code, "evaluate")
    assert str(files / "bad.csv") in line and "none of its 6 rows is usable" in line and "empty text" in line


def _strict(text):
    def no_constants(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(text, parse_constant=no_constants)


def test_evaluate_on_one_row_writes_strict_json_with_null_for_undefined_metrics(files, model, capsys, caplog):
    texts_and_scores(1).to_csv(files / "one.csv", index=False)
    code = cli(["evaluate", "--model_name_or_path", str(model), "--test_file", str(files / "one.csv"),
                "--output_dir", str(files / "out")])
    assert code == 0
    captured = capsys.readouterr()
    printed = _strict(captured.out)
    written = _strict((files / "out" / "test_results.json").read_text())
    assert printed == written == {k: v for k, v in _strict((files / "out" / "all_results.json").read_text()).items()}
    predicted = seqreg_hf.predict(model, [texts_and_scores(1).text[0]])[0]["y"]
    assert written["test_mse_y"] == pytest.approx((predicted - 0.0) ** 2, rel=1e-5)
    assert written["test_mae_y"] == pytest.approx(abs(predicted), rel=1e-5)
    for metric in ("pearson", "spearman", "r2"):
        assert written[f"test_{metric}_y"] is None and written[f"test_{metric}_mean"] is None
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "null" in r.getMessage()]
    assert len(warnings) == 1 and "pearson, spearman and r2" in warnings[0] and "1 row" in warnings[0]
    assert all(math.isfinite(v) for v in written.values() if v is not None)


def test_evaluate_on_a_constant_target_names_it_in_the_warning(files, model, capsys, caplog):
    frame = texts_and_scores(5)
    frame["y"] = 2.0
    frame.to_csv(files / "flat.csv", index=False)
    assert cli(["evaluate", "--model_name_or_path", str(model), "--validation_file", str(files / "flat.csv")]) == 0
    printed = _strict(capsys.readouterr().out)
    assert printed["eval_pearson_y"] is None and printed["eval_mse_y"] > 0 and printed["eval_samples"] == 5
    warnings = [r.getMessage() for r in caplog.records if "written as null" in r.getMessage()]
    assert warnings == [f"validation split of {files / 'flat.csv'}: pearson, spearman and r2 are undefined because "
                        "the true 'y' is constant; written as null."]


def test_whole_number_labels_in_train_and_decimals_in_dev_train_together(files, vectors):
    """Read together, the files' schemas had to agree: int64 labels in train.csv and 0.5-steps in dev.csv stopped
    with ArrowInvalid ('Float value 0.500000 was truncated'). Each file is now read on its own."""
    frame = texts_and_scores(40)
    frame.assign(y=frame.y.astype(int)).to_csv(files / "whole.csv", index=False)
    frame.head(20).assign(y=frame.y.head(20) + 0.5).to_csv(files / "halves.csv", index=False)
    assert train(files, vectors, train_file="whole.csv", dev="halves.csv") == 0
    results = json.loads((files / "out" / "eval_results.json").read_text())
    assert results["eval_samples"] == 20 and math.isfinite(results["eval_mse_y"])
