"""End to end on a slice of EmoBank: train through the CLI, then check every artefact the run leaves."""

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from huggingface_hub import ModelCard
from scipy import stats
from transformers import AutoModel, AutoModelForSequenceClassification, EvalPrediction, pipeline

from seqreg_hf import SeqRegConfig, SeqRegModel
from seqreg_hf.arguments import DataArguments, SeqRegTrainingArguments, parse_arguments
from seqreg_hf.cli import main as cli
from seqreg_hf.data import DataError, fetch_train_file
from seqreg_hf.metrics import metrics_fn
from seqreg_hf.model_dir import init_model_dir
from seqreg_hf.prediction import Predictor

from .conftest import EMOBANK, REPO
from .test_e2e_remote_code import LOADER

SLICE = ["--max_train_samples", "300", "--max_eval_samples", "120", "--max_test_samples", "150"]
# The Trainer's mechanics, on the static table with one small 1-layer GRU (fast; the default model has its own tests
# in test_e2e_contextual).
SMALL = ["--hidden_size", "16", "--num_train_epochs", "1", "--report_to", "none", "--disable_tqdm", "true",
         "--embedding_type", "static", "--rnn_type", "gru", "--num_layers", "1", "--ensemble_size", "1"]


def train_args(output_dir, *extra):
    return ["--train_file", str(EMOBANK), "--split_column", "split", "--label_columns", "V", "A", "D",
            "--output_dir", str(output_dir), *SLICE, *SMALL, *extra]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("run") / "emobank-small"
    # Dash spelling and a constant schedule: the learning rate logged in trainer_state.json must be exactly 1e-4.
    # An ensemble (the static recipe's), so that the card and predict's spread columns have members to report.
    args = train_args(output_dir, "--pooling", "mean_max", "--learning-rate", "1e-4", "--lr_scheduler_type", "constant",
                      "--ensemble_size", "3")
    at = args.index("--report_to")
    del args[at : at + 2]  # the default: TensorBoard, which the dev extras install
    assert cli(["train", *args]) == 0
    return output_dir


def test_the_dash_spelled_learning_rate_is_the_one_that_ran(run_dir):
    """`--learning-rate 1e-4` (the spelling --help lists) used to be overridden by the recipe's 2e-3."""
    history = json.loads((run_dir / "trainer_state.json").read_text())["log_history"]
    rates = [entry["learning_rate"] for entry in history if "learning_rate" in entry]
    assert rates and all(rate == pytest.approx(1e-4, rel=1e-9) for rate in rates)


def test_tensorboard_logs_by_default(run_dir):
    assert list((run_dir / "runs").rglob("events.out.tfevents.*"))


def test_run_writes_every_artefact(run_dir):
    names = {p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if "checkpoint-" not in str(p)}
    expected = {"config.json", "model.safetensors", "modeling_seqreg.py", "configuration_seqreg.py", "tokenizer.json",
                "tokenizer_config.json", "README.md", "metrics.json", "run.json", "scatter_validation.png",
                "scatter_test.png", "learning_curves.png", "_predictions/validation_predictions.csv",
                "_predictions/test_predictions.csv"}
    assert expected <= names
    assert not [n for n in names if n.endswith(".csv") and not n.startswith("_predictions/")]  # texts stay out
    assert not [n for n in names if n.endswith((".bin", ".pt")) and n != "training_args.bin"]
    for image in ("scatter_test.png", "learning_curves.png"):
        assert (run_dir / image).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_saved_model_loads_with_auto_classes_and_reproduces_the_predictions(run_dir):
    assert isinstance(AutoModel.from_pretrained(run_dir), SeqRegModel)
    predictor = Predictor.from_dir(run_dir)
    frame = pd.read_csv(run_dir / "_predictions" / "test_predictions.csv", keep_default_na=False)
    again = predictor.predict(frame["text"].tolist())
    np.testing.assert_allclose(again, frame[["pred_V", "pred_A", "pred_D"]].to_numpy(), atol=1e-5)


def test_reported_metrics_equal_scipy_on_the_saved_predictions(run_dir):
    metrics = json.loads((run_dir / "metrics.json").read_text())
    frame = pd.read_csv(run_dir / "_predictions" / "test_predictions.csv", keep_default_na=False)
    assert len(frame) == 150
    for name in "VAD":
        r = stats.pearsonr(frame[f"pred_{name}"], frame[name])[0]
        assert metrics["test"][f"test_pearson_{name}"] == pytest.approx(r, abs=1e-4)
    assert metrics["bad_rows"]["validation"]["dropped"] == 1  # EmoBank's empty text is in dev


def test_the_prediction_files_hold_the_predictions_the_metrics_were_computed_on(run_dir):
    """Each split's file holds the Trainer's own final predictions, row for row (under length-grouped batches, the
    default), not a second prediction: the run's metrics, recomputed from the file, are the reported ones exactly."""
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for split, prefix in (("validation", "eval"), ("test", "test")):
        frame = pd.read_csv(run_dir / "_predictions" / f"{split}_predictions.csv", keep_default_na=False)
        # The Trainer's arrays are float32, and a float32 column is written in digits that read back to it exactly.
        predicted = frame[["pred_V", "pred_A", "pred_D"]].to_numpy(np.float32)
        true = frame[["V", "A", "D"]].to_numpy(np.float32)
        again = metrics_fn(["V", "A", "D"])(EvalPrediction(predictions=predicted, label_ids=true))
        assert {f"{prefix}_{k}": v for k, v in again.items()} == {f"{prefix}_{k}": metrics[split][f"{prefix}_{k}"]
                                                                  for k in again}


def test_a_finished_run_writes_its_files_without_running_the_model_again(tmp_path, monkeypatch):
    """The prediction files come from the Trainer's final predictions: while a run writes its files, no module of the
    model runs (a second prediction of validation and test used to run there; a single network's calibration is made
    from the Trainer's own validation predictions too)."""
    import seqreg_hf.training

    write, ran = seqreg_hf.training.write_run_outputs, []

    def observed(*args, **kwargs):
        hook = torch.nn.modules.module.register_module_forward_hook(lambda module, *_: ran.append(type(module).__name__))
        try:
            return write(*args, **kwargs)
        finally:
            hook.remove()

    monkeypatch.setattr(seqreg_hf.training, "write_run_outputs", observed)
    output_dir = tmp_path / "run"
    assert cli(["train", *train_args(output_dir, "--max_train_samples", "40", "--max_eval_samples", "20",
                                     "--max_test_samples", "20")]) == 0
    assert ran == []
    for split in ("validation", "test"):
        frame = pd.read_csv(output_dir / "_predictions" / f"{split}_predictions.csv", keep_default_na=False)
        assert len(frame) == 20 and np.isfinite(frame[["pred_V", "pred_A", "pred_D"]].to_numpy()).all()


def test_label_statistics_come_from_the_train_slice(run_dir):
    config = json.loads((run_dir / "config.json").read_text())
    frame = pd.read_csv(EMOBANK, keep_default_na=False)
    train = frame[(frame["split"] == "train") & (frame["text"].str.strip() != "")].head(300)
    np.testing.assert_allclose(config["label_means"], train[["V", "A", "D"]].mean().to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(config["label_stds"], train[["V", "A", "D"]].std(ddof=0).to_numpy(), rtol=1e-9)
    assert config["id2label"] == {"0": "V", "1": "A", "2": "D"} and config["problem_type"] == "regression"


def test_model_card_metadata(run_dir):
    card = ModelCard.load(run_dir / "README.md")
    data = card.data
    assert data.library_name == "transformers" and data.license == "cc-by-sa-4.0"
    assert data.datasets == ["JULIELab/EmoBank"] and data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert "seqreg" in data.tags
    metrics = json.loads((run_dir / "metrics.json").read_text())
    test_r = {r.metric_name: r.metric_value for r in data.eval_results
              if r.dataset_split == "test" and r.metric_type == "pearsonr"}
    assert test_r["pearson (V)"] == pytest.approx(metrics["test"]["test_pearson_V"], abs=1e-4)
    assert "Sven Buechel and Udo Hahn. 2017. EmoBank" in card.text
    assert "trust_remote_code=True" in card.text
    # The run asked for a 3-member ensemble (the default has two), and the card says so.
    assert json.loads((run_dir / "config.json").read_text())["ensemble_size"] == 3
    assert "an ensemble of 3 members, each a 1-layer bidirectional GRU (hidden 16)" in " ".join(card.text.split())


def test_checkpoints_carry_a_card(run_dir):
    checkpoints = sorted(run_dir.glob("checkpoint-*"))
    assert checkpoints, "save_strategy=epoch should leave a checkpoint"
    assert ModelCard.load(checkpoints[-1] / "README.md").data.library_name == "transformers"


def test_pipelines_agree(run_dir):
    texts = ["What a wonderful surprise!", "The meeting is at noon."]
    regression = pipeline("text-regression", model=str(run_dir), trust_remote_code=True)
    classification = pipeline("text-classification", model=str(run_dir), function_to_apply="none", top_k=None)
    expected = Predictor.from_dir(run_dir).predict(texts)
    for row, by_label, ranked in zip(expected, regression(texts), classification(texts)):
        assert list(by_label) == ["V", "A", "D"]
        np.testing.assert_allclose([by_label[n] for n in "VAD"], row, atol=1e-5)
        np.testing.assert_allclose([{d["label"]: d["score"] for d in ranked}[n] for n in "VAD"], row, atol=1e-5)


def test_predict_command_on_hostile_csv_and_jsonl(run_dir, tmp_path):
    source = tmp_path / "in.csv"
    pd.DataFrame({"id": [1, 2, 3, 4], "text": ["I love it", "", "12345", "word " * 20_000]}).to_csv(source, index=False)
    out = tmp_path / "out.csv"
    result = subprocess.run(["seqreg-hf", "predict", "--model", str(run_dir), "--input", str(source), "--output",
                             str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    frame = pd.read_csv(out, keep_default_na=False)
    scores = ["pred_V", "pred_A", "pred_D"]
    spreads = [f"{c}_std" for c in scores]  # the run is an ensemble: each score has its members' spread beside it
    assert list(frame.columns) == ["id", "text", *[c for pair in zip(scores, spreads) for c in pair]]
    assert len(frame) == 4 and np.isfinite(frame[scores + spreads].to_numpy()).all()
    report = json.loads(result.stderr.strip().splitlines()[-1])["predicted"]
    assert {k: report[k] for k in ("rows", "empty", "truncated", "processes")} == {
        "rows": 4, "empty": 1, "truncated": 1, "processes": 1}
    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text('{"text": "fine"}\n{"text": null}\n{"text": 7}\n')
    assert cli(["predict", "--model", str(run_dir), "--input", str(jsonl), "--output", str(tmp_path / "o.jsonl")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(set(r) >= {"pred_V", "pred_A", "pred_D"} for r in rows)


def test_evaluate_command_matches_training_report(run_dir, tmp_path, capsys):
    """evaluate on the rows the run validated on reproduces the run's own eval_* metrics, key for key."""
    trained = json.loads((run_dir / "eval_results.json").read_text())
    dev = run_dir / "_predictions" / "validation_predictions.csv"  # the 120 validation rows the run used, predicted
    assert cli(["evaluate", "--model_name_or_path", str(run_dir), "--validation_file", str(dev), "--output_dir",
                str(tmp_path)]) == 0
    evaluated = json.loads((tmp_path / "eval_results.json").read_text())
    assert evaluated == json.loads(capsys.readouterr().out)
    keys = [k for k in trained if k.startswith(("eval_pearson_", "eval_spearman_", "eval_mse_", "eval_r2_"))]
    assert len(keys) == 16  # 4 metrics x (V, A, D, mean)
    for key in keys:
        assert evaluated[key] == pytest.approx(trained[key], abs=1e-5), key
    assert evaluated["eval_samples"] == trained["eval_samples"] == 120
    again = pd.read_csv(tmp_path / "validation_predictions.csv", keep_default_na=False)
    np.testing.assert_allclose(again[["pred_V", "pred_A", "pred_D"]].to_numpy(dtype=float),
                               pd.read_csv(dev, keep_default_na=False)[["pred_V", "pred_A", "pred_D"]].to_numpy(), atol=1e-5)
    # The old spellings still work: --model, --data with a split column and --split dev.
    assert cli(["evaluate", "--model", str(run_dir), "--data", str(EMOBANK), "--split_column", "split", "--split",
                "dev"]) == 0
    assert json.loads(capsys.readouterr().out)["eval_samples"] == 999


def test_output_folder_loads_in_plain_transformers(run_dir, tmp_path):
    ids = [[101, 2023, 2003, 2307, 102], [101, 2307, 102, 0, 0]]
    mask = [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    env = dict(os.environ, HF_MODULES_CACHE=str(tmp_path / "modules"), HF_HUB_OFFLINE="1")
    result = subprocess.run([sys.executable, "-c", LOADER, str(run_dir), json.dumps(ids), json.dumps(mask)],
                            capture_output=True, text=True, env=env, cwd=tmp_path, stdin=subprocess.DEVNULL,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.split("RESULT", 1)[1])
    model = AutoModelForSequenceClassification.from_pretrained(run_dir).eval()
    with torch.no_grad():
        expected = model(torch.tensor(ids), attention_mask=torch.tensor(mask)).logits
    torch.testing.assert_close(torch.tensor(report["logits"]), expected, atol=1e-6, rtol=0)


def test_push_to_hub_offline_fails_with_one_clear_line(tmp_path, capsys):
    code = cli(["train", *train_args(tmp_path / "push", "--push_to_hub", "--hub_model_id", "someone/seqreg-test")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1].startswith("seqreg-hf train: error:") and "offline" in err[-1].lower()
    assert "Traceback" not in "\n".join(err)


def test_json_config_is_the_same_as_flags(tmp_path):
    flags = train_args(tmp_path / "out", "--pooling", "attention", "--head_hidden_sizes", "32", "16")
    values = {"train_file": str(EMOBANK), "split_column": "split", "label_columns": ["V", "A", "D"],
              "output_dir": str(tmp_path / "out"), "max_train_samples": 300, "max_eval_samples": 120,
              "max_test_samples": 150, "hidden_size": 16, "num_train_epochs": 1, "report_to": "none",
              "disable_tqdm": True, "pooling": "attention", "head_hidden_sizes": [32, 16], "embedding_type": "static",
              "rnn_type": "gru", "num_layers": 1, "ensemble_size": 1}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(values))
    from_flags, from_json = parse_arguments(flags), parse_arguments([str(path)])
    for a, b in zip(from_flags[:4], from_json[:4]):
        assert a == b
    assert from_flags[4].to_dict() == from_json[4].to_dict()
    assert from_flags.explicit == from_json.explicit
    assert from_json[4].train_sampling_strategy == "group_by_length" and from_json[4].load_best_model_at_end


def test_starting_point_with_other_targets_is_refused(tmp_path, capsys):
    init_model_dir(tmp_path / "two", None, embedding_type="static", hidden_size=8, id2label={0: "V", 1: "A"})
    code = cli(["train", *train_args(tmp_path / "out", "--model_name_or_path", str(tmp_path / "two"))])
    assert code == 1
    assert "predicts 2 target(s) ['V', 'A'] but --label_columns is ['V', 'A', 'D']" in capsys.readouterr().err


@pytest.fixture
def http_server(tmp_path):
    """A file server on the loopback address, standing in for the public EmoBank URL."""
    import functools
    import http.server
    import threading

    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_missing_local_data_is_downloaded_through_datasets_and_offline_is_honoured(tmp_path, monkeypatch, http_server):
    import datasets.config

    root, url = http_server
    (root / "published.csv").write_text("text,y\na,1\nb,2\n")
    monkeypatch.setattr(datasets.config, "DOWNLOADED_DATASETS_PATH", tmp_path / "downloads")
    # Offline, nothing cached: refused with the fix, and nothing is fetched.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    offline = DataArguments(train_file=str(tmp_path / "not-here" / "emobank.csv"), data_url=f"{url}/published.csv")
    with pytest.raises(OSError, match="offline mode .* forbids downloading"):
        fetch_train_file(offline)
    assert not (tmp_path / "downloads").exists()
    # Online: downloaded into datasets' cache, under a name that keeps the file type.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    args = DataArguments(train_file=str(tmp_path / "not-here" / "emobank.csv"), data_url=f"{url}/published.csv")
    fetch_train_file(args)
    assert args.train_file.startswith(str(tmp_path / "downloads")) and args.train_file.endswith("emobank.csv")
    assert open(args.train_file).read() == (root / "published.csv").read_text()
    # Offline again: the cached copy is used.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    cached = DataArguments(train_file=str(tmp_path / "not-here" / "emobank.csv"), data_url=f"{url}/published.csv")
    fetch_train_file(cached)
    assert cached.train_file == args.train_file
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    broken = DataArguments(train_file=str(tmp_path / "nope.csv"), data_url=f"{url}/gone.csv")
    with pytest.raises(OSError, match="downloading .* failed"):
        fetch_train_file(broken)


def test_missing_label_columns_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="--label_columns is required"):
        from seqreg_hf.data import load_clean_data

        load_clean_data(DataArguments(train_file=str(EMOBANK)))


def test_one_line_defaults_are_the_emobank_recipe(tmp_path):
    """`seqreg-hf train scripts/configs/emobank.json` trains the recommended model: the recipe names the data, and
    every architecture and training value comes from the one home of its default."""
    recipe = REPO / "scripts" / "configs" / "emobank.json"
    parsed = parse_arguments([str(recipe), "--output_dir", str(tmp_path)])
    assert parsed.architecture == parse_arguments(["--output_dir", str(tmp_path)]).architecture
    assert SeqRegConfig(**parsed.architecture.config_kwargs()).to_dict() == SeqRegConfig().to_dict()
    assert parsed.training.learning_rate == SeqRegTrainingArguments(output_dir=str(tmp_path)).learning_rate == 1.6e-3
    assert parsed.data.label_columns == ["V", "A", "D"] and parsed.data.split_column == "split"


def test_no_validation_split_is_refused_early_with_the_fix(tmp_path, capsys):
    train = tmp_path / "train.csv"
    pd.read_csv(EMOBANK).query("split == 'train'").drop(columns="split").head(50).to_csv(train, index=False)
    code = cli(["train", "--train_file", str(train), "--label_columns", "V", "A", "D", "--output_dir",
                str(tmp_path / "out"), *SMALL])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and "Traceback" not in "\n".join(err)
    assert err[-1].startswith("seqreg-hf train: error: no validation split") and "--validation_file" in err[-1]
    assert not (tmp_path / "out").exists()  # refused before building anything
    # Without selection it trains: the fix the message gives works.
    code = cli(["train", "--train_file", str(train), "--label_columns", "V", "A", "D", "--output_dir",
                str(tmp_path / "out"), *SMALL, "--eval_strategy", "no", "--save_strategy", "no",
                "--load_best_model_at_end", "false", "--plots", "false"])
    assert code == 0 and (tmp_path / "out" / "model.safetensors").exists()
    # The same flags with a validation split: no evaluation, so the default early stopping stays out of the way.
    dev = tmp_path / "dev.csv"
    pd.read_csv(EMOBANK).query("split == 'dev'").drop(columns="split").head(30).to_csv(dev, index=False)
    code = cli(["train", "--train_file", str(train), "--validation_file", str(dev), "--label_columns", "V", "A", "D",
                "--output_dir", str(tmp_path / "out2"), *SMALL, "--eval_strategy", "no", "--save_strategy", "no",
                "--load_best_model_at_end", "false", "--plots", "false"])
    assert code == 0 and (tmp_path / "out2" / "model.safetensors").exists()
