"""End to end through the training entry point: the Python API and the CLI run the same, a decoy column moves nothing,
run_glue's files, Hub ids, logging and workers reach the package."""

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest

import seqreg_hf
from seqreg_hf.data import tokenize_splits
from seqreg_hf.embeddings import load_embeddings

from .conftest import run_cli

WORDS = ["calm", "angry", "happy", "sad", "bright", "dark", "loud", "quiet", "warm", "cold", "fast", "slow"]
TINY = {"hidden_size": 8, "ensemble_size": 1, "num_train_epochs": 1, "per_device_train_batch_size": 16,
        "report_to": "none", "plots": False, "save_strategy": "no", "load_best_model_at_end": False,
        "embedding_type": "static"}


def synthetic(n, seed, decoy=None):
    rows = []
    for k in range(n):
        words = [WORDS[(k * 7 + i * 3 + seed) % len(WORDS)] for i in range(3 + k % 4)]
        rows.append({"text": " ".join(words), "y": (k % 5) / 2.0 + (seed % 3)})
    frame = pd.DataFrame(rows)
    if decoy is not None:
        frame["label"] = decoy
    return frame


# 1. One source of defaults, derived flags ---------------------------------------------------------------------


# 2. One job per module, each contract written once ------------------------------------------------------------


# 3. Only model inputs reach the collator; 4. run_glue's files --------------------------------------------------


def test_tokenized_splits_hold_only_model_inputs(tmp_path):
    from datasets import Dataset

    tokenizer = load_embeddings(None).tokenizer
    raw = {"train": Dataset.from_pandas(synthetic(10, 0, decoy=1e6))}
    tokenized = tokenize_splits(raw, tokenizer, "text", ["y"], 32)
    assert set(tokenized["train"].column_names) == {"input_ids", "attention_mask", "labels", "length"}


@pytest.fixture(scope="module")
def decoy_runs(tmp_path_factory):
    """The same tiny run twice, through the Python API: without, and with, a `label` column of huge values."""
    folder = tmp_path_factory.mktemp("decoy")
    runs = {}
    for name, decoy in (("plain", None), ("decoy", 1e6)):
        synthetic(96, 0, decoy).to_csv(folder / f"{name}-train.csv", index=False)
        synthetic(32, 5, decoy).to_csv(folder / f"{name}-dev.csv", index=False)
        results = seqreg_hf.train(train_file=str(folder / f"{name}-train.csv"),
                                  validation_file=str(folder / f"{name}-dev.csv"), label_columns=["y"],
                                  output_dir=str(folder / name), disable_tqdm=True, **TINY)
        runs[name] = (folder / name, results)
    return runs


def test_a_decoy_label_column_does_not_move_the_predictions(decoy_runs):
    (plain_dir, plain), (decoy_dir, decoy) = decoy_runs["plain"], decoy_runs["decoy"]
    assert decoy["validation"]["eval_pearson_y"] == pytest.approx(plain["validation"]["eval_pearson_y"], abs=1e-6)
    assert decoy["train"]["train_loss"] == pytest.approx(plain["train"]["train_loss"], rel=1e-6)
    texts = ["calm happy warm", "dark loud"]
    np.testing.assert_allclose([list(d.values()) for d in seqreg_hf.predict(decoy_dir, texts)],
                               [list(d.values()) for d in seqreg_hf.predict(plain_dir, texts)], atol=1e-6)
    frame = pd.read_csv(decoy_dir / "_predictions" / "validation_predictions.csv")
    assert list(frame.columns) == ["text", "y", "label", "pred_y"]  # the decoy is kept in the output, untouched


def test_python_api_returns_metrics_and_predicts_in_input_order(decoy_runs):
    output_dir, results = decoy_runs["plain"]
    assert set(results) == {"bad_rows", "tokenize_seconds", "train", "validation"}
    assert results["validation"]["eval_samples"] == 32
    texts = ["slow", "calm happy warm bright", "", "dark loud"]
    scores = seqreg_hf.predict(str(output_dir), texts)
    assert [list(s) for s in scores] == [["y"]] * 4
    one_by_one = [seqreg_hf.predict(output_dir, [t])[0]["y"] for t in texts]
    np.testing.assert_allclose([s["y"] for s in scores], one_by_one, atol=1e-6)
    predictor = seqreg_hf.Predictor.from_dir(output_dir)
    assert seqreg_hf.predict(predictor.model, texts) == seqreg_hf.predict(predictor, texts)
    for name in ("train", "predict", "Predictor", "load_embeddings", "init_model_dir"):
        assert name in seqreg_hf.__all__ and callable(getattr(seqreg_hf, name))
    with pytest.raises(TypeError, match="list of strings"):
        seqreg_hf.predict(output_dir, "one text")


def test_run_glue_output_files(decoy_runs):
    output_dir, results = decoy_runs["plain"]
    for name in ("all_results.json", "train_results.json", "eval_results.json", "trainer_state.json"):
        assert (output_dir / name).exists(), name
    combined = json.loads((output_dir / "all_results.json").read_text())
    assert combined["eval_pearson_y"] == pytest.approx(results["validation"]["eval_pearson_y"])
    assert combined["train_loss"] == pytest.approx(results["train"]["train_loss"])
    state = json.loads((output_dir / "trainer_state.json").read_text())
    assert state["global_step"] == 6  # 96 rows, batches of 16, one epoch


# 5. One CLI vocabulary ----------------------------------------------------------------------------------------


def test_old_and_new_spellings_give_the_same_predictions(decoy_runs, tmp_path):
    output_dir, _ = decoy_runs["plain"]
    (tmp_path / "in.txt").write_text("calm happy\ndark loud slow\n")
    old = run_cli("predict", "--model", str(output_dir), "--input", str(tmp_path / "in.txt"), "--output",
                  str(tmp_path / "old.csv"))
    new = run_cli("predict", "--model_name_or_path", str(output_dir), "--test_file", str(tmp_path / "in.txt"),
                  "--output_file", str(tmp_path / "new.csv"), "--disable_tqdm", "true")
    assert old.returncode == new.returncode == 0, old.stderr + new.stderr
    assert (tmp_path / "old.csv").read_text() == (tmp_path / "new.csv").read_text()
    assert pd.read_csv(tmp_path / "new.csv").columns.tolist() == ["text", "pred_y"]
    assert "predicting" in old.stderr and "predicting" not in new.stderr  # --disable_tqdm reaches prediction


# 6. Hub ids -----------------------------------------------------------------------------------------------------


def fill_hub_cache(cache, repo_id, folder, commit="0123456789abcdef0123456789abcdef01234567"):
    """The layout huggingface_hub writes: blobs by content hash, a snapshot of links, refs/main naming it."""
    import hashlib

    root = cache / f"models--{repo_id.replace('/', '--')}"
    (root / "blobs").mkdir(parents=True)
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for path in sorted(folder.iterdir()):
        if path.is_file():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            shutil.copyfile(path, root / "blobs" / digest)
            (snapshot / path.name).symlink_to(os.path.relpath(root / "blobs" / digest, snapshot))
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(commit)


def test_hub_ids_work_wherever_a_model_directory_does(decoy_runs, tmp_path):
    output_dir, _ = decoy_runs["plain"]
    fill_hub_cache(tmp_path / "hub", "someone/seqreg-tiny", output_dir)
    env = {"HF_HUB_CACHE": str(tmp_path / "hub")}
    (tmp_path / "in.txt").write_text("calm happy\ndark loud slow\n")
    result = run_cli("predict", "--model_name_or_path", "someone/seqreg-tiny", "--test_file", str(tmp_path / "in.txt"),
                     "--output_file", str(tmp_path / "hub.csv"), env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    expected = seqreg_hf.predict(output_dir, ["calm happy", "dark loud slow"])
    np.testing.assert_allclose(pd.read_csv(tmp_path / "hub.csv")["pred_y"], [e["y"] for e in expected], atol=1e-6)
    synthetic(48, 1).to_csv(tmp_path / "train.csv", index=False)
    synthetic(16, 2).to_csv(tmp_path / "dev.csv", index=False)
    result = run_cli("train", "--model_name_or_path", "someone/seqreg-tiny", "--train_file", str(tmp_path / "train.csv"),
                     "--validation_file", str(tmp_path / "dev.csv"), "--label_columns", "y", "--output_dir",
                     str(tmp_path / "tuned"), "--num_train_epochs", "1", "--report_to", "none", "--plots", "false",
                     "--disable_tqdm", "true", env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((tmp_path / "tuned" / "config.json").read_text())["hidden_size"] == 8  # the Hub model's
    missing = run_cli("predict", "--model_name_or_path", "someone/not-cached", "--test_file", str(tmp_path / "in.txt"),
                      env=env)
    assert missing.returncode == 1 and "not in the local cache" in missing.stderr and "Traceback" not in missing.stderr


def test_architecture_of_a_trained_model_is_not_silently_replaced(decoy_runs, tmp_path):
    output_dir, _ = decoy_runs["plain"]
    synthetic(48, 1).to_csv(tmp_path / "train.csv", index=False)
    synthetic(16, 2).to_csv(tmp_path / "dev.csv", index=False)
    args = ["train", "--model_name_or_path", str(output_dir), "--train_file", str(tmp_path / "train.csv"),
            "--validation_file", str(tmp_path / "dev.csv"), "--label_columns", "y", "--output_dir",
            str(tmp_path / "out"), "--report_to", "none", "--plots", "false", "--disable_tqdm", "true",
            "--num_train_epochs", "1"]
    result = run_cli(*args, "--hidden_size", "64")
    assert result.returncode == 1 and "hidden_size=64 (the model has 8)" in result.stderr
    result = run_cli(*args, "--top_n", "100")
    assert result.returncode == 1 and "['top_n'] choose the embeddings of a new model" in result.stderr
    result = run_cli(*args, "--head_dropout", "0.25")
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((tmp_path / "out" / "config.json").read_text())["head_dropout"] == 0.25
    # The checkpoint's max_length is kept unless asked otherwise (the recipe's 128 would replace it).
    before = json.loads((output_dir / "tokenizer_config.json").read_text())["model_max_length"]
    assert json.loads((tmp_path / "out" / "tokenizer_config.json").read_text())["model_max_length"] == before


# 8. Dependencies; 9. logging -------------------------------------------------------------------------------------


def test_log_level_and_disable_tqdm_reach_the_package(tmp_path):
    frame = synthetic(64, 0)
    frame.loc[3, "text"] = ""  # a bad row: the data check warns about it
    frame.to_csv(tmp_path / "train.csv", index=False)
    synthetic(16, 5).to_csv(tmp_path / "dev.csv", index=False)
    base = ["train", "--train_file", str(tmp_path / "train.csv"), "--validation_file", str(tmp_path / "dev.csv"),
            "--label_columns", "y", "--report_to", "none", "--hidden_size", "8", "--ensemble_size", "1",
            "--num_train_epochs", "1", "--save_strategy", "no", "--load_best_model_at_end", "false"]
    loud = run_cli(*base, "--output_dir", str(tmp_path / "loud"))
    quiet = run_cli(*base, "--output_dir", str(tmp_path / "quiet"), "--log_level", "error", "--disable_tqdm", "true")
    assert loud.returncode == quiet.returncode == 0, loud.stderr[-2000:] + quiet.stderr[-2000:]
    assert "WARNING seqreg_hf.data: train split: dropping 1 of 64 rows" in loud.stderr
    assert "%|" in loud.stderr and "tokenizing train" in loud.stderr  # a bar the package names: a run no longer predicts
    assert "WARNING seqreg_hf" not in quiet.stderr and "INFO seqreg_hf" not in quiet.stderr
    assert "%|" not in quiet.stderr and "it/s]" not in quiet.stderr


def test_preprocessing_num_workers_reaches_tokenization(tmp_path, monkeypatch):
    import seqreg_hf.training

    synthetic(20, 0).to_csv(tmp_path / "train.csv", index=False)
    synthetic(8, 5).to_csv(tmp_path / "dev.csv", index=False)
    seen = {}

    class Stop(Exception):
        pass

    def tokenize(raw, tokenizer, text_column, label_columns, max_length, num_proc=None, *pair_options):
        seen.update(num_proc=num_proc, max_length=max_length)
        raise Stop

    monkeypatch.setattr(seqreg_hf.training, "tokenize_splits", tokenize)
    with pytest.raises(Stop):
        seqreg_hf.train(train_file=str(tmp_path / "train.csv"), validation_file=str(tmp_path / "dev.csv"),
                        label_columns=["y"], output_dir=str(tmp_path / "out"), preprocessing_num_workers=2,
                        max_length=64, **TINY)
    assert seen == {"num_proc": 2, "max_length": 64}


