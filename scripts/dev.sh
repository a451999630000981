#!/usr/bin/env bash
# A first run that works offline: set everything up, start `clrk dev` (its registry
# included), build the word-count and echo-bot examples' images without Docker from a
# Debian base made by debootstrap (Docker Hub is not needed), push them to the dev
# registry, apply both, invoke word-count once and print its answer, and leave echo-bot
# running (with a real ANTHROPIC_API_KEY it calls Anthropic; without internet its refused
# calls are recorded: `clrk agents logs echo-bot`, `clrk agents traces echo-bot`).
# Ctrl-C stops clrk dev. Arguments go to `clrk dev` (e.g. --registry-port 5002);
# CLRK_HOME chooses the state directory, CLRK_DEV_EXAMPLES the examples.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export ANTHROPIC_API_KEY="${ANTHROPIC_API_KEY:-sk-ant-placeholder}"
export CLRK_HOME="${CLRK_HOME:-$HOME/.clrk}"
EXAMPLES="${CLRK_DEV_EXAMPLES:-word-count echo-bot}"
BASE=clrk/debian-base:bookworm
clrk=.venv/bin/clrk
kubeconfig="$CLRK_HOME/kubeconfig.host"

rm -f "$kubeconfig"
$clrk dev --secret anthropic-credentials=ANTHROPIC_API_KEY:api-key "$@" &
dev=$!
stop() { kill -TERM $dev 2>/dev/null || true; wait $dev 2>/dev/null || true; }
trap stop EXIT
trap 'exit 130' INT TERM
for _ in $(seq 1 600); do
  kill -0 $dev 2>/dev/null || { echo "clrk dev exited" >&2; exit 1; }
  $clrk dev status >/dev/null 2>&1 && [ -s "$CLRK_HOME/registry.addr" ] && break
  sleep 0.2
done
registry=$(cat "$CLRK_HOME/registry.addr")

$clrk image base "$BASE"
for example in $EXAMPLES; do
  $clrk image build -q -t "$example:0.1" --build-arg "BASE=$BASE" --push "examples/$example"
done
apply() {  # the examples name the default registry port; this run's may differ
  sed "s|127.0.0.1:5001/|$registry/|" "$@" | kubectl --kubeconfig "$kubeconfig" apply -f -
}
for example in $EXAMPLES; do
  if [ "$example" = echo-bot ]; then
    for f in examples/echo-bot/manifests/*.yaml; do apply "$f"; done
  else
    apply "examples/$example/taskagent.yaml"
  fi
done
if [[ " $EXAMPLES " == *" word-count "* ]]; then
  answer=$($clrk --kubeconfig "$kubeconfig" agents run-task word-count \
             -i '{"text": "hello world from clrk"}')
  echo "word-count answered: $answer"
fi
echo "clrk dev is running (state in $CLRK_HOME); Ctrl-C stops it."
wait $dev
