"""The real node itself: it joins the control plane, runs real pods (pause, an HTTP server) through containerd and
the CNI bridge, kube-proxy makes ClusterIPs work from the host and from pods, and ``down()`` leaves this machine as
it found it (no process, device, mount, iptables chain, route, cgroup or changed sysctl).

Everything the node tier's Triton tests rely on is checked here once, so a failure there can be told apart from a
broken node.
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import tarfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, cast

import pytest
from kubernetes import client as k8s

from tests.node.conftest import KEEP, plain
from tests.polling import wait_for
from triton_operator.devcluster import ClusterError, LocalCluster
from triton_operator.devcluster import realnode as rn
from triton_operator.devcluster.binaries import repo_root
from triton_operator.devcluster.kwok import KWOK_NODE_ANNOTATION
from triton_operator.devcluster.processes import ProcessRecord, free_ports, is_alive

pytestmark = pytest.mark.node

#: No proxies: a developer's http_proxy must not capture requests to pod and Service addresses.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
REAL_NODE_SELECTOR = {rn.REAL_NODE_LABEL[0]: rn.REAL_NODE_LABEL[1]}


def http_get(url: str, timeout: float = 2.0) -> str | None:
    """The body of a GET, or None on any error (callers poll)."""
    try:
        with _DIRECT.open(url, timeout=timeout) as resp:
            return str(resp.read().decode())
    except OSError:
        return None


def pod_ready(pod: dict[str, Any]) -> bool:
    conditions = {(c["type"], c["status"]) for c in pod["status"].get("conditions", [])}
    return pod["status"].get("phase") == "Running" and ("Ready", "True") in conditions


def pause_pod(name: str, host_port: int | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "pause", "image": rn.PAUSE_IMAGE, "imagePullPolicy": "IfNotPresent"}
    if host_port is not None:  # the portmap plugin's DNAT chains (nothing listens: only the rules matter)
        container["ports"] = [{"containerPort": 8080, "hostPort": host_port}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": REAL_NODE_SELECTOR,
            "terminationGracePeriodSeconds": 1,
            "containers": [container],
        },
    }


def run_pause_pod(
    api: k8s.ApiClient, namespace: str, name: str, host_port: int | None = None
) -> tuple[dict[str, Any], float]:
    """Create a pause pod on the real node; return it once Running and Ready, with the seconds that took."""
    core = k8s.CoreV1Api(api)
    t0 = time.monotonic()
    core.create_namespaced_pod(namespace, cast(Any, pause_pod(name, host_port)))

    def running() -> dict[str, Any] | None:
        pod: dict[str, Any] = plain(api, core.read_namespaced_pod(name, namespace))
        return pod if pod_ready(pod) else None

    pod = wait_for(f"pod {name} Running and Ready", running, timeout=60)
    return pod, time.monotonic() - t0


def test_real_node_joins_ready_untainted_with_label_and_pod_cidr(
    node_cluster: LocalCluster, node_api: k8s.ApiClient
) -> None:
    node = plain(node_api, k8s.CoreV1Api(node_api).read_node(node_cluster.real_node_name))
    assert node["metadata"]["labels"][rn.REAL_NODE_LABEL[0]] == rn.REAL_NODE_LABEL[1]
    # kwok manages only annotated nodes: this one is the real kubelet's.
    assert KWOK_NODE_ANNOTATION[0] not in node["metadata"].get("annotations", {})
    assert node["spec"].get("taints", []) == []
    assert node["spec"]["podCIDR"] == rn.POD_CIDR
    conditions = {c["type"]: c["status"] for c in node["status"]["conditions"]}
    assert conditions["Ready"] == "True"
    assert {"type": "InternalIP", "address": rn.NODE_IP} in node["status"]["addresses"]
    info = node["status"]["nodeInfo"]
    assert info["kubeletVersion"].startswith("v1.34.")
    assert info["containerRuntimeVersion"].startswith("containerd://")
    assert rn.PAUSE_IMAGE in [n for image in node["status"].get("images", []) for n in image["names"]]
    state = json.loads((node_cluster.state_dir / "state.json").read_text())
    print(f"\n[node tier] real node joined (kubelet start -> Ready) in {state['real_node_join_seconds']} s")
    # The fake GPU nodes are still kwok's, Ready, beside it; no fake CPU node competes with it for CPU pods.
    fake = plain(node_api, k8s.CoreV1Api(node_api).list_node(label_selector="type=kwok"))["items"]
    assert sorted(n["metadata"]["name"] for n in fake) == [
        *(f"gpu-a100-{i}" for i in range(4)),
        "gpu-h100-0",
        "gpu-h100-1",
    ]
    assert all(
        {"type": "Ready", "status": "True"}.items() <= c.items()
        for n in fake
        for c in n["status"]["conditions"]
        if c["type"] == "Ready"
    )


def test_pause_pod_runs_in_containerd_with_a_pod_ip_on_the_bridge(
    node_api: k8s.ApiClient, node_namespace: str, record_property: Any
) -> None:
    pod, seconds = run_pause_pod(node_api, node_namespace, "pause")
    record_property("pause_pod_start_seconds", round(seconds, 2))
    print(f"\n[node tier] pause pod created -> Running and Ready in {seconds:.2f} s")
    assert pod["spec"]["nodeName"] == rn.REAL_NODE_NAME
    assert pod["status"]["hostIP"] == rn.NODE_IP
    assert ipaddress.ip_address(pod["status"]["podIP"]) in ipaddress.ip_network(rn.POD_CIDR)
    (status,) = pod["status"]["containerStatuses"]
    # kwok fakes statuses without a container ID; containerd gives one.
    assert status["containerID"].startswith("containerd://")
    assert status["ready"] is True
    veths = subprocess.run(
        ["ip", "-o", "link", "show", "master", rn.BRIDGE], capture_output=True, text=True, check=False
    )
    assert "veth" in veths.stdout

    core = k8s.CoreV1Api(node_api)
    core.delete_namespaced_pod("pause", node_namespace, grace_period_seconds=0)

    def gone() -> bool:
        try:
            core.read_namespaced_pod("pause", node_namespace)
        except k8s.ApiException as exc:
            return bool(exc.status == 404)
        return False

    wait_for("the pause pod to be deleted", gone, timeout=60)


def http_deployment(name: str, image: str, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "nodeSelector": REAL_NODE_SELECTOR,
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "web",
                            "image": image,
                            "imagePullPolicy": "IfNotPresent",
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1},
                            "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True},
                        }
                    ],
                },
            },
        },
    }


def test_http_pods_behind_a_cluster_ip_answer_from_the_host_and_from_pods(
    node_cluster: LocalCluster,
    node_api: k8s.ApiClient,
    node_namespace: str,
    httpserver_image: str,
    record_property: Any,
) -> None:
    core, apps = k8s.CoreV1Api(node_api), k8s.AppsV1Api(node_api)
    name = f"web-{uuid.uuid4().hex[:6]}"
    t0 = time.monotonic()
    apps.create_namespaced_deployment(node_namespace, cast(Any, http_deployment(name, httpserver_image, 2)))
    service: Any = core.create_namespaced_service(
        node_namespace,
        cast(
            Any,
            {
                "metadata": {"name": name},
                "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
            },
        ),
    )
    cluster_ip = service.spec.cluster_ip

    def ready_pods() -> list[dict[str, Any]] | None:
        pods = plain(node_api, core.list_namespaced_pod(node_namespace, label_selector=f"app={name}"))["items"]
        ready = [p for p in pods if pod_ready(p)]
        return ready if len(ready) == 2 else None

    pods = wait_for("2 ready HTTP pods", ready_pods, timeout=90)
    seconds = time.monotonic() - t0
    record_property("http_pods_ready_seconds", round(seconds, 2))
    print(f"\n[node tier] 2 HTTP pods created -> Ready (readiness probe passed) in {seconds:.2f} s")
    names = {p["metadata"]["name"] for p in pods}
    assert {p["spec"]["nodeName"] for p in pods} == {rn.REAL_NODE_NAME}

    # Pod IPs straight from the host, over the bridge.
    for pod in pods:
        assert http_get(f"http://{pod['status']['podIP']}:8080/") == f"hello from {pod['metadata']['name']}\n"

    # The ClusterIP from the host: kube-proxy's iptables DNAT, balancing over both pods.
    seen: set[str] = set()

    def both_answered() -> bool:
        body = http_get(f"http://{cluster_ip}/")
        if body:
            seen.add(body.strip().removeprefix("hello from "))
        return seen == names

    wait_for(f"both pods to answer on ClusterIP {cluster_ip}", both_answered, timeout=30, interval=0.05)

    # From inside a pod (exec through apiserver -> kubelet -> containerd): pod -> ClusterIP -> pod on the same
    # bridge, which needs bridge netfilter, forwarding and (when it picks itself) hairpin mode.
    kubectl = str(node_cluster.bin_dir / "kubectl")
    for pod in pods:
        fetched = subprocess.run(
            [kubectl, f"--kubeconfig={node_cluster.kubeconfig}", f"--cache-dir={node_cluster.state_dir / 'kubectl-cache'}", "-n", node_namespace, "exec", pod["metadata"]["name"],
             "--", "/httpserver", "fetch", f"http://{cluster_ip}/"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert fetched.returncode == 0, fetched.stderr
        assert fetched.stdout.strip().removeprefix("hello from ") in names

    # Logs through apiserver -> kubelet (the apiserver reaches the kubelet on the node IP, not by hostname).
    log = core.read_namespaced_pod_log(pods[0]["metadata"]["name"], node_namespace)
    assert isinstance(log, str)


def test_up_again_reuses_the_running_cluster_and_node(node_cluster: LocalCluster) -> None:
    before = json.loads((node_cluster.state_dir / "state.json").read_text())["processes"]
    t0 = time.monotonic()
    LocalCluster(node_cluster.state_dir, name=node_cluster.name, real_node=True).up()
    assert time.monotonic() - t0 < 5
    after = json.loads((node_cluster.state_dir / "state.json").read_text())["processes"]
    assert after == before
    assert {p["name"] for p in after} >= {"containerd", "kubelet", "kube-proxy"}


def test_a_second_real_node_is_refused_and_the_first_keeps_running(node_cluster: LocalCluster, tmp_path: Path) -> None:
    other = LocalCluster(tmp_path / "state", name="second", real_node=True)
    with pytest.raises(ClusterError, match=rf"{node_cluster.state_dir}.*holds bridge {rn.BRIDGE}"):
        other.up()
    other.down()
    assert rn.bridge_owner() == node_cluster.state_dir
    assert node_cluster.is_running()
    assert not (tmp_path / "state").exists()


def test_image_archives_are_deterministic_and_named_for_containerd(tmp_path: Path) -> None:
    """Two builds from the same inputs give the same bytes (so re-imports are no-ops), and the index names the
    image the way ``ctr import`` (io.containerd.image.name) and the OCI spec (ref.name: the tag) want."""
    payload = tmp_path / "hello.txt"
    payload.write_text("hello\n")
    archives = []
    for attempt in range(2):
        out = tmp_path / f"image-{attempt}.tar"
        payload.touch()  # a new mtime must not change the image
        subprocess.run(
            [sys.executable, str(repo_root() / "hack" / "oci_image.py"), "--file", f"{payload}=/etc/hello.txt",
             "--name", "localhost/hello:1", "--cmd", '["cat", "/etc/hello.txt"]', "--env", "A=b",
             "--threads", str(attempt + 1), "--out", str(out)],
            check=True, capture_output=True,
        )  # fmt: skip
        archives.append(out.read_bytes())
    assert archives[0] == archives[1]
    with tarfile.open(tmp_path / "image-0.tar") as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        (manifest_ref,) = index["manifests"]
        assert manifest_ref["annotations"] == {
            "io.containerd.image.name": "localhost/hello:1",
            "org.opencontainers.image.ref.name": "1",
        }
        manifest = json.load(tar.extractfile(f"blobs/sha256/{manifest_ref['digest'][7:]}"))  # type: ignore[arg-type]
        config = json.load(tar.extractfile(f"blobs/sha256/{manifest['config']['digest'][7:]}"))  # type: ignore[arg-type]
    assert config["config"]["Cmd"] == ["cat", "/etc/hello.txt"]
    assert "A=b" in config["config"]["Env"]
    assert any(e.startswith("PATH=") for e in config["config"]["Env"])


def _host_snapshot(state_dir: Path) -> dict[str, Any]:
    """What the node leaves on this machine outside processes: devices, mounts, chains, routes, files."""
    routes = subprocess.run(["ip", "route", "show", "table", "all"], capture_output=True, text=True, check=False).stdout
    cni_results = Path("/var/lib/cni/results")
    logs = Path("/var/log/containers")
    return {
        "bridge": Path(f"/sys/class/net/{rn.BRIDGE}").exists(),
        "mounts": [str(p) for p in rn.mounts_under(state_dir)],
        "kube_chains": rn.kube_chains_left(),
        "guard_chain": subprocess.run(["iptables", "-w", "-S", rn.GUARD_CHAIN], capture_output=True, check=False).returncode == 0,
        # (kwok's unreachable 10.244.0.0/16 is shared by every local cluster and deliberately stays)
        "routes": [line for line in routes.splitlines() if "10.96.0.0/16" in line],
        "cni_results": sorted(p.name for p in cni_results.glob(f"{rn.CNI_NETWORK}-*")) if cni_results.is_dir() else [],
        "log_links": sorted(p.name for p in logs.iterdir() if str(state_dir) in str(p.resolve()))
        if logs.is_dir()
        else [],
        "device_plugin_socket": Path("/var/lib/kubelet/device-plugins/kubelet.sock").exists(),
        "cgroups": [str(d) for d in rn.cgroup_dirs(rn.CGROUP_ROOT)],
    }  # fmt: skip


def test_down_leaves_no_process_device_mount_or_chain(node_cluster: LocalCluster, node_api: k8s.ApiClient) -> None:
    """Runs last (see conftest): stops the session's cluster while a pod still runs on the node."""
    if KEEP:
        pytest.skip("TRITON_OPERATOR_KEEP_CLUSTER is set: the cluster is left running")
    run_pause_pod(node_api, "default", f"still-running-{uuid.uuid4().hex[:6]}", host_port=free_ports(1)[0])
    nat = subprocess.run(["iptables", "-w", "-t", "nat", "-S"], capture_output=True, text=True, check=True).stdout
    assert f'dnat name: \\"{rn.CNI_NETWORK}\\"' in nat, "the hostPort pod has portmap rules to clean up"
    veths = subprocess.run(
        ["ip", "-o", "link", "show", "master", rn.BRIDGE], capture_output=True, text=True, check=False
    ).stdout
    veth_names = [line.split(":")[1].strip().split("@")[0] for line in veths.splitlines()]
    assert veth_names
    state = json.loads((node_cluster.state_dir / "state.json").read_text())
    records = [ProcessRecord.from_json(p) for p in state["processes"]]
    sysctls_before = state["real_node"]["sysctls"]
    socket_path = state["real_node"]["containerd_socket"]
    shim_sockets = list(rn.shims(socket_path).values())
    assert shim_sockets, "the running pod has a shim"
    assert rn.mounts_under(node_cluster.state_dir), "a running pod has mounts (rootfs, netns) under the state dir"

    t0 = time.monotonic()
    node_cluster.down()
    print(f"\n[node tier] down() with a pod running took {time.monotonic() - t0:.1f} s")

    assert [r.name for r in records if is_alive(r)] == []
    assert rn.shim_pids(socket_path) == []
    for veth in veth_names:
        assert not Path(f"/sys/class/net/{veth}").exists(), veth
    assert _host_snapshot(node_cluster.state_dir) == {
        "bridge": False,
        "mounts": [],
        "kube_chains": [],
        "guard_chain": False,
        "routes": [],
        "cni_results": [],
        "log_links": [],
        "device_plugin_socket": Path("/var/lib/kubelet/device-plugins/kubelet.sock").exists(),
        "cgroups": [],
    }
    assert rn.read_sysctls(sysctls_before) == sysctls_before
    assert not node_cluster.state_dir.exists()
