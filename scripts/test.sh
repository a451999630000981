#!/usr/bin/env bash
# Set everything up, then run the whole test suite (lint and type checks included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The web console's browser test drives Debian's chromium headless (Playwright's own browser
# download is not used); only the tests need it.
if ! dpkg -s chromium >/dev/null 2>&1; then
  echo "test: installing chromium" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium \
    >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends chromium >/dev/null; }
fi
exec .venv/bin/pytest -q -p no:cacheprovider "$@"
