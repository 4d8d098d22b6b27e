"""Speed benchmark on EmoBank's train split: seqreg_hf against the naive loop and the kernel bound.

Everything is measured in one run, on the same sentences, and printed as one JSON object plus a table.
Fixed model: BiLSTM, hidden 256, one layer, read at its final states, one network, no dropout, frozen 384-d MiniLM
input embeddings, 3 targets, batch 32; the static recipe (scripts/configs/emobank_static.json: SeqRegConfig's
defaults and the values the recipe sets) is a second row. For an ensemble (ensemble_size K), the loop
(a), the kernel bounds (c), (e), (g) and the FLOP counts run all K members, so every ratio compares the same model.

Every throughput divides the sentences that actually went through (counted by the collator or the predictor)
by the time, and every ratio compares with the bare kernel on the very same batches.

Training, sentences per second, batches of 32 (after 3 warm-up steps):
  (a) seed-style loop: batch size 1, plain PyTorch, same dims
  (b) through Trainer, data loading, collation and optimizer steps included:
      b_plain   a user's own script: transformers' Trainer, group_by_length, DataCollatorWithPadding
      b_cli     what `seqreg-hf train` builds: SeqRegTrainer with SeqRegTrainingArguments (group_by_length)
      b_buckets the same with --length_buckets (exact-length batches, no padding)
  (c) c_kernel_<mode>: bare dense RNN forward + backward on the same padded batches as b_<mode>
Inference:
  (d) d_padded_forward: a plain padded model(**batch), batches of 256 in input order;
      d_predictor: Predictor at batch 256 (tokenization included, exact-length batches)
  (e) e_kernel_padded / e_kernel_predictor: bare dense forward on the same batches
  (f) single-sentence latency through Predictor.predict, p50 / p95 (ms)
  (g) bare forward of one sentence, p50 (ms)
Also: a GEMM peak (GFLOP/s of a 2048^3 fp32 matmul), model FLOP utilization of (b) and (d), peak RSS.

Usage: python -m scripts.measure.benchmark [--quick] [--data ../shared/data/emobank.csv]
"""

import argparse
import inspect
import json
import os
import resource
import sys
import tempfile
import time

import numpy as np
import torch
from torch import nn

from scripts.common import EMOBANK_CSV, REPO, gemm_peak
from seqreg_hf import SeqRegConfig
from seqreg_hf.modeling_seqreg import RNN_CLASSES

# The textbook model, pinned in every option the recommended model (SeqRegConfig's defaults) sets otherwise, so that
# this row measures the same network whatever the defaults are.
FIXED = {"rnn_type": "lstm", "hidden_size": 256, "num_layers": 1, "bidirectional": True, "pooling": "last",
         "direction_merge": "concat", "head_dropout": 0.0, "embedding_dropout": 0.0, "word_dropout": 0.0,
         "ensemble_size": 1}
# What a recipe may set of the architecture: SeqRegConfig's own arguments (its defaults fill in the rest).
ARCHITECTURE_OPTIONS = set(inspect.signature(SeqRegConfig.__init__).parameters) - {"self", "kwargs"}


def load_sentences(path, tokenizer, limit):
    import pandas as pd

    frame = pd.read_csv(path, keep_default_na=False)
    frame = frame[(frame["split"] == "train") & (frame["text"].str.strip() != "")].head(limit)
    ids = tokenizer(frame["text"].tolist(), truncation=True, max_length=128)["input_ids"]
    labels = frame[["V", "A", "D"]].to_numpy(dtype=np.float32)
    return frame["text"].tolist(), ids, labels


def padded(ids, rows, pad_id=0):
    """(len(rows), longest) token ids, right-padded: the tensor a padded batch holds."""
    width = max(len(ids[r]) for r in rows)
    batch = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for k, r in enumerate(rows):
        batch[k, : len(ids[r])] = torch.tensor(ids[r], dtype=torch.long)
    return batch


def rnn_flops_per_token(config, input_size):
    """Forward FLOPs (2 x multiply-adds) of one token through every layer and direction of every ensemble member:
    gates x (I + H) x H, with 4 gates for an LSTM, 3 for a GRU, 1 for a plain RNN. `config` is a SeqRegConfig."""
    hidden, directions = config.hidden_size, 2 if config.bidirectional else 1
    gates = {"lstm": 4, "gru": 3, "rnn": 1}[config.rnn_type]
    flops, width = 0, input_size
    for _ in range(config.num_layers):
        flops += directions * 2 * gates * hidden * (width + hidden)
        width = hidden * directions
    return flops * config.ensemble_size


def bare_rnns(config, input_size):
    """One bare RNN per ensemble member of `config` (a SeqRegConfig): the kernel work of the same model."""
    return [RNN_CLASSES[config.rnn_type](input_size, config.hidden_size, num_layers=config.num_layers,
                                         bidirectional=config.bidirectional, batch_first=True)
            for _ in range(config.ensemble_size)]


def run_all(rnns, x):
    return [rnn(x)[0] for rnn in rnns]


def naive_loop(ids, labels, embedding, config, count):
    """(a): what the seed code does, one sentence per step (with the correct final states, not output[-1])."""
    torch.manual_seed(0)
    rnns = bare_rnns(config, embedding.size(1))
    directions = 2 if config.bidirectional else 1
    heads = [nn.Linear(directions * config.hidden_size, 3) for _ in rnns]
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


def kernel_train(embedding, config, batches):
    """(c): bare dense RNN forward + backward on the same padded batches (the kernel bound: no optimizer, no head,
    and a dense run over padding, which is inexact but what the kernel costs)."""
    rnns = bare_rnns(config, embedding.size(1))
    inputs = [embedding[b] for b in batches]
    sum(o.sum() for o in run_all(rnns, inputs[0])).backward()  # warm-up
    start = time.perf_counter()
    for x in inputs:
        for rnn in rnns:
            rnn.zero_grad()
        sum(o.sum() for o in run_all(rnns, x)).backward()
    return sum(len(b) for b in batches) / (time.perf_counter() - start)


@torch.inference_mode()
def kernel_infer(embedding, config, batches):
    """(e): bare dense RNN forward on the same padded batches."""
    rnns = bare_rnns(config, embedding.size(1))
    inputs = [embedding[b] for b in batches]
    run_all(rnns, inputs[0])
    start = time.perf_counter()
    for x in inputs:
        run_all(rnns, x)
    return sum(len(b) for b in batches) / (time.perf_counter() - start)


class CountingCollator:
    """DataCollatorWithPadding that counts the rows it collates and keeps each padded batch, so throughput divides
    the sentences that actually went through by the time, and the kernel bound replays the very same batches."""

    def __init__(self, tokenizer):
        from transformers import DataCollatorWithPadding

        self.inner = DataCollatorWithPadding(tokenizer)
        self.batches = []

    def __call__(self, features):
        batch = self.inner(features)
        self.batches.append(batch["input_ids"].clone())
        return batch

    @property
    def rows(self):
        return sum(len(b) for b in self.batches)


class StepClock:
    """A TrainerCallback that notes when each optimizer step ends (the first steps are warm-up)."""

    def __init__(self):
        from transformers import TrainerCallback

        clock = self

        class Callback(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                clock.ends.append(time.perf_counter())

        self.ends, self.callback = [], Callback()


WARMUP_STEPS = 3


def trainer_train(source, ids, labels, overrides, steps, mode):
    """(b) training through Trainer with batches of 32, counting what ran. `overrides` are architecture options
    laid over SeqRegConfig's defaults, as `seqreg-hf train` flags are. `mode`:
    - "plain": a user's own script: transformers' Trainer and TrainingArguments(train_sampling_strategy=
      "group_by_length") with DataCollatorWithPadding over SeqRegForSequenceRegression;
    - "cli": what `seqreg-hf train` builds (SeqRegTrainer, SeqRegTrainingArguments: group_by_length);
    - "buckets": the same with --length_buckets (batches of exactly one length).
    Returns (sentences/s after the warm-up steps, the model, the collator with every batch it built)."""
    from datasets import Dataset
    from transformers import Trainer, TrainingArguments

    from seqreg_hf.arguments import SeqRegTrainingArguments
    from seqreg_hf.model_dir import build_model
    from seqreg_hf.trainer import SeqRegTrainer

    model = build_model(source, num_labels=3, **overrides)
    data = Dataset.from_dict({"input_ids": ids, "attention_mask": [[1] * len(x) for x in ids],
                              "labels": labels.tolist(), "length": [len(x) for x in ids]})
    collator, clock = CountingCollator(source.tokenizer), StepClock()
    seen = []  # rows of every training forward pass, counted at the model itself
    hook = model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(len(kwargs["input_ids"])),
                                           with_kwargs=True)
    with tempfile.TemporaryDirectory() as folder:
        common = dict(output_dir=folder, per_device_train_batch_size=32, max_steps=steps, learning_rate=1e-3,
                      report_to="none", save_strategy="no", eval_strategy="no", logging_strategy="no",
                      disable_tqdm=True, dataloader_pin_memory=False, seed=0, load_best_model_at_end=False)
        if mode == "plain":
            trainer = Trainer(model=model, args=TrainingArguments(train_sampling_strategy="group_by_length", **common),
                              train_dataset=data, data_collator=collator, callbacks=[clock.callback])
        else:
            trainer = SeqRegTrainer(model=model, args=SeqRegTrainingArguments(**common), train_dataset=data,
                                    data_collator=collator, length_buckets=mode == "buckets",
                                    callbacks=[clock.callback])
        trainer.train()
    hook.remove()
    # The data loader collates one batch ahead, so the collator may hold one batch that never trained.
    del collator.batches[steps:]
    assert len(clock.ends) == steps == len(seen) and seen == [len(b) for b in collator.batches], (len(seen), steps)
    timed_rows = sum(seen[WARMUP_STEPS:])
    return timed_rows / (clock.ends[-1] - clock.ends[WARMUP_STEPS - 1]), model, collator


def percentile(values, q):
    return float(np.percentile(np.asarray(values) * 1000, q))


@torch.inference_mode()
def padded_forward(model, batches, pad_id):
    """(d) a plain padded `model(**batch)`: batches of 256 in input order, padded to their longest."""
    model.eval()
    model(input_ids=batches[0], attention_mask=(batches[0] != pad_id).long())
    start = time.perf_counter()
    for ids in batches:
        model(input_ids=ids, attention_mask=(ids != pad_id).long())
    return sum(len(b) for b in batches) / (time.perf_counter() - start)


def row(name, overrides, source, texts, ids, labels, embedding, quick):
    """One column of the report: the model SeqRegConfig(**overrides) through (a) to (g)."""
    from seqreg_hf.data import exact_length_batches
    from seqreg_hf.prediction import Predictor

    config = SeqRegConfig(**overrides)

    infer_count = 512 if quick else len(ids)
    naive_count = 64 if quick else 600
    steps = 16 if quick else 120
    singles = 30 if quick else 200
    pad = source.pad_token_id
    result = {"config": name}
    result["a_naive_loop"] = naive_loop(ids, labels, embedding, config, naive_count)
    trained = {}
    for mode in ("plain", "cli", "buckets"):
        speed, model, collator = trainer_train(source, ids, labels, overrides, steps, mode)
        result[f"b_{mode}"] = speed
        result[f"c_kernel_{mode}"] = kernel_train(embedding, config, collator.batches[WARMUP_STEPS:])
        result[f"b_{mode}_rows"] = collator.rows
        trained[mode] = model
    model = trained["cli"]
    in_order = [padded(ids, list(range(i, min(i + 256, infer_count))), pad) for i in range(0, infer_count, 256)]
    result["d_padded_forward"] = padded_forward(model, in_order, pad)
    result["e_kernel_padded"] = kernel_infer(embedding, config, in_order)
    predictor = Predictor(model, source.tokenizer)
    predictor.predict(texts[:256])
    start = time.perf_counter()
    predictor.predict(texts[:infer_count], batch_size=256)
    result["d_predictor"] = predictor.report["rows"] / (time.perf_counter() - start)
    exact = [torch.tensor([ids[r] for r in rows]) for rows in exact_length_batches([len(x) for x in ids[:infer_count]],
                                                                                   256)]
    result["e_kernel_predictor"] = kernel_infer(embedding, config, exact)
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
    mean_tokens = float(np.mean([len(x) for x in ids[:infer_count]]))
    flops = rnn_flops_per_token(config, embedding.size(1)) * mean_tokens
    result["b_cli_gflops"] = 3 * flops * result["b_cli"] / 1e9  # forward + backward ~ 3 x forward
    result["d_predictor_gflops"] = flops * result["d_predictor"] / 1e9
    for mode in ("plain", "cli", "buckets"):
        result[f"ratio_b_{mode}_over_kernel"] = result[f"b_{mode}"] / result[f"c_kernel_{mode}"]
    result["ratio_b_cli_over_a"] = result["b_cli"] / result["a_naive_loop"]
    result["ratio_d_padded_over_kernel"] = result["d_padded_forward"] / result["e_kernel_padded"]
    result["ratio_d_predictor_over_kernel"] = result["d_predictor"] / result["e_kernel_predictor"]
    result["ratio_f_over_g"] = result["f_single_p50_ms"] / result["g_bare_single_p50_ms"]
    result["mean_tokens"] = mean_tokens
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small counts: finishes in under a minute")
    parser.add_argument("--data", default=EMOBANK_CSV)
    parser.add_argument("--recipe", default=os.path.join(REPO, "scripts", "configs", "emobank_static.json"))
    args = parser.parse_args()
    from transformers.utils import logging as hf_logging

    from seqreg_hf.embeddings import load_embeddings
    from seqreg_hf.logs import configure

    configure("error", disable_tqdm=True)
    hf_logging.set_verbosity_error()
    torch.manual_seed(0)
    source = load_embeddings(None)
    embedding = torch.from_numpy(source.matrix)
    texts, ids, labels = load_sentences(args.data, source.tokenizer, 1024 if args.quick else 100_000)
    peak, peaks = gemm_peak(1024 if args.quick else 2048)
    with open(args.recipe, encoding="utf-8") as handle:
        recipe = json.load(handle)
    recipe_config = {k: v for k, v in recipe.items() if k in ARCHITECTURE_OPTIONS}
    report = {
        "torch": torch.__version__, "threads": torch.get_num_threads(), "sentences": len(ids), "quick": args.quick,
        "gemm_peak_gflops": None,
        "rows": [row("fixed BiLSTM-256", FIXED, source, texts, ids, labels, embedding, args.quick),
                 row("recipe", recipe_config, source, texts, ids, labels, embedding, args.quick)],
    }
    report["gemm_peak_gflops"], report["gemm_peaks"] = round(peak, 1), peaks
    for r in report["rows"]:
        r["b_cli_mfu"] = round(r["b_cli_gflops"] / report["gemm_peak_gflops"], 4)
        r["d_predictor_mfu"] = round(r["d_predictor_gflops"] / report["gemm_peak_gflops"], 4)
    report["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(report, indent=2))
    columns = [k for k in report["rows"][0] if k not in ("config",)]
    print(f"\nGEMM peak {report['gemm_peak_gflops']} GFLOP/s, {report['threads']} threads, peak RSS "
          f"{report['peak_rss_mib']} MiB", file=sys.stderr)
    print(f"{'':22}" + "".join(f"{r['config']:>20}" for r in report["rows"]), file=sys.stderr)
    for column in columns:
        print(f"{column:22}" + "".join(f"{r[column]:>20}" for r in report["rows"]), file=sys.stderr)


if __name__ == "__main__":
    main()
