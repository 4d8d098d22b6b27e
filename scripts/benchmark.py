"""Speed benchmark on EmoBank's train split: seqreg_hf against the naive loop and the kernel bound.

Everything is measured in one run, on the same sentences, and printed as one JSON object plus a table.
Fixed model: BiLSTM, hidden 256, one layer, frozen 384-d MiniLM input embeddings, 3 targets, batch 32; the
recipe's own config (scripts/configs/emobank.json) is a second row. For an ensemble (ensemble_size K), the loop
(a), the kernel bounds (c), (e), (g) and the FLOP counts run all K members, so every ratio compares the same model.

Training, sentences per second:
  (a) seed-style loop: batch size 1, plain PyTorch, same dims
  (b) seqreg_hf through Trainer (data loading, collation and optimizer steps included), with exact-length
      batches (--length_buckets); (b2) the same with transformers' group_by_length sampling
  (c) kernel bound: bare dense RNN forward + backward, batches of 32 of near-equal length
Inference:
  (d) seqreg_hf batched prediction (Predictor, tokenization included), batch 256
  (e) kernel bound: bare dense forward, batches of 256 of near-equal length
  (f) single-sentence latency through Predictor.predict, p50 / p95 (ms)
  (g) bare forward of one sentence, p50 (ms)
Also: a GEMM peak (GFLOP/s of a 2048^3 fp32 matmul), model FLOP utilization of (b) and (d), peak RSS.

Usage: python scripts/benchmark.py [--quick] [--data ../shared/data/emobank.csv]
"""

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time

import numpy as np
import torch
from torch import nn

from seqreg_hf.modeling_seqreg import RNN_CLASSES

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXED = {"rnn_type": "lstm", "hidden_size": 256, "num_layers": 1, "bidirectional": True, "pooling": "last",
         "direction_merge": "concat", "head_dropout": 0.0}


def load_sentences(path, tokenizer, limit):
    import pandas as pd

    frame = pd.read_csv(path, keep_default_na=False)
    frame = frame[(frame["split"] == "train") & (frame["text"].str.strip() != "")].head(limit)
    ids = tokenizer(frame["text"].tolist(), truncation=True, max_length=128)["input_ids"]
    labels = frame[["V", "A", "D"]].to_numpy(dtype=np.float32)
    return frame["text"].tolist(), ids, labels


def length_batches(ids, size):
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    return [order[i : i + size] for i in range(0, len(order), size)]


def dense(ids, rows, embedding):
    width = max(len(ids[r]) for r in rows)
    batch = torch.zeros(len(rows), width, dtype=torch.long)
    for k, r in enumerate(rows):
        batch[k, : len(ids[r])] = torch.tensor(ids[r])
    return embedding[batch]  # (batch, width, dim); near-equal lengths waste little


def rnn_flops_per_token(config, input_size):
    """Forward FLOPs (2 x multiply-adds) of one token through every layer and direction of every ensemble member:
    gates x (I + H) x H, with 4 gates for an LSTM, 3 for a GRU, 1 for a plain RNN."""
    hidden, directions = config["hidden_size"], 2 if config["bidirectional"] else 1
    gates = {"lstm": 4, "gru": 3, "rnn": 1}[config.get("rnn_type", "lstm")]
    flops, width = 0, input_size
    for _ in range(config["num_layers"]):
        flops += directions * 2 * gates * hidden * (width + hidden)
        width = hidden * directions
    return flops * config.get("ensemble_size", 1)


def gemm_peak(size=2048, repeats=7):
    """GFLOP/s of a size^3 fp32 matmul: the better of torch.mm (MKL/OpenBLAS) and a oneDNN linear layer, since
    the RNN kernels run on oneDNN, which on some CPUs (MKL on AMD) is much faster than torch.mm."""
    import torch.utils.mkldnn as mkldnn

    def median_seconds(fn):
        fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    a, b = torch.randn(size, size), torch.randn(size, size)
    flops = 2 * size**3
    peaks = {"torch_mm": flops / median_seconds(lambda: torch.mm(a, b)) / 1e9}
    if torch.backends.mkldnn.is_available():
        linear = mkldnn.to_mkldnn(nn.Linear(size, size, bias=False))
        x = a.to_mkldnn()
        with torch.no_grad():
            peaks["onednn_linear"] = flops / median_seconds(lambda: linear(x)) / 1e9
    return max(peaks.values()), {k: round(v, 1) for k, v in peaks.items()}


def bare_rnns(config, input_size):
    """One bare RNN per ensemble member: the kernel work of the same model."""
    return [RNN_CLASSES[config["rnn_type"]](input_size, config["hidden_size"], num_layers=config["num_layers"],
                                      bidirectional=config["bidirectional"], batch_first=True)
            for _ in range(config.get("ensemble_size", 1))]


def run_all(rnns, x):
    return [rnn(x)[0] for rnn in rnns]


def naive_loop(ids, labels, embedding, config, count):
    """(a): what the seed code does, one sentence per step (with the correct final states, not output[-1])."""
    torch.manual_seed(0)
    rnns = bare_rnns(config, embedding.size(1))
    directions = 2 if config["bidirectional"] else 1
    heads = [nn.Linear(directions * config["hidden_size"], 3) for _ in rnns]
    parameters = [p for module in rnns + heads for p in module.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=1e-3)
    start = time.perf_counter()
    for i in range(count):
        optimizer.zero_grad()
        x = embedding[torch.tensor(ids[i])].unsqueeze(0)
        loss = 0.0
        for rnn, head in zip(rnns, heads):  # an ensemble trains each member on the sentence
            _, state = rnn(x)
            h_n = state[0] if isinstance(state, tuple) else state
            prediction = head(torch.cat(list(h_n[-directions:]), dim=-1))
            loss = loss + nn.functional.mse_loss(prediction, torch.from_numpy(labels[i : i + 1]))
        loss.backward()
        optimizer.step()
    return count / (time.perf_counter() - start)


def kernel_train(ids, embedding, config, batches):
    """(c): bare dense RNN forward + backward, no optimizer, no padding waste."""
    rnns = bare_rnns(config, embedding.size(1))
    inputs = [dense(ids, rows, embedding) for rows in batches]
    sum(o.sum() for o in run_all(rnns, inputs[0])).backward()  # warm-up
    start = time.perf_counter()
    for x in inputs:
        for rnn in rnns:
            rnn.zero_grad()
        sum(o.sum() for o in run_all(rnns, x)).backward()
    return sum(len(rows) for rows in batches) / (time.perf_counter() - start)


@torch.inference_mode()
def kernel_infer(ids, embedding, config, batches):
    """(e): bare dense RNN forward."""
    rnns = bare_rnns(config, embedding.size(1))
    inputs = [dense(ids, rows, embedding) for rows in batches]
    run_all(rnns, inputs[0])
    start = time.perf_counter()
    for x in inputs:
        run_all(rnns, x)
    return sum(len(rows) for rows in batches) / (time.perf_counter() - start)


def trainer_train(source, texts_ids, labels, config, steps, length_buckets=True):
    """(b): seqreg_hf through Trainer, batches of 32: exact-length buckets (no padding, dense kernel), or
    transformers' group_by_length (near-equal lengths, packed sequences)."""
    from datasets import Dataset
    from transformers import DataCollatorWithPadding, TrainingArguments

    from seqreg_hf.builder import build_model
    from seqreg_hf.trainer import SeqRegTrainer

    model = build_model(source, num_labels=3, **config)
    data = Dataset.from_dict({"input_ids": texts_ids, "attention_mask": [[1] * len(x) for x in texts_ids],
                              "labels": labels.tolist(), "length": [len(x) for x in texts_ids]})
    with tempfile.TemporaryDirectory() as folder:
        args = TrainingArguments(folder, per_device_train_batch_size=32, max_steps=steps, learning_rate=1e-3,
                                 train_sampling_strategy="group_by_length", report_to="none", save_strategy="no",
                                 logging_strategy="no", disable_tqdm=True, dataloader_pin_memory=False, seed=0)
        trainer = SeqRegTrainer(model=model, args=args, train_dataset=data, length_buckets=length_buckets,
                                data_collator=DataCollatorWithPadding(source.tokenizer))
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    return steps * 32 / seconds, model


def percentile(values, q):
    return float(np.percentile(np.asarray(values) * 1000, q))


def row(name, config, source, texts, ids, labels, embedding, quick):
    from seqreg_hf.prediction import Predictor

    train_count = 512 if quick else len(ids)
    naive_count = 64 if quick else 600
    steps = 16 if quick else 120
    singles = 30 if quick else 200
    result = {"config": name}
    result["a_naive_loop"] = naive_loop(ids, labels, embedding, config, naive_count)
    result["b_trainer"], model = trainer_train(source, ids[: steps * 32], labels[: steps * 32], config, steps)
    result["b2_trainer_group_by_length"], _ = trainer_train(source, ids[: steps * 32], labels[: steps * 32], config,
                                                           steps, length_buckets=False)
    result["c_kernel_train"] = kernel_train(ids, embedding, config, length_batches(ids[:train_count], 32))
    predictor = Predictor(model, source.tokenizer)
    predictor.predict(texts[:256])
    start = time.perf_counter()
    predictor.predict(texts[:train_count], batch_size=256)
    result["d_predict_batched"] = train_count / (time.perf_counter() - start)
    result["e_kernel_infer"] = kernel_infer(ids, embedding, config, length_batches(ids[:train_count], 256))
    latencies, bare = [], []
    rnns = bare_rnns(config, embedding.size(1))
    for i in range(singles):
        start = time.perf_counter()
        predictor.predict([texts[i]])
        latencies.append(time.perf_counter() - start)
        x = embedding[torch.tensor(ids[i])].unsqueeze(0)
        with torch.inference_mode():
            start = time.perf_counter()
            run_all(rnns, x)
            bare.append(time.perf_counter() - start)
    result["f_single_p50_ms"], result["f_single_p95_ms"] = percentile(latencies, 50), percentile(latencies, 95)
    result["g_bare_single_p50_ms"] = percentile(bare, 50)
    mean_tokens = float(np.mean([len(x) for x in ids[:train_count]]))
    flops = rnn_flops_per_token(config, embedding.size(1)) * mean_tokens
    result["b_gflops"] = 3 * flops * result["b_trainer"] / 1e9  # forward + backward ~ 3 x forward
    result["d_gflops"] = flops * result["d_predict_batched"] / 1e9
    result["ratio_b_over_a"] = result["b_trainer"] / result["a_naive_loop"]
    result["ratio_b_over_c"] = result["b_trainer"] / result["c_kernel_train"]
    result["ratio_c_over_a"] = result["c_kernel_train"] / result["a_naive_loop"]
    result["ratio_d_over_e"] = result["d_predict_batched"] / result["e_kernel_infer"]
    result["ratio_f_over_g"] = result["f_single_p50_ms"] / result["g_bare_single_p50_ms"]
    result["mean_tokens"] = mean_tokens
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small counts: finishes in under a minute")
    parser.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data", "emobank.csv"))
    parser.add_argument("--recipe", default=os.path.join(REPO, "scripts", "configs", "emobank.json"))
    args = parser.parse_args()
    from transformers.utils import logging as hf_logging

    from seqreg_hf.arguments import ArchitectureArguments
    from seqreg_hf.embeddings import load_embeddings

    hf_logging.set_verbosity_error()
    torch.manual_seed(0)
    source = load_embeddings(None)
    embedding = torch.from_numpy(source.matrix)
    texts, ids, labels = load_sentences(args.data, source.tokenizer, 1024 if args.quick else 100_000)
    peak, peaks = gemm_peak(1024 if args.quick else 2048)
    with open(args.recipe, encoding="utf-8") as handle:
        recipe = json.load(handle)
    recipe_config = {k: v for k, v in recipe.items() if k in ArchitectureArguments.__dataclass_fields__}
    report = {
        "torch": torch.__version__, "threads": torch.get_num_threads(), "sentences": len(ids), "quick": args.quick,
        "gemm_peak_gflops": None,
        "rows": [row("fixed BiLSTM-256", FIXED, source, texts, ids, labels, embedding, args.quick),
                 row("recipe", recipe_config, source, texts, ids, labels, embedding, args.quick)],
    }
    report["gemm_peak_gflops"], report["gemm_peaks"] = round(peak, 1), peaks
    for r in report["rows"]:
        r["b_mfu"] = round(r["b_gflops"] / report["gemm_peak_gflops"], 4)
        r["d_mfu"] = round(r["d_gflops"] / report["gemm_peak_gflops"], 4)
    report["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(report, indent=2))
    columns = ["a_naive_loop", "b_trainer", "b2_trainer_group_by_length", "c_kernel_train", "d_predict_batched",
               "e_kernel_infer",
               "f_single_p50_ms", "f_single_p95_ms", "g_bare_single_p50_ms", "ratio_b_over_a", "ratio_b_over_c",
               "ratio_d_over_e", "ratio_f_over_g", "b_mfu", "d_mfu"]
    print(f"\nGEMM peak {report['gemm_peak_gflops']} GFLOP/s, {report['threads']} threads, peak RSS "
          f"{report['peak_rss_mib']} MiB", file=sys.stderr)
    print(f"{'':22}" + "".join(f"{r['config']:>20}" for r in report["rows"]), file=sys.stderr)
    for column in columns:
        print(f"{column:22}" + "".join(f"{r[column]:>20}" for r in report["rows"]), file=sys.stderr)


if __name__ == "__main__":
    main()
