#!/usr/bin/env bash
# The main job: set up if needed, train + evaluate the EmoBank recipe (the default model: two 2-layer BiLSTMs over a
# scalar mix of the frozen MiniLM-L6's hidden states), then predict a few sentences; prints the test r, where the time went and this machine's
# fp32 GEMM peak (a time is only comparable beside it).
# Outputs land in outputs/emobank/ (model directory, *_results.json, metrics.json, plots, model card, predictions).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
. "$ROOT/scripts/setup.sh"
cd "$ROOT"
START=$(date +%s.%N)
seqreg-hf train scripts/configs/emobank.json --overwrite_output_dir  # a rerun replaces the last one
TRAINED=$(date +%s.%N)
seqreg-hf predict --model_name_or_path outputs/emobank --test_file scripts/examples.txt \
    --output_file outputs/emobank/examples_scored.jsonl
cat outputs/emobank/examples_scored.jsonl
python - "$START" "$TRAINED" "$(date +%s.%N)" <<'PY'
import json
import sys

from scripts.common import gemm_peak

start, trained, predicted = map(float, sys.argv[1:])
metrics = json.load(open("outputs/emobank/metrics.json"))
state = json.load(open("outputs/emobank/trainer_state.json"))
for split, prefix in (("validation", "eval"), ("test", "test")):
    row = {t: round(metrics[split][f"{prefix}_pearson_{t}"], 3) for t in ("V", "A", "D", "mean")}
    print(f"Pearson r on EmoBank {split}: {row}")
evaluations = [h for h in state["log_history"] if "eval_runtime" in h][:-1]  # the last: the final dev pass
epochs = len(evaluations)
best = next((round(h["epoch"]) for h in evaluations if h["eval_pearson_mean"] == state["best_metric"]), "?")
phases = {
    "tokenize": metrics["tokenize_seconds"],
    "contextual states (once)": metrics.get("contextual_states_seconds", 0.0),
    f"training: {epochs} epochs (best: {best}), each evaluated on dev": metrics["train"]["train_runtime"],
    "final dev + test predictions": metrics["validation"]["eval_runtime"] + metrics["test"]["test_runtime"],
}
phases["train command's rest (start-up, data, model, card, plots)"] = trained - start - sum(phases.values())
phases["seqreg-hf predict (a new process, the transformer live)"] = predicted - trained
peak, _ = gemm_peak(repeats=5)
print("phase | seconds")
for name, seconds in phases.items():
    print(f"{name} | {seconds:.1f}")
print(f"main job: {predicted - start:.0f} s end to end, on a CPU whose fp32 GEMM peak is {peak:.0f} GFLOP/s")
PY
