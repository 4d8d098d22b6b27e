#!/usr/bin/env bash
# The test command: set up the environment if needed, then run the whole test suite (extra args go to pytest).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The browser test of `seqreg-hf serve`'s page drives Debian's headless Chromium and its chromedriver (never a
# downloaded browser); a fresh machine has neither. As root with apt, install them; otherwise the test says how.
if { [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; } && command -v apt-get >/dev/null \
    && [ "$(id -u)" = 0 ]; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } \
    || echo "scripts/test.sh: apt could not install chromium chromium-driver; the browser test will say so" >&2
fi
# shellcheck disable=SC1091
. "$ROOT/scripts/setup.sh"
cd "$ROOT"
python -m pytest -q "$@"
