#!/usr/bin/env bash
# Installs what the node tier's real node needs from Debian's packages (no Docker, no release downloads here):
#   containerd, runc                 the container runtime kubelet talks to over CRI
#   containernetworking-plugins      bridge, host-local, portmap, loopback in /usr/lib/cni
#   iptables, conntrack              kube-proxy's iptables mode and its conntrack cleanup
#   ethtool, socat, iproute2         what kubelet/kube-proxy shell out to (port-forward needs socat)
#   util-linux                       umount/findmnt for cleaning up mounts in down()
# Idempotent: packages already installed are left alone and `apt-get update` only runs when something is
# missing. Prints one line per package saying what it did. Needs root (or sudo without a password).
#
#   hack/install-node-packages.sh            install what is missing
#   hack/install-node-packages.sh --check    exit 1 (and list them) if anything is missing; install nothing
set -euo pipefail

PACKAGES=(containerd runc containernetworking-plugins iptables conntrack ethtool socat iproute2 util-linux)

log() { printf '[install-node-packages] %s\n' "$*" >&2; }

installed() {  # installed pkg -> 0 when dpkg says "install ok installed"
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]
}

missing=()
for pkg in "${PACKAGES[@]}"; do
  if installed "$pkg"; then
    log "$pkg: already installed ($(dpkg-query -W -f='${Version}' "$pkg"))"
  else
    missing+=("$pkg")
  fi
done

if [ "${1:-}" = "--check" ]; then
  if [ ${#missing[@]} -gt 0 ]; then
    log "missing: ${missing[*]}"
    exit 1
  fi
  exit 0
fi

if [ ${#missing[@]} -eq 0 ]; then
  log "nothing to do"
  exit 0
fi

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
  else
    log "need root to install: ${missing[*]}"
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
log "apt-get update"
"${SUDO[@]}" apt-get update -qq >&2
log "apt-get install ${missing[*]}"
# --no-install-recommends: containerd recommends nothing we need; keeps the install small and fast.
"${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
for pkg in "${missing[@]}"; do
  log "$pkg: installed ($(dpkg-query -W -f='${Version}' "$pkg"))"
done
# Debian's containerd package ships a systemd unit; without systemd as init nothing starts it, and the node
# tier runs its own containerd with its own socket anyway, so there is nothing to stop or disable here.
