"""Faults: a killed run resumes to the same result; incomplete checkpoints and corrupt files are named."""

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from seqreg_hf.checkpoints import checkpoint_problems, latest_valid_checkpoint, resolve_resume, safetensors_problem
from seqreg_hf.embeddings import default_embeddings_path
from seqreg_hf.model_dir import ModelDirError, load_model_dir

from .conftest import EMOBANK, REPO

EMBEDDING_KEY = "seqreg.embeddings.word_embeddings.weight"


# Eight validation rows make the dev metric noisy: on this seed it peaks early (a best checkpoint that is not the
# last) and early stopping ends the run before its 3 epochs are up, so a resume must restore the patience counter.
def cli_args(output_dir, *extra):
    return ["--train_file", str(EMOBANK), "--split_column", "split", "--label_columns", "V", "A", "D",
            "--output_dir", str(output_dir), "--max_train_samples", "640", "--max_eval_samples", "8",
            "--max_test_samples", "100", "--hidden_size", "16", "--num_train_epochs", "3", "--save_total_limit", "20",
            "--eval_strategy", "steps", "--save_strategy", "steps", "--eval_steps", "5", "--save_steps", "5",
            "--learning_rate", "0.02", "--early_stopping_patience", "3",
            "--report_to", "none", "--disable_tqdm", "true", "--plots", "false", "--seed", "7", "--embedding_type", "static",
            "--ensemble_size", "3",  # the 3-member ensemble of 1-layer BiGRUs this scenario was written for
            "--rnn_type", "gru", "--num_layers", "1", "--pooling", "mean_max", "--embedding_dropout", "0.3",
            "--word_dropout", "0.2", "--head_dropout", "0.4", *extra]


def run_cli(args, **kwargs):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "seqreg_hf.cli", "train", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


def final_state(output_dir):
    weights = load_file(Path(output_dir) / "model.safetensors")
    metrics = json.loads((Path(output_dir) / "metrics.json").read_text())
    return weights, metrics


def trainer_state(folder):
    return json.loads((Path(folder) / "trainer_state.json").read_text())


def step_of(folder):
    return int(re.search(r"(\d+)$", str(folder)).group(1))


def patience_counter(state):
    return state["stateful_callbacks"]["EarlyStoppingCallback"]["attributes"]["early_stopping_patience_counter"]


def without_timings(log_history):
    return [{k: v for k, v in entry.items() if not k.endswith(("_runtime", "_per_second"))} for entry in log_history]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("straight") / "run"
    process = run_cli(cli_args(output_dir))
    out, _ = process.communicate(timeout=600)
    assert process.returncode == 0, out[-3000:]
    return output_dir


@pytest.fixture(scope="module")
def kill_step(uninterrupted):
    """The first checkpoint after the best one: killing there leaves a best that is not the last, and a nonzero
    patience counter that only a full resume carries over."""
    state = trainer_state(uninterrupted)
    steps = sorted(step_of(c) for c in uninterrupted.glob("checkpoint-*"))
    assert state["global_step"] < state["max_steps"], "early stopping should end this run before its last epoch"
    later = [s for s in steps if s > state["best_global_step"]]
    assert len(later) >= 2, f"the best checkpoint must be followed by at least two more, got {steps}"
    return later[0]


@pytest.fixture(scope="module")
def resumed(uninterrupted, kill_step, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("killed") / "run"
    process = run_cli(cli_args(output_dir), start_new_session=True)
    target = output_dir / f"checkpoint-{kill_step}"
    deadline = time.time() + 600
    while time.time() < deadline and process.poll() is None:
        if target.is_dir() and not checkpoint_problems(target):
            os.killpg(process.pid, signal.SIGSTOP)  # freeze at once, then kill: no step runs in between
            break
        time.sleep(0.01)
    assert process.poll() is None, "the run finished before it could be killed; make it longer"
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate()
    assert not (output_dir / "metrics.json").exists()

    complete = latest_valid_checkpoint(output_dir)
    state = trainer_state(complete)
    assert state["best_global_step"] < step_of(complete)  # the kill landed after a best that is not the last
    assert patience_counter(state) > 0

    # A half-written newer checkpoint, as a kill during a save leaves it: it must be ignored, not resumed from.
    partial = output_dir / f"checkpoint-{step_of(complete) + 1000}"
    shutil.copytree(complete, partial)
    data = (partial / "model.safetensors").read_bytes()
    (partial / "model.safetensors").write_bytes(data[: len(data) // 2])

    process = run_cli(cli_args(output_dir, "--resume_from_checkpoint", "last"))
    out, _ = process.communicate(timeout=600)
    assert process.returncode == 0, out[-3000:]
    shutil.rmtree(partial)
    return output_dir, out, partial, complete


def test_a_resume_skips_a_half_written_checkpoint(resumed):
    _, out, partial, complete = resumed
    assert f"ignoring incomplete checkpoint {partial}" in out and "model.safetensors" in out


def assert_same_run(output_dir, uninterrupted):
    """Final weights (the last checkpoint's), the best model, the whole log and the metrics of an uninterrupted run."""
    steps = sorted(step_of(c) for c in output_dir.glob("checkpoint-*"))
    assert set(steps) >= {step_of(c) for c in uninterrupted.glob("checkpoint-*")}
    # The last checkpoint holds the final weights of training; model.safetensors the best, reloaded at the end.
    for folder in (f"checkpoint-{steps[-1]}", "."):
        weights = load_file(output_dir / folder / "model.safetensors")
        expected = load_file(uninterrupted / folder / "model.safetensors")
        assert weights.keys() == expected.keys()
        for key in weights:
            torch.testing.assert_close(weights[key], expected[key], rtol=0, atol=1e-6, msg=f"{folder}: {key}")
    # Same evaluations at the same steps, the same stop (patience restored), the same best: the whole log.
    state, expected_state = trainer_state(output_dir), trainer_state(uninterrupted)
    got, want = without_timings(state["log_history"]), without_timings(expected_state["log_history"])
    assert [sorted(e) for e in got] == [sorted(e) for e in want]
    for entry, expected_entry in zip(got, want):
        for key, value in expected_entry.items():
            assert entry[key] == pytest.approx(value, rel=1e-5, abs=1e-6), (entry["step"], key)
    for key in ("global_step", "best_global_step", "best_metric"):
        assert state[key] == pytest.approx(expected_state[key]), key
    assert patience_counter(state) == patience_counter(expected_state)
    metrics, expected_metrics = final_state(output_dir)[1], final_state(uninterrupted)[1]
    for split in ("validation", "test"):
        for key, value in expected_metrics[split].items():
            if not key.endswith(("runtime", "per_second")):
                assert metrics[split][key] == pytest.approx(value, abs=1e-6), key


def test_killed_run_resumes_to_the_same_weights_log_and_metrics(uninterrupted, resumed):
    output_dir = resumed[0]
    assert sorted(map(step_of, output_dir.glob("checkpoint-*"))) == sorted(map(step_of, uninterrupted.glob("checkpoint-*")))
    assert_same_run(output_dir, uninterrupted)


def cap_file_size():
    """A stand-in for a full disk: no file may grow past 40,000 KiB (`ulimit -f 40000`); the 47 MB model cannot."""
    limit = 40000 * 1024
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def one_error_line(out, command="train"):
    assert "Traceback" not in out, out[-3000:]
    lines = [line for line in out.splitlines() if line.startswith(f"seqreg-hf {command}:")]
    assert len(lines) == 1, out[-3000:]
    return lines[0]


def test_sigterm_then_a_full_disk_then_a_resume_ends_as_the_straight_run(uninterrupted, tmp_path):
    output_dir = tmp_path / "run"
    process = run_cli(cli_args(output_dir))
    deadline = time.time() + 600
    while time.time() < deadline and process.poll() is None:
        if (output_dir / "checkpoint-5").is_dir() and not checkpoint_problems(output_dir / "checkpoint-5"):
            process.send_signal(signal.SIGTERM)
            break
        time.sleep(0.01)
    out, _ = process.communicate(timeout=600)
    # SIGTERM: the step ends, a complete checkpoint is saved, one line says where, status 128 + 15.
    assert process.returncode == 128 + signal.SIGTERM, out[-3000:]
    line = one_error_line(out)
    stopped = latest_valid_checkpoint(output_dir)
    assert f"stopped by SIGTERM at step {step_of(stopped)}; the checkpoint {stopped} is complete" in line
    assert "--resume_from_checkpoint last" in line and not (output_dir / "metrics.json").exists()

    # The resumed run meets a full disk at its next save: one line naming the checkpoint, which is not left behind.
    full = run_cli(cli_args(output_dir, "--resume_from_checkpoint", "last"), preexec_fn=cap_file_size)
    out, _ = full.communicate(timeout=600)
    assert full.returncode == 1, out[-3000:]
    line = one_error_line(out)
    failed = re.search(r"could not write (\S+checkpoint-\d+): ", line)
    assert failed and "File too large" in line, line
    assert f"--resume_from_checkpoint last: it resumes from {stopped}, the newest complete checkpoint" in line
    assert step_of(failed.group(1)) > step_of(stopped) and not Path(failed.group(1)).exists()

    # With space again, the same command goes on from the SIGTERM checkpoint and ends where the straight run did.
    final = run_cli(cli_args(output_dir, "--resume_from_checkpoint", "last"))
    out, _ = final.communicate(timeout=600)
    assert final.returncode == 0, out[-3000:]
    assert_same_run(output_dir, uninterrupted)


def test_a_full_disk_at_the_first_checkpoint_leaves_nothing_to_resume_and_says_so(tmp_path):
    output_dir = tmp_path / "run"
    args = cli_args(output_dir, "--max_train_samples", "64", "--num_train_epochs", "1")
    process = run_cli(args, preexec_fn=cap_file_size)
    out, _ = process.communicate(timeout=600)
    assert process.returncode == 1, out[-3000:]
    line = one_error_line(out)
    assert f"could not write {output_dir / 'checkpoint-2'}: " in line and "File too large" in line  # after its 2 steps
    assert "starts over, as no complete checkpoint exists yet" in line
    assert list(output_dir.glob("checkpoint-*")) == []
    again = run_cli(cli_args(output_dir, "--max_train_samples", "64", "--num_train_epochs", "1",
                             "--resume_from_checkpoint", "last"))
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0, out[-3000:]
    assert "no complete checkpoint in" in out and "training starts from the beginning" in out


def test_frozen_embeddings_survive_resume_and_stay_out_of_the_optimizer(resumed):
    from transformers import AutoModel

    output_dir = resumed[0]
    original = AutoModel.from_pretrained(default_embeddings_path()).get_input_embeddings().weight.detach()
    weights, _ = final_state(output_dir)
    assert torch.equal(weights[EMBEDDING_KEY], original)
    checkpoints = sorted(output_dir.glob("checkpoint-*"), key=step_of)
    assert len(checkpoints) >= 3
    for checkpoint in checkpoints:
        assert torch.equal(load_file(checkpoint / "model.safetensors")[EMBEDDING_KEY], original)
        optimizer = torch.load(checkpoint / "optimizer.pt", weights_only=True)
        shapes = {tuple(s["exp_avg"].shape) for s in optimizer["state"].values()}
        assert tuple(original.shape) not in shapes  # AdamW keeps no moments for the frozen matrix
        model, _ = load_model_dir(checkpoint)
        trainable = [p for p in model.parameters() if p.requires_grad]
        assert len(optimizer["state"]) == len(trainable)
        assert sum(len(g["params"]) for g in optimizer["param_groups"]) == len(trainable)


def test_checkpoint_checks_name_each_broken_file(uninterrupted, tmp_path):
    source = latest_valid_checkpoint(uninterrupted)
    assert source is not None and checkpoint_problems(source) == []
    broken = tmp_path / "checkpoint-5"
    shutil.copytree(source, broken)
    (broken / "trainer_state.json").write_text("{")
    optimizer = (broken / "optimizer.pt").read_bytes()
    (broken / "optimizer.pt").write_bytes(optimizer[:100])
    problems = checkpoint_problems(broken)
    assert any(p.startswith("trainer_state.json: not valid JSON") for p in problems)
    assert any(p.startswith("optimizer.pt: not a complete torch archive") for p in problems)
    with pytest.raises(ValueError, match="cannot resume from .*checkpoint-5: .*--resume_from_checkpoint last"):
        resolve_resume(str(broken), str(tmp_path))
    assert resolve_resume("last", str(tmp_path)) is None  # nothing complete: start over, with a warning


def test_truncated_safetensors_in_a_model_dir(uninterrupted, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(uninterrupted, folder, ignore=shutil.ignore_patterns("checkpoint-*"))
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[:-10])
    assert "truncated" in safetensors_problem(folder / "model.safetensors")
    with pytest.raises(ModelDirError, match=r"model.safetensors: .* the file is truncated. Restore it"):
        load_model_dir(folder)
    (folder / "model.safetensors").write_bytes(b"\x01\x02")
    with pytest.raises(ModelDirError, match="too short to hold a header"):
        load_model_dir(folder)
    (folder / "model.safetensors").unlink()
    (folder / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(ModelDirError, match="only from safetensors, never pickles"):
        load_model_dir(folder)


@pytest.mark.parametrize("value,message", [
    ("nan", "label 'y' is None, not a finite number"),
    ("inf", "label 'y' is inf, not a finite number"),
    ("high", "label 'y' is 'high', not a finite number"),
])
def test_bad_training_labels_stop_with_one_line_naming_column_and_row(tmp_path, capsys, value, message):
    from seqreg_hf.cli import main as cli

    data = tmp_path / "train.csv"
    data.write_text("text,y\ngood day,1.0\nbad day,2.0\nso so," + value + "\nfine,1.5\n")
    code = cli(["train", "--train_file", str(data), "--label_columns", "y", "--output_dir", str(tmp_path / "o"),
                "--on_bad_rows", "error", "--hidden_size", "4"])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("seqreg-hf train: error:")]
    assert code == 1 and len(errors) == 1 and "Traceback" not in err
    assert "train split, row 2" in errors[0] and message in errors[0] and "--on_bad_rows drop" in errors[0]


def test_missing_label_column_stops_with_one_line(tmp_path, capsys):
    from seqreg_hf.cli import main as cli

    data = tmp_path / "train.csv"
    data.write_text("text,y\ngood day,1.0\nbad day,2.0\n")
    assert cli(["train", "--train_file", str(data), "--label_columns", "V", "--output_dir", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("seqreg-hf train: error:")]
    assert len(errors) == 1 and "Traceback" not in err
    assert "column(s) ['V'] not found" in errors[0] and "['text', 'y']" in errors[0]
