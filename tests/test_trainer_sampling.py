"""Exact-length batching: batches without padding, every example once per epoch, rank-disjoint shards."""

import random

from seqreg_hf.cli import main as cli
from seqreg_hf.trainer import LengthBucketBatchSampler

from .conftest import EMOBANK

LENGTHS = [random.Random(3).randint(2, 9) for _ in range(300)]


def test_batches_hold_one_length_and_cover_every_example_once():
    sampler = LengthBucketBatchSampler(LENGTHS, batch_size=8, seed=1)
    batches = list(sampler)
    assert all(len({LENGTHS[i] for i in batch}) == 1 for batch in batches)
    assert all(1 <= len(batch) <= 8 for batch in batches)
    assert sorted(i for batch in batches for i in batch) == list(range(len(LENGTHS)))
    assert len(sampler) == len(batches)


def test_order_depends_on_seed_and_epoch_only():
    first = LengthBucketBatchSampler(LENGTHS, batch_size=8, seed=1)
    again = LengthBucketBatchSampler(LENGTHS, batch_size=8, seed=1)
    assert list(first) == list(again)  # a resumed run sees the same batches
    first.set_epoch(1)
    assert list(first) != list(again)


def test_ranks_get_disjoint_equal_shards():
    ranks = [LengthBucketBatchSampler(LENGTHS, batch_size=8, seed=1, rank=r, world_size=2) for r in (0, 1)]
    shards = [list(s) for s in ranks]
    assert len(shards[0]) == len(shards[1])
    seen = [{i for batch in shard for i in batch} for shard in shards]
    assert not seen[0] & seen[1]


def test_training_with_length_buckets(tmp_path):
    out = tmp_path / "run"
    assert cli(["train", "--train_file", str(EMOBANK), "--split_column", "split", "--label_columns", "V", "A", "D",
                "--output_dir", str(out), "--max_train_samples", "400", "--max_eval_samples", "100",
                "--max_test_samples", "100", "--hidden_size", "16", "--num_train_epochs", "1", "--length_buckets",
                "--embedding_type", "static",
                "--report_to", "none", "--disable_tqdm", "true", "--plots", "false"]) == 0
    assert (out / "model.safetensors").exists() and (out / "metrics.json").exists()
