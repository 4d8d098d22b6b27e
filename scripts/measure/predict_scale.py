"""Prediction at scale: N short texts through `seqreg-hf predict` in 1 and in 2 processes (torchrun), with the rows
that came out, rows/s and the peak RSS of the largest process, measured in one run.

    python -m scripts.measure.predict_scale [--rows 2000000] [--model_dir DIR]

Without --model_dir a small model (one unidirectional 1-layer GRU-32 over the frozen MiniLM matrix, static) is built with
`seqreg-hf init`: the figure is about reading, tokenizing, chunking and writing, which the model does not change.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

from scripts.common import REPO, write_short_texts


def run(command, env):
    """(seconds, peak RSS in KiB of the largest process of this command), the RSS by GNU time (wait4's rusage
    covers the command's own children, e.g. torchrun's ranks)."""
    start = time.perf_counter()
    result = subprocess.run(["/usr/bin/time", "-f", "MAXRSS %M", *command], env=env, cwd=REPO, capture_output=True,
                            text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    peak = int([line for line in result.stderr.splitlines() if line.startswith("MAXRSS ")][-1].split()[1])
    return seconds, peak


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--model_dir", default=None)
    parser.add_argument("--chunk_rows", type=int, default=100_000)
    args = parser.parse_args(argv)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    with tempfile.TemporaryDirectory() as folder:
        model = args.model_dir or os.path.join(folder, "model")
        if not args.model_dir:
            subprocess.run([sys.executable, "-m", "seqreg_hf.cli", "init", "--output_dir", model, "--rnn_type", "gru",
                            "--hidden_size", "32", "--bidirectional", "false", "--ensemble_size", "1",
                            "--num_layers", "1", "--pooling", "mean_max", "--embedding_type", "static",
                            "--label_columns", "score"], env=env, cwd=REPO, check=True, capture_output=True)
        texts = os.path.join(folder, "texts.csv")
        write_short_texts(texts, args.rows)
        size = os.path.getsize(texts)
        common = ["-m", "seqreg_hf.cli", "predict", "--model_name_or_path", model, "--test_file", texts,
                  "--chunk_rows", str(args.chunk_rows), "--disable_tqdm", "true", "--std", "false"]
        results = {}
        for processes in (1, 2):
            out = os.path.join(folder, f"out{processes}.csv")
            launcher = [sys.executable] if processes == 1 else [
                sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
            threads = {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // processes))}
            seconds, peak = run([*launcher, *common, "--output_file", out], {**env, **threads})
            with open(out, "rb") as handle:
                rows = sum(1 for _ in handle) - 1  # header excluded; texts hold no newlines
            results[processes] = (rows, seconds, peak)
            print(f"{processes} process(es): {rows:,} rows out in {seconds:.1f} s = {rows / seconds:,.0f} rows/s; "
                  f"peak RSS of the largest process {peak / 1024:.0f} MiB", flush=True)
        print(f"input {args.rows:,} texts, {size / 1e6:.0f} MB; chunks of {args.chunk_rows:,}; "
              f"2 processes / 1: x{results[1][1] / results[2][1]:.2f} rows/s; {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
