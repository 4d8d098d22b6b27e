"""Architecture sweep on EmoBank: train each variant of the recipe, record dev and test Pearson r.

Variants are chosen by their dev (validation) numbers only; test is recorded for the report. Each variant
changes the recipe (scripts/configs/emobank.json) as it was at the time of the run: the variants up to
gru_combo_mlp changed the first recipe (BiLSTM-256, mean_max, lr 1e-3, dropouts 0.1 / 0.1); layer_norm*,
length_buckets, batch16, weight_decay, hidden384, epochs15, wd_buckets, dropout_3_4 and sum_merge_gru changed
the second (BiGRU, lr 2e-3, dropouts 0.2 / 0.3); word_dropout* and ccc changed the third (dropouts 0.3 / 0.4, 10
epochs, no word dropout); ensemble3 changed the fourth (word dropout 0.2, 15 epochs, one network), which "single"
restores; arousal_only is "single" trained on one target, A. "base" is the static recipe file as it is now
(scripts/configs/emobank_static.json, a 3-member ensemble; the static table, as in every run of this sweep).
Usage: python -m scripts.experiments.sweep_emobank OUT.jsonl [variant ...] [--seeds 42 43 44]
"""

import argparse
import json
import os
import sys
import tempfile
import time

from scripts.common import REPO
from seqreg_hf import train

VARIANTS = {
    "base": {},
    "last": {"pooling": "last"},
    "attention": {"pooling": "attention"},
    "mean": {"pooling": "mean"},
    "gru": {"rnn_type": "gru"},
    "two_layers": {"num_layers": 2, "rnn_dropout": 0.2},
    "hidden512": {"hidden_size": 512},
    "mlp_head": {"head_hidden_sizes": [256], "head_dropout": 0.2},
    "lr2e-3": {"learning_rate": 0.002},
    "more_dropout": {"embedding_dropout": 0.2, "head_dropout": 0.3},
    "huber": {"loss": "huber"},
    "sum_merge": {"direction_merge": "sum"},
    "gru_attention": {"rnn_type": "gru", "pooling": "attention"},
    "gru_epochs20": {"rnn_type": "gru", "num_train_epochs": 20},
    "gru_lr2e-3": {"rnn_type": "gru", "learning_rate": 0.002},
    "gru_more_dropout": {"rnn_type": "gru", "embedding_dropout": 0.2, "head_dropout": 0.3},
    "gru_mlp_head": {"rnn_type": "gru", "head_hidden_sizes": [256], "head_dropout": 0.2},
    "gru_two_layers": {"rnn_type": "gru", "num_layers": 2, "rnn_dropout": 0.2},
    "gru_combo": {"rnn_type": "gru", "learning_rate": 0.002, "embedding_dropout": 0.2, "head_dropout": 0.3},
    "gru_combo_h512": {"rnn_type": "gru", "learning_rate": 0.002, "embedding_dropout": 0.2, "head_dropout": 0.3,
                       "hidden_size": 512},
    "gru_combo_mlp": {"rnn_type": "gru", "learning_rate": 0.002, "embedding_dropout": 0.2, "head_dropout": 0.3,
                      "head_hidden_sizes": [256]},
    "length_buckets": {"length_buckets": True},
    "batch16": {"per_device_train_batch_size": 16},
    "weight_decay": {"weight_decay": 0.01},
    "hidden384": {"hidden_size": 384},
    "epochs15": {"num_train_epochs": 15, "early_stopping_patience": 4},
    "wd_buckets": {"weight_decay": 0.01, "length_buckets": True},
    "dropout_3_4": {"embedding_dropout": 0.3, "head_dropout": 0.4},
    "sum_merge_gru": {"direction_merge": "sum"},
    "layer_norm": {"embedding_norm": "layer_norm"},
    "layer_norm_lr5e-4": {"embedding_norm": "layer_norm", "learning_rate": 0.0005},
    "word_dropout": {"word_dropout": 0.1},
    "ccc": {"loss": "ccc"},
    "word_dropout_2": {"word_dropout": 0.2},
    "word_dropout_2_h128": {"word_dropout": 0.2, "hidden_size": 128},
    "word_dropout_2_b64": {"word_dropout": 0.2, "per_device_train_batch_size": 64, "learning_rate": 0.003},
    "word_dropout_2_epochs15": {"word_dropout": 0.2, "num_train_epochs": 15, "early_stopping_patience": 4},
    "word_dropout_epochs15": {"word_dropout": 0.1, "num_train_epochs": 15, "early_stopping_patience": 4},
    "ensemble3": {"ensemble_size": 3},
    "arousal_only": {"label_columns": ["A"], "ensemble_size": 1},
    "single": {"ensemble_size": 1},
    "gru_combo_2l": {"rnn_type": "gru", "learning_rate": 0.002, "embedding_dropout": 0.2, "head_dropout": 0.3,
                     "num_layers": 2, "rnn_dropout": 0.2},
}


def run(name, overrides, seed, recipe, workdir):
    start = time.time()
    results = train(recipe, **{**overrides, "seed": seed, "output_dir": os.path.join(workdir, f"{name}-{seed}"),
                               "plots": False, "save_total_limit": 1, "disable_tqdm": True})
    row = {"variant": name, "seed": seed, "overrides": overrides, "train_seconds": round(time.time() - start, 1),
           "epochs": results["train"].get("epoch")}
    for split, prefix in (("validation", "eval"), ("test", "test")):
        pearson = f"{prefix}_pearson_"
        row[split] = {k[len(pearson):]: round(v, 4) for k, v in results[split].items() if k.startswith(pearson)}
    return row


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("variants", nargs="*", default=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[42])
    parser.add_argument("--recipe", default=os.path.join(REPO, "scripts", "configs", "emobank_static.json"))
    parser.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "seqreg_sweep"),
                        help="where each variant's run directory goes")
    args = parser.parse_args()
    for name in args.variants:
        for seed in args.seeds:
            row = run(name, VARIANTS[name], seed, args.recipe, args.workdir)
            with open(args.out, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(row) + "\n")
            print(json.dumps(row), file=sys.stderr, flush=True)
