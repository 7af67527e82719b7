"""pytest-kind end to end: the published image (operator/Dockerfile, built by Docker) installed by the chart into a
kind cluster, reconciling an InferenceService, upgraded and uninstalled.

It needs a Docker engine (kind runs its nodes as containers, and the image is built with ``docker build``). Where
there is none, as on the machines that run CI here, it skips and says so; the node tier runs the same chart with
the same image, built without Docker, on a real kubelet (tests/node/test_operator_pod.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pytest_kind import KindCluster

from tests.helm import CHART, OPERATOR_NS, RELEASE, REPO, helm_path
from tests.polling import wait_for
from tests.prerequisites import missing

pytestmark = pytest.mark.kind

IMAGE = "triton-operator:kind-e2e"
NAMESPACE = "models"
CRD = "inferenceservices.serving.triton-operator.dev"
SERVICE = {
    "apiVersion": "serving.triton-operator.dev/v1alpha1",
    "kind": "InferenceService",
    "metadata": {"name": "cpu", "namespace": NAMESPACE},
    # NVIDIA's image (the default) is pulled by kind's containerd; what is checked is the operator's work, not
    # Triton's start.
    "spec": {"modelRepository": {"uri": "s3://models/cpu"}, "gpu": {"count": 0}},
}


def docker_engine_missing() -> str | None:
    """Why no Docker engine answers here, or None when one does."""
    docker = shutil.which("docker")
    if docker is None:
        return "no docker command on PATH"
    try:
        done = subprocess.run([docker, "info", "--format", "{{.ServerVersion}}"], check=False, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "docker info did not answer in 30 s"
    if done.returncode != 0:
        return f"docker info failed: {done.stderr.strip() or done.stdout.strip()}"
    return None


@pytest.fixture(scope="module")
def kind(request: pytest.FixtureRequest) -> KindCluster:
    why = docker_engine_missing()
    if why is not None:
        pytest.skip(
            f"no Docker engine on this machine ({why}): the kind end-to-end test needs one; "
            "tests/node/test_operator_pod.py runs the same chart and image on the local cluster's real node"
        )
    cluster: KindCluster = request.getfixturevalue("kind_cluster")
    return cluster


@pytest.fixture(scope="module")
def helm(kind: KindCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """``helm(*args)`` against the kind cluster, with its own Helm home; the release is uninstalled at the end."""
    binary = helm_path()
    if not binary.is_file():
        missing(f"no helm at {binary}: build it with hack/build-helm.sh (make prereqs does)")
    home = tmp_path_factory.mktemp("helm-home")
    env = {**os.environ, **{f"HELM_{d}_HOME": str(home / d.lower()) for d in ("CACHE", "CONFIG", "DATA")}}

    def run(*args: str) -> str:
        argv = [str(binary), f"--kubeconfig={kind.kubeconfig_path}", *args]
        done = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
        assert done.returncode == 0, f"helm {' '.join(args)}: {done.stderr}"
        return done.stdout

    yield run
    subprocess.run([str(binary), f"--kubeconfig={kind.kubeconfig_path}", "uninstall", RELEASE, "-n", OPERATOR_NS, "--ignore-not-found"], env=env, check=False)


def get(kind: KindCluster, *args: str) -> dict[str, Any] | None:
    try:
        return dict(json.loads(kind.kubectl("get", "-o", "json", *args)))
    except subprocess.CalledProcessError:
        return None


def test_the_chart_installs_the_published_image_and_it_reconciles(kind: KindCluster, helm: Any) -> None:
    subprocess.run(["docker", "build", "-f", str(REPO / "operator" / "Dockerfile"), "-t", IMAGE, str(REPO)], check=True)
    kind.load_docker_image(IMAGE)
    repository, tag = IMAGE.split(":")
    helm(
        "install", RELEASE, str(CHART), "-n", OPERATOR_NS, "--create-namespace", "--wait", "--timeout=5m",
        "--set", f"image.repository={repository}", "--set", f"image.tag={tag}", "--set", "image.pullPolicy=Never",
    )  # fmt: skip
    kind.kubectl("create", "namespace", NAMESPACE)
    manifest = Path(kind.kubeconfig_path).parent / "isvc.yaml"
    manifest.write_text(yaml.safe_dump(SERVICE))
    kind.kubectl("apply", "-f", str(manifest))

    def reconciled() -> dict[str, Any] | None:
        isvc = get(kind, "-n", NAMESPACE, "inferenceservice", "cpu") or {}
        status = isvc.get("status") or {}
        return isvc if status.get("observedGeneration") == 1 and status.get("conditions") else None

    isvc = wait_for("the operator pod to reconcile the InferenceService", reconciled, timeout=180)
    for kind_name in ("deployment", "service"):
        child = get(kind, "-n", NAMESPACE, kind_name, "cpu") or {}
        owner = child["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["uid"], owner["controller"]) == ("InferenceService", isvc["metadata"]["uid"], True)

    helm("upgrade", RELEASE, str(CHART), "-n", OPERATOR_NS, "--reuse-values", "--set", "verbose=true", "--wait", "--timeout=5m")
    kind.kubectl("-n", OPERATOR_NS, "rollout", "status", f"deployment/{RELEASE}", "--timeout=120s")
    kind.kubectl("-n", NAMESPACE, "delete", "service", "cpu")
    wait_for("the Service repaired after the upgrade", lambda: get(kind, "-n", NAMESPACE, "service", "cpu"), timeout=60)

    helm("uninstall", RELEASE, "-n", OPERATOR_NS, "--wait")
    assert get(kind, "crd", CRD) is not None, "crds.keep (the default) keeps the CRD and with it every InferenceService"
    assert get(kind, "-n", NAMESPACE, "inferenceservice", "cpu") is not None
