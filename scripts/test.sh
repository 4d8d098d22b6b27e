#!/usr/bin/env bash
# The test command: set up the environment if needed, then run the whole test suite (extra args go to pytest).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
. "$ROOT/scripts/setup.sh"
cd "$ROOT"
python -m pytest -q "$@"
