#!/usr/bin/env bash
# Builds helm from its Go module (no release downloads are reachable here) and caches it by version outside the
# work tree, so a second run is instant. Prints the binary's path on its last line.
#
#   hack/build-helm.sh            (HELM_VERSION=v3.19.0 by default; v3.18.6 also builds with go1.26)
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.19.0}"
CACHE="${TRITON_OPERATOR_CACHE:-$HOME/.cache/triton-operator}"
BIN="$CACHE/bin/helm-$HELM_VERSION"

log() { printf '[build-helm %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [ ! -x "$BIN/helm" ]; then
  mkdir -p "$BIN"
  log "go install helm.sh/helm/v3/cmd/helm@$HELM_VERSION (first build: about 2 minutes on 2 cores)"
  t0=$SECONDS
  # helm's Makefile stamps its version and the Kubernetes version it assumes when no cluster is asked (`helm
  # template`, `helm lint`: .Capabilities.KubeVersion) from the k8s.io/client-go it requires; without these flags a
  # plain `go install` says v1.20 and fails charts with a kubeVersion constraint.
  gomod=$(GOFLAGS=-mod=mod go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  kube_minor=$(awk '$1 == "k8s.io/client-go" {split($2, v, "."); print v[2]}' "$gomod")
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  for pkg in pkg/chartutil pkg/lint/rules; do
    ldflags="$ldflags -X helm.sh/helm/v3/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/$pkg.k8sVersionMinor=$kube_minor"
  done
  # helm's module has no replace directives, so `go install module@version` works as is. GOBIN is a scratch
  # directory and the binary is moved into place last, so an interrupted build is never reused.
  CGO_ENABLED=0 GOFLAGS=-trimpath GOBIN="$BIN/.tmp" go install -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  mv "$BIN/.tmp/helm" "$BIN/helm"
  rmdir "$BIN/.tmp"
  log "built helm in $((SECONDS - t0)) s"
fi
log "helm $("$BIN/helm" version --template '{{.Version}}') ready"
echo "$BIN/helm"
