"""A run knows its own checkpoints: a new run does not write into another run's output_dir, `last` resumes only a
checkpoint of the same run, a resume with another model or other data is refused naming what differs, broken
training state is skipped or named, and Ctrl-C at any moment ends in one line."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file

from seqreg_hf.checkpoints import checkpoint_problems
from seqreg_hf.cli import main as cli

from .conftest import REPO

WORDS = ["calm", "angry", "happy", "sad", "bright", "dark", "loud", "quiet"]
# 40 rows in batches of 8: 5 steps an epoch, 4 epochs, a checkpoint each epoch (5, 10, 15, 20); no early stopping,
# whose default patience (2) could end the run before its 4 epochs.
TINY = ["--hidden_size", "8", "--ensemble_size", "1", "--num_train_epochs", "4", "--per_device_train_batch_size", "8",
        "--report_to", "none", "--plots", "false", "--disable_tqdm", "true", "--seed", "3", "--embedding_type", "static",
        "--early_stopping_patience", "0"]


def scored_texts(n, shift=0.0, text_column="text", label_column="y"):
    rows = [{text_column: " ".join(WORDS[(k + i) % len(WORDS)] for i in range(2 + k % 3)),
             label_column: (k % 5) + shift + 0.25} for k in range(n)]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    scored_texts(40).to_csv(folder / "train.csv", index=False)
    scored_texts(40, shift=3.0).to_csv(folder / "other_train.csv", index=False)  # other data, other units
    scored_texts(40, text_column="sentence").to_csv(folder / "sentence_train.csv", index=False)
    scored_texts(40, label_column="z").to_csv(folder / "z_train.csv", index=False)
    scored_texts(20, shift=0.5).to_csv(folder / "dev.csv", index=False)
    scored_texts(20, shift=0.5, text_column="sentence").to_csv(folder / "sentence_dev.csv", index=False)
    scored_texts(20, shift=0.5, label_column="z").to_csv(folder / "z_dev.csv", index=False)
    scored_texts(12, shift=1.0).to_csv(folder / "test.csv", index=False)
    return folder


def args_for(data, output_dir, *extra, train="train.csv", dev="dev.csv", test="test.csv", label="y"):
    files = ["--train_file", str(data / train), "--validation_file", str(data / dev)]
    if test:
        files += ["--test_file", str(data / test)]
    return ["train", *files, "--label_columns", label, "--output_dir", str(output_dir), *TINY, *extra]


@pytest.fixture(scope="module")
def first_run(data, tmp_path_factory):
    """An earlier, finished run: its checkpoints and trained model sit in its output_dir."""
    output_dir = tmp_path_factory.mktemp("first") / "run"
    assert cli(args_for(data, output_dir)) == 0
    return output_dir


def snapshot(folder):
    """Every file under `folder` with the digest of its bytes: what a refused command must leave alone."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def one_error_line(err, command="train"):
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith(f"seqreg-hf {command}:")]
    assert len(lines) == 1, err[-3000:]
    return lines[0]


def config_of(folder):
    return json.loads((Path(folder) / "config.json").read_text())


def test_a_new_run_in_another_runs_output_dir_is_refused_and_overwrite_output_dir_clears_it(data, first_run,
                                                                                            tmp_path, capsys):
    output_dir = tmp_path / "run"
    shutil.copytree(first_run, output_dir)
    before = snapshot(output_dir)
    assert any(name.startswith("checkpoint-") for name in before)

    # Another architecture, no resume: nothing is touched, and the line says how to go on.
    assert cli(args_for(data, output_dir, "--hidden_size", "16", test=None)) == 1
    line = one_error_line(capsys.readouterr().err)
    assert str(output_dir) in line and "--overwrite_output_dir" in line and "another --output_dir" in line
    assert "--resume_from_checkpoint last" in line
    assert snapshot(output_dir) == before

    # --overwrite_output_dir: the old run's checkpoints and results go, the new run is all that is left.
    assert cli(args_for(data, output_dir, "--hidden_size", "16", "--overwrite_output_dir", test=None)) == 0
    capsys.readouterr()
    names = {str(p.relative_to(output_dir)) for p in output_dir.rglob("*")}
    assert not [n for n in names if "test_" in n]  # the old run had a test split, this one has none
    checkpoints = sorted(output_dir.glob("checkpoint-*"))
    assert checkpoints and all(config_of(c)["hidden_size"] == 16 for c in checkpoints)
    assert config_of(output_dir)["hidden_size"] == 16
    for checkpoint in checkpoints:  # every checkpoint is the new run's
        assert json.loads((checkpoint / "run.json").read_text()) == json.loads((output_dir / "run.json").read_text())
    assert not [k for k in json.loads((output_dir / "all_results.json").read_text()) if k.startswith("test_")]


def _ctrl_c_as_in_a_terminal():
    # A shell's background job inherits SIGINT ignored, and Python then installs no KeyboardInterrupt handler.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_in_background(args, **kwargs):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "seqreg_hf.cli", *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=_ctrl_c_as_in_a_terminal, **kwargs)


def complete(folder):
    return folder.is_dir() and (folder / "trainer_state.json").is_file() and not checkpoint_problems(folder)


def test_last_resumes_its_own_checkpoint_not_an_earlier_runs(data, first_run, tmp_path, capsys):
    """The issue's case: an earlier run's checkpoint-20 lies in the output_dir of a run killed at step 4; `last`
    used to take it, train 0 steps, exit 0 and leave the earlier run's weights as this run's result."""
    often = ["--eval_strategy", "steps", "--save_strategy", "steps", "--eval_steps", "2", "--save_steps", "2",
             "--save_total_limit", "20"]
    this_run = args_for(data, tmp_path / "killed", *often, train="other_train.csv", test=None)
    process = run_in_background(this_run, start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline and process.poll() is None and not complete(tmp_path / "killed" / "checkpoint-4"):
        time.sleep(0.01)
    assert process.poll() is None, "the run finished before it could be killed"
    os.killpg(process.pid, signal.SIGSTOP)  # freeze at once, then kill: no step runs in between
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate()
    earlier = tmp_path / "killed" / "checkpoint-20"
    assert not earlier.exists()
    shutil.copytree(first_run / "checkpoint-20", earlier)  # the earlier run's, same architecture, other data

    assert cli([*this_run, "--resume_from_checkpoint", "last"]) == 0
    err = capsys.readouterr().err
    assert f"skipping {earlier}: another run's checkpoint" in err and "label_means" in err

    # The same result as this run without the interruption, in this run's units.
    assert cli(args_for(data, tmp_path / "straight", *often, train="other_train.csv", test=None)) == 0
    capsys.readouterr()
    resumed, straight = load_file(tmp_path / "killed" / "model.safetensors"), load_file(
        tmp_path / "straight" / "model.safetensors")
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=1e-6, msg=key)
    means = pd.read_csv(data / "other_train.csv")["y"].mean()
    assert config_of(tmp_path / "killed")["label_means"] == pytest.approx([means])


@pytest.mark.parametrize("change,names", [
    (["--hidden_size", "16"], ["hidden_size: 8 in that run, 16 now"]),
    (["--word_dropout", "0.35"], ["word_dropout"]),
    (["--max_length", "32"], ["max_length: 128 in that run, 32 now"]),
    ({"train": "other_train.csv"}, ["label_means", "train data"]),
    ({"train": "sentence_train.csv", "dev": "sentence_dev.csv", "extra": ["--text_column", "sentence"]},
     ["text_column: 'text' in that run, 'sentence' now"]),
    ({"train": "z_train.csv", "dev": "z_dev.csv", "label": "z"}, ["label_columns: ['y'] in that run, ['z'] now"]),
], ids=["architecture", "training_option", "max_length", "train_file", "text_column", "label_columns"])
@pytest.mark.parametrize("resume", ["last", "path"])
def test_a_resume_of_another_model_or_other_data_is_refused_naming_what_differs(data, first_run, capsys, change,
                                                                              names, resume):
    before = snapshot(first_run)
    if isinstance(change, dict):
        args = args_for(data, first_run, *change.get("extra", []), train=change["train"],
                        dev=change.get("dev", "dev.csv"), label=change.get("label", "y"), test=None)
    else:
        args = args_for(data, first_run, *change)
    checkpoint = first_run / "checkpoint-20"
    assert cli([*args, "--resume_from_checkpoint", "last" if resume == "last" else str(checkpoint)]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert f"cannot resume from {checkpoint}: it belongs to another run" in line, line
    for name in names:
        assert name in line, line
    assert "another --output_dir" in line
    assert snapshot(first_run) == before


def test_a_resume_with_another_second_text_column_is_refused_and_an_older_run_file_still_resumes(tmp_path, capsys):
    texts = scored_texts(40)
    texts["s2"], texts["s3"] = texts["text"].str.upper().str.lower(), texts["text"][::-1].to_numpy()
    texts.to_csv(tmp_path / "pairs.csv", index=False)
    texts[:20].to_csv(tmp_path / "pairs_dev.csv", index=False)
    base = ["train", "--train_file", str(tmp_path / "pairs.csv"), "--validation_file", str(tmp_path / "pairs_dev.csv"),
            "--label_columns", "y", "--output_dir", str(tmp_path / "run"), *TINY]
    assert cli([*base, "--text_pair_column", "s2"]) == 0
    capsys.readouterr()
    checkpoint = tmp_path / "run" / "checkpoint-20"
    before = snapshot(tmp_path / "run")
    assert cli([*base, "--text_pair_column", "s3", "--resume_from_checkpoint", "last"]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert f"cannot resume from {checkpoint}: it belongs to another run" in line, line
    assert "text_pair_column: 's2' in that run, 's3' now" in line, line
    assert snapshot(tmp_path / "run") == before

    # A run.json written before the identity named the second-text column: the same run still resumes.
    record = json.loads((checkpoint / "run.json").read_text())
    del record["identity"]["text_pair_column"]
    (checkpoint / "run.json").write_text(json.dumps(record))
    assert cli([*base, "--text_pair_column", "s2", "--resume_from_checkpoint", "last"]) == 0, capsys.readouterr().err


def break_checkpoint(source, target, how):
    """A copy of `source` named `target` (a newer step), its trainer state renumbered, then broken as `how` says."""
    shutil.copytree(source, target)
    step = int(target.name.split("-")[1])
    state = json.loads((target / "trainer_state.json").read_text())
    state["global_step"] = step
    (target / "trainer_state.json").write_text(json.dumps(state))
    if how == "empty_trainer_state":
        (target / "trainer_state.json").write_text("{}")
    elif how == "missing_head_tensor":  # Trainer's resume loads weights with strict=False: it would be random
        tensors = load_file(target / "model.safetensors")
        del tensors[next(k for k in sorted(tensors) if "head" in k)]
        save_file(tensors, target / "model.safetensors", metadata={"format": "pt"})
    elif how == "no_run_file":  # as an earlier seqreg_hf saved it: whose run it was is unknown
        (target / "run.json").unlink()
    else:
        (target / "loss_state.json").write_text('{"loss_since_last_log": ')


@pytest.mark.parametrize("how,named", [("empty_trainer_state", "trainer_state.json: "),
                                       ("corrupt_loss_state", "loss_state.json: not valid JSON"),
                                       ("missing_head_tensor", "model.safetensors: ")])
def test_broken_training_state_is_skipped_by_last_and_named_when_given(data, first_run, tmp_path, capsys, how, named):
    output_dir = tmp_path / "run"
    shutil.copytree(first_run, output_dir)
    broken = output_dir / "checkpoint-25"
    break_checkpoint(output_dir / "checkpoint-20", broken, how)

    assert cli([*args_for(data, output_dir), "--resume_from_checkpoint", str(broken)]) == 1
    line = one_error_line(capsys.readouterr().err)
    assert f"cannot resume from {broken}: {named}" in line and "--resume_from_checkpoint last" in line

    assert cli([*args_for(data, output_dir), "--resume_from_checkpoint", "last"]) == 0
    err = capsys.readouterr().err
    assert f"ignoring incomplete checkpoint {broken}: {named}" in err
    assert json.loads((output_dir / "trainer_state.json").read_text())["global_step"] == 20  # went on from 20


def test_last_does_not_take_a_checkpoint_that_records_no_run(data, first_run, tmp_path, capsys):
    """A newer checkpoint without run.json may be anyone's: `last` skips it (a path given by hand compares its
    config alone, as for checkpoints saved before runs recorded their identity)."""
    output_dir = tmp_path / "run"
    shutil.copytree(first_run, output_dir)
    anonymous = output_dir / "checkpoint-25"
    break_checkpoint(output_dir / "checkpoint-20", anonymous, "no_run_file")
    assert cli([*args_for(data, output_dir), "--resume_from_checkpoint", "last"]) == 0
    assert f"skipping {anonymous}" in capsys.readouterr().err
    assert json.loads((output_dir / "trainer_state.json").read_text())["global_step"] == 20  # went on from 20


def watch(process):
    """The process' output as it comes, in a list a test can poll (progress bars end in \\r, not in lines)."""
    seen = []

    def read():
        while chunk := process.stdout.read(1):
            seen.append(chunk)

    threading.Thread(target=read, daemon=True).start()
    return seen


def wait_for(condition, process, timeout=600):
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None and not condition():
        time.sleep(0.005)
    assert process.poll() is None, "the run ended before the signal could be sent"


def stopped_by_ctrl_c(process, seen, times):
    """Send Ctrl-C `times` times; the run must end with status 130 and one line naming SIGINT, which is returned."""
    for _ in range(times):
        process.send_signal(signal.SIGINT)
        time.sleep(0.01)
    process.wait(timeout=600)
    time.sleep(0.2)  # the watcher's last read
    out = "".join(seen)
    assert process.returncode == 128 + signal.SIGINT, out[-3000:]
    line = one_error_line(out)
    assert "SIGINT" in line
    return line


def test_ctrl_c_during_tokenization_or_twice_during_training_ends_in_one_line(data, tmp_path):
    big = pd.concat([scored_texts(40)] * 2000, ignore_index=True)  # 80,000 rows: tokenizing takes a while
    big["text"] = big["text"] + " " + big.index.astype(str)
    big.to_csv(tmp_path / "big.csv", index=False)
    args = ["train", "--train_file", str(tmp_path / "big.csv"), "--validation_file", str(data / "dev.csv"),
            "--label_columns", "y", "--output_dir", str(tmp_path / "tokenizing"), *TINY, "--disable_tqdm", "false"]
    process = run_in_background(args)
    seen = watch(process)
    wait_for(lambda: "tokenizing train" in "".join(seen), process)
    line = stopped_by_ctrl_c(process, seen, times=1)
    assert "before any checkpoint" in line
    assert not list((tmp_path / "tokenizing").glob("checkpoint-*"))

    often = ["--eval_strategy", "steps", "--save_strategy", "steps", "--eval_steps", "2", "--save_steps", "2",
             "--num_train_epochs", "40"]
    output_dir = tmp_path / "training"
    process = run_in_background(args_for(data, output_dir, *often, test=None))
    seen = watch(process)
    wait_for(lambda: complete(output_dir / "checkpoint-2"), process)
    line = stopped_by_ctrl_c(process, seen, times=2)  # the second one: stop at once
    assert "--resume_from_checkpoint last" in line
    # Whatever the stop cut short is gone: every checkpoint left is whole, and `last` can go on from one.
    assert all(complete(c) for c in output_dir.glob("checkpoint-*"))
