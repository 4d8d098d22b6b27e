"""Bad input gets one line naming the option, folder, row or column: sizes of 0 or less, an output folder that cannot
be written (found before the model loads), a JSON object where a text should be; and a very long text is cut
before tokenization, so memory per row stays bounded, without changing the token ids kept."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from seqreg_hf.cli import main as cli
from seqreg_hf.data import CHARS_PER_TOKEN, cut_long_texts, tokenize_splits
from seqreg_hf.embeddings import default_embeddings_path
from seqreg_hf.model_dir import init_model_dir
from seqreg_hf.prediction import Predictor, predict_file

from .conftest import EMOBANK, REPO


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad_input") / "model"
    init_model_dir(folder, default_embeddings_path(), embedding_type="static", id2label={0: "V"}, hidden_size=8,
                   ensemble_size=1)
    return folder


def one_error_line(capsys, command):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith(f"seqreg-hf {command}: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    return lines[0]


@pytest.mark.parametrize("command, option, value", [("predict", "batch_size", "0"), ("predict", "chunk_rows", "0"),
                                                    ("predict", "max_length", "-5"), ("evaluate", "batch_size", "0"),
                                                    ("train", "max_length", "-5"), ("init", "max_length", "0")])
def test_a_size_of_zero_or_less_is_named(tmp_path, capsys, command, option, value):
    argv = {"predict": ["--model_name_or_path", "m", "--test_file", "t.csv"],
            "evaluate": ["--model_name_or_path", "m", "--test_file", "t.csv"],
            "train": ["--train_file", "t.csv", "--label_columns", "V", "--output_dir", str(tmp_path / "run")],
            "init": ["--output_dir", str(tmp_path / "run")]}[command]
    assert cli([command, *argv, f"--{option}", value]) == 1
    assert f"--{option} {value}: must be a whole number of 1 or more" in one_error_line(capsys, command)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("where", ["missing_folder", "under_a_file", "a_folder"])
def test_an_output_file_that_cannot_be_written_is_found_before_the_model_loads(model, tmp_path, monkeypatch, capsys,
                                                                                where):
    (tmp_path / "texts.txt").write_text("a calm day\n")
    (tmp_path / "plain_file").write_text("")
    (tmp_path / "a_folder").mkdir()
    output = {"missing_folder": tmp_path / "no" / "such" / "out.csv", "under_a_file": tmp_path / "plain_file" / "out.csv",
              "a_folder": tmp_path / "a_folder"}[where]
    loaded = []
    real = Predictor.from_dir
    monkeypatch.setattr(Predictor, "from_dir", lambda *a, **k: loaded.append(1) or real(*a, **k))
    assert cli(["predict", "--model_name_or_path", str(model), "--test_file", str(tmp_path / "texts.txt"),
                "--output_file", str(output)]) == 1
    line = one_error_line(capsys, "predict")
    assert f"--output_file {output}" in line and not loaded
    assert sorted(os.listdir(tmp_path)) == ["a_folder", "plain_file", "texts.txt"]
    scored = []
    monkeypatch.setattr(Predictor, "predict", lambda *a, **k: scored.append(1))
    with pytest.raises(OSError, match="--output_file"):  # the Python API checks before scoring too
        predict_file(real(model), str(tmp_path / "texts.txt"), str(output))
    assert not scored


def test_a_json_object_as_text_is_named_by_row_and_column(model, tmp_path, capsys):
    rows = [{"text": "a calm day", "V": 1.0}, {"text": {"words": "nested"}, "V": 2.0}, {"text": "ok", "V": 3.0}]
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert cli(["predict", "--model_name_or_path", str(model), "--test_file", str(mixed), "--output_file",
                str(tmp_path / "out.csv"), "--chunk_rows", "1"]) == 1
    line = one_error_line(capsys, "predict")
    assert f"{mixed}: row 1 (0-based), column 'text' holds a JSON dict, not a text" in line
    assert "--text_column" in line and not (tmp_path / "out.csv").exists()

    nested = tmp_path / "nested.jsonl"
    nested.write_text("".join(json.dumps({"text": {"words": f"row {i}"}, "V": float(i)}) + "\n" for i in range(4)))
    assert cli(["evaluate", "--model_name_or_path", str(model), "--test_file", str(nested)]) == 1
    assert "row 0 (0-based), column 'text' holds a JSON dict, not a text" in one_error_line(capsys, "evaluate")
    train = ["train", "--train_file", str(nested), "--validation_file", str(nested), "--label_columns", "V",
             "--output_dir", str(tmp_path / "run"), "--report_to", "none", "--hidden_size", "8"]
    for streamed in ([], ["--streaming", "true", "--max_steps", "1"]):
        assert cli([*train, *streamed]) == 1
        assert "row 0 (0-based), column 'text' holds a JSON dict, not a text" in one_error_line(capsys, "train")


def long_texts():
    """EmoBank's texts joined into texts far longer than the cut, and a 10 MB text of one word repeated."""
    texts = pd.read_csv(EMOBANK, keep_default_na=False)["text"].tolist()
    joined = [" ".join(texts[i : i + 1000]) for i in range(0, len(texts) - 999, 1000)]
    return joined + ["word " * 2_000_000]


@pytest.mark.parametrize("max_length", [8, 64, 128, 512])
def test_cutting_long_texts_keeps_the_token_ids(model, max_length):
    predictor = Predictor.from_dir(model, max_length=max_length)
    texts = long_texts()
    short = pd.read_csv(EMOBANK, keep_default_na=False)["text"].tolist()
    _, cut = cut_long_texts(texts, max_length)
    assert all(cut) and not any(cut_long_texts(short, 128)[1])  # every long text is cut; no EmoBank text at 128
    uncut = predictor.tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]
    encoded, truncated = predictor.encode(texts)  # {"input_ids": ...} (a siamese pair model adds pair_input_ids)
    assert encoded == {"input_ids": uncut} and truncated == len(texts)
    assert predictor.encode(short)[0]["input_ids"] == predictor.tokenizer(short, truncation=True,
                                                                          max_length=max_length)["input_ids"]
    from datasets import Dataset, DatasetDict

    raw = DatasetDict({"train": Dataset.from_dict({"text": texts, "V": [1.0] * len(texts)})})
    tokenized = tokenize_splits(raw, predictor.tokenizer, "text", ["V"], max_length)
    assert tokenized["train"]["input_ids"] == uncut


def test_the_cut_is_at_a_word_boundary_within_the_bound():
    text = "abc " * 10_000
    (kept,), (cut,) = cut_long_texts([text], 8)
    assert cut and len(kept) <= 8 * CHARS_PER_TOKEN and text.startswith(kept) and text[len(kept)] == " "
    unbroken = "x" * 10_000  # no whitespace at all: cut at the bound itself
    assert cut_long_texts([unbroken], 8)[0] == ["x" * 8 * CHARS_PER_TOKEN]


def test_a_very_long_line_does_not_raise_peak_memory(model):
    """Peak RSS (ru_maxrss) of scoring one 5 MB line, over scoring one short line, in a process of its own."""
    script = f"""
import resource, sys
from seqreg_hf.prediction import Predictor
predictor = Predictor.from_dir({str(model)!r})
predictor.predict(["a calm day"])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
text = "word " * 1_000_000
scores = predictor.predict([text])
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024, predictor.report["truncated"])
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, HF_HUB_OFFLINE="1"), stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-2000:]
    grown_mib, truncated = map(int, done.stdout.split())
    assert truncated == 1 and grown_mib < 100, grown_mib  # the whole line tokenized first: about 640 MiB
