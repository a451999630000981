#!/usr/bin/env bash
# Idempotent setup on a fresh Debian 12 machine (as root): system packages, a venv, clrk.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(python3 python3-venv python3-dev gcc ca-certificates iproute2 iptables nftables
              runsc busybox-static docker-registry debootstrap buildah skopeo curl hey wrk)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
# Every package comes from requirements.lock (scripts/lock.sh writes it), pinned to one version
# with its sha256 hashes: pip installs nothing outside the lock and refuses a file whose hash
# differs, so neither a new malicious release nor a file swapped on an index or mirror gets in.
# The project itself is then installed from this checkout with the locked setuptools and wheel
# and no index at all, so nothing is downloaded unhashed. Pip is the venv's own, not upgraded.
stamp=.venv/.clrk-installed
want=$(cat pyproject.toml requirements.lock | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python packages from requirements.lock" >&2
  .venv/bin/pip install -q --require-hashes -r requirements.lock
  # xds-protos ships an old copy of the OpenTelemetry protos at the paths opentelemetry-proto
  # installs to, and whichever pip writes last wins: the OTLP decoder needs the current ones
  # (scope_spans, scope_logs). Reinstalled from the lock's own hashed entry.
  awk '/^opentelemetry-proto==/{p=1; print; next} p && /^[^ #]/{p=0} p' requirements.lock \
    > .venv/otel-proto.req
  .venv/bin/pip install -q --no-deps --force-reinstall --require-hashes -r .venv/otel-proto.req
  .venv/bin/pip install -q --no-deps --no-build-isolation --no-index -e .
  echo "$want" > "$stamp"
fi
