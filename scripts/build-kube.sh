#!/usr/bin/env bash
# Test infrastructure only (the product stays Python): builds etcd and kube-apiserver from
# the Go module proxy for the cluster tests, the way envtest gets them, and caches them
# under ~/.cache/clrk-test/ keyed by version, so only a fresh machine pays for the build.
# Prints the directory holding `etcd` and `kube-apiserver`.
#
# `go install k8s.io/kubernetes/cmd/...@v1.x` refuses the module's own `replace` lines, so
# a small module of ours requires k8s.io/kubernetes and pins every staging module it
# lists (k8s.io/api, apimachinery, apiserver, client-go, kube-aggregator, ...) to the
# matching v0.x release.
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-1.32.13}
ETCD_VERSION=${ETCD_VERSION:-3.5.16}
cache_root=${CLRK_TEST_CACHE:-$HOME/.cache/clrk-test}
out="$cache_root/kube-v$KUBE_VERSION-etcd-v$ETCD_VERSION"
if [ -x "$out/kube-apiserver" ] && [ -x "$out/etcd" ]; then
  echo "$out"
  exit 0
fi
command -v go >/dev/null || { echo "build-kube: Go is required to build the test cluster" >&2; exit 1; }

export CGO_ENABLED=0 GOFLAGS="-trimpath -mod=mod" GOTOOLCHAIN=local
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out.partial"
start=$(date +%s)

# kube-apiserver: our module, the staging modules pinned to v0.<minor>.<patch>.
staging_version="v0.${KUBE_VERSION#1.}"
mkdir "$work/kube"
cd "$work/kube"
gomod=$(go mod download -json "k8s.io/kubernetes@v$KUBE_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
{
  echo "module clrk.test/kube"
  echo
  echo "go 1.23"
  echo
  echo "require k8s.io/kubernetes v$KUBE_VERSION"
  echo
  sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#replace \1 => \1 '"$staging_version"'#p' "$gomod"
} > go.mod
cat > tools.go <<'EOF'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
EOF
echo "build-kube: resolving k8s.io/kubernetes v$KUBE_VERSION" >&2
go mod tidy >&2
echo "build-kube: building kube-apiserver (several minutes on a fresh machine)" >&2
go build -ldflags "-s -w" -o "$out.partial/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver

# etcd: its server module's main package is at the module root.
mkdir "$work/etcd"
cd "$work/etcd"
printf 'module clrk.test/etcd\n\ngo 1.23\n' > go.mod
cat > tools.go <<'EOF'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
EOF
go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" >&2
go mod tidy >&2
echo "build-kube: building etcd v$ETCD_VERSION" >&2
go build -ldflags "-s -w" -o "$out.partial/etcd" go.etcd.io/etcd/server/v3

rm -rf "$out"
mv "$out.partial" "$out"
echo "build-kube: built in $(( $(date +%s) - start )) s" >&2
echo "$out"
