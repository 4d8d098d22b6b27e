"""The contextual EmoBank recipe over several seeds, beside the static one, measured in one run.

    python -m scripts.experiments.contextual_emobank [--seeds 42 43 44] [--output_root outputs/contextual]

Each seed trains `seqreg_hf.train` with the recipe below (MiniLM-L6's 7 hidden states, their mean, read by one
BiGRU-256 with mean_max pooling, `RECIPE`: the defaults when it ran, before the EmoBank search's winner replaced
them) on EmoBank's train split, selects on dev and reports dev and test. The transformer runs once per split (the
float16 state cache); the first seed pays for it, the others reuse it. Then:
- the cost of float16 states: dev r of each run as trained (cached float16 states) against `evaluate` run live
  (float32 states through Predictor);
- sentences/s through Predictor on the test texts, contextual (transformer live) against the static recipe model
  in `outputs/emobank-static` (scripts/configs/emobank_static.json), in the same run;
- peak RSS of this process, and the size of the cache files on disk.
"""

import argparse
import json
import os
import resource
import statistics
import time

import seqreg_hf
from scripts.common import EMOBANK_CSV, REPO, gemm_peak
from seqreg_hf.evaluation import evaluate_model_dir

RECIPE_FILE = os.path.join(REPO, "scripts", "configs", "emobank.json")  # the EmoBank data and columns
# The contextual recipe this study measured (the defaults then; the search winner replaced them): one BiGRU-256,
# mean_max, over the mean of MiniLM's 7 states, 10 epochs, early stopping after 3 evaluations without progress.
RECIPE = dict(rnn_type="gru", hidden_size=256, num_layers=1, pooling="mean_max", layer_mix="mean",
              embedding_dropout=0.3, word_dropout=0.2, rnn_dropout=0.0, head_dropout=0.4, ensemble_size=1,
              learning_rate=2e-3, num_train_epochs=10, early_stopping_patience=3)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    parser.add_argument("--output_root", default=os.path.join(REPO, "outputs", "contextual"))
    parser.add_argument("--static_model", default=os.path.join(REPO, "outputs", "emobank-static"))
    parser.add_argument("--retrain", action="store_true", help="train seeds whose output_dir holds a finished run")
    args = parser.parse_args(argv)
    peak, _ = gemm_peak()
    runs = []
    for seed in args.seeds:
        out = os.path.join(args.output_root, f"seed{seed}")
        start = time.perf_counter()
        if os.path.isfile(os.path.join(out, "metrics.json")) and not args.retrain:  # a finished run: report it
            with open(os.path.join(out, "metrics.json"), encoding="utf-8") as handle:
                metrics = json.load(handle)
        else:
            metrics = seqreg_hf.train(RECIPE_FILE, **RECIPE, train_file=EMOBANK_CSV, split_column="split",
                                      output_dir=out, seed=seed, label_columns=["V", "A", "D"], disable_tqdm=True,
                                      report_to="none", overwrite_output_dir=True)  # unfinished or --retrain: anew
        seconds = time.perf_counter() - start
        live, _, _ = evaluate_model_dir(out, EMOBANK_CSV, split_column="split", split="validation")
        runs.append({"seed": seed, "seconds": round(seconds, 1),
                     "train_runtime": metrics["train"]["train_runtime"],
                     "states_seconds": metrics["contextual_states_seconds"],
                     "states_cache_bytes": metrics["contextual_states_bytes"],
                     "dev": {k: metrics["validation"][f"eval_pearson_{k}"] for k in ("V", "A", "D", "mean")},
                     "dev_live_float32": {k: live[f"eval_pearson_{k}"] for k in ("V", "A", "D", "mean")},
                     "test": {k: metrics["test"][f"test_pearson_{k}"] for k in ("V", "A", "D", "mean")}})
        print(json.dumps(runs[-1]), flush=True)
    import pandas as pd

    texts = pd.read_csv(EMOBANK_CSV, keep_default_na=False).query("split == 'test'")["text"].tolist()
    speed = {}
    for name, folder in (("static", args.static_model), ("contextual", os.path.join(args.output_root,
                                                                                    f"seed{args.seeds[0]}"))):
        if not os.path.isdir(folder):
            continue
        predictor = seqreg_hf.Predictor.from_dir(folder)
        predictor.predict(texts[:256])
        rates = []
        for _ in range(3):
            start = time.perf_counter()
            rows = len(predictor.predict(texts))
            rates.append(rows / (time.perf_counter() - start))
        speed[name] = statistics.median(rates)
    with open(RECIPE_FILE, encoding="utf-8") as handle:
        recipe = {**json.load(handle), **RECIPE}
    report = {"gemm_peak_gflops": peak, "recipe": recipe, "runs": runs,
              "mean_test": {k: statistics.mean(r["test"][k] for r in runs) for k in ("V", "A", "D", "mean")},
              "mean_dev": {k: statistics.mean(r["dev"][k] for r in runs) for k in ("V", "A", "D", "mean")},
              "float16_cost_dev_mean": statistics.mean(r["dev_live_float32"]["mean"] - r["dev"]["mean"] for r in runs),
              "predictor_sentences_per_second": speed,
              "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    print(json.dumps(report, indent=2))
    with open(os.path.join(args.output_root, "report.json"), "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
