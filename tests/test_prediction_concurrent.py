"""Two `seqreg-hf predict` processes on one output file: each writes and removes only its own parts, and the file is
always one run's whole output."""

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest

from seqreg_hf.embeddings import default_embeddings_path
from seqreg_hf.model_dir import init_model_dir

from .conftest import REPO


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("concurrent") / "model"
    init_model_dir(folder, default_embeddings_path(), embedding_type="static", id2label={0: "V"}, hidden_size=8,
                   ensemble_size=1)
    return folder


def command(model, texts, output):
    return ["predict", "--model_name_or_path", str(model), "--test_file", str(texts), "--output_file", str(output),
            "--chunk_rows", "20", "--disable_tqdm", "true"]


def test_a_run_started_while_another_writes_the_same_file_leaves_both_whole(model, tmp_path, suffix=".csv"):
    """Run A is frozen (SIGSTOP) as soon as its first parts exist; run B then writes the same output file from start
    to end; A resumes and finishes. Both succeed, the file is B's whole output when B ends and A's when A ends."""
    a_texts, b_texts = tmp_path / "a.csv", tmp_path / "b.csv"
    pd.DataFrame({"text": [f"run a row {i} " + "calm " * (i % 7) for i in range(3000)]}).to_csv(a_texts, index=False)
    pd.DataFrame({"text": [f"run b row {i} " + "angry " * (i % 5) for i in range(70)]}).to_csv(b_texts, index=False)
    # Every run, alone or not, in a process of its own with one thread: another thread count sums in another
    # order, and the scores would differ in the last bits for that reason alone.
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    run = [sys.executable, "-m", "seqreg_hf.cli"]
    alone = {}
    for name, texts in (("a", a_texts), ("b", b_texts)):  # each run alone, on a file of its own
        single = subprocess.run([*run, *command(model, texts, tmp_path / f"alone_{name}{suffix}")], env=env, cwd=REPO,
                                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
        assert single.returncode == 0, single.stderr[-2000:]
        alone[name] = (tmp_path / f"alone_{name}{suffix}").read_bytes()
    inputs = sorted(os.listdir(tmp_path))

    out = tmp_path / f"out{suffix}"
    a = subprocess.Popen([*run, *command(model, a_texts, out)], env=env, cwd=REPO, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while a.poll() is None and time.time() < deadline and len(list(tmp_path.glob(f".{out.name}.chunk*"))) < 2:
            time.sleep(0.005)
        a.send_signal(signal.SIGSTOP)
        assert a.poll() is None, "run A ended before run B could start: no overlap to test"
        parts_of_a = sorted(p.name for p in tmp_path.glob(f".{out.name}.chunk*"))
        b = subprocess.run([*run, *command(model, b_texts, out)], env=env, cwd=REPO, stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=300)
        assert b.returncode == 0, b.stderr[-2000:]
        assert out.read_bytes() == alone["b"]  # B's whole output, none of A's rows
        assert set(parts_of_a) <= {p.name for p in tmp_path.glob(f".{out.name}.chunk*")}  # B left A's parts alone
    except BaseException:
        a.kill()  # a failed check leaves no process behind
        raise
    finally:
        a.send_signal(signal.SIGCONT)
    _, err = a.communicate(timeout=300)
    assert a.returncode == 0, err[-2000:]
    assert out.read_bytes() == alone["a"]  # A finished last: its whole output, none of B's rows
    assert sorted(os.listdir(tmp_path)) == sorted([*inputs, out.name])  # no part or temporary file of either run
