"""Padded batches in input order against the bare kernel on length-sorted batches of the same sentences.

What a user's `pipeline(..., batch_size=256)`, DataLoader or `model(**tokenizer(texts, padding=True))` sends: batches
in input order, mixed lengths, often half padding. One run, on the same sentences (the first 2,000 of EmoBank's
train split, tokenized with the model's tokenizer), the textbook BiLSTM-256 (one network, read at its final states),
batches of 256 under `torch.no_grad`:

  kernel_sorted    the bare `nn.LSTM` forward on length-sorted batches (the embedding lookup is not timed)
  old_in_order     `model(**batch)` on batches in input order, every row over the whole padded length
                   (SeqRegEncoder.group_by_length = False: the path before length groups)
  new_in_order     the same batches with length groups (the default)
  new_sorted       the default path on the sorted batches (for reference)

Training: forward + backward + AdamW step on Trainer-like length-grouped batches of 32 (transformers'
LengthGroupedSampler, as `group_by_length` builds them), old path against new, and how many batches the new path
split. Every figure is the median of several repeats, taken in interleaved rounds; ratios beside them.

Usage: python -m scripts.measure.padded_batches [--repeats 5] [--sentences 2000] [--threads N] [--data FILE]
About 2 minutes on an idle 2-core CPU (5.5 on a busy one).
"""

import argparse
import json
import statistics
import sys
import time

import torch
from torch import nn

from scripts.common import EMOBANK_CSV
from scripts.measure.benchmark import FIXED, load_sentences, padded
from seqreg_hf.modeling_seqreg import SeqRegEncoder

BATCH, TRAIN_BATCH, TRAIN_STEPS = 256, 32, 40


def chunks(rows, size):
    return [rows[i : i + size] for i in range(0, len(rows), size)]


def seconds(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def with_groups(on, fn):
    """Run fn with the encoder's length groups switched on or off (the class attribute the model reads)."""
    SeqRegEncoder.group_by_length = on
    try:
        return fn()
    finally:
        SeqRegEncoder.group_by_length = True


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=EMOBANK_CSV)
    parser.add_argument("--sentences", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers.trainer_pt_utils import LengthGroupedSampler
    from transformers.utils import logging as hf_logging

    from seqreg_hf.embeddings import load_embeddings
    from seqreg_hf.logs import configure
    from seqreg_hf.model_dir import build_model

    configure("error", disable_tqdm=True)
    hf_logging.set_verbosity_error()
    torch.manual_seed(0)
    source = load_embeddings(None)
    pad = source.pad_token_id
    embedding = torch.from_numpy(source.matrix)
    _, ids, labels = load_sentences(args.data, source.tokenizer, args.sentences)
    lengths = [len(x) for x in ids]
    in_order = [padded(ids, rows, pad) for rows in chunks(list(range(len(ids))), BATCH)]
    by_length = sorted(range(len(ids)), key=lambda r: lengths[r])
    in_sorted = [padded(ids, rows, pad) for rows in chunks(by_length, BATCH)]
    padding = 1 - sum(lengths) / sum(b.numel() for b in in_order)

    model = build_model(source, num_labels=3, **FIXED).eval()
    bare = nn.LSTM(embedding.size(1), 256, bidirectional=True, batch_first=True).eval()
    bare_inputs = [embedding[b] for b in in_sorted]

    def kernel():
        for x in bare_inputs:
            bare(x)

    def model_on(batches):
        def run():
            for batch in batches:
                model(input_ids=batch, attention_mask=(batch != pad).long())
        return run

    runs = {"kernel_sorted": kernel,
            "old_in_order": lambda: with_groups(False, model_on(in_order)),
            "new_in_order": lambda: with_groups(True, model_on(in_order)),
            "new_sorted": lambda: with_groups(True, model_on(in_sorted))}
    times = {name: [] for name in runs}
    with torch.no_grad():
        for run in runs.values():  # warm-up
            run()
        for _ in range(args.repeats):
            for name, run in runs.items():
                times[name].append(seconds(run))
    report = {"torch": torch.__version__, "threads": torch.get_num_threads(), "sentences": len(ids),
              "batch": BATCH, "padding_in_order": round(padding, 3),
              "padding_sorted": round(1 - sum(lengths) / sum(b.numel() for b in in_sorted), 3)}
    for name, values in times.items():
        report[f"{name}_per_s"] = round(len(ids) / statistics.median(values), 1)
    kernel_speed = report["kernel_sorted_per_s"]
    for name in ("old_in_order", "new_in_order", "new_sorted"):
        report[f"ratio_{name}_over_kernel"] = round(report[f"{name}_per_s"] / kernel_speed, 3)

    # Training on Trainer-like length-grouped batches.
    sampler = LengthGroupedSampler(TRAIN_BATCH, lengths=lengths, generator=torch.Generator().manual_seed(0))
    train_batches = []
    for rows in chunks(list(sampler), TRAIN_BATCH)[:TRAIN_STEPS]:
        batch = padded(ids, rows, pad)
        train_batches.append((batch, (batch != pad).long(), torch.from_numpy(labels[rows])))
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    split = []
    spy = SeqRegEncoder._length_groups

    def counting(self, *a):
        groups = spy(self, *a)
        split.append(groups is not None)
        return groups

    def train():
        for input_ids, mask, y in train_batches:
            optimizer.zero_grad()
            model(input_ids=input_ids, attention_mask=mask, labels=y).loss.backward()
            optimizer.step()

    train_runs = {"train_old": lambda: with_groups(False, train), "train_new": lambda: with_groups(True, train)}
    train_times = {name: [] for name in train_runs}
    for run in train_runs.values():
        run()
    for _ in range(args.repeats):
        for name, run in train_runs.items():
            train_times[name].append(seconds(run))
    SeqRegEncoder._length_groups = counting
    with_groups(True, train)
    SeqRegEncoder._length_groups = spy
    rows = sum(len(b[0]) for b in train_batches)
    for name, values in train_times.items():
        report[f"{name}_per_s"] = round(rows / statistics.median(values), 1)
    report["ratio_train_new_over_old"] = round(report["train_new_per_s"] / report["train_old_per_s"], 3)
    report["train_batches_split"] = f"{sum(split)} of {len(split)}"
    report["train_padding"] = round(1 - sum(int(m.sum()) for _, m, _ in train_batches)
                                    / sum(m.numel() for _, m, _ in train_batches), 3)
    print(json.dumps(report, indent=2))
    print(f"\n{len(ids)} sentences, batch {BATCH}, {report['threads']} threads, {args.repeats} repeats (medians); "
          f"padding in input order {padding:.0%}", file=sys.stderr)
    for name in ("kernel_sorted", "old_in_order", "new_in_order", "new_sorted"):
        ratio = report.get(f"ratio_{name}_over_kernel", 1.0)
        print(f"  {name:16} {report[f'{name}_per_s']:>9.1f} sentences/s   {ratio:.2f} x kernel_sorted", file=sys.stderr)
    print(f"  training (batches of {TRAIN_BATCH}, length-grouped, {report['train_batches_split']} split): old "
          f"{report['train_old_per_s']:.1f}, new {report['train_new_per_s']:.1f} sentences/s, new / old "
          f"{report['ratio_train_new_over_old']:.2f}", file=sys.stderr)


if __name__ == "__main__":
    main()
