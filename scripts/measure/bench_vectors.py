"""Benchmark: read a GloVe-sized vector file (400,000 words x 300 dims, text, no header).

Each reader runs in a fresh subprocess so that its peak RSS is its own. Printed side by side in one run:
seqreg_hf's reader, gensim's KeyedVectors.load_word2vec_format (the field's reference), and the whole
`load_embeddings` (reader + [PAD]/[UNK] rows + tokenizer). Peak RSS is divided by the matrix's own size.

Usage: python -m scripts.measure.bench_vectors [--words 400000] [--dim 300] [--file /tmp/glove_bench.txt] [--repeats 1]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

CHILD = r"""
import json, resource, sys, time
reader, path = sys.argv[1], sys.argv[2]
import numpy as np
if reader == "seqreg_hf":
    from seqreg_hf.vectors import load_vectors
elif reader == "load_embeddings":
    from seqreg_hf.embeddings import load_embeddings
else:
    from gensim.models import KeyedVectors
baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
start = time.perf_counter()
if reader == "seqreg_hf":
    shape = load_vectors(path, format="glove", progress=False).vectors.shape
elif reader == "load_embeddings":
    shape = load_embeddings(path, format="glove", progress=False).matrix.shape
else:
    shape = KeyedVectors.load_word2vec_format(path, binary=False, no_header=True).vectors.shape
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"seconds": seconds, "peak_rss": peak, "baseline_rss": baseline, "shape": list(shape)}))
"""


def generate(path, words, dim, seed=0):
    """A GloVe-style text file: `word v1 ... vdim`, six decimals, no header."""
    rng = np.random.default_rng(seed)
    with open(path, "w", encoding="utf-8") as handle:
        for start in range(0, words, 10_000):
            block = rng.normal(0, 0.4, size=(min(10_000, words - start), dim)).astype(np.float32)
            lines = (f"w{start + i} " + " ".join(map("{:.6f}".format, row)) for i, row in enumerate(block.tolist()))
            handle.write("\n".join(lines) + "\n")


def measure(reader, path):
    result = subprocess.run([sys.executable, "-c", CHILD, reader, path], capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--words", type=int, default=400_000)
    parser.add_argument("--dim", type=int, default=300)
    parser.add_argument("--file", default=None, help="reuse or create this file (default: in the temp folder)")
    parser.add_argument("--repeats", type=int, default=1, help="runs per reader; the median is reported")
    parser.add_argument("--readers", nargs="+", default=["seqreg_hf", "gensim", "load_embeddings"])
    args = parser.parse_args()
    path = args.file or os.path.join(tempfile.gettempdir(), f"glove_bench_{args.words}x{args.dim}.txt")
    if not os.path.exists(path):
        start = time.perf_counter()
        generate(path, args.words, args.dim)
        print(f"generated {path} ({os.path.getsize(path) / 2**20:.0f} MiB) in {time.perf_counter() - start:.0f} s",
              file=sys.stderr)
    matrix_bytes = args.words * args.dim * 4
    rows = {}
    for reader in args.readers:
        runs = [measure(reader, path) for _ in range(args.repeats)]
        seconds = statistics.median(r["seconds"] for r in runs)
        peak = max(r["peak_rss"] for r in runs)
        rows[reader] = {"seconds": round(seconds, 2), "peak_rss_mib": round(peak / 2**20),
                        "peak_rss_over_matrix": round(peak / matrix_bytes, 2),
                        "import_baseline_rss_mib": round(runs[0]["baseline_rss"] / 2**20),
                        "words_per_second": round(args.words / seconds)}
    report = {"file": path, "file_mib": round(os.path.getsize(path) / 2**20), "words": args.words, "dim": args.dim,
              "matrix_mib": round(matrix_bytes / 2**20), "repeats": args.repeats, "readers": rows}
    print(json.dumps(report, indent=2))
    print(f"\n{'reader':<16}{'seconds':>9}{'peak RSS MiB':>14}{'RSS / matrix':>14}{'words/s':>10}")
    for reader, row in rows.items():
        print(f"{reader:<16}{row['seconds']:>9}{row['peak_rss_mib']:>14}{row['peak_rss_over_matrix']:>14}"
              f"{row['words_per_second']:>10}")


if __name__ == "__main__":
    main()
