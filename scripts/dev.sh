#!/usr/bin/env bash
# Set everything up, then run `clrk dev` with the quickstart's echo-bot example applied.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export ANTHROPIC_API_KEY="${ANTHROPIC_API_KEY:-sk-ant-placeholder}"
exec .venv/bin/clrk dev \
  --apply examples/echo-bot/manifests \
  --secret anthropic-credentials=ANTHROPIC_API_KEY:api-key "$@"
