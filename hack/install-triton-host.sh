#!/usr/bin/env bash
# Installs a runnable host tritonserver for the `triton` test tier, from the nvidia-pytriton wheel on PyPI (there is
# no Docker and no NGC here; the wheel bundles tritonserver 2.51 with the python backend). Idempotent and cached
# outside the work tree, so a second run is instant. Prints the wrapper's path on its last line.
#
#   hack/install-triton-host.sh            # then: "$(hack/install-triton-host.sh | tail -1)" --model-repository=...
#
# Environment: PYTRITON_VERSION (default 0.7.0), PYTHON (default python3: the Python whose stub is installed and
# whose venv the python-backend models run in), TRITON_OPERATOR_CACHE (default ~/.cache/triton-operator).
#
# Layout of $CACHE/triton-host/<version>/:
#   venv/                  a venv of $PYTHON with nvidia-pytriton (no deps) and numpy (the python backend needs it)
#   tritonserver/          a copy of pytriton's tritonserver folder, with the matching stub in backends/python/
#   bin/tritonserver       the wrapper: environment + CPU-only default flags, then every user argument
#   .stamp                 what was installed; a different Python or version reinstalls
set -euo pipefail

PYTRITON_VERSION="${PYTRITON_VERSION:-0.7.0}"
PYTHON="${PYTHON:-python3}"
CACHE="${TRITON_OPERATOR_CACHE:-$HOME/.cache/triton-operator}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEST="$CACHE/triton-host/$PYTRITON_VERSION"
# numpy 2 is newer than the wheel's pin (numpy<2) and than what the bundled python backend was built against.
NUMPY_SPEC="${NUMPY_SPEC:-numpy<2}"

log() { printf '[install-triton-host %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

PYTHON_BIN="$(command -v "$PYTHON")" || { log "no $PYTHON on PATH"; exit 1; }
PY_VERSION="$("$PYTHON_BIN" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
# The stub links libpython<ver>.so.1.0 from this Python's LIBDIR; a static-only build has no shared libpython.
PY_LIBDIR="$("$PYTHON_BIN" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')"
PY_REAL="$("$PYTHON_BIN" -c 'import os, sys; print(os.path.realpath(sys.executable))')"
STAMP="pytriton=$PYTRITON_VERSION python=$PY_REAL ($PY_VERSION) numpy='$NUMPY_SPEC' wrapper=$(sha256sum "$HERE/triton-image/tritonserver.in" | cut -c1-12)"

if [ -f "$DEST/.stamp" ] && [ "$(cat "$DEST/.stamp")" = "$STAMP" ] && [ -x "$DEST/bin/tritonserver" ]; then
  log "cached: $DEST ($STAMP)"
  echo "$DEST/bin/tritonserver"
  exit 0
fi

mkdir -p "$CACHE/triton-host"
# Concurrent test sessions may call this at once: serialise, then re-check under the lock.
exec 9>"$CACHE/triton-host/.lock-$PYTRITON_VERSION"
flock 9
if [ -f "$DEST/.stamp" ] && [ "$(cat "$DEST/.stamp")" = "$STAMP" ] && [ -x "$DEST/bin/tritonserver" ]; then
  log "cached (installed by a concurrent run): $DEST"
  echo "$DEST/bin/tritonserver"
  exit 0
fi

# (awk reads all of ldd's output: `head -1` could make ldd die of SIGPIPE, which pipefail turns into a failure)
glibc="$(ldd --version 2>&1 | awk 'NR == 1 { print $NF }')"
if ! awk -v v="$glibc" 'BEGIN { split(v, a, "."); exit !(a[1] > 2 || (a[1] == 2 && a[2] >= 35)) }'; then
  log "nvidia-pytriton's wheel is manylinux_2_35: glibc >= 2.35 needed, have: $glibc"
  exit 1
fi
if [ ! -e "$PY_LIBDIR/libpython$PY_VERSION.so.1.0" ]; then
  log "$PY_REAL has no $PY_LIBDIR/libpython$PY_VERSION.so.1.0 (the python-backend stub links it): use a --enable-shared Python"
  exit 1
fi

t0=$SECONDS
# A venv must be built at its final path (its scripts and pyvenv.cfg hold absolute paths), so build in place and
# write the stamp last: an interrupted run leaves no stamp and the next run starts over.
rm -rf "$DEST"
mkdir -p "$DEST/bin"
log "creating a venv of $PY_REAL ($PY_VERSION) in $DEST/venv"
"$PYTHON_BIN" -m venv "$DEST/venv"
log "pip install nvidia-pytriton==$PYTRITON_VERSION (about 55 MB, no deps: only its tritonserver is used) and $NUMPY_SPEC"
# numpy first: with --no-deps last, pip skips its conflict check (pytriton's client-side deps are left out on purpose).
"$DEST/venv/bin/python" -m pip install --disable-pip-version-check -q "$NUMPY_SPEC"
"$DEST/venv/bin/python" -m pip install --disable-pip-version-check -q --no-deps "nvidia-pytriton==$PYTRITON_VERSION"

SITE="$("$DEST/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
SRC="$SITE/pytriton/tritonserver"
STUB="$SRC/python_backend_stubs/$PY_VERSION/triton_python_backend_stub"
[ -x "$STUB" ] || { log "nvidia-pytriton $PYTRITON_VERSION has no python-backend stub for Python $PY_VERSION (have: $(cd "$SRC/python_backend_stubs" && echo *))"; exit 1; }

log "preparing $DEST/tritonserver (bin, backends/python + the $PY_VERSION stub, caches)"
mkdir -p "$DEST/tritonserver"
cp -a "$SRC/bin" "$SRC/backends" "$SRC/caches" "$DEST/tritonserver/"
cp -a "$STUB" "$DEST/tritonserver/backends/python/triton_python_backend_stub"

sed -e "s|@GENERATOR@|hack/install-triton-host.sh|" \
    -e "s|@TRITON_HOME@|$DEST/tritonserver|" \
    -e "s|@VENV@|$DEST/venv|" \
    -e "s|@PY_LIBDIR@|$PY_LIBDIR|" \
    -e "s|@PYTRITON_LIBS@|$SITE/nvidia_pytriton.libs|" \
    "$HERE/triton-image/tritonserver.in" >"$DEST/bin/tritonserver"
chmod 0755 "$DEST/bin/tritonserver"

# `--help` exits non-zero by design; what matters is that the binary and its libraries load and print the usage.
log "smoke test: tritonserver --help"
usage="$("$DEST/bin/tritonserver" --help 2>&1 || true)"
if [[ "$usage" != *--model-repository* ]]; then
  printf '%s\n' "$usage" | tail -20 >&2
  log "tritonserver does not start (see above)"
  exit 1
fi

echo "$STAMP" >"$DEST/.stamp"
log "installed in $((SECONDS - t0)) s: $DEST"
echo "$DEST/bin/tritonserver"
