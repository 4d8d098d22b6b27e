"""SeqRegTrainer's final predictions: every row of a split, in its order, whatever the batching options."""

import platform

import numpy as np
import pandas as pd
import pytest

from seqreg_hf.cli import main as cli

from .test_model_card import tiny_files


def test_drop_last_still_scores_every_row_of_the_final_predictions(tmp_path):
    """--dataloader_drop_last drops the last short batch of training; the run's prediction files still hold every
    validation and test row, in order (before, the run stopped after training, at the row-order check)."""
    tiny_files(tmp_path, train=40, dev=21, test=13)
    assert cli(["train", "--train_file", str(tmp_path / "train.csv"), "--validation_file", str(tmp_path / "dev.csv"),
                "--test_file", str(tmp_path / "test.csv"), "--label_columns", "y", "--output_dir", str(tmp_path / "out"),
                "--embeddings", str(tmp_path / "vectors.txt"), "--hidden_size", "8", "--ensemble_size", "1",
                "--num_train_epochs", "1", "--per_device_eval_batch_size", "8", "--dataloader_drop_last", "true",
                "--report_to", "none", "--plots", "false", "--disable_tqdm", "true"]) == 0
    for split, n in (("validation", 21), ("test", 13)):
        frame = pd.read_csv(tmp_path / "out" / "_predictions" / f"{split}_predictions.csv")
        source = pd.read_csv(tmp_path / f"{'dev' if split == 'validation' else 'test'}.csv")
        assert len(frame) == n and frame["text"].tolist() == source["text"].tolist()
        assert np.isfinite(frame["pred_y"]).all()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's; elsewhere the callback is "
                    "a no-op (tested by _malloc_trim returning None)")
def test_training_gives_freed_memory_back_every_few_steps_and_after_each_evaluation(tmp_path, monkeypatch):
    """Batches of cached states vary in size, and glibc kept what they freed: the default model's training grew
    toward 4 GB on EmoBank. SeqRegTrainer calls malloc_trim every `every` steps, at each epoch's end and after each
    evaluation and prediction; on this Linux the real function exists, so the callback is not a silent no-op."""
    from seqreg_hf import trainer

    assert trainer._malloc_trim() is not None
    calls = []
    import pickle

    pickle.dumps(trainer.ReleaseFreedMemory())  # a trainer holding it can still be pickled (ray, deepcopy)
    monkeypatch.setattr(trainer, "_malloc_trim", lambda: calls.append)
    monkeypatch.setattr(trainer.ReleaseFreedMemory.__init__, "__defaults__", (3,))  # every 3 steps
    tiny_files(tmp_path, train=40, dev=21, test=13)
    assert cli(["train", "--train_file", str(tmp_path / "train.csv"), "--validation_file", str(tmp_path / "dev.csv"),
                "--test_file", str(tmp_path / "test.csv"), "--label_columns", "y", "--output_dir", str(tmp_path / "out"),
                "--embeddings", str(tmp_path / "vectors.txt"), "--hidden_size", "8", "--ensemble_size", "1",
                "--num_train_epochs", "2", "--per_device_train_batch_size", "8", "--report_to", "none",
                "--plots", "false", "--disable_tqdm", "true"]) == 0
    # 40 rows in batches of 8: 5 steps an epoch, 10 in all, so steps 3, 6 and 9; 2 epoch ends; 2 evaluations (one
    # per epoch); 2 predictions (the final dev and test passes)
    assert calls == [0] * (3 + 2 + 2 + 2)
