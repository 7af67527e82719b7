"""Fixtures for the node tier: one local cluster with the real node (containerd, kubelet, kube-proxy) per test
session, images built locally as OCI archives and imported into the node's containerd.

The tier needs root and the Debian node packages (hack/install-node-packages.sh); where they are missing the
whole tier is skipped with the reason :func:`triton_operator.devcluster.realnode.preflight` gives.
Set TRITON_OPERATOR_KEEP_CLUSTER=1 to leave the cluster running after the session (the next session reuses it).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from tests.cluster.helpers import Kube
from tests.polling import wait_for
from tests.prerequisites import missing
from triton_operator.devcluster import LocalCluster
from triton_operator.devcluster import realnode as rn
from triton_operator.devcluster.binaries import cache_root, repo_root
from triton_operator.devcluster.processes import free_ports
from triton_operator.devcluster.workloads import MODEL_CLAIM, model_claim_manifests, operator_image, triton_image
from triton_operator.devmode import OperatorProcess, install_crds

T = TypeVar("T")

NODE_DIR = Path(__file__).resolve().parent
#: The test workload image: tests/node/httpserver packaged by hack/oci_image.py.
HTTPSERVER_IMAGE = "localhost/httpserver:test"
#: The test that stops the session's cluster; it must run after every other node-tier test.
DOWN_TEST = "test_down_leaves_no_process_device_mount_or_chain"
KEEP = bool(os.environ.get("TRITON_OPERATOR_KEEP_CLUSTER"))
CLAIM = ("v1", "PersistentVolumeClaim")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move the ``down()`` test to the end of the session, so it cannot pull the node from under another test."""
    last = [i for i in items if i.name == DOWN_TEST and Path(str(i.fspath)).parent == NODE_DIR]
    for item in last:
        items.remove(item)
        items.append(item)


def build_go_image(source: Path, name: str, binary: str, **config: str) -> Path:
    """Build the Go program in ``source`` static and package it alone as image ``name`` (entrypoint
    ``/<binary>``), cached under the cache's images/ by a hash of every input, like hack/build-pause-image.sh."""
    oci_image = repo_root() / "hack" / "oci_image.py"
    digest = hashlib.sha256()
    for path in sorted(source.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(source).as_posix().encode() + b"\0" + path.read_bytes())
    digest.update(oci_image.read_bytes())
    digest.update(repr(sorted(config.items())).encode())
    go_version = subprocess.run(["go", "version"], capture_output=True, text=True, check=True).stdout
    digest.update(go_version.encode())
    images = cache_root() / "images"
    slug = name.rsplit("/", 1)[-1].replace(":", "-")
    out = images / f"{slug}-{digest.hexdigest()[:16]}.tar"
    if out.is_file():
        return out
    images.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=images, prefix=".build-") as work:
        exe = Path(work) / binary
        env = {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"}
        subprocess.run(
            ["go", "build", "-trimpath", "-ldflags", "-s -w -buildid=", "-o", str(exe), "."],
            cwd=source,
            env=env,
            check=True,
        )
        flags = [f"--{k.replace('_', '-')}={v}" for k, v in config.items()]
        archive = Path(work) / "image.tar"
        subprocess.run(
            [sys.executable, str(oci_image), "--file", f"{exe}=/{binary}", "--name", name,
             "--entrypoint", f"/{binary}", *flags, "--out", str(archive)],
            check=True,
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        archive.replace(out)
    for stale in images.glob(f"{slug}-*.tar"):  # built from older inputs: never used again
        if stale != out:
            stale.unlink(missing_ok=True)
    return out


@pytest.fixture(scope="session")
def node_cluster() -> Iterator[LocalCluster]:
    """The session's cluster with the real node; stopped at the end unless TRITON_OPERATOR_KEEP_CLUSTER is set."""
    local = LocalCluster(name=os.environ.get("TRITON_OPERATOR_NODE_CLUSTER", "node-tier"), real_node=True)
    bin_dir = local.bin_dir
    rn.ensure_node_binaries(bin_dir)
    problems = rn.preflight(bin_dir, rn.NodeLayout(local.state_dir))
    if problems:
        missing("the real node cannot run here: " + "; ".join(problems))
    t0 = time.monotonic()
    local.up()
    print(f"\n[node tier] cluster with real node up in {time.monotonic() - t0:.1f} s", file=sys.stderr)
    yield local
    if not KEEP:
        local.down()


@pytest.fixture(scope="session")
def node_api(node_cluster: LocalCluster) -> k8s.ApiClient:
    configuration = k8s.Configuration()
    k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(node_cluster.kubeconfig), client_configuration=configuration
    )
    return k8s.ApiClient(configuration)


@pytest.fixture(scope="session")
def httpserver_image(node_cluster: LocalCluster) -> str:
    """The test HTTP server, built (cached) and imported into the real node's containerd."""
    archive = build_go_image(NODE_DIR / "httpserver", HTTPSERVER_IMAGE, "httpserver", user="65534:65534", expose="8080")
    node_cluster.import_image(archive)
    return HTTPSERVER_IMAGE


@pytest.fixture
def node_namespace(node_api: k8s.ApiClient) -> Iterator[str]:
    name = f"n-{uuid.uuid4().hex[:8]}"
    core = k8s.CoreV1Api(node_api)
    core.create_namespace(cast(Any, {"metadata": {"name": name}}))
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="session")
def triton_image_name(node_cluster: LocalCluster) -> str:
    started = time.monotonic()
    name = triton_image(node_cluster)
    print(f"\n[node tier] Triton image {name} ready and imported in {time.monotonic() - started:.1f} s")
    return name


@pytest.fixture(scope="session")
def operator_image_name(node_cluster: LocalCluster) -> str:
    """The operator's image (hack/build-operator-image.sh), imported into the real node."""
    started = time.monotonic()
    name = operator_image(node_cluster)
    print(f"\n[node tier] operator image {name} ready and imported in {time.monotonic() - started:.1f} s")
    return name


def node_operator_args(triton_image_name: str) -> tuple[str, ...]:
    """The session operator's flags beyond the kubeconfig and ports (for a test that stops and restarts it)."""
    return (f"--default-triton-image={triton_image_name}",)


@pytest.fixture(scope="session")
def node_operator(
    node_cluster: LocalCluster, triton_image_name: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    """The operator as a process on this machine, serving every namespace (a test that runs it as a pod instead
    stops this one first: two operators would fight over the same InferenceServices)."""
    install_crds(node_cluster)
    process = OperatorProcess(node_cluster, Path(tmp_path_factory.mktemp("operator")) / "operator.log", free_ports(1)[0])
    process.start(extra_args=node_operator_args(triton_image_name))
    yield process
    process.stop()


@pytest.fixture
def kube(
    node_api: k8s.ApiClient, node_cluster: LocalCluster, node_namespace: str, node_operator: OperatorProcess
) -> Kube:
    kube = Kube(node_api, node_cluster, node_namespace)
    for manifest in model_claim_manifests(node_cluster, node_namespace):
        kube.create(manifest)
    # Bound before the tests start, so their timings are Triton's, not the volume binder's.
    wait_for(
        "model claim bound", lambda: (kube.get(CLAIM, MODEL_CLAIM) or {}).get("status", {}).get("phase") == "Bound"
    )
    return kube


def plain(api: k8s.ApiClient, obj: object) -> Any:
    """A client model as the API's JSON (camelCase dicts)."""
    return api.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]
