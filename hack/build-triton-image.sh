#!/usr/bin/env bash
# Builds a CPU-only Triton Inference Server container image WITHOUT Docker, as an OCI archive for
# `ctr -n k8s.io images import`: the node tier runs real Triton pods from it (NVIDIA's 10+ GB GPU image cannot be
# pulled here, and would not run without a GPU anyway).
#
#   hack/build-triton-image.sh                    build (or reuse) the archive; prints the image name, then the
#                                                 archive's path on the last stdout line
#   hack/build-triton-image.sh --name             print only the image name (no build; the name is a hash of inputs)
#   hack/build-triton-image.sh --import SOCKET [SNAPSHOTTER]
#                                                 also import it into the containerd at SOCKET (namespace k8s.io)
#
# How: `debootstrap --variant=minbase` Debian, python3 + python3-venv + libpython (Debian's 3.11) installed in a
# chroot with apt, nvidia-pytriton + numpy pip-installed into /opt/tritonserver-venv from wheels downloaded on the
# host (the host's pip has the network settings; nothing of them lands in the image), the wheel's tritonserver moved
# to /opt/tritonserver with the 3.11 python-backend stub, and /usr/local/bin/tritonserver, a wrapper
# (hack/triton-image/tritonserver.in) that sets the environment and CPU-only defaults, then passes every argument on.
# The entrypoint /opt/nvidia/nvidia_entrypoint.sh execs its arguments as NVIDIA's does, so the Deployment the
# operator renders (args ["tritonserver", "--model-repository=...", ...], no command) runs unchanged in this image
# and in nvcr.io/nvidia/tritonserver. tests/models is copied to /models (modelRepository.uri: /models/good).
# Everything is world-readable and Triton needs no writable path, so the image runs as any non-root user.
# Before packaging, the rootfs is proven: Triton is started in a chroot as user nobody, must become ready and answer
# an inference from the host.
#
# Name: localhost/tritonserver-cpu:<pytriton version>-<12 hex of the inputs hash>. Cached under
# $TRITON_OPERATOR_CACHE/images (default ~/.cache/triton-operator/images) keyed by a hash of every input (this
# script, hack/triton-image/, hack/oci_image.py, tests/models, versions, package list), so a rerun is instant and
# any change builds a new archive. The Debian base (debootstrap + apt) is cached separately under images/stages/.
#
# Environment: PYTRITON_VERSION (0.7.0), NUMPY_SPEC (numpy<2), DEBIAN_SUITE (bookworm), DEBIAN_MIRROR (default: the
# host's apt source for that suite), KEEP_ROOTFS=1 (keep the build directory, for debugging).
set -euo pipefail
umask 022

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
PYTRITON_VERSION="${PYTRITON_VERSION:-0.7.0}"
NUMPY_SPEC="${NUMPY_SPEC:-numpy<2}"
SUITE="${DEBIAN_SUITE:-bookworm}"
CACHE="${TRITON_OPERATOR_CACHE:-$HOME/.cache/triton-operator}"
IMAGES="$CACHE/images"
PYTHON="${PYTHON:-python3}"
# libstdc++6: tritonserver and the stub link it (not in minbase). ca-certificates: Triton reads s3:// and gs://
# repositories over TLS. libpython3.X (added once the version is known): the python-backend stub links it, and
# Debian's python3 binary is static, so python3 alone does not bring it.
APT_PACKAGES="python3 python3-venv libstdc++6 ca-certificates"
BASE_STAGE_VERSION=1 # bump when the base stage below changes
VENV=/opt/tritonserver-venv
TRITON_HOME=/opt/tritonserver

log() { printf '[build-triton-image %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
  log "ERROR: $*"
  exit 1
}

# --- the inputs hash, and with it the name ----------------------------------------------------------------------
models_listing() { # every model file (path and content), without bytecode a test run may have left behind
  (cd "$REPO/tests/models" && find . -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 | LC_ALL=C sort -z |
    xargs -0 sha256sum)
}
key=$(
  {
    cat "$0" "$HERE/oci_image.py"
    (cd "$HERE/triton-image" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    models_listing
    echo "pytriton=$PYTRITON_VERSION numpy=$NUMPY_SPEC suite=$SUITE apt=$APT_PACKAGES base=$BASE_STAGE_VERSION"
  } | sha256sum | cut -c1-12
)
TAG="$PYTRITON_VERSION-$key"
NAME="localhost/tritonserver-cpu:$TAG"
ARCHIVE="$IMAGES/tritonserver-cpu-$TAG.tar"

if [ "${1:-}" = "--name" ]; then
  echo "$NAME"
  exit 0
fi

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

if [ -f "$ARCHIVE" ]; then
  log "cached: $NAME ($(du -h "$ARCHIVE" | cut -f1)) $ARCHIVE"
  finish "$@"
  exit 0
fi

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot, mount)"
# Concurrent callers (test tiers started together) build once: the rest wait here, then find the archive.
mkdir -p "$IMAGES"
exec 9>"$IMAGES/.tritonserver-cpu-$TAG.lock"
if ! flock -n 9; then
  log "another build of $NAME is running; waiting for it"
  flock 9
fi
if [ -f "$ARCHIVE" ]; then
  log "built by a concurrent run: $NAME $ARCHIVE"
  finish "$@"
  exit 0
fi
command -v "$PYTHON" >/dev/null || die "no $PYTHON"
[ -f "$HERE/oci_image.py" ] || die "hack/oci_image.py is missing (it packages the rootfs)"
if ! command -v debootstrap >/dev/null; then
  log "installing debootstrap (apt)"
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >&2
fi

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

# --- build directory and the cleanup that must always run -------------------------------------------------------
mkdir -p "$IMAGES/stages"
WORK="$(mktemp -d "$IMAGES/.tritonserver-cpu-build.XXXXXX")"
ROOTFS="$WORK/rootfs"
VERIFY_PID=""

mounted_under() { # mount points at or below $1, deepest first
  awk -v root="$1" '$2 == root || index($2, root "/") == 1 { print $2 }' /proc/self/mounts | sort -r
}
unmount_all() {
  local root="$1" mp
  for mp in $(mounted_under "$root"); do
    umount "$mp" 2>/dev/null || umount -l "$mp" 2>/dev/null || log "WARNING: could not unmount $mp"
  done
}
stop_verify_server() {
  [ -n "$VERIFY_PID" ] || return 0
  # setsid made it a process-group leader: the group holds tritonserver and its python-backend stubs.
  kill -TERM -- "-$VERIFY_PID" 2>/dev/null || true
  local _
  for _ in $(seq 1 100); do
    kill -0 -- "-$VERIFY_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL -- "-$VERIFY_PID" 2>/dev/null || true
  wait "$VERIFY_PID" 2>/dev/null || true
  VERIFY_PID=""
}
cleanup() {
  local rc=$?
  stop_verify_server
  for dir in "$ROOTFS" "$WORK/base"; do unmount_all "$dir"; done
  # Never delete a tree that still has a mount inside: with /dev bind-mounted that would wipe the host's /dev.
  if [ -n "$(mounted_under "$WORK")" ]; then
    log "WARNING: mounts remain under $WORK; not deleting it: $(mounted_under "$WORK" | tr '\n' ' ')"
  elif [ "${KEEP_ROOTFS:-0}" = 1 ]; then
    log "kept the build directory: $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'log "failed (exit $?) at line $LINENO: $BASH_COMMAND"' ERR
trap 'log "interrupted"; exit 130' INT TERM

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

t_start=$SECONDS

# --- stage 1: Debian base with python (cached: the slow, rarely changing part) ----------------------------------
base_key=$(echo "suite=$SUITE apt=$APT_PACKAGES mirror=$MIRROR security=$SECURITY_MIRROR v=$BASE_STAGE_VERSION" |
  sha256sum | cut -c1-12)
BASE_TAR="$IMAGES/stages/debian-$SUITE-python-$base_key.tar"
if [ -f "$BASE_TAR" ]; then
  log "stage 1/5: Debian base cached ($BASE_TAR)"
  mkdir -p "$ROOTFS"
  tar -C "$ROOTFS" --numeric-owner -xpf "$BASE_TAR"
else
  BASE="$WORK/base"
  log "stage 1/5: debootstrap --variant=minbase $SUITE from $MIRROR (about a minute)"
  t0=$SECONDS
  debootstrap --variant=minbase "$SUITE" "$BASE" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 ||
    {
      tail -30 "$WORK/debootstrap.log" >&2
      die "debootstrap failed (log above)"
    }
  log "debootstrap done in $((SECONDS - t0)) s ($(du -sh "$BASE" | cut -f1))"
  {
    echo "deb $MIRROR $SUITE main"
    echo "deb $MIRROR $SUITE-updates main"
    [ -z "$SECURITY_MIRROR" ] || echo "deb $SECURITY_MIRROR $SUITE-security main"
  } >"$BASE/etc/apt/sources.list"
  cp /etc/resolv.conf "$BASE/etc/resolv.conf"
  printf '#!/bin/sh\nexit 101\n' >"$BASE/usr/sbin/policy-rc.d" # no services start inside a build
  chmod 0755 "$BASE/usr/sbin/policy-rc.d"
  mount_chroot_fs "$BASE"
  log "apt-get install $APT_PACKAGES (in the chroot)"
  t0=$SECONDS
  in_chroot "$BASE" apt-get -qq -o Acquire::Retries=3 update >&2
  # shellcheck disable=SC2086
  in_chroot "$BASE" apt-get -qq -y -o Acquire::Retries=3 install --no-install-recommends $APT_PACKAGES \
    2> >(grep -v '^debconf: delaying package configuration' >&2) >/dev/null
  pyver=$(in_chroot "$BASE" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  in_chroot "$BASE" apt-get -qq -y install --no-install-recommends "libpython$pyver" >/dev/null
  in_chroot "$BASE" apt-get -qq -y upgrade >/dev/null # security fixes newer than the bootstrap's snapshot
  in_chroot "$BASE" apt-get clean
  unmount_all "$BASE"
  rm -f "$BASE/usr/sbin/policy-rc.d"
  log "apt done in $((SECONDS - t0)) s (Python $pyver); caching the base as $BASE_TAR"
  tar -C "$BASE" --numeric-owner -cpf "$BASE_TAR.tmp" . && mv "$BASE_TAR.tmp" "$BASE_TAR"
  mv "$BASE" "$ROOTFS"
fi
PYVER=$(in_chroot "$ROOTFS" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
PY_LIBDIR=$(in_chroot "$ROOTFS" python3 -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
[ -e "$ROOTFS$PY_LIBDIR/libpython$PYVER.so.1.0" ] || die "no $PY_LIBDIR/libpython$PYVER.so.1.0 in the rootfs"

# --- stage 2: the Triton venv ------------------------------------------------------------------------------------
# Wheels come from the host's pip (its index and CA settings work; the chroot has neither), pinned to the image's
# Python and glibc, and are cached; inside the chroot pip installs them with --no-index.
WHEELS="$IMAGES/wheels/pytriton-$PYTRITON_VERSION-cp${PYVER/./}"
glibc_minor=$(in_chroot "$ROOTFS" ldd --version | sed -nE '1s/.* 2\.([0-9]+).*/\1/p')
platforms=()
for m in $(seq "$glibc_minor" -1 17); do platforms+=(--platform "manylinux_2_${m}_x86_64"); done
platforms+=(--platform manylinux2014_x86_64)
pipdl=("$PYTHON" -m pip download -q --disable-pip-version-check --dest "$WHEELS" --only-binary=:all:
  "${platforms[@]}" --python-version "$PYVER" --implementation cp --abi "cp${PYVER/./}")
log "stage 2/5: wheels for Python $PYVER / glibc 2.$glibc_minor: nvidia-pytriton==$PYTRITON_VERSION, $NUMPY_SPEC ($WHEELS)"
mkdir -p "$WHEELS"
"${pipdl[@]}" "$NUMPY_SPEC" >&2
"${pipdl[@]}" --no-deps "nvidia-pytriton==$PYTRITON_VERSION" >&2
mkdir -p "$ROOTFS/tmp/wheels"
cp "$WHEELS"/*.whl "$ROOTFS/tmp/wheels/"
log "venv $VENV (in the chroot)"
mount_chroot_fs "$ROOTFS"
in_chroot "$ROOTFS" python3 -m venv "$VENV"
# numpy first and pytriton with --no-deps last: pytriton's client-side dependencies are left out on purpose (only
# its tritonserver is used), and pip's conflict check would complain about them otherwise.
in_chroot "$ROOTFS" "$VENV/bin/pip" install -q --disable-pip-version-check --no-cache-dir --no-index \
  --find-links /tmp/wheels "$NUMPY_SPEC" >&2
in_chroot "$ROOTFS" "$VENV/bin/pip" install -q --disable-pip-version-check --no-cache-dir --no-index \
  --find-links /tmp/wheels --no-deps "nvidia-pytriton==$PYTRITON_VERSION" >&2
unmount_all "$ROOTFS"
rm -rf "$ROOTFS/tmp/wheels"

# --- stage 3: the tritonserver layout, wrapper, entrypoint, models ----------------------------------------------
log "stage 3/5: $TRITON_HOME, /usr/local/bin/tritonserver, /opt/nvidia/nvidia_entrypoint.sh, /models"
SITE="$VENV/lib/python$PYVER/site-packages"
[ -d "$ROOTFS$SITE/pytriton/tritonserver" ] || die "no $SITE/pytriton/tritonserver in the venv"
# Moved, not copied: the image needs one copy. Only the stub for the image's Python is kept.
mv "$ROOTFS$SITE/pytriton/tritonserver" "$ROOTFS$TRITON_HOME"
stub="$ROOTFS$TRITON_HOME/python_backend_stubs/$PYVER/triton_python_backend_stub"
[ -x "$stub" ] || die "nvidia-pytriton $PYTRITON_VERSION has no python-backend stub for Python $PYVER"
mv "$stub" "$ROOTFS$TRITON_HOME/backends/python/triton_python_backend_stub"
rm -rf "$ROOTFS$TRITON_HOME/python_backend_stubs"
# The wheel bundles a libpython 3.13 that nothing in tritonserver's dependency closure links (checked with readelf:
# no NEEDED entry names it); it is 32 MB, and a stray libpython of another version is what crashes stubs.
rm -f "$ROOTFS$SITE"/nvidia_pytriton.libs/libpython3-*.so*
sed -e "s|@GENERATOR@|hack/build-triton-image.sh|" \
  -e "s|@TRITON_HOME@|$TRITON_HOME|" \
  -e "s|@VENV@|$VENV|" \
  -e "s|@PY_LIBDIR@|$PY_LIBDIR|" \
  -e "s|@PYTRITON_LIBS@|$SITE/nvidia_pytriton.libs|" \
  "$HERE/triton-image/tritonserver.in" >"$ROOTFS/usr/local/bin/tritonserver"
chmod 0755 "$ROOTFS/usr/local/bin/tritonserver"
install -D -m 0755 "$HERE/triton-image/nvidia_entrypoint.sh" "$ROOTFS/opt/nvidia/nvidia_entrypoint.sh"
mkdir -p "$ROOTFS/models"
tar -C "$REPO/tests/models" --exclude=__pycache__ --exclude='*.pyc' -cf - . |
  tar -C "$ROOTFS/models" --no-same-owner --no-same-permissions -xf -
# Any uid may run it: no file needs to be written, everything is readable (and directories searchable).
chown -R 0:0 "$ROOTFS$TRITON_HOME" "$ROOTFS$VENV" "$ROOTFS/models" "$ROOTFS/opt/nvidia"
chmod -R a+rX "$ROOTFS$TRITON_HOME" "$ROOTFS$VENV" "$ROOTFS/models" "$ROOTFS/opt/nvidia"

# --- stage 4: trim, then prove the rootfs serves ------------------------------------------------------------------
log "stage 4/5: trimming ($(du -sh "$ROOTFS" | cut -f1) before)"
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/* "$ROOTFS"/var/cache/debconf/*-old \
  "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* "$ROOTFS"/usr/share/lintian "$ROOTFS"/usr/share/locale/* \
  "$ROOTFS"/tmp/* "$ROOTFS"/var/tmp/* "$ROOTFS"/root/.cache
find "$ROOTFS/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
find "$ROOTFS/usr/share/doc" -mindepth 1 -type d -empty -delete
find "$ROOTFS/var/log" -type f -delete
# Host identity copied by debootstrap; the container runtime mounts its own over these.
: >"$ROOTFS/etc/resolv.conf"
echo tritonserver >"$ROOTFS/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$ROOTFS/etc/hosts"
log "trimmed to $(du -sh "$ROOTFS" | cut -f1)"

log "verifying: tritonserver in the chroot as user nobody, ready and answering an inference from the host"
read -r http_port grpc_port metrics_port < <("$PYTHON" -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
mount -t proc proc "$ROOTFS/proc"
mount --rbind /dev "$ROOTFS/dev" && mount --make-rslave "$ROOTFS/dev"
t0=$SECONDS
# The exact argv shape the operator renders (args only, through the entrypoint), as an unprivileged user.
setsid env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/ \
  chroot --userspec=65534:65534 "$ROOTFS" /opt/nvidia/nvidia_entrypoint.sh \
  tritonserver --model-repository=/models/good --http-port="$http_port" --grpc-port="$grpc_port" \
  --metrics-port="$metrics_port" --http-address=127.0.0.1 --grpc-address=127.0.0.1 --metrics-address=127.0.0.1 \
  >"$WORK/verify.log" 2>&1 &
VERIFY_PID=$!
if ! "$PYTHON" - "$http_port" "$metrics_port" <<'PY' >&2; then
import json, sys, time, urllib.request
http, metrics = sys.argv[1], sys.argv[2]
base = f"http://127.0.0.1:{http}"
deadline = time.monotonic() + 180
while True:
    try:
        with urllib.request.urlopen(base + "/v2/health/ready", timeout=2) as r:
            if r.status == 200:
                break
    except OSError:
        pass
    if time.monotonic() > deadline:
        sys.exit("not ready after 180 s")
    time.sleep(0.2)
body = {"inputs": [{"name": "INPUT0", "shape": [1, 3], "datatype": "FP32", "data": [1.5, 2.5, 3.5]}]}
for model in ("identity", "sleeper"):
    req = urllib.request.Request(base + f"/v2/models/{model}/infer", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        out = json.load(r)["outputs"][0]
    assert out["data"] == [1.5, 2.5, 3.5], out
    print(f"  {model}: {out['data']} ok")
with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5) as r:
    text = r.read().decode()
for name in ("nv_inference_request_success", "nv_inference_queue_duration_us", "nv_inference_pending_request_count"):
    assert name + '{model="identity"' in text, name
print("  metrics ok")
PY
  tail -40 "$WORK/verify.log" >&2
  die "the rootfs does not serve (Triton's log above)"
fi
log "verified in $((SECONDS - t0)) s (ready + inference on identity and sleeper + metrics, as uid 65534)"
stop_verify_server
unmount_all "$ROOTFS"
[ -z "$(mounted_under "$ROOTFS")" ] || die "could not unmount everything under $ROOTFS"
rm -rf "$ROOTFS"/tmp/* "$ROOTFS"/dev/shm/* 2>/dev/null || true

# --- stage 5: package --------------------------------------------------------------------------------------------
log "stage 5/5: OCI archive $NAME ($(du -sh "$ROOTFS" | cut -f1) rootfs)"
t0=$SECONDS
# /dev, /proc and /sys are the runtime's; their mount points stay (as empty directories).
"$PYTHON" "$HERE/oci_image.py" --rootfs "$ROOTFS" \
  --exclude 'dev/*' --exclude 'proc/*' --exclude 'sys/*' --exclude 'run/*' \
  --name "$NAME" --entrypoint /opt/nvidia/nvidia_entrypoint.sh \
  --workdir "$TRITON_HOME" \
  --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env "PYTRITON_VERSION=$PYTRITON_VERSION" \
  --expose 8000/tcp --expose 8001/tcp --expose 8002/tcp \
  --label "org.opencontainers.image.title=tritonserver-cpu" \
  --label "org.opencontainers.image.description=CPU-only Triton Inference Server (python backend) from nvidia-pytriton $PYTRITON_VERSION on Debian $SUITE" \
  --label "dev.triton-operator.inputs-hash=$key" \
  --out "$WORK/image.tar" >"$WORK/digest" 2> >(sed 's/^/  /' >&2)
mv "$WORK/image.tar" "$ARCHIVE"
log "packaged in $((SECONDS - t0)) s: $(du -h "$ARCHIVE" | cut -f1), manifest $(cat "$WORK/digest")"
log "built $NAME in $((SECONDS - t_start)) s total: $ARCHIVE"
finish "$@"
