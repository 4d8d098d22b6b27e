"""The training entry point does exactly what its flags say: one source of defaults, one vocabulary, one API."""

import ast
import dataclasses
import inspect
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import tomllib

import seqreg_hf
from seqreg_hf.arguments import (
    NOT_FLAGS,
    ArchitectureArguments,
    architecture_from,
    command_parser,
    parse_arguments,
    recipe_defaults,
)
from seqreg_hf.configuration_seqreg import CHOICES, SeqRegConfig
from seqreg_hf.data import tokenize_splits
from seqreg_hf.embeddings import load_embeddings

from .conftest import REPO

WORDS = ["calm", "angry", "happy", "sad", "bright", "dark", "loud", "quiet", "warm", "cold", "fast", "slow"]
TINY = {"hidden_size": 8, "ensemble_size": 1, "num_train_epochs": 1, "per_device_train_batch_size": 16,
        "report_to": "none", "plots": False, "save_strategy": "no", "load_best_model_at_end": False}


def synthetic(n, seed, decoy=None):
    rows = []
    for k in range(n):
        words = [WORDS[(k * 7 + i * 3 + seed) % len(WORDS)] for i in range(3 + k % 4)]
        rows.append({"text": " ".join(words), "y": (k % 5) / 2.0 + (seed % 3)})
    frame = pd.DataFrame(rows)
    if decoy is not None:
        frame["label"] = decoy
    return frame


def run_cli(*args, env=None, **kwargs):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "seqreg_hf.cli", *args], capture_output=True, text=True, env=env,
                          timeout=600, cwd=REPO, stdin=subprocess.DEVNULL, **kwargs)


# 1. One source of defaults, derived flags ---------------------------------------------------------------------


def test_every_spelling_argparse_accepts_means_the_same():
    base = ["--train_file", "x.csv", "--label_columns", "y", "--output_dir", "o"]
    spellings = (["--learning-rate", "1e-4"], ["--learning_rate", "1e-4"], ["--learn", "1e-4"], ["--learning-r", "1e-4"])
    for spelling in spellings:
        assert parse_arguments(base + spelling).training.learning_rate == 1e-4
    assert parse_arguments(base + ["--num_train_epoch", "2"]).training.num_train_epochs == 2
    assert parse_arguments(base + ["--hidden-size", "64"]).architecture.hidden_size == 64


def test_help_prints_the_defaults_that_run(tmp_path):
    result = run_cli("train", "--help", env={"SEQREG_HF_CACHE": str(tmp_path), "COLUMNS": "200"})
    assert result.returncode == 0
    text = result.stdout.split("  --learning_rate LEARNING_RATE", 1)[1].split("\n  --", 1)[0]
    assert "(default: 0.002)" in " ".join(text.split())
    parsed = parse_arguments([])
    recipe = recipe_defaults()
    for action in command_parser("train")._actions:
        if action.dest in recipe:
            assert action.default == recipe[action.dest], action.dest  # what --help prints ...
            group = next(g for g in parsed[:5] if hasattr(g, action.dest))
            assert getattr(group, action.dest) == recipe[action.dest]  # ... is what runs


def test_architecture_flags_are_derived_from_the_config():
    parameters = [p for p in inspect.signature(SeqRegConfig.__init__).parameters if p not in ("self", "kwargs")]
    flags = [f.name for f in dataclasses.fields(ArchitectureArguments)]
    assert flags == [p for p in parameters if p not in NOT_FLAGS]
    actions = {a.dest: a for a in command_parser("train")._actions}
    for name, choices in CHOICES.items():
        assert tuple(actions[name].choices) == choices
    assert "Lin's concordance correlation" in actions["loss"].help  # the config's docstring is the help


def test_config_overrides_and_conflicts():
    base = ["--train_file", "x.csv", "--label_columns", "y", "--output_dir", "o"]
    run = parse_arguments(base + ["--config_overrides", "hidden_size=32,pooling=attention,bidirectional=false"])
    chosen, explicit = architecture_from(run)
    assert (chosen["hidden_size"], chosen["pooling"], chosen["bidirectional"]) == (32, "attention", False)
    assert explicit == {"hidden_size", "pooling", "bidirectional"}
    with pytest.raises(ValueError, match=r"given both as option\(s\) \(a flag"):
        architecture_from(parse_arguments(base + ["--hidden_size", "16", "--config_overrides", "hidden_size=32"]))
    with pytest.raises(ValueError, match="not key=value"):
        architecture_from(parse_arguments(base + ["--config_overrides", "learning_rate=1"]))


def test_output_dir_is_required_not_defaulted(tmp_path):
    with pytest.raises(ValueError, match="--output_dir is required"):
        seqreg_hf.train(train_file=str(tmp_path / "x.csv"), label_columns=["y"])
    assert not (REPO / "trainer_output").exists()


def test_bad_choice_is_refused_before_any_work(tmp_path):
    result = run_cli("train", "--train_file", str(tmp_path / "none.csv"), "--label_columns", "y", "--output_dir",
                     str(tmp_path / "o"), "--rnn_type", "transformer")
    assert result.returncode == 2 and "invalid choice: 'transformer'" in result.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("kind", ["json", "yaml"])
def test_config_file_with_flag_overrides(tmp_path, kind):
    values = {"train_file": "x.csv", "label_columns": ["V", "A"], "output_dir": "out", "hidden_size": 64,
              "seed": 3, "learning_rate": 0.01}
    path = tmp_path / f"cfg.{kind}"
    if kind == "json":
        path.write_text(json.dumps(values))
    else:
        import yaml

        path.write_text(yaml.safe_dump(values))
    run = parse_arguments([str(path), "--seed", "1", "--learning-rate", "1e-4"])
    assert (run.training.seed, run.training.learning_rate) == (1, 1e-4)  # flags win over the file
    assert run.architecture.hidden_size == 64 and run.data.label_columns == ["V", "A"]
    assert run.architecture.rnn_type == "gru"  # neither says: the recipe
    (tmp_path / "bad.json").write_text(json.dumps({**values, "hiden_size": 3}))
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['hiden_size'\]"):
        parse_arguments([str(tmp_path / "bad.json")])
    (tmp_path / "choice.json").write_text(json.dumps({**values, "pooling": "median"}))
    with pytest.raises(ValueError, match="pooling='median' is not supported"):
        parse_arguments([str(tmp_path / "choice.json")])
    # File values are typed as the flags would be: a scalar for a list option, a whole float for an int.
    (tmp_path / "typed.json").write_text(json.dumps({**values, "head_hidden_sizes": 64, "ensemble_size": 2.0,
                                                     "label_columns": "V", "bidirectional": "false"}))
    typed = parse_arguments([str(tmp_path / "typed.json")])
    assert typed.architecture.head_hidden_sizes == [64] and typed.architecture.ensemble_size == 2
    assert typed.data.label_columns == ["V"] and typed.architecture.bidirectional is False
    (tmp_path / "fraction.json").write_text(json.dumps({**values, "ensemble_size": 2.5}))
    with pytest.raises(ValueError, match="ensemble_size=2.5 is not a valid int"):
        parse_arguments([str(tmp_path / "fraction.json")])
    help_text = run_cli("train", str(path), "--help", env={"COLUMNS": "200"}).stdout
    assert "(default: 64)" in help_text.split("--hidden_size HIDDEN_SIZE", 2)[2].split("\n  --", 1)[0]


def test_the_recipe_is_one_file():
    link = REPO / "scripts" / "configs" / "emobank.json"
    assert link.is_symlink() and link.resolve() == (REPO / "seqreg_hf" / "recipes" / "emobank.json").resolve()
    text = (REPO / "seqreg_hf" / "arguments.py").read_text()
    assert '"gru"' not in text and "0.002" not in text  # no second copy of the recipe's values


# 2. One job per module, each contract written once ------------------------------------------------------------


def _package_trees():
    for path in sorted((REPO / "seqreg_hf").rglob("*.py")):
        yield path, ast.parse(path.read_text())


def test_contracts_are_defined_once():
    padding, rnn_maps, bucketing = [], [], []
    length_batching = re.compile(r"length.*batch|batch.*length")
    for path, tree in _package_trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Attribute) and t.attr == "padding_side"
                                                    for t in node.targets):
                padding.append(path.name)
            if isinstance(node, ast.keyword) and node.arg == "padding_side":
                padding.append(path.name)
            if isinstance(node, ast.Dict) and any(isinstance(k, ast.Constant) and k.value == "lstm" for k in node.keys):
                rnn_maps.append(path.name)
            if isinstance(node, ast.FunctionDef) and length_batching.search(node.name):
                bucketing.append(f"{path.name}:{node.name}")
    assert padding == ["tokenization.py"]
    assert rnn_maps == ["modeling_seqreg.py"]
    assert bucketing == ["data.py:exact_length_batches"]


def test_training_main_reads_top_to_bottom_and_dead_code_is_gone():
    source = (REPO / "seqreg_hf" / "training.py").read_text()
    assert len(source.splitlines()) <= 160
    assert "EMOBANK_URL" not in source and "urllib" not in "".join(p.read_text() for p, _ in _package_trees())
    tree = ast.parse(source)
    names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)}
    assert not names & {"ModelArguments", "DataArguments", "LengthBucketBatchSampler", "write_outputs"}
    modules = {p.stem for p in (REPO / "seqreg_hf").glob("*.py")}
    assert {"arguments", "data", "trainer", "outputs", "training"} <= modules and "sampling" not in modules
    classes = {n.name for p, t in _package_trees() if p.name == "modeling_seqreg.py" for n in t.body
               if isinstance(n, ast.ClassDef)}
    assert "SeqRegEnsemble" in classes


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


def test_version_no_arguments_and_help_without_torch(tmp_path):
    import seqreg_hf_cli

    result = run_cli("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"seqreg-hf {seqreg_hf_cli.version()}"
    result = run_cli()
    assert result.returncode == 2 and "usage: seqreg-hf COMMAND" in result.stdout
    env = {"SEQREG_HF_CACHE": str(tmp_path)}
    for command in ("init", "train", "evaluate", "predict", "oov", "explain"):
        first = run_cli(command, "--help", env=env)
        assert first.returncode == 0 and f"usage: seqreg-hf {command}" in first.stdout
        probe = ("import sys, seqreg_hf_cli; code = seqreg_hf_cli.main([sys.argv[1], '--help']); "
                 "print('TORCH', 'torch' in sys.modules, 'transformers' in sys.modules)")
        again = subprocess.run([sys.executable, "-c", probe, command], capture_output=True, text=True, timeout=120,
                               env=dict(os.environ, **env))
        assert again.stdout.startswith(first.stdout) and "TORCH False False" in again.stdout


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


def test_runtime_dependencies_and_license_metadata():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = [d.split(">")[0].split("<")[0].split("=")[0].strip().lower() for d in project["dependencies"]]
    assert "gensim" not in names and "scikit-learn" not in names
    assert any(d.startswith("gensim") for d in project["optional-dependencies"]["dev"])
    assert project["license"] == "Apache-2.0"  # an SPDX string: no setuptools deprecation warning


def test_package_builds_without_deprecation_warnings(tmp_path):
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
                             str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "deprecat" not in (result.stdout + result.stderr).lower()
    assert list(tmp_path.glob("seqreg_hf-*.whl"))


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

    def tokenize(raw, tokenizer, text_column, label_columns, max_length, num_proc=None):
        seen.update(num_proc=num_proc, max_length=max_length)
        raise Stop

    monkeypatch.setattr(seqreg_hf.training, "tokenize_splits", tokenize)
    with pytest.raises(Stop):
        seqreg_hf.train(train_file=str(tmp_path / "train.csv"), validation_file=str(tmp_path / "dev.csv"),
                        label_columns=["y"], output_dir=str(tmp_path / "out"), preprocessing_num_workers=2,
                        max_length=64, **TINY)
    assert seen == {"num_proc": 2, "max_length": 64}


def test_the_readme_reliability_table_names_tests_that_exist():
    import re

    section = (REPO / "README.md").read_text(encoding="utf-8").split("## Reliability", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) >= 20
    checked = 0
    for row in rows:
        current = None
        for file_name, name in re.findall(r"`(?:(test_\w+\.py)(?:::)?)?(?:…|::)?(\w*)`", row.split("|")[3]):
            current = file_name or current
            source = (REPO / "tests" / current).read_text(encoding="utf-8")
            if name:
                assert re.search(rf"^def (\w*{name})\(", source, re.M), f"{current}: no test ending in {name}"
                checked += 1
    assert checked >= len(rows)
