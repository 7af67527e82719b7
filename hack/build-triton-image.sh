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
# script, hack/lib/debian-rootfs.sh, hack/triton-image/, hack/oci_image.py, tests/models, versions, package list), so
# a rerun is instant and any change builds a new archive. The Debian base (debootstrap + apt; hack/lib/debian-rootfs.sh, shared with
# hack/build-operator-image.sh) is cached separately under images/stages/.
#
# Environment: PYTRITON_VERSION (0.7.0), NUMPY_SPEC (numpy<2), DEBIAN_SUITE (bookworm), DEBIAN_MIRROR (default: the
# host's apt source for that suite), KEEP_ROOTFS=1 (keep the build directory, for debugging).
set -euo pipefail
umask 022

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
PYTRITON_VERSION="${PYTRITON_VERSION:-0.7.0}"
NUMPY_SPEC="${NUMPY_SPEC:-numpy<2}"
CACHE="${TRITON_OPERATOR_CACHE:-$HOME/.cache/triton-operator}"
IMAGES="$CACHE/images"
PYTHON="${PYTHON:-python3}"
VENV=/opt/tritonserver-venv
TRITON_HOME=/opt/tritonserver
LOG_NAME=build-triton-image
# log/die, mirrors, chroot mounts, stage 1 (the Debian base: SUITE, APT_PACKAGES, BASE_STAGE_VERSION).
# shellcheck source=hack/lib/debian-rootfs.sh
. "$HERE/lib/debian-rootfs.sh"

# --- the inputs hash, and with it the name ----------------------------------------------------------------------
models_listing() { # every model file (path and content), without bytecode a test run may have left behind
  (cd "$REPO/tests/models" && find . -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 | LC_ALL=C sort -z |
    xargs -0 sha256sum)
}
key=$(
  {
    cat "$0" "$HERE/lib/debian-rootfs.sh" "$HERE/oci_image.py"
    (cd "$HERE/triton-image" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    models_listing
    echo "pytriton=$PYTRITON_VERSION numpy=$NUMPY_SPEC suite=$SUITE apt=$APT_PACKAGES base=$BASE_STAGE_VERSION"
  } | sha256sum | cut -c1-12
)
TAG="$PYTRITON_VERSION-$key"
NAME="localhost/tritonserver-cpu:$TAG"
ARCHIVE="$IMAGES/tritonserver-cpu-$TAG.tar"

reuse_or_lock "$@"
command -v "$PYTHON" >/dev/null || die "no $PYTHON"
[ -f "$HERE/oci_image.py" ] || die "hack/oci_image.py is missing (it packages the rootfs)"
# --- build directory and the cleanup that must always run -------------------------------------------------------
WORK="$(mktemp -d "$IMAGES/.tritonserver-cpu-build.XXXXXX")"
ROOTFS="$WORK/rootfs"
VERIFY_PID=""

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
  unmount_all "$WORK"
  remove_build_dir "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'log "failed (exit $?) at line $LINENO: $BASH_COMMAND"' ERR
trap 'log "interrupted"; exit 130' INT TERM

t_start=$SECONDS

debian_base_stage "$ROOTFS" "$WORK" "stage 1/5"

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
