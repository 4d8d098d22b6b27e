#!/usr/bin/env bash
# The main job's time as the README reports it: `bash scripts/main.sh` from a cold datasets cache (an empty
# HF_DATASETS_CACHE: the CSV is read and the states computed), with the load around it. Run it alone
# on a quiet machine:  bash scripts/measure/main_job.sh
# main.sh itself prints the test r, where the time went and the fp32 GEMM peak; this adds bash's wall / user / sys
# seconds (user + sys at OMP_NUM_THREADS=1 is what one idle core would take) and `uptime` before and after.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
CACHE=$(mktemp -d)
trap 'rm -rf "$CACHE"' EXIT
echo "HEAD $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'); OMP_NUM_THREADS=${OMP_NUM_THREADS:-unset}"
uptime
TIMEFORMAT='main job: wall %R s, user %U s, sys %S s'
time HF_DATASETS_CACHE="$CACHE" bash "$ROOT/scripts/main.sh"
uptime
