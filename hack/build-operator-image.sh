#!/usr/bin/env bash
# Builds the operator's container image WITHOUT Docker, as an OCI archive for `ctr -n k8s.io images import`: the
# local cluster's real node (containerd, no registry) runs the operator as a pod from it. It is the image
# operator/Dockerfile describes (the published one), made the way hack/build-triton-image.sh makes the CPU Triton
# image.
#
#   hack/build-operator-image.sh                  build (or reuse) the archive; prints the image name, then the
#                                                 archive's path on the last stdout line
#   hack/build-operator-image.sh --name           print only the image name (no build; the name is a hash of inputs)
#   hack/build-operator-image.sh --import SOCKET [SNAPSHOTTER]
#                                                 also import it into the containerd at SOCKET (namespace k8s.io)
#
# How: the Debian base with python shared with the Triton image (stage 1 of hack/lib/debian-rootfs.sh, cached under
# images/stages/); the operator's wheel built and its dependencies' wheels downloaded on the HOST (the host's pip
# has the network; the chroot has none), for the image's Python and glibc; in a chroot, `python3 -m venv
# /opt/triton-operator` and `pip install --no-index`, then pip and setuptools removed and all bytecode compiled
# hash-based (a read-only root filesystem starts without compiling anything, although the archive's mtimes are all
# 0); /usr/local/bin/triton-operator links to the venv's script. The image config (ENV, LABEL, EXPOSE, USER,
# ENTRYPOINT, CMD) is read from operator/Dockerfile's final stage by hack/dockerfile_config.py, so the two images
# cannot differ there. Everything is owned by root and world-readable; the image runs as 65532:65532.
# Before packaging, the rootfs is proven in a chroot, read-only, as the image's user, with the image's environment
# and entrypoint: `--help`, `run --help` (the default CMD), `render` of examples/quickstart.yaml into a Deployment,
# and an import of the operator's run path (kopf handlers) with every module's bytecode loaded from its .pyc.
#
# Name: localhost/triton-operator:<pyproject version>-<12 hex of the inputs hash>. Cached under
# $TRITON_OPERATOR_CACHE/images (default ~/.cache/triton-operator/images) keyed by a hash of every input (this
# script, hack/lib/debian-rootfs.sh, hack/oci_image.py, hack/dockerfile_config.py, operator/Dockerfile,
# pyproject.toml, every file under operator/ but bytecode and egg-info, the base stage's key), so a rerun is instant
# and any change builds a new archive; older archives of this image are deleted after a successful build. The
# dependency wheels are cached under images/wheels/operator-<hash of pyproject's dependencies>-cp311: versions
# stay as first resolved until the dependency list changes. README.md is built into the wheel's metadata but is
# not an input of the name (prose only).
#
# Environment: DEBIAN_SUITE (bookworm), DEBIAN_MIRROR (default: the host's apt source for that suite),
# KEEP_ROOTFS=1 (keep the build directory, for debugging), PYTHON (the host's python3, 3.11 or newer).
set -euo pipefail
umask 022

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"
SELF="$HERE/$(basename "${BASH_SOURCE[0]}")"
CACHE="${TRITON_OPERATOR_CACHE:-$HOME/.cache/triton-operator}"
IMAGES="$CACHE/images"
PYTHON="${PYTHON:-python3}"
DOCKERFILE="$REPO/operator/Dockerfile"
VENV=/opt/triton-operator
LOG_NAME=build-operator-image
# log/die, mirrors, chroot mounts, stage 1 (the Debian base the Triton image uses too).
# shellcheck source=hack/lib/debian-rootfs.sh
. "$HERE/lib/debian-rootfs.sh"

command -v "$PYTHON" >/dev/null || die "no $PYTHON"
pyproject() { # pyproject version | pyproject dependencies
  "$PYTHON" - "$REPO/pyproject.toml" "$1" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    project = tomllib.load(f)["project"]
print(project["version"] if sys.argv[2] == "version" else "\n".join(project["dependencies"]))
PY
}
VERSION=$(pyproject version) || die "cannot read project.version from pyproject.toml ($PYTHON must be 3.11+)"

# --- the inputs hash, and with it the name ----------------------------------------------------------------------
operator_files() { # NUL-separated paths under operator/ that go into the image: sources, not build leftovers
  (cd "$REPO/operator" && find . -type f ! -path '*/__pycache__/*' ! -name '*.py[co]' ! -path './*.egg-info/*' \
    ! -path ./Dockerfile -print0 | LC_ALL=C sort -z)
}
key=$(
  {
    cat "$SELF" "$HERE/lib/debian-rootfs.sh" "$HERE/oci_image.py" "$HERE/dockerfile_config.py" "$DOCKERFILE" \
      "$REPO/pyproject.toml"
    (cd "$REPO/operator" && operator_files | xargs -0 sha256sum)
    echo "base=$(debian_base_key) venv=$VENV"
  } | sha256sum | cut -c1-12
)
TAG="$VERSION-$key"
NAME="localhost/triton-operator:$TAG"
ARCHIVE="$IMAGES/triton-operator-$TAG.tar"

reuse_or_lock "$@"
[ -f "$HERE/oci_image.py" ] || die "hack/oci_image.py is missing (it packages the rootfs)"
# The runtime config, read now: a Dockerfile the parser refuses fails the build before any work.
IMAGE_CONFIG_JSON=$("$PYTHON" "$HERE/dockerfile_config.py" "$DOCKERFILE" --json) || die "operator/Dockerfile: see above"
mapfile -t IMAGE_CONFIG_ARGS < <("$PYTHON" "$HERE/dockerfile_config.py" "$DOCKERFILE")
image_config() { # image_config User|Entrypoint|Cmd|Env -> that field (a list: one item a line)
  "$PYTHON" -c 'import json, sys
value = json.loads(sys.argv[2]).get(sys.argv[1], [])
print("\n".join(value) if isinstance(value, list) else value)' "$1" "$IMAGE_CONFIG_JSON"
}
IMAGE_USER=$(image_config User)
mapfile -t IMAGE_ENTRYPOINT < <(image_config Entrypoint)
mapfile -t IMAGE_CMD < <(image_config Cmd)
mapfile -t IMAGE_ENV < <(image_config Env)
{ [ -n "$IMAGE_USER" ] && [ "${#IMAGE_ENTRYPOINT[@]}" -gt 0 ]; } || die "operator/Dockerfile: no USER or ENTRYPOINT"

# --- build directory and the cleanup that must always run -------------------------------------------------------
WORK="$(mktemp -d "$IMAGES/.triton-operator-build.XXXXXX")"
ROOTFS="$WORK/rootfs"
cleanup() {
  local rc=$?
  unmount_all "$WORK"
  remove_build_dir "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'log "failed (exit $?) at line $LINENO: $BASH_COMMAND"' ERR
trap 'log "interrupted"; exit 130' INT TERM

t_start=$SECONDS

debian_base_stage "$ROOTFS" "$WORK" "stage 1/5"

# --- stage 2: wheels, on the host --------------------------------------------------------------------------------
# The dependencies' wheels for the image's Python and glibc (cached: keyed by the dependency list, so a rebuild
# needs no network), and the operator's own wheel from a copy of exactly the hashed sources (a build in the
# checkout would leave build/ and egg-info there).
t0=$SECONDS
PYTAG="cp${PYVER/./}"
glibc_minor=$(in_chroot "$ROOTFS" ldd --version | sed -nE '1s/.* 2\.([0-9]+).*/\1/p')
DEPS=$(pyproject dependencies)
deps_key=$(printf '%s\nglibc=2.%s arch=%s\n' "$DEPS" "$glibc_minor" "$(uname -m)" | sha256sum | cut -c1-12)
WHEELS="$IMAGES/wheels/operator-$deps_key-$PYTAG"
if [ -f "$WHEELS/.complete" ]; then
  log "stage 2/5: dependency wheels cached ($WHEELS, $(find "$WHEELS" -name '*.whl' | wc -l) wheels)"
else
  log "stage 2/5: dependency wheels for Python $PYVER / glibc 2.$glibc_minor ($WHEELS)"
  platforms=()
  for m in $(seq "$glibc_minor" -1 17); do platforms+=(--platform "manylinux_2_${m}_x86_64"); done
  platforms+=(--platform manylinux2014_x86_64)
  mkdir -p "$IMAGES/wheels"
  fresh=$(mktemp -d "$WHEELS.tmp.XXXXXX")
  printf '%s\n' "$DEPS" >"$WORK/requirements.txt"
  # --platform needs --only-binary=:all:, so a dependency published only as an sdist fails the download; such a
  # package is built into a wheel here with --no-deps (accepted only if pure Python: it then fits any platform),
  # put where the next attempt finds it (--find-links), and the download is retried.
  for attempt in $(seq 1 10); do
    if "$PYTHON" -m pip download -q --disable-pip-version-check --dest "$fresh" --find-links "$fresh" \
      --only-binary=:all: "${platforms[@]}" --python-version "$PYVER" --implementation cp --abi "$PYTAG" \
      -r "$WORK/requirements.txt" 2>"$WORK/pip-download.err" >&2; then
      break
    fi
    missing=$(sed -nE 's/.*No matching distribution found for ([^ ]+).*/\1/p' "$WORK/pip-download.err" | head -1)
    if [ -z "$missing" ] || [ "$attempt" = 10 ]; then
      cat "$WORK/pip-download.err" >&2
      die "pip download failed (above)"
    fi
    log "  $missing: no wheel for $PYTAG/manylinux; building it from its sdist on the host"
    rm -rf "$WORK/sdist-wheel" && mkdir -p "$WORK/sdist-wheel"
    "$PYTHON" -m pip wheel -q --disable-pip-version-check --no-deps --wheel-dir "$WORK/sdist-wheel" "$missing" >&2
    for whl in "$WORK/sdist-wheel"/*.whl; do
      case "$whl" in
      *-none-any.whl) mv "$whl" "$fresh/" ;;
      *) die "$missing builds a platform wheel ($(basename "$whl")): it cannot be built for the image on this host" ;;
      esac
    done
  done
  touch "$fresh/.complete"
  # A concurrent build with the same dependencies may have finished first: keep the first complete set.
  [ -f "$WHEELS/.complete" ] || rm -rf "$WHEELS"
  mv -T "$fresh" "$WHEELS" 2>/dev/null || rm -rf "$fresh"
  log "  $(find "$WHEELS" -name '*.whl' | wc -l) wheels, $(du -sh "$WHEELS" | cut -f1)"
fi
log "the operator's wheel ($VERSION, built on the host)"
mkdir -p "$WORK/src/operator" "$WORK/dist"
cp "$REPO/pyproject.toml" "$REPO/README.md" "$WORK/src/"
(cd "$REPO/operator" && operator_files | tar --null -T - -cf -) | tar -C "$WORK/src/operator" -xf -
"$PYTHON" -m pip wheel -q --disable-pip-version-check --no-deps --wheel-dir "$WORK/dist" "$WORK/src" \
  >"$WORK/pip-wheel.log" 2>&1 || {
  tail -30 "$WORK/pip-wheel.log" >&2
  die "building the operator's wheel failed (log above)"
}
OPERATOR_WHEEL=$(find "$WORK/dist" -name 'triton_operator-*.whl' | head -1)
[ -n "$OPERATOR_WHEEL" ] || die "no triton_operator wheel in $WORK/dist"
log "wheels ready in $((SECONDS - t0)) s"

# --- stage 3: the venv, in the chroot -----------------------------------------------------------------------------
log "stage 3/5: venv $VENV (in the chroot, no network: --no-index)"
t0=$SECONDS
mkdir -p "$ROOTFS/tmp/wheels"
cp "$WHEELS"/*.whl "$OPERATOR_WHEEL" "$ROOTFS/tmp/wheels/"
mount_chroot_fs "$ROOTFS"
in_chroot "$ROOTFS" python3 -m venv "$VENV"
in_chroot "$ROOTFS" "$VENV/bin/pip" install -q --disable-pip-version-check --no-cache-dir --no-index \
  --find-links /tmp/wheels "/tmp/wheels/$(basename "$OPERATOR_WHEEL")" >&2
# As the Dockerfile: the image never installs anything, and nothing imports pip or setuptools at run time.
in_chroot "$ROOTFS" "$VENV/bin/pip" uninstall -y -q --disable-pip-version-check pip setuptools >&2
# Hash-based, unchecked bytecode for the venv and the standard library: hack/oci_image.py sets every mtime to 0,
# which makes timestamp-based .pyc (pip's and Debian's) stale in the image; with a read-only root filesystem Python
# would then compile every module on every start.
in_chroot "$ROOTFS" python3 -m compileall -q -f -j 0 --invalidation-mode unchecked-hash \
  "$VENV" "/usr/lib/python$PYVER" >&2 || die "compileall failed"
unmount_all "$ROOTFS"
ln -s "$VENV/bin/triton-operator" "$ROOTFS/usr/local/bin/triton-operator"
# Any uid may run it, none may change it.
chown -R 0:0 "$ROOTFS$VENV"
chmod -R a+rX,go-w "$ROOTFS$VENV"
log "venv done in $((SECONDS - t0)) s ($(du -sh "$ROOTFS$VENV" | cut -f1))"

# --- stage 4: trim, then prove the rootfs works -------------------------------------------------------------------
log "stage 4/5: trimming ($(du -sh "$ROOTFS" | cut -f1) before)"
rm -rf "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/cache/apt/* "$ROOTFS"/var/cache/debconf/*-old \
  "$ROOTFS"/usr/share/man/* "$ROOTFS"/usr/share/info/* "$ROOTFS"/usr/share/lintian "$ROOTFS"/usr/share/locale/* \
  "$ROOTFS"/tmp/* "$ROOTFS"/var/tmp/* "$ROOTFS"/root/.cache \
  "$ROOTFS"/usr/share/python-wheels # ensurepip's pip and setuptools: only venv creation needs them
find "$ROOTFS/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
find "$ROOTFS/usr/share/doc" -mindepth 1 -type d -empty -delete
find "$ROOTFS/var/log" -type f -delete
# Host identity copied by debootstrap; the container runtime mounts its own over these.
: >"$ROOTFS/etc/resolv.conf"
echo triton-operator >"$ROOTFS/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$ROOTFS/etc/hosts"
# Every mtime as the archive will have it (0), so the checks below see the image's bytecode validity, not the build's.
find "$ROOTFS" -xdev -exec touch -h -d @0 {} +
log "trimmed to $(du -sh "$ROOTFS" | cut -f1)"

log "verifying: read-only, as $IMAGE_USER, the image's env and entrypoint (${IMAGE_ENTRYPOINT[*]}): --help, ${IMAGE_CMD[*]} --help, render, imports"
t0=$SECONDS
RO="$WORK/ro"
mkdir -p "$RO"
mount --bind "$ROOTFS" "$RO"
mount --make-private "$RO"
mount -o remount,bind,ro "$RO"
mount -t proc proc "$RO/proc"
mount --rbind /dev "$RO/dev" && mount --make-rslave "$RO/dev"
as_image() { # as_image ARG...: what the container runtime would run, with no writable path
  env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/ "${IMAGE_ENV[@]}" \
    chroot --userspec="$IMAGE_USER" "$RO" "$@"
}
if ! as_image "${IMAGE_ENTRYPOINT[@]}" --help >"$WORK/help.out" 2>&1 || ! grep -q render "$WORK/help.out"; then
  cat "$WORK/help.out" >&2
  die "${IMAGE_ENTRYPOINT[*]} --help fails in the image"
fi
if ! as_image "${IMAGE_ENTRYPOINT[@]}" "${IMAGE_CMD[@]}" --help >"$WORK/cmd-help.out" 2>&1; then
  cat "$WORK/cmd-help.out" >&2
  die "the default command (${IMAGE_ENTRYPOINT[*]} ${IMAGE_CMD[*]} --help) fails in the image"
fi
as_image "${IMAGE_ENTRYPOINT[@]}" render -f /dev/stdin <"$REPO/examples/quickstart.yaml" >"$WORK/render.out" \
  2>"$WORK/render.err" || {
  cat "$WORK/render.err" >&2
  die "render of examples/quickstart.yaml fails in the image"
}
"$PYTHON" - "$WORK/render.out" <<'PY' >&2 || die "render's output is not the quickstart's Deployment (above)"
import re, sys
text = open(sys.argv[1]).read()
docs = [d for d in re.split(r"^---\s*$", text, flags=re.M) if d.strip()]
kinds = [(re.search(r"^kind: (\S+)", d, re.M) or [None, None])[1] for d in docs]
assert "Deployment" in kinds, f"no Deployment among {kinds}"
deployment = docs[kinds.index("Deployment")]
assert re.search(r"^  name: quickstart$", deployment, re.M), "the Deployment is not named quickstart"
assert "tritonserver" in deployment, "the Deployment does not run tritonserver"
print(f"  render: {', '.join(kinds)}")
PY
# The run path (kopf handlers, the Kubernetes and Triton clients) imports, and every module's code comes from its
# .pyc: `python -v` names the file each code object came from; a .py there means stale or missing bytecode.
as_image "$VENV/bin/python" -v -c 'import triton_operator.cli, triton_operator.handlers, kopf, kubernetes, tritonclient.grpc, tritonclient.http' \
  >/dev/null 2>"$WORK/imports.err" || {
  grep -v '^#' "$WORK/imports.err" | tail -30 >&2
  die "the operator's modules do not import in the image"
}
from_pyc=$(grep -c "^# code object from '.*\.pyc'" "$WORK/imports.err" || true)
from_source=$(grep "^# code object from '.*\.py'" "$WORK/imports.err" || true)
[ -z "$from_source" ] || {
  echo "$from_source" | head -20 >&2
  die "modules compiled from source at import time (stale or missing .pyc): $(echo "$from_source" | wc -l)"
}
ns0=$(date +%s%N)
as_image "${IMAGE_ENTRYPOINT[@]}" --help >/dev/null
help_ms=$((($(date +%s%N) - ns0) / 1000000))
log "verified in $((SECONDS - t0)) s (uid:gid $IMAGE_USER, read-only root; $from_pyc modules, all from .pyc; --help in $help_ms ms)"
unmount_all "$RO"
rmdir "$RO"
[ -z "$(mounted_under "$ROOTFS")" ] || die "could not unmount everything under $ROOTFS"

# --- stage 5: package --------------------------------------------------------------------------------------------
log "stage 5/5: OCI archive $NAME ($(du -sh "$ROOTFS" | cut -f1) rootfs)"
t0=$SECONDS
# /dev, /proc and /sys are the runtime's; their mount points stay (as empty directories).
"$PYTHON" "$HERE/oci_image.py" --rootfs "$ROOTFS" \
  --exclude 'dev/*' --exclude 'proc/*' --exclude 'sys/*' --exclude 'run/*' \
  --name "$NAME" "${IMAGE_CONFIG_ARGS[@]}" \
  --label "org.opencontainers.image.version=$VERSION" \
  --label "dev.triton-operator.inputs-hash=$key" \
  --out "$WORK/image.tar" >"$WORK/digest" 2> >(sed 's/^/  /' >&2)
mv "$WORK/image.tar" "$ARCHIVE"
log "packaged in $((SECONDS - t0)) s: $(du -h "$ARCHIVE" | cut -f1), manifest $(cat "$WORK/digest")"
# Archives built from older inputs are never used again.
find "$IMAGES" -maxdepth 1 -name 'triton-operator-*.tar' ! -path "$ARCHIVE" -print -delete |
  while read -r old; do log "pruned $old"; done
log "built $NAME in $((SECONDS - t_start)) s total: $ARCHIVE"
finish "$@"
