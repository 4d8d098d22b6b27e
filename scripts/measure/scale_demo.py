"""Datasets larger than RAM: train on a generated corpus of 2 million short texts, streamed or Arrow-cached.

Writes a CSV of N short texts whose scores follow a small word lexicon (so there is something to learn),
then runs `seqreg-hf train` on it in a subprocess, once with --streaming (an IterableDataset: rows are read
lazily, one pass counts bad rows and computes label statistics in constant memory) and once through the
`datasets` Arrow cache (memory-mapped). Prints peak RSS and training throughput of each.

Usage: python -m scripts.measure.scale_demo [--rows 2000000] [--max_steps 300] [--modes streaming arrow]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from scripts.common import write_short_texts

# Runs the CLI, then writes this process's own peak RSS next to the run's outputs.
CHILD = ("import json, resource, sys; from seqreg_hf.cli import main; code = main(sys.argv[2:]); "
         "json.dump({'peak_rss_kib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}, open(sys.argv[1], 'w')); "
         "sys.exit(code)")


def run(mode, train, dev, max_steps, output_dir):
    os.makedirs(output_dir, exist_ok=True)
    rss_file = os.path.join(output_dir, "peak_rss.json")
    command = [sys.executable, "-c", CHILD, rss_file, "train", "--train_file", train, "--validation_file", dev,
               "--label_columns", "score", "intensity", "--output_dir", output_dir, "--max_steps", str(max_steps),
               "--hidden_size", "64", "--per_device_train_batch_size", "64",
               # the model these figures were measured with: one static 1-layer BiGRU-64 over MiniLM's input table
               "--embedding_type", "static", "--rnn_type", "gru", "--num_layers", "1", "--pooling", "mean_max",
               "--ensemble_size", "1", "--eval_strategy", "no",
               "--save_strategy", "no", "--load_best_model_at_end", "false", "--report_to", "none",
               "--disable_tqdm", "true", "--plots", "false"]
    if mode == "streaming":
        command += ["--streaming", "--train_sampling_strategy", "random"]
    env = dict(os.environ, HF_DATASETS_CACHE=os.path.join(output_dir, "cache"))
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    peak = json.load(open(rss_file, encoding="utf-8"))["peak_rss_kib"]
    metrics = json.load(open(os.path.join(output_dir, "metrics.json"), encoding="utf-8"))
    return {"mode": mode, "wall_seconds": round(seconds, 1),
            "train_samples_per_second": round(metrics["train"]["train_samples_per_second"], 1),
            "train_seconds": round(metrics["train"]["train_runtime"], 1),
            "peak_rss_mib": round(peak / 1024),
            # the bad-row scans of every split (vectorized) against tokenizing them (datasets.map, batched)
            "check_seconds": round(sum(r.get("seconds", 0.0) for r in metrics["bad_rows"].values()), 2),
            "tokenize_seconds": metrics["tokenize_seconds"],
            "dev_pearson_score": round(metrics["validation"]["eval_pearson_score"], 3)}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--max_steps", type=int, default=300)
    parser.add_argument("--modes", nargs="+", default=["streaming", "arrow"])
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    workdir = args.workdir or tempfile.mkdtemp(prefix="seqreg_scale_")
    os.makedirs(workdir, exist_ok=True)
    train, dev = os.path.join(workdir, "train.csv"), os.path.join(workdir, "dev.csv")
    if not os.path.exists(train):
        start = time.perf_counter()
        write_short_texts(train, args.rows)
        write_short_texts(dev, 2000, seed=1)
        print(f"generated {args.rows} rows ({os.path.getsize(train) / 2**20:.0f} MiB) in "
              f"{time.perf_counter() - start:.0f} s", file=sys.stderr)
    results = [run(mode, train, dev, args.max_steps, os.path.join(workdir, mode)) for mode in args.modes]
    print(json.dumps({"rows": args.rows, "file_mib": round(os.path.getsize(train) / 2**20), "results": results},
                     indent=2))


if __name__ == "__main__":
    main()
