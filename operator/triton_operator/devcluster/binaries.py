"""Locating the control-plane binaries (etcd, kube-apiserver, ..., kwok).

The binaries are built from Go modules by ``hack/build-cluster-binaries.sh`` into a cache keyed by version,
because no release downloads are reachable on the machines that run the tests. The script is a no-op when
everything is cached and prints the directory on its last stdout line, so asking the script is the one place
that knows the pinned versions; ``TRITON_OPERATOR_BIN_DIR`` short-circuits it (for machines that got the
binaries some other way).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from .errors import ClusterError

#: Everything the control plane of the local cluster runs, found in one directory.
CONTROL_PLANE_BINARIES: tuple[str, ...] = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
)

BIN_DIR_ENV = "TRITON_OPERATOR_BIN_DIR"
CACHE_ENV = "TRITON_OPERATOR_CACHE"


def repo_root() -> Path:
    """The checkout this module lives in (operator/triton_operator/devcluster/binaries.py -> repo root)."""
    return Path(__file__).resolve().parents[3]


def cache_root() -> Path:
    """The per-machine cache shared with the hack scripts (binaries, cluster state), outside the work tree."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    return Path.home() / ".cache" / "triton-operator"


def missing_binaries(bin_dir: Path, names: tuple[str, ...] = CONTROL_PLANE_BINARIES) -> list[str]:
    """Names from ``names`` that are not executable files in ``bin_dir``."""
    return [n for n in names if not os.access(bin_dir / n, os.X_OK)]


def find_bin_dir(what: str = "control-plane") -> Path:
    """Return the directory holding the control-plane binaries, building them first if needed.

    The build script's progress goes to our stderr (a first build takes many minutes and must not look
    hung); only its stdout is captured, whose last line is the directory.
    """
    override = os.environ.get(BIN_DIR_ENV)
    if override:
        bin_dir = Path(override).expanduser().resolve()
    else:
        script = repo_root() / "hack" / "build-cluster-binaries.sh"
        if not script.is_file():
            raise ClusterError(
                f"{script} not found; set {BIN_DIR_ENV} to a directory with {', '.join(CONTROL_PLANE_BINARIES)}"
            )
        proc = subprocess.run(["bash", str(script), what], stdout=subprocess.PIPE, text=True, check=False)
        lines = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
        if proc.returncode != 0 or not lines:
            raise ClusterError(f"{script} {what} failed with exit code {proc.returncode}")
        bin_dir = Path(lines[-1])
    missing = missing_binaries(bin_dir)
    if missing:
        raise ClusterError(f"binaries missing from {bin_dir}: {', '.join(missing)}")
    return bin_dir
