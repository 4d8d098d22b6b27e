"""Two processes (torchrun, gloo on CPU): disjoint shards, a loadable model, metrics that can be recomputed."""

import json
import os
import socket
import subprocess
import sys

import pandas as pd
import pytest

from seqreg_hf.evaluation import evaluate_model_dir

from .conftest import REPO

WORDS = ["calm", "angry", "happy", "sad", "bright", "dark", "loud", "quiet", "warm", "cold", "fast", "slow"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def synthetic(n, seed):
    rows = []
    for k in range(n):  # every text is unique, so its token ids identify it
        words = [WORDS[(k * 7 + i * 3 + seed) % len(WORDS)] for i in range(3)] + [f"item {k}"]
        rows.append({"text": " ".join(words), "y1": (k % 5) / 2.0, "y2": ((k * 3) % 7) / 3.0})
    return pd.DataFrame(rows)


def test_torchrun_two_processes(tmp_path):
    synthetic(192, 0).to_csv(tmp_path / "train.csv", index=False)
    synthetic(40, 5).to_csv(tmp_path / "dev.csv", index=False)
    output_dir, probe = tmp_path / "out", tmp_path / "probe"
    probe.mkdir()
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1",
               HF_DATASETS_CACHE=str(tmp_path / "cache"))
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
               str(free_port()), str(REPO / "tests" / "ddp_probe.py"), str(probe),
               "--train_file", str(tmp_path / "train.csv"), "--validation_file", str(tmp_path / "dev.csv"),
               "--label_columns", "y1", "y2", "--output_dir", str(output_dir), "--hidden_size", "8",
               "--embedding_type", "static", "--per_device_train_batch_size", "8", "--num_train_epochs", "1",
               "--report_to", "none", "--disable_tqdm", "true", "--plots", "false", "--train_sampling_strategy", "random"]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]

    ranks = [json.loads((probe / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    seen = [set(r["seen"]) for r in ranks]
    assert len(ranks[0]["seen"]) == len(ranks[1]["seen"]) == 96  # 192 rows, 12 steps of 8 per rank
    assert not seen[0] & seen[1], "the two ranks trained on overlapping examples"
    assert len(seen[0] | seen[1]) == 192

    metrics = json.loads((output_dir / "metrics.json").read_text())["validation"]
    recomputed, _, _ = evaluate_model_dir(output_dir, tmp_path / "dev.csv", ["y1", "y2"], split="validation")
    for name in ("mse_mean", "pearson_y1", "pearson_y2", "mae_y2"):
        assert metrics[f"eval_{name}"] == pytest.approx(recomputed[f"eval_{name}"], abs=1e-5)
