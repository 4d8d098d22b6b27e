"""Calibrating a model (`seqreg-hf calibrate`, and `seqreg-hf train` on its validation split) and reading its intervals
through every door: Predictor, seqreg_hf.predict, the pipeline, predict's files and the ONNX backend."""

import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import pipeline

import seqreg_hf
from seqreg_hf import SeqRegForSequenceRegression
from seqreg_hf.cli import main as cli
from seqreg_hf.model_dir import init_model_dir
from seqreg_hf.prediction import Predictor

from .conftest import EMOBANK

WORDS = ["calm", "quiet", "terrible", "day", "wonderful", "evening", "rain", "friend", "storm", "joy", "the", "a"]
TEXTS = ["a calm and quiet evening", "", "What a terrible, terrible day!!", "ok", "rain again", "my friend's joy"]


def labelled(path, rows, seed):
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(WORDS, size=rng.integers(1, 7))) for _ in range(rows)]
    frame = pd.DataFrame({"text": texts, "V": rng.normal(3.0, 0.4, rows), "A": rng.normal(2.5, 0.3, rows)})
    frame.to_csv(path, index=False)
    return frame


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """An ensemble (3 members, `--kind adaptive`) and a single network, each calibrated by the CLI on 40 labelled
    rows."""
    folder = tmp_path_factory.mktemp("calibrated")
    frame = labelled(folder / "dev.csv", 40, seed=0)
    for name, size in (("ensemble", 3), ("single", 1)):
        torch.manual_seed(0)
        init_model_dir(folder / name, None, id2label={0: "V", 1: "A"}, hidden_size=8, ensemble_size=size,
                       label_means=[3.0, 2.5], label_stds=[0.4, 0.3])
        kind = ["--kind", "adaptive"] if size > 1 else []
        assert cli(["calibrate", "--model_name_or_path", str(folder / name), "--validation_file",
                    str(folder / "dev.csv"), "--disable_tqdm", "true", *kind]) == 0
    return folder, frame


def stored(folder):
    return json.loads((folder / "config.json").read_text())["calibration"]


@pytest.mark.parametrize("name", ["ensemble", "single"])
def test_calibrate_stores_the_sorted_scores_of_the_models_own_predictions(models, name):
    folder, frame = models
    calibration = stored(folder / name)
    predictor = Predictor.from_dir(folder / name)
    true = frame[["V", "A"]].to_numpy(float)
    assert calibration["n"] == 40 and calibration["kind"] == ("adaptive" if name == "ensemble" else "constant")
    if name == "ensemble":
        predicted, spread = predictor.predict(frame["text"].tolist(), return_std=True)
        for j, label in enumerate(["V", "A"]):
            assert calibration["floor"][label] == pytest.approx(0.1 * np.median(spread[:, j]), rel=1e-3)
        floor = np.array([calibration["floor"]["V"], calibration["floor"]["A"]])
        exact = np.abs(true - predicted) / np.maximum(spread, floor)
    else:
        exact = np.abs(true - predictor.predict(frame["text"].tolist()))
    for j, label in enumerate(["V", "A"]):
        scores = np.array(calibration["scores"][label])
        np.testing.assert_allclose(scores, np.sort(exact[:, j]), rtol=1e-3, atol=1e-6)
        assert np.all(scores >= np.sort(exact[:, j]) * (1 - 1e-6))  # rounded up, never down


@pytest.mark.parametrize("name", ["ensemble", "single"])
def test_every_door_gives_the_same_interval_and_it_is_the_quantile_by_hand(models, name, tmp_path):
    folder, _ = models
    model = folder / name
    level = 0.8
    calibration = stored(model)
    k = math.ceil(41 * level)  # n = 40: the 33rd smallest score
    predictor = Predictor.from_dir(model)
    if name == "ensemble":
        scores, spread = predictor.predict(TEXTS, return_std=True)
        floor = np.array([calibration["floor"]["V"], calibration["floor"]["A"]])
        half = np.array([calibration["scores"]["V"][k - 1], calibration["scores"]["A"][k - 1]]) * np.maximum(spread,
                                                                                                               floor)
    else:
        scores = predictor.predict(TEXTS)
        half = np.array([calibration["scores"]["V"][k - 1], calibration["scores"]["A"][k - 1]])[None, :]
    expected = {"lo": scores - half, "hi": scores + half}

    def bounds(rows):
        return {end: np.array([[r[f"{label}_{end}"] for label in ("V", "A")] for r in rows]) for end in ("lo", "hi")}

    regress = pipeline("text-regression", model=str(model), trust_remote_code=True)
    texts_file, out = tmp_path / "texts.csv", tmp_path / "out.csv"
    pd.DataFrame({"text": TEXTS}).to_csv(texts_file, index=False)
    assert cli(["predict", "--model_name_or_path", str(model), "--test_file", str(texts_file), "--output_file",
                str(out), "--interval", str(level), "--disable_tqdm", "true"]) == 0
    written = pd.read_csv(out, keep_default_na=False)
    columns = [c for c in written.columns if c.endswith(("_lo", "_hi"))]
    assert columns == ["pred_V_lo", "pred_V_hi", "pred_A_lo", "pred_A_hi"]
    doors = {
        "predict_dicts": bounds(predictor.predict_dicts(TEXTS, interval=level)),
        "seqreg_hf.predict": bounds(seqreg_hf.predict(str(model), TEXTS, interval=level)),
        "pipeline": bounds(regress(TEXTS, interval=level)),
        "predict file": {end: written[[f"pred_V_{end}", f"pred_A_{end}"]].to_numpy(float) for end in ("lo", "hi")},
    }
    for door, got in doors.items():
        for end in ("lo", "hi"):
            np.testing.assert_allclose(got[end], expected[end], rtol=0, atol=1e-5, err_msg=door)
    # Asking for the interval leaves the scores as they were (the members' mean and the logits agree to float error).
    rows = predictor.predict_dicts(TEXTS, interval=level)
    np.testing.assert_allclose([r["V"] for r in rows], [r["V"] for r in predictor.predict_dicts(TEXTS)], atol=1e-6)
    assert all("V_std" not in r for r in rows)


WITHOUT_PACKAGE = """
import json, sys
sys.modules["seqreg_hf"] = None  # any import of the package now fails
from transformers import pipeline

regress = pipeline("text-regression", model=sys.argv[1], trust_remote_code=True)
print("RESULT", json.dumps(regress(json.loads(sys.argv[2]), interval=0.9)))
"""


def test_the_checkpoints_own_pipeline_gives_the_intervals_without_seqreg_hf(models, tmp_path):
    folder, _ = models
    env = dict(os.environ, HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1")
    result = subprocess.run([sys.executable, "-c", WITHOUT_PACKAGE, str(folder / "ensemble"), json.dumps(TEXTS)],
                            capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, cwd=tmp_path,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout.split("RESULT", 1)[1])
    want = Predictor.from_dir(folder / "ensemble").predict_dicts(TEXTS, interval=0.9)
    for row, expected in zip(got, want):
        assert set(row) == set(expected)
        for key, value in expected.items():
            assert row[key] == pytest.approx(value, abs=1e-5), key


def test_save_and_load_keep_the_calibration(models, tmp_path):
    folder, _ = models
    SeqRegForSequenceRegression.from_pretrained(folder / "ensemble").save_pretrained(tmp_path / "copy")
    assert stored(tmp_path / "copy") == stored(folder / "ensemble")
    reloaded = SeqRegForSequenceRegression.from_pretrained(tmp_path / "copy")
    original = Predictor.from_dir(folder / "ensemble")
    again = Predictor(reloaded, original.tokenizer)
    for a, b in zip(original.predict(TEXTS, interval=0.9), again.predict(TEXTS, interval=0.9)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)


def test_the_onnx_folder_carries_the_calibration_and_gives_the_same_intervals(models, tmp_path):
    pytest.importorskip("onnxruntime")
    folder, _ = models
    assert cli(["export", "--model_name_or_path", str(folder / "ensemble"), "--output_dir", str(tmp_path / "onnx")]) == 0
    assert stored(tmp_path / "onnx") == stored(folder / "ensemble")
    want = Predictor.from_dir(folder / "ensemble").predict(TEXTS, interval=0.9)
    got = Predictor.from_dir(tmp_path / "onnx", backend="onnx").predict(TEXTS, interval=0.9)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def one_error_line(capsys, command):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"seqreg-hf {command}: error: "), err
    return err[0]


def test_an_uncalibrated_model_refuses_an_interval_with_the_fix(tmp_path, capsys):
    torch.manual_seed(0)
    init_model_dir(tmp_path / "model", None, id2label={0: "V"}, hidden_size=8, ensemble_size=1)
    texts = tmp_path / "texts.csv"
    pd.DataFrame({"text": TEXTS}).to_csv(texts, index=False)
    capsys.readouterr()
    assert cli(["predict", "--model_name_or_path", str(tmp_path / "model"), "--test_file", str(texts),
                "--output_file", str(tmp_path / "out.csv"), "--interval", "0.9"]) == 1
    line = one_error_line(capsys, "predict")
    assert "has no calibration" in line and f"seqreg-hf calibrate --model_name_or_path {tmp_path / 'model'}" in line
    assert not (tmp_path / "out.csv").exists()
    with pytest.raises(ValueError, match="has no calibration.*seqreg-hf calibrate"):
        Predictor.from_dir(tmp_path / "model").predict_dicts(TEXTS, interval=0.9)
    with pytest.raises(ValueError, match="has no calibration.*seqreg-hf calibrate"):
        pipeline("text-regression", model=str(tmp_path / "model"), trust_remote_code=True)("fine", interval=0.9)


@pytest.mark.parametrize("level, message", [("1.5", "strictly between 0 and 1"), ("0", "strictly between 0 and 1"),
                                            ("0.99", "n=40 the highest level is 0.9756")])
def test_a_level_outside_zero_one_or_beyond_n_is_refused_in_one_line(models, tmp_path, capsys, level, message):
    folder, _ = models
    texts = tmp_path / "texts.csv"
    pd.DataFrame({"text": TEXTS}).to_csv(texts, index=False)
    capsys.readouterr()
    assert cli(["predict", "--model_name_or_path", str(folder / "single"), "--test_file", str(texts),
                "--output_file", str(tmp_path / "out.csv"), "--interval", level]) == 1
    assert message in one_error_line(capsys, "predict")
    regress = pipeline("text-regression", model=str(folder / "single"), trust_remote_code=True)
    with pytest.raises(ValueError, match=message):
        regress("fine", interval=float(level))


def test_calibrate_into_another_folder_and_its_refusals(models, tmp_path, capsys):
    folder, _ = models
    dev = folder / "dev.csv"
    assert cli(["calibrate", "--model_name_or_path", str(folder / "single"), "--validation_file", str(dev),
                "--output_dir", str(tmp_path / "copy"), "--disable_tqdm", "true"]) == 0
    assert stored(tmp_path / "copy") == stored(folder / "single")
    assert (tmp_path / "copy" / "model.safetensors").is_file()
    # An ensemble calibrated with --kind constant, or with no --kind (auto is constant for every model: adaptive
    # widths came out 2.4-3.2 times as wide on EmoBank): one width for every text, the single network's score.
    for kind in (["--kind", "constant"], []):
        shutil.rmtree(tmp_path / "constant", ignore_errors=True)
        assert cli(["calibrate", "--model_name_or_path", str(folder / "ensemble"), "--validation_file", str(dev),
                    "--output_dir", str(tmp_path / "constant"), *kind, "--disable_tqdm", "true"]) == 0
        assert stored(tmp_path / "constant")["kind"] == "constant" and stored(folder / "ensemble")["kind"] == "adaptive"
        scores, lo, hi = Predictor.from_dir(tmp_path / "constant").predict(TEXTS, interval=0.9)
        np.testing.assert_allclose(hi - lo, np.broadcast_to((hi - lo)[:1], hi.shape), rtol=0, atol=1e-5)
    capsys.readouterr()
    assert cli(["calibrate", "--model_name_or_path", str(folder / "single"), "--validation_file", str(dev),
                "--kind", "adaptive"]) == 1
    assert "no spread between members" in one_error_line(capsys, "calibrate")
    assert cli(["calibrate", "--model_name_or_path", str(folder / "single")]) == 1
    assert "--validation_file is required" in one_error_line(capsys, "calibrate")
    assert cli(["calibrate", "--model_name_or_path", "user/model", "--validation_file", str(dev)]) == 1
    assert "add --output_dir" in one_error_line(capsys, "calibrate")
    assert cli(["calibrate", "--model_name_or_path", str(folder / "single"), "--validation_file", str(dev),
                "--label_columns", "V"]) == 1
    assert "predicts ['V', 'A']" in one_error_line(capsys, "calibrate")


def test_a_model_trained_with_a_validation_split_carries_its_calibration(tmp_path):
    output_dir = tmp_path / "run"
    assert cli(["train", "--train_file", str(EMOBANK), "--split_column", "split", "--label_columns", "V", "A", "D",
                "--output_dir", str(output_dir), "--max_train_samples", "200", "--max_eval_samples", "80",
                "--hidden_size", "8", "--ensemble_size", "2", "--num_train_epochs", "1", "--report_to", "none",
                "--disable_tqdm", "true", "--plots", "false"]) == 0
    calibration = stored(output_dir)
    assert calibration["kind"] == "constant" and calibration["n"] == 80  # an ensemble's too (see calibrate_predictor)
    # Independently: the first 80 dev rows and the Trainer's own predictions of them (from the cached float16 states
    # of the contextual default) give the stored scores; the saved model run live (float32 states) agrees to 2e-3.
    frame = pd.read_csv(EMOBANK, keep_default_na=False)
    dev = frame[frame["split"] == "dev"].head(80)
    trained = pd.read_csv(output_dir / "_predictions" / "validation_predictions.csv", keep_default_na=False)
    assert trained["text"].tolist() == dev["text"].tolist()
    predicted = trained[["pred_V", "pred_A", "pred_D"]].to_numpy(float)
    np.testing.assert_allclose(Predictor.from_dir(output_dir).predict(dev["text"].tolist()), predicted, atol=2e-3)
    exact = np.abs(dev[["V", "A", "D"]].to_numpy(float) - predicted)
    for j, label in enumerate(("V", "A", "D")):
        np.testing.assert_allclose(calibration["scores"][label], np.sort(exact[:, j]), rtol=1e-3, atol=1e-6)
    assert len(Predictor.from_dir(output_dir).predict_dicts(["fine"], interval=0.9)[0]) == 9  # V A D, lo and hi

    # Training on from it without a validation split: the old calibration measured the old weights, so it goes.
    frame[frame["split"] == "train"].head(60).to_csv(tmp_path / "train.csv", index=False)
    assert cli(["train", "--model_name_or_path", str(output_dir), "--train_file", str(tmp_path / "train.csv"),
                "--label_columns", "V", "A", "D", "--output_dir", str(tmp_path / "more"), "--num_train_epochs", "1",
                "--eval_strategy", "no", "--save_strategy", "no", "--load_best_model_at_end", "false",
                "--report_to", "none", "--disable_tqdm", "true", "--plots", "false"]) == 0
    assert not json.loads((tmp_path / "more" / "config.json").read_text()).get("calibration")
