"""Awkward bytes in data files, through train, evaluate and predict: a byte-order mark, CRLF line ends, a NUL byte,
a quoted newline and a 10 MB text give results; bytes that are not UTF-8 give one line naming the row and column."""

import csv
import io
import json

import numpy as np
import pandas as pd
import pytest

from seqreg_hf.cli import main as cli
from seqreg_hf.embeddings import default_embeddings_path
from seqreg_hf.model_dir import init_model_dir

from .conftest import EMOBANK

ROWS = 60


def write_csv(path, rows, newline="\n", bom=False):
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=newline)
    writer.writerow(["text", "V"])
    writer.writerows(rows)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + buffer.getvalue().encode("utf-8"))


def with_text(rows, index, text):
    rows = list(rows)
    rows[index] = (text, rows[index][1])
    return rows


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("text_files")
    frame = pd.read_csv(EMOBANK, keep_default_na=False)
    rows = list(frame[frame.split == "train"].head(ROWS)[["text", "V"]].itertuples(index=False, name=None))
    write_csv(folder / "plain.csv", rows)
    write_csv(folder / "bom.csv", rows, bom=True)
    write_csv(folder / "crlf.csv", rows, newline="\r\n")
    write_csv(folder / "nul.csv", with_text(rows, 5, rows[5][0][:10] + "\x00" + rows[5][0][10:]))
    write_csv(folder / "quoted_newline.csv", with_text(rows, 7, rows[7][0] + '\n a second line, with "quotes"'))
    write_csv(folder / "ten_megabytes.csv", with_text(rows, 9, "word " * 2_000_000))
    write_csv(folder / "not_utf8.csv", rows)
    lines = (folder / "not_utf8.csv").read_bytes().split(b"\n")
    lines[8] = lines[8].replace(b" ", b" caf\xe9 ", 1)  # latin-1 in data row 7
    (folder / "not_utf8.csv").write_bytes(b"\n".join(lines))
    model = folder / "model"
    init_model_dir(model, default_embeddings_path(), embedding_type="static", id2label={0: "V"}, hidden_size=8,
                   ensemble_size=1)
    return folder, rows


READABLE = ["bom", "crlf", "nul", "quoted_newline", "ten_megabytes"]


def predictions(folder, name):
    out = folder / f"pred_{name}.csv"
    assert cli(["predict", "--model_name_or_path", str(folder / "model"), "--test_file", str(folder / f"{name}.csv"),
                "--output_file", str(out)]) == 0
    return pd.read_csv(out, keep_default_na=False)


@pytest.mark.parametrize("name", READABLE)
def test_predict_reads_every_row_as_written(files, name):
    folder, rows = files
    got, plain = predictions(folder, name), predictions(folder, "plain")
    assert list(got.columns) == ["text", "V", "pred_V"] and len(got) == ROWS  # the BOM is not in the column name
    expected = {"nul": with_text(rows, 5, rows[5][0][:10] + "\x00" + rows[5][0][10:]),
                "quoted_newline": with_text(rows, 7, rows[7][0] + '\n a second line, with "quotes"'),
                "ten_megabytes": with_text(rows, 9, "word " * 2_000_000)}.get(name, rows)
    assert got["text"].tolist() == [text for text, _ in expected]  # no \r, no lost NUL, the newline kept
    changed = {"quoted_newline": 7, "ten_megabytes": 9}.get(name)
    same = [i for i in range(ROWS) if i != changed]
    np.testing.assert_allclose(got["pred_V"].to_numpy()[same], plain["pred_V"].to_numpy()[same], rtol=0, atol=1e-6)
    assert np.isfinite(got["pred_V"]).all()


@pytest.mark.parametrize("name", READABLE)
def test_evaluate_scores_every_row(files, name):
    folder, _ = files
    assert cli(["evaluate", "--model_name_or_path", str(folder / "model"), "--validation_file",
                str(folder / f"{name}.csv"), "--output_dir", str(folder / f"eval_{name}")]) == 0
    metrics = json.loads((folder / f"eval_{name}" / "eval_results.json").read_text())
    assert metrics["eval_samples"] == ROWS and np.isfinite(metrics["eval_mse_V"])


@pytest.mark.parametrize("name", READABLE)
def test_train_reads_every_row(files, name):
    folder, _ = files
    out = folder / f"train_{name}"
    assert cli(["train", "--train_file", str(folder / f"{name}.csv"), "--validation_file", str(folder / "plain.csv"),
                "--label_columns", "V", "--output_dir", str(out), "--num_train_epochs", "1", "--hidden_size", "8",
                "--embedding_type", "static",
                "--ensemble_size", "1", "--report_to", "none", "--disable_tqdm", "true", "--plots", "false"]) == 0
    assert json.loads((out / "train_results.json").read_text())["train_samples"] == ROWS


@pytest.mark.parametrize("command", ["predict", "evaluate", "train", "train_streamed"])
def test_bytes_that_are_not_utf8_are_named_by_row_and_column(files, command, capsys, tmp_path):
    folder, _ = files
    bad = str(folder / "not_utf8.csv")
    argv = {"predict": ["predict", "--model_name_or_path", str(folder / "model"), "--test_file", bad,
                        "--output_file", str(tmp_path / "p.csv")],
            "evaluate": ["evaluate", "--model_name_or_path", str(folder / "model"), "--validation_file", bad,
                         "--output_dir", str(tmp_path / "e")],
            "train": ["train", "--train_file", bad, "--validation_file", str(folder / "plain.csv"), "--label_columns",
                      "V", "--output_dir", str(tmp_path / "t"), "--hidden_size", "8", "--report_to", "none",
                      "--embedding_type", "static"]}
    argv["train_streamed"] = [*argv["train"], "--streaming", "true", "--max_steps", "2"]
    assert cli(argv[command]) == 1
    command = command.split("_")[0]
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith(f"seqreg-hf {command}: error:")]
    assert len(lines) == 1 and "Traceback" not in err
    assert f"{bad}: row 7 (0-based, header excluded), column 'text' holds bytes that are not UTF-8" in lines[0]
    assert "iconv" in lines[0] and not (tmp_path / "p.csv").exists()
