#!/usr/bin/env bash
# Builds the node tier's pod sandbox image, localhost/pause:3.10, as an OCI archive for
# `ctr -n k8s.io images import` (there is no registry to pull registry.k8s.io/pause from).
# The binary is hack/pause/pause.go built static; the image is that one file, packaged by hack/oci_image.py.
#
#   hack/build-pause-image.sh            build (or reuse) the archive; prints its path on the last stdout line
#   hack/build-pause-image.sh --import SOCKET [SNAPSHOTTER]
#                                        also import it into the containerd at SOCKET (namespace k8s.io)
#
# Cached under $TRITON_OPERATOR_CACHE/images (default ~/.cache/triton-operator/images), keyed by a hash of
# every input (sources, this script, oci_image.py, the Go version), so a second run is instant and any change
# to an input builds a new archive. The build is deterministic: the same inputs give the same image digest.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${TRITON_OPERATOR_CACHE:-$HOME/.cache/triton-operator}"
IMAGES="$CACHE/images"
NAME="localhost/pause:3.10"
PYTHON="${PYTHON:-python3}"

log() { printf '[build-pause-image %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

command -v go >/dev/null || { log "go not found on PATH (needed to build the pause binary)"; exit 1; }
key=$(
  {
    cat "$HERE/pause/pause.go" "$HERE/pause/go.mod" "$HERE/oci_image.py" "$0"
    go version
    go env GOOS GOARCH
  } | sha256sum | cut -c1-16
)
out="$IMAGES/pause-3.10-$key.tar"

if [ -f "$out" ]; then
  log "cached: $out"
else
  mkdir -p "$IMAGES"
  work=$(mktemp -d "$IMAGES/.pause-build.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  log "go build hack/pause (static)"
  (cd "$HERE/pause" && CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local go build -trimpath -ldflags "-s -w -buildid=" -o "$work/pause" .)
  chmod 0755 "$work/pause"
  # 65535 is the upstream pause image's user: the sandbox needs no privileges.
  "$PYTHON" "$HERE/oci_image.py" --file "$work/pause=/pause" --name "$NAME" --entrypoint /pause \
    --user 65535:65535 --out "$work/pause.tar" >&2
  mv "$work/pause.tar" "$out"
  log "built $out"
  # Archives built from older inputs are never used again.
  find "$IMAGES" -maxdepth 1 -name 'pause-3.10-*.tar' ! -path "$out" -delete
fi

if [ "${1:-}" = "--import" ]; then
  socket="${2:?usage: $0 --import SOCKET [SNAPSHOTTER]}"
  snapshotter="${3:-overlayfs}"
  log "importing $NAME into containerd at $socket (snapshotter $snapshotter)"
  ctr -a "$socket" -n k8s.io images import --snapshotter "$snapshotter" "$out" >&2
fi
echo "$out"
