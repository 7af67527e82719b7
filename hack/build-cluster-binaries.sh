#!/usr/bin/env bash
# Builds the local cluster's binaries from Go modules (no release downloads are reachable here) and caches them
# by version outside the work tree, so a second run is instant. Prints the bin directory on its last line.
#
#   hack/build-cluster-binaries.sh [control-plane|node|all]   (default: control-plane)
#
# control-plane: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok
# node:          kubelet, kube-proxy (the real node of the node tier)
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.34.4}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
KWOK_VERSION="${KWOK_VERSION:-v0.7.0}"
CACHE="${TRITON_OPERATOR_CACHE:-$HOME/.cache/triton-operator}"
BIN="$CACHE/bin/k8s-$KUBE_VERSION-etcd-$ETCD_VERSION-kwok-$KWOK_VERSION"
WHAT="${1:-control-plane}"
mkdir -p "$BIN"

log() { printf '[build-cluster-binaries %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

have() { for b in "$@"; do [ -x "$BIN/$b" ] || return 1; done; }

staging_version="v0.${KUBE_VERSION#v1.}"

build_kube() {  # build_kube cmd...
  local work="$CACHE/src/kubernetes-$KUBE_VERSION"
  mkdir -p "$work"
  if [ ! -f "$work/go.sum" ]; then
    log "preparing a wrapper module for k8s.io/kubernetes $KUBE_VERSION (staging modules pinned to $staging_version)"
    local gomod
    gomod=$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
    {
      echo "module local/kube-binaries"
      echo
      echo "go 1.24"
      echo
      echo "require k8s.io/kubernetes $KUBE_VERSION"
      echo
      # Every './staging/...' replace of the kubernetes module becomes its published version.
      grep -E '^\s*k8s\.io/[a-z0-9-]+ => \./staging/' "$gomod" | awk -v v="$staging_version" '{print "replace " $1 " => " $1 " " v}'
    } >"$work/go.mod"
    cat >"$work/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
GO
    (cd "$work" && go mod tidy -e >&2)
  fi
  local major minor
  major=$(echo "$KUBE_VERSION" | sed -E 's/^v([0-9]+)\..*/\1/')
  minor=$(echo "$KUBE_VERSION" | sed -E 's/^v[0-9]+\.([0-9]+)\..*/\1/')
  local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=$major -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z"
  for cmd in "$@"; do
    if [ -x "$BIN/$cmd" ]; then continue; fi
    log "go build $cmd $KUBE_VERSION (first build compiles Kubernetes: many minutes on 2 cores)"
    local t0=$SECONDS
    (cd "$work" && CGO_ENABLED=0 go build -trimpath -tags tools -ldflags "$ldflags" -o "$BIN/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd")
    mv "$BIN/$cmd.tmp" "$BIN/$cmd"
    log "built $cmd in $((SECONDS - t0)) s"
  done
}

build_etcd() {
  have etcd && return 0
  local work="$CACHE/src/etcd-$ETCD_VERSION"
  mkdir -p "$work"
  log "go build etcd $ETCD_VERSION (wrapper module around go.etcd.io/etcd/server/v3)"
  if [ ! -f "$work/go.sum" ]; then
    printf 'module local/etcd\n\ngo 1.24\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" >"$work/go.mod"
    printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' >"$work/tools.go"
    (cd "$work" && go mod tidy -e >&2)
  fi
  local t0=$SECONDS
  (cd "$work" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$BIN/etcd.tmp" go.etcd.io/etcd/server/v3)
  mv "$BIN/etcd.tmp" "$BIN/etcd"
  log "built etcd in $((SECONDS - t0)) s"
}

build_kwok() {
  have kwok && return 0
  log "go install kwok $KWOK_VERSION"
  local t0=$SECONDS
  CGO_ENABLED=0 GOBIN="$BIN" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  log "built kwok in $((SECONDS - t0)) s"
}

case "$WHAT" in
  control-plane)
    have etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok || {
      build_etcd; build_kwok; build_kube kube-apiserver kube-controller-manager kube-scheduler kubectl; }
    ;;
  node) have kubelet kube-proxy || build_kube kubelet kube-proxy ;;
  all) "$0" control-plane >/dev/null; "$0" node >/dev/null ;;
  *) echo "usage: $0 [control-plane|node|all]" >&2; exit 2 ;;
esac
log "binaries ready in $BIN"
echo "$BIN"
