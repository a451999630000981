#!/usr/bin/env bash
# Set everything up, then run the whole test suite (lint and type checks included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/pytest -q -p no:cacheprovider "$@"
