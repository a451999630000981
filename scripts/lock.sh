#!/usr/bin/env bash
# Regenerate requirements.lock: every Python package scripts/setup.sh installs, pinned to one
# version with its sha256 hashes, so `pip install --require-hashes` takes neither a release
# published after we locked nor a file swapped on an index or mirror. Run it after changing
# pyproject.toml's dependencies, and commit the result.
#
# uv resolves for a target platform (this machine: Linux x86_64, glibc 2.36, CPython 3.11) and
# writes the hashes; it is needed only here, never by setup.sh. Without uv on PATH, uv==UV_VERSION
# is installed into a temporary venv that is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3)
UV_VERSION=${UV_VERSION:-0.13.9}
PYTHON_VERSION=3.11
PYTHON_PLATFORM=x86_64-manylinux_2_36

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
UV=$(command -v uv || true)
if [ -z "$UV" ]; then
  echo "lock: installing uv==$UV_VERSION into a temporary venv" >&2
  "$PY" -m venv "$tmp/uv"
  "$tmp/uv/bin/pip" install -q "uv==$UV_VERSION"
  UV=$tmp/uv/bin/uv
fi

# The build requirements of the project itself ([build-system].requires) are locked too:
# setup.sh installs the project with --no-build-isolation, so nothing is fetched unhashed.
build_requires_text=$("$PY" -c '
import tomllib
with open("pyproject.toml", "rb") as f:
    print("\n".join(tomllib.load(f)["build-system"]["requires"]))
')
mapfile -t build_requires <<<"$build_requires_text"

# The digest of the dependency lists the lock was made from; tests/unit/test_lockfile.py
# computes it the same way (whitespace collapsed, sorted, joined by newlines) and compares.
digest=$("$PY" -c '
import hashlib, tomllib
with open("pyproject.toml", "rb") as f:
    project = tomllib.load(f)["project"]
reqs = [*project.get("dependencies", []), *project.get("optional-dependencies", {}).get("test", [])]
print(hashlib.sha256("\n".join(sorted(" ".join(r.split()) for r in reqs)).encode()).hexdigest())
')

feed="printf '%s\\n'$(printf " '%s'" "${build_requires[@]}")"
compile=(pip compile pyproject.toml - --extra test --generate-hashes
         --python-version "$PYTHON_VERSION" --python-platform "$PYTHON_PLATFORM"
         --no-header --quiet)

{
  echo "# Every Python package scripts/setup.sh installs, pinned with hashes; pip installs them with"
  echo "# --require-hashes, so it takes nothing but these files: a new release or a file swapped on"
  echo "# an index or mirror after locking is refused."
  echo "# Do not edit by hand. After changing pyproject.toml's dependencies, regenerate with:"
  echo "#    bash scripts/lock.sh"
  echo "# which runs (uv $("$UV" --version | cut -d' ' -f2)):"
  echo "#    $feed | uv ${compile[*]}"
  echo "# pyproject-sha256: $digest"
  printf '%s\n' "${build_requires[@]}" | "$UV" "${compile[@]}"
} > "$tmp/requirements.lock"
mv "$tmp/requirements.lock" requirements.lock
echo "lock: wrote requirements.lock ($(grep -c '^[A-Za-z0-9]' requirements.lock) packages)" >&2
