"""What real pods on the local cluster's real node need: the CPU Triton image, the operator's image, and a model
repository.

The images are built without Docker by ``hack/build-*-image.sh`` (each cached by a hash of its inputs) and imported
into the node's containerd. The model repository is a PersistentVolume on the real node (a hostPath holding a
copy of tests/models/good), bound to a claim, so InferenceServices read it as ``pvc://<claim>`` exactly as they
would read a claim on a real cluster.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from .binaries import repo_root
from .cluster import LocalCluster
from .realnode import REAL_NODE_LABEL

MODEL_CLAIM = "triton-models"
#: The models every local repository holds (identity and sleeper: python-backend models that load on CPU).
MODELS_SOURCE = Path("tests") / "models" / "good"


def built_image(cluster: LocalCluster, script: str) -> str:
    """Build (or reuse) an image with ``hack/<script>`` (it prints the name, then the archive), import it into the
    real node, and return its name."""
    path = repo_root() / "hack" / script
    result = subprocess.run([str(path)], stdout=subprocess.PIPE, stderr=sys.stderr, text=True, check=True)
    name, archive = result.stdout.strip().splitlines()[-2:]
    cluster.import_image(Path(archive))
    return name


def triton_image(cluster: LocalCluster) -> str:
    """The CPU Triton image (hack/build-triton-image.sh), imported into the real node."""
    return built_image(cluster, "build-triton-image.sh")


def operator_image(cluster: LocalCluster) -> str:
    """The operator's own image (hack/build-operator-image.sh, as operator/Dockerfile builds it), imported into the
    real node, for the chart's operator pod."""
    return built_image(cluster, "build-operator-image.sh")


def models_directory(cluster: LocalCluster) -> Path:
    """A copy of the test models in the cluster's state directory: pods read it, the repo stays untouched."""
    target = cluster.state_dir / "models" / "good"
    if not target.is_dir():
        shutil.copytree(repo_root() / MODELS_SOURCE, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        for path in [target, *target.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
    return target


def model_claim_manifests(cluster: LocalCluster, namespace: str, claim: str = MODEL_CLAIM) -> list[dict[str, Any]]:
    """A PersistentVolume on the real node and the claim bound to it (one volume per namespace: a volume binds
    to exactly one claim)."""
    volume = f"{claim}-{namespace}"
    return [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": volume, "labels": {"app.kubernetes.io/part-of": "triton-operator-dev"}},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadOnlyMany"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "hostPath": {"path": str(models_directory(cluster)), "type": "Directory"},
                "claimRef": {"namespace": namespace, "name": claim},
                "nodeAffinity": {
                    "required": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {"key": REAL_NODE_LABEL[0], "operator": "In", "values": [REAL_NODE_LABEL[1]]}
                                ]
                            }
                        ]
                    }
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim, "namespace": namespace},
            "spec": {
                "accessModes": ["ReadOnlyMany"],
                "storageClassName": "",
                "volumeName": volume,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    ]
