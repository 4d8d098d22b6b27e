#!/usr/bin/env bash
# The main job: set up if needed, train + evaluate the EmoBank recipe (the default model: one BiGRU over the frozen
# MiniLM-L6's hidden states), then predict a few sentences; prints the test r, the time and this machine's GEMM peak.
# Outputs land in outputs/emobank/ (model directory, *_results.json, metrics.json, plots, model card, predictions).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
. "$ROOT/scripts/setup.sh"
cd "$ROOT"
START=$(date +%s.%N)
seqreg-hf train scripts/configs/emobank.json --overwrite_output_dir  # a rerun replaces the last one
seqreg-hf predict --model_name_or_path outputs/emobank --test_file scripts/examples.txt \
    --output_file outputs/emobank/examples_scored.jsonl
cat outputs/emobank/examples_scored.jsonl
python - "$START" <<'PY'
import json
import sys
import time

from scripts.common import gemm_peak

elapsed = time.time() - float(sys.argv[1])
metrics = json.load(open("outputs/emobank/metrics.json"))
for split, prefix in (("validation", "eval"), ("test", "test")):
    row = {t: round(metrics[split][f"{prefix}_pearson_{t}"], 3) for t in ("V", "A", "D", "mean")}
    print(f"Pearson r on EmoBank {split}: {row}")
peak, _ = gemm_peak(repeats=5)
print(f"main job: {elapsed:.0f} s (train {metrics['train']['train_runtime']:.0f} s, contextual states "
      f"{metrics.get('contextual_states_seconds', 0):.0f} s) on a CPU whose fp32 GEMM peak is {peak:.0f} GFLOP/s")
PY
