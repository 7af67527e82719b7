"""The local cluster itself: real control plane, kwok GPU nodes, audit log, and a clean ``down()``.

Everything the cluster tier relies on is checked here once, against the real components, so a failure in
another cluster test can be told apart from a broken cluster.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest
from kubernetes import client, config

from tests.polling import wait_for
from triton_operator.devcluster import A100, GPU_PRODUCT_LABEL, GPU_RESOURCE, H100, ClusterError, LocalCluster
from triton_operator.devcluster.processes import ProcessRecord, is_alive

pytestmark = pytest.mark.cluster

T = TypeVar("T")
OPERATOR_DIR = Path(__file__).resolve().parents[2] / "operator"


@pytest.fixture(scope="module")
def dev_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path_factory.mktemp("devcluster") / "state", name="test")
    c.up()
    try:
        yield c
    finally:
        c.down()


@pytest.fixture(scope="module")
def api(dev_cluster: LocalCluster) -> client.ApiClient:
    return new_client(dev_cluster.kubeconfig)


def new_client(kubeconfig: Path) -> client.ApiClient:
    configuration = client.Configuration()
    config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig), client_configuration=configuration
    )
    return client.ApiClient(configuration)


def plain(api: client.ApiClient, obj: object) -> Any:
    """A client model as the API's JSON (camelCase dicts), which reads without None checks at every level."""
    return api.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]


def test_fake_nodes_are_ready_with_gpu_labels_capacity_and_taints(api: client.ApiClient) -> None:
    listed = plain(api, client.CoreV1Api(api).list_node(label_selector="type=kwok"))
    nodes: dict[str, dict[str, Any]] = {n["metadata"]["name"]: n for n in listed["items"]}
    gpu = {f"gpu-a100-{i}": A100 for i in range(4)} | {f"gpu-h100-{i}": H100 for i in range(2)}
    assert sorted(nodes) == sorted([*gpu, "cpu-0", "cpu-1"])
    for name, node in nodes.items():
        ready = [c["status"] for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready == ["True"], name
        labels = node["metadata"]["labels"]
        assert labels["kubernetes.io/hostname"] == name
        assert labels["kubernetes.io/os"] == "linux"
        assert labels["kubernetes.io/arch"] == "amd64"
        assert labels["type"] == "kwok"
        assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
        taints = [(t["key"], t.get("value"), t["effect"]) for t in node["spec"].get("taints", [])]
        if name in gpu:
            assert labels[GPU_PRODUCT_LABEL] == gpu[name]
            assert labels["nvidia.com/gpu.count"] == "8"
            expected = {"cpu": "96", "memory": "1Ti", "pods": "250", GPU_RESOURCE: "8"}
            assert taints == [(GPU_RESOURCE, "present", "NoSchedule")]
        else:
            assert GPU_PRODUCT_LABEL not in labels
            expected = {"cpu": "32", "memory": "128Gi", "pods": "250"}
            assert taints == []
        for field in ("allocatable", "capacity"):
            quantities = node["status"][field]
            assert {k: v for k, v in quantities.items() if k in expected} == expected, (name, field)
            if name not in gpu:
                assert GPU_RESOURCE not in quantities


def test_gpu_deployment_lands_on_the_requested_product_and_becomes_ready(api: client.ApiClient) -> None:
    name = f"h100-{uuid.uuid4().hex[:6]}"
    deployment: Any = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "nodeSelector": {GPU_PRODUCT_LABEL: H100},
                    "tolerations": [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}],
                    "containers": [
                        {
                            "name": "triton",
                            "image": "nvcr.io/nvidia/tritonserver:25.01-py3",
                            "resources": {"limits": {GPU_RESOURCE: "2", "cpu": "4", "memory": "16Gi"}},
                        }
                    ],
                },
            },
        },
    }
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    apps.create_namespaced_deployment("default", deployment)
    try:

        def ready_pod() -> dict[str, Any] | None:
            pods = plain(api, core.list_namespaced_pod("default", label_selector=f"app={name}"))["items"]
            for pod in pods:
                conditions = pod["status"].get("conditions", [])
                ready = ("Ready", "True") in {(c["type"], c["status"]) for c in conditions}
                if pod["status"].get("phase") == "Running" and ready:
                    return dict(pod)
            return None

        pod = wait_for("the pod to be Running and Ready", ready_pod)
        assert pod["spec"]["nodeName"].startswith("gpu-h100-"), pod["spec"]["nodeName"]
        assert pod["status"]["podIP"].startswith("10.244."), pod["status"]["podIP"]
        wait_for(
            "the Deployment to count the ready replica",
            lambda: (
                plain(api, apps.read_namespaced_deployment_status(name, "default"))["status"].get("readyReplicas") == 1
            ),
        )
    finally:
        apps.delete_namespaced_deployment(name, "default")


def test_audit_log_records_the_operator_user_only(dev_cluster: LocalCluster, api: client.ApiClient) -> None:
    operator_api = new_client(dev_cluster.operator_kubeconfig)
    name = f"audited-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(operator_api).create_namespaced_config_map(
        "default", cast(Any, {"metadata": {"name": name}, "data": {"k": "v"}})
    )
    client.CoreV1Api(api).read_namespaced_config_map(name, "default")  # admin: must not be logged

    def events() -> list[dict[str, Any]]:
        return [json.loads(line) for line in dev_cluster.audit_log.read_text().splitlines() if line.strip()]

    def create_event() -> dict[str, Any] | None:
        return next(
            (e for e in events() if e["verb"] == "create" and e.get("objectRef", {}).get("name") == name),
            None,
        )

    event = wait_for("the audit event of the operator's create", create_event, timeout=10)
    assert event["user"]["username"] == "triton-operator"
    assert "system:masters" in event["user"]["groups"]
    assert event["objectRef"]["resource"] == "configmaps"
    assert event["level"] == "Metadata"
    assert event["responseStatus"]["code"] == 201
    assert {e["user"]["username"] for e in events()} == {"triton-operator"}


def test_component_that_dies_at_startup_fails_up_with_its_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for binary in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok"):
        script = bin_dir / binary
        script.write_text("#!/bin/sh\necho 'etcdmain: this etcd is broken on purpose' >&2\nexit 3\n")
        script.chmod(0o755)
    monkeypatch.setenv("TRITON_OPERATOR_BIN_DIR", str(bin_dir))
    broken = LocalCluster(tmp_path / "state")
    with pytest.raises(ClusterError, match=r"(?s)etcd exited during startup \(exit code 3\).*broken on purpose"):
        broken.up()
    assert not broken.is_running()
    broken.down()
    assert not (tmp_path / "state").exists()


def test_up_is_idempotent_and_down_from_another_process_stops_everything(tmp_path: Path) -> None:
    state_dir = tmp_path / "state"
    first = LocalCluster(state_dir, name="lifecycle")
    first.up()
    records = [ProcessRecord.from_json(p) for p in json.loads((state_dir / "state.json").read_text())["processes"]]
    assert sorted(r.name for r in records) == sorted(
        ["etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"]
    )
    assert all(is_alive(r) for r in records)

    second = LocalCluster(state_dir, name="lifecycle")
    started = time.monotonic()
    second.up()  # reuses the running cluster
    assert time.monotonic() - started < 2
    assert second.server == first.server
    assert second.is_running()

    # `triton-operator dev down` runs in a process that did not start the cluster.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(OPERATOR_DIR), os.environ.get("PYTHONPATH", "")])}
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from triton_operator.devcluster import LocalCluster; "
            "LocalCluster(Path(sys.argv[1])).down()",
            str(state_dir),
        ],
        check=True,
        env=env,
        timeout=60,
    )
    first.down()  # reaps the children this process started; nothing left to stop
    assert not any(is_alive(r) for r in records)
    for record in records:
        with pytest.raises(ProcessLookupError):
            os.kill(record.pid, 0)
    assert not state_dir.exists()
    assert not first.is_running()
