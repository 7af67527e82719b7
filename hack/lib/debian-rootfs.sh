# shellcheck shell=bash
# Shared by the image scripts that build a Debian root filesystem WITHOUT Docker (hack/build-triton-image.sh,
# hack/build-operator-image.sh): logging, the host's apt mirrors, chroot mounts and their safe removal, and stage 1,
# the Debian base with python, built once and cached as $IMAGES/stages/debian-<suite>-python-<key>.tar.
# Sourced, not run. The sourcing script sets LOG_NAME (the log prefix) and IMAGES (the image cache directory) first,
# and keeps its own traps: cleanup should call unmount_all on its build directory, then remove_build_dir.
#
# Environment: DEBIAN_SUITE (bookworm), DEBIAN_MIRROR (default: the host's apt source for that suite),
# KEEP_ROOTFS=1 (remove_build_dir keeps the build directory, for debugging).

SUITE="${DEBIAN_SUITE:-bookworm}"
# The base both images share. libstdc++6: tritonserver and the stub link it, as do C++ extensions (grpcio,
# google-re2); not in minbase. ca-certificates: TLS to s3:// and gs:// repositories, and to the Kubernetes API.
# libpython3.X (added once the version is known): Triton's python-backend stub links it, and Debian's python3 binary
# is static, so python3 alone does not bring it.
APT_PACKAGES="python3 python3-venv libstdc++6 ca-certificates"
BASE_STAGE_VERSION=1 # bump when the base stage below changes

log() { printf '[%s %s] %s\n' "${LOG_NAME:-debian-rootfs}" "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

# --- mirrors: the ones this machine's apt already uses (no other network is reachable) -------------------------
host_uri_for() { # host_uri_for SUITE -> the first URI the host's apt sources give for that suite, or nothing
  local suite="$1" f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    # deb822 stanzas: blank-line separated; the URI of a stanza whose Suites list contains $suite.
    awk -v s="$suite" 'BEGIN { RS = ""; FS = "\n" }
      { uri = ""; hit = 0
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^URIs:/) { split(substr($i, 6), u, " "); uri = u[1]; if (uri == "") uri = u[2] }
          if ($i ~ /^Suites:/) { n = split(substr($i, 8), ss, " "); for (j = 1; j <= n; j++) if (ss[j] == s) hit = 1 }
        }
        if (hit && uri != "") { print uri; exit } }' "$f"
  done | awk 'NR == 1'
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk -v s="$suite" '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/) { if ($(i + 1) == s) print $i; break } }' "$f"
  done | awk 'NR == 1'
}
MIRROR="${DEBIAN_MIRROR:-$(host_uri_for "$SUITE" | awk 'NR == 1')}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="$(host_uri_for "$SUITE-security" | awk 'NR == 1')"

# The base tar's cache key (and a name input of every image built on it). Keep the formula: changing it orphans
# every cached base.
debian_base_key() {
  echo "suite=$SUITE apt=$APT_PACKAGES mirror=$MIRROR security=$SECURITY_MIRROR v=$BASE_STAGE_VERSION" |
    sha256sum | cut -c1-12
}

# --- mounts, and the removal that must never follow a mount ------------------------------------------------------
mounted_under() { # mount points at or below $1, deepest first
  awk -v root="$1" '$2 == root || index($2, root "/") == 1 { print $2 }' /proc/self/mounts | sort -r
}
unmount_all() {
  local root="$1" mp
  for mp in $(mounted_under "$root"); do
    umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || log "WARNING: could not unmount $mp"
  done
}
remove_build_dir() { # remove_build_dir DIR: unless KEEP_ROOTFS=1, or a mount remains inside
  local dir="$1"
  # Never delete a tree that still has a mount inside: with /dev bind-mounted that would wipe the host's /dev.
  if [ -n "$(mounted_under "$dir")" ]; then
    log "WARNING: mounts remain under $dir; not deleting it: $(mounted_under "$dir" | tr '\n' ' ')"
  elif [ "${KEEP_ROOTFS:-0}" = 1 ]; then
    log "kept the build directory: $dir"
  else
    rm -rf "$dir"
  fi
}

mount_chroot_fs() { # what apt, python and Triton need in a chroot; undone by unmount_all (always, via the trap)
  local root="$1"
  mount -t proc proc "$root/proc"
  mount --rbind /sys "$root/sys" && mount --make-rslave "$root/sys"
  # rbind brings /dev/shm (Triton's python backend talks to its stubs through shared memory) and /dev/pts.
  mount --rbind /dev "$root/dev" && mount --make-rslave "$root/dev"
}
in_chroot() { # a clean environment: nothing of the host's (proxies, pip settings, locale) leaks into the build
  env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive chroot "$@"
}

# --- stage 1: Debian base with python (cached: the slow, rarely changing part) ----------------------------------
# debian_base_stage ROOTFS WORK LABEL: ROOTFS (absent or empty) becomes the base, from the cache or built in
# WORK/base (mounts there are undone here on success, by the caller's trap otherwise). LABEL prefixes the log lines
# ("stage 1/5"). Sets PYVER (e.g. 3.11) and PY_LIBDIR (where libpython is).
debian_base_stage() {
  local rootfs="$1" work="$2" label="$3" base_tar base t0 pyver
  base_tar="$IMAGES/stages/debian-$SUITE-python-$(debian_base_key).tar"
  mkdir -p "$IMAGES/stages"
  if [ -f "$base_tar" ]; then
    log "$label: Debian base cached ($base_tar)"
    mkdir -p "$rootfs"
    tar -C "$rootfs" --numeric-owner -xpf "$base_tar"
  else
    if ! command -v debootstrap >/dev/null; then
      log "installing debootstrap (apt)"
      apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2
    fi
    base="$work/base"
    log "$label: debootstrap --variant=minbase $SUITE from $MIRROR (about a minute)"
    t0=$SECONDS
    debootstrap --variant=minbase "$SUITE" "$base" "$MIRROR" >"$work/debootstrap.log" 2>&1 ||
      {
        tail -30 "$work/debootstrap.log" >&2
        die "debootstrap failed (log above)"
      }
    log "debootstrap done in $((SECONDS - t0)) s ($(du -sh "$base" | cut -f1))"
    {
      echo "deb $MIRROR $SUITE main"
      echo "deb $MIRROR $SUITE-updates main"
      [ -z "$SECURITY_MIRROR" ] || echo "deb $SECURITY_MIRROR $SUITE-security main"
    } >"$base/etc/apt/sources.list"
    cp /etc/resolv.conf "$base/etc/resolv.conf"
    printf '#!/bin/sh\nexit 101\n' >"$base/usr/sbin/policy-rc.d" # no services start inside a build
    chmod 0755 "$base/usr/sbin/policy-rc.d"
    mount_chroot_fs "$base"
    log "apt-get install $APT_PACKAGES (in the chroot)"
    t0=$SECONDS
    in_chroot "$base" apt-get -qq -o Acquire::Retries=3 update >&2
    # shellcheck disable=SC2086
    in_chroot "$base" apt-get -qq -y -o Acquire::Retries=3 install --no-install-recommends $APT_PACKAGES \
      2> >(grep -v '^debconf: delaying package configuration' >&2) >/dev/null
    pyver=$(in_chroot "$base" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    in_chroot "$base" apt-get -qq -y install --no-install-recommends "libpython$pyver" >/dev/null
    in_chroot "$base" apt-get -qq -y upgrade >/dev/null # security fixes newer than the bootstrap's snapshot
    in_chroot "$base" apt-get clean
    unmount_all "$base"
    [ -z "$(mounted_under "$base")" ] || die "could not unmount everything under $base"
    rm -f "$base/usr/sbin/policy-rc.d"
    log "apt done in $((SECONDS - t0)) s (Python $pyver); caching the base as $base_tar"
    tar -C "$base" --numeric-owner -cpf "$base_tar.tmp" . && mv "$base_tar.tmp" "$base_tar"
    rmdir "$rootfs" 2>/dev/null || true
    mv "$base" "$rootfs"
  fi
  PYVER=$(in_chroot "$rootfs" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  PY_LIBDIR=$(in_chroot "$rootfs" python3 -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
  [ -e "$rootfs$PY_LIBDIR/libpython$PYVER.so.1.0" ] || die "no $PY_LIBDIR/libpython$PYVER.so.1.0 in the rootfs"
}

# --- the cached archive: --name, reuse, and one build among concurrent callers ----------------------------------
# The image scripts set NAME, ARCHIVE and IMAGES, then call `reuse_or_lock "$@"`: it exits when there is nothing to
# build (--name, a cached archive, or one a concurrent run just built) and otherwise returns holding the build lock.
import_archive() {
  local socket="$1" snapshotter="${2:-overlayfs}"
  log "importing $NAME into containerd at $socket (snapshotter $snapshotter)"
  ctr -a "$socket" -n k8s.io images import --snapshotter "$snapshotter" "$ARCHIVE" >&2
}

finish() {
  if [ "${1:-}" = "--import" ]; then
    import_archive "${2:?usage: $0 --import SOCKET [SNAPSHOTTER]}" "${3:-}"
  fi
  echo "$NAME"
  echo "$ARCHIVE"
}

reuse_or_lock() {
  if [ "${1:-}" = "--name" ]; then
    echo "$NAME"
    exit 0
  fi
  if [ -f "$ARCHIVE" ]; then
    log "cached: $NAME ($(du -h "$ARCHIVE" | cut -f1)) $ARCHIVE"
    finish "$@"
    exit 0
  fi
  [ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, mount)"
  # Concurrent callers (test tiers started together) build once: the rest wait here, then find the archive.
  mkdir -p "$IMAGES"
  exec 9>"$IMAGES/.$(basename "$ARCHIVE" .tar).lock"
  if ! flock -n 9; then
    log "another build of $NAME is running; waiting for it"
    flock 9
  fi
  if [ -f "$ARCHIVE" ]; then
    log "built by a concurrent run: $NAME $ARCHIVE"
    finish "$@"
    exit 0
  fi
}
