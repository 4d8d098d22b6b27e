"""End to end for pairs of texts: `seqreg-hf train --text_pair_column` on a slice of STS-B, the saved model scoring
pairs again, evaluate and calibrate on pairs, and each wrong combination of model and data refused in one line."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from seqreg_hf.cli import main as cli
from seqreg_hf.model_dir import init_model_dir, load_model_dir
from seqreg_hf.tokenization import encode_texts

from .conftest import REPO, run_cli

STSB = REPO.parent / "shared" / "data" / "stsb.csv"
# The static MiniLM table and a tiny recurrent network: the mechanics, not the score.
SMALL = ["--hidden_size", "8", "--num_train_epochs", "1", "--report_to", "none", "--disable_tqdm", "true",
         "--embedding_type", "static", "--plots", "false"]


@pytest.fixture(scope="module")
def pairs_csv(tmp_path_factory):
    if not STSB.exists():
        raise FileNotFoundError(f"STS-B is expected at {STSB} (the shared data folder beside the repository).")
    frame = pd.read_csv(STSB, keep_default_na=False)
    parts = [frame[frame.split == split].head(n) for split, n in (("train", 120), ("validation", 40), ("test", 30))]
    path = tmp_path_factory.mktemp("stsb") / "pairs.csv"
    pd.concat(parts).to_csv(path, index=False)
    return path


def pair_args(data, output_dir, *extra):
    return ["--train_file", str(data), "--split_column", "split", "--text_column", "sentence1", "--text_pair_column",
            "sentence2", "--label_columns", "score", "--output_dir", str(output_dir), *SMALL, *extra]


@pytest.fixture(scope="module")
def pair_run(pairs_csv, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("run") / "stsb-small"
    done = run_cli("train", *pair_args(pairs_csv, output_dir))
    assert done.returncode == 0, done.stderr[-3000:]
    return output_dir


def score_pairs(model, tokenizer, pairs):
    """The model's scores of `pairs`, one pair at a time (no padding at all), from its own forward."""
    out = []
    with torch.no_grad():
        for a, b in pairs:
            encoded = encode_texts(tokenizer, [a], [b], model.config.pair_encoding, return_tensors="pt")
            out.append(model(**encoded).logits[0].numpy())
    return np.array(out)


def test_a_new_model_trained_on_pairs_is_siamese_and_scores_pairs_after_reloading(pair_run):
    config = json.loads((pair_run / "config.json").read_text())
    assert config["pair_encoding"] == "siamese" and config["calibration"] is not None
    model, tokenizer = load_model_dir(pair_run)
    model.eval()
    frame = pd.read_csv(pair_run / "_predictions" / "validation_predictions.csv", keep_default_na=False)
    pairs = list(zip(frame["sentence1"], frame["sentence2"]))
    alone = score_pairs(model, tokenizer, pairs)[:, 0]
    # The Trainer's padded evaluation batches, written beside their rows, are the reloaded model's scores of each pair.
    np.testing.assert_allclose(alone, frame["pred_score"].to_numpy(), atol=1e-5)
    assert np.ptp(alone) > 0  # it reads the texts: not one constant score
    # Symmetric: each pair swapped scores the same.
    np.testing.assert_allclose(score_pairs(model, tokenizer, [(b, a) for a, b in pairs])[:, 0], alone, atol=1e-5)
    # The run's dev metrics are those of these scores.
    results = json.loads((pair_run / "eval_results.json").read_text())
    assert results["eval_pearson_score"] == pytest.approx(stats.pearsonr(alone, frame["score"])[0], abs=1e-5)
    assert results["eval_samples"] == len(frame) == 40


def test_evaluate_reads_each_rows_pair(pair_run, pairs_csv):
    """`evaluate_dataset` hands the predictor (text, text_pair) tuples of the cleaned rows and reports their metrics
    under the split's prefix: the Trainer's own dev metrics, from a predictor that scores each pair alone."""
    from seqreg_hf.data import read_split
    from seqreg_hf.evaluation import evaluate_dataset

    model, tokenizer = load_model_dir(pair_run)
    model.eval()
    seen = []

    class PairScorer:  # Predictor's interface, scoring each pair with the model's own forward
        def predict(self, inputs, batch_size=256):
            seen.extend(inputs)
            return score_pairs(model, tokenizer, inputs)

    dataset = read_split(pairs_csv, "validation", "split")
    metrics, predicted, true, _ = evaluate_dataset(PairScorer(), dataset, "validation", "sentence1", ["score"],
                                                   source=pairs_csv, text_pair_column="sentence2")
    assert seen == list(zip(dataset["sentence1"], dataset["sentence2"]))
    trainer_metrics = json.loads((pair_run / "eval_results.json").read_text())
    for key in ("eval_pearson_score", "eval_spearman_score", "eval_mse_score"):
        assert metrics[key] == pytest.approx(trainer_metrics[key], abs=1e-5), key


def test_the_evaluate_and_calibrate_commands_read_pairs(pair_run, pairs_csv, tmp_path, capsys):
    """Needs a Predictor that takes pairs (prediction.py, issue 23's predict side)."""
    code = cli(["evaluate", "--model_name_or_path", str(pair_run), "--validation_file", str(pairs_csv),
                "--split_column", "split", "--split", "validation", "--text_column", "sentence1",
                "--text_pair_column", "sentence2"])
    assert code == 0, capsys.readouterr().err[-2000:]
    printed = json.loads(capsys.readouterr().out)
    trainer_metrics = json.loads((pair_run / "eval_results.json").read_text())
    assert printed["eval_pearson_score"] == pytest.approx(trainer_metrics["eval_pearson_score"], abs=1e-5)
    code = cli(["calibrate", "--model_name_or_path", str(pair_run), "--validation_file", str(pairs_csv),
                "--split_column", "split", "--text_column", "sentence1", "--text_pair_column", "sentence2",
                "--output_dir", str(tmp_path / "calibrated")])
    assert code == 0, capsys.readouterr().err[-2000:]
    ours = json.loads((tmp_path / "calibrated" / "config.json").read_text())["calibration"]
    theirs = json.loads((pair_run / "config.json").read_text())["calibration"]  # the end-of-training calibration
    assert ours["n"] == theirs["n"] == 40
    # The same rows' absolute errors: calibrate's Predictor scores the pairs as the Trainer did.
    np.testing.assert_allclose(ours["scores"]["score"], theirs["scores"]["score"], atol=2e-3)  # stored to 4 digits


def one_error_line(capsys, command):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith(f"seqreg-hf {command}: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    return lines[0]


@pytest.fixture(scope="module")
def single_text_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("single") / "model"
    init_model_dir(folder, None, embedding_type="static", hidden_size=8, id2label={0: "score"})
    return folder


def test_wrong_combinations_of_model_and_pairs_are_one_line_each(pair_run, pairs_csv, single_text_model, tmp_path,
                                                                 capsys):
    out = tmp_path / "out"
    no_pair = [a for a in pair_args(pairs_csv, out) if a not in ("--text_pair_column", "sentence2")]
    # --pair_encoding without the column of second texts
    assert cli(["train", *no_pair, "--pair_encoding", "cross"]) == 1
    line = one_error_line(capsys, "train")
    assert "--pair_encoding cross" in line and "--text_pair_column" in line
    # a pair model trained on without --text_pair_column
    assert cli(["train", *no_pair, "--model_name_or_path", str(pair_run)]) == 1
    line = one_error_line(capsys, "train")
    assert "reads pairs of texts" in line and "--text_pair_column" in line
    # a single-text checkpoint given pairs
    assert cli(["train", *pair_args(pairs_csv, out), "--model_name_or_path", str(single_text_model)]) == 1
    line = one_error_line(capsys, "train")
    assert "one text per row" in line and "drop --text_pair_column" in line
    # the column of second texts is not in the data
    assert cli(["train", *pair_args(pairs_csv, out, "--text_pair_column", "sentence_b")]) == 1
    line = one_error_line(capsys, "train")
    assert "'sentence_b'" in line and "--text_pair_column" in line
    # evaluate and calibrate: the same rule
    for command, flag in (("evaluate", "--test_file"), ("calibrate", "--validation_file")):
        assert cli([command, "--model_name_or_path", str(pair_run), flag, str(pairs_csv), "--text_column",
                    "sentence1", "--output_dir", str(out)]) == 1
        assert "--text_pair_column" in one_error_line(capsys, command)
        assert cli([command, "--model_name_or_path", str(single_text_model), flag, str(pairs_csv), "--text_column",
                    "sentence1", "--text_pair_column", "sentence2", "--output_dir", str(out)]) == 1
        assert "drop --text_pair_column" in one_error_line(capsys, command)
    assert not out.exists()


def test_cross_over_word_vectors_is_refused_before_training(pairs_csv, tmp_path, capsys):
    vectors = tmp_path / "glove.txt"
    words = "a the man is plane playing woman dog".split()
    vectors.write_text("".join(f"{w} {i * 0.1:.1f} {1 - i * 0.1:.1f}\n" for i, w in enumerate(words)))
    out = tmp_path / "out"
    assert cli(["train", *pair_args(pairs_csv, out, "--embeddings", str(vectors), "--embeddings_format", "glove",
                                    "--pair_encoding", "cross")]) == 1
    line = one_error_line(capsys, "train")
    assert "pair_encoding='cross'" in line and "separator" in line and "siamese" in line
    assert not (out / "model.safetensors").exists() and not list(out.glob("checkpoint-*"))
    # `init` builds no model either: the refusal comes where the model is built, not where texts are tokenized.
    assert cli(["init", "--embeddings", str(vectors), "--embeddings_format", "glove", "--pair_encoding", "cross",
                "--output_dir", str(tmp_path / "init")]) == 1
    assert "pair_encoding='cross'" in one_error_line(capsys, "init")
    assert not (tmp_path / "init").exists()
