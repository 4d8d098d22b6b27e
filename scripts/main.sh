#!/usr/bin/env bash
# The main job: set up if needed, train + evaluate the EmoBank recipe, then predict a few sentences.
# Outputs land in outputs/emobank/ (model directory, *_results.json, metrics.json, plots, model card, predictions).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
. "$ROOT/scripts/setup.sh"
cd "$ROOT"
seqreg-hf train scripts/configs/emobank.json --overwrite_output_dir  # a rerun replaces the last one
python - <<'PY'
import json
metrics = json.load(open("outputs/emobank/metrics.json"))
for split, prefix in (("validation", "eval"), ("test", "test")):
    row = {t: round(metrics[split][f"{prefix}_pearson_{t}"], 3) for t in ("V", "A", "D", "mean")}
    print(f"Pearson r on EmoBank {split}: {row}")
PY
seqreg-hf predict --model_name_or_path outputs/emobank --test_file scripts/examples.txt \
    --output_file outputs/emobank/examples_scored.jsonl
cat outputs/emobank/examples_scored.jsonl
