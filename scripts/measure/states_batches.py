"""The contextual states phase of `seqreg-hf train`: MiniLM-L6 over EmoBank train sentences in split order (64 rows a
batch, as the cache ran before) against length-sorted batches (128 rows, as `cache_contextual_states` runs now),
both under torch.inference_mode, in one run, alternating, medians of the repeats.

    python -m scripts.measure.states_batches [--rows 1024] [--repeats 3]

Prints padded tokens / real tokens of each way, seconds and sentences/s, and the ratio.
"""

import argparse
import json
import statistics
import time

import pandas as pd
import torch

from scripts.common import EMOBANK_CSV
from seqreg_hf.embeddings import default_embeddings_path, load_embeddings
from seqreg_hf.model_dir import build_contextual_model


def batches_in_order(rows, size):
    return [rows[i: i + size] for i in range(0, len(rows), size)]


def batches_sorted(rows, size, chunk=2048):
    out = []
    for start in range(0, len(rows), chunk):
        block = sorted(rows[start: start + chunk], key=len)
        out += [block[i: i + size] for i in range(0, len(block), size)]
    return out


def run(embeddings, batches, pad_id):
    start = time.perf_counter()
    with torch.inference_mode():
        for rows in batches:
            width = max(len(r) for r in rows)
            ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for i, r in enumerate(rows):
                ids[i, : len(r)] = torch.as_tensor(r)
                mask[i, : len(r)] = 1
            embeddings.contextual_states(ids, mask).mean(dim=0)
    return time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    source = load_embeddings(None, progress=False)
    model = build_contextual_model(source, default_embeddings_path(), id2label={0: "V"}).eval()
    frame = pd.read_csv(EMOBANK_CSV, keep_default_na=False)
    texts = [t for t in frame[frame.split == "train"].text if t.strip()][: args.rows]
    rows = source.tokenizer(texts, truncation=True, max_length=128)["input_ids"]
    ways = {"split order, 64 a batch": batches_in_order(rows, 64), "length-sorted, 128 a batch": batches_sorted(rows, 128)}
    real = sum(len(r) for r in rows)
    seconds = {name: [] for name in ways}
    for _ in range(args.repeats):
        for name, batches in ways.items():
            seconds[name].append(run(model.base_model.embeddings, batches, source.tokenizer.pad_token_id))
    report = {"rows": len(rows), "torch_threads": torch.get_num_threads()}
    for name, batches in ways.items():
        padded = sum(max(len(r) for r in b) * len(b) for b in batches)
        median = statistics.median(seconds[name])
        report[name] = {"padded_over_real_tokens": round(padded / real, 2), "seconds": round(median, 2),
                        "sentences_per_s": round(len(rows) / median, 1)}
    names = list(ways)
    report["speedup"] = round(report[names[0]]["seconds"] / report[names[1]]["seconds"], 2)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
