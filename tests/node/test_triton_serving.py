"""Real Triton pods on the real node, reconciled by the operator: Ready only when Triton is, real inference
through the Service over HTTP and gRPC, a killed Triton restarting (and status saying so), and a model that
cannot load reported in Triton's own words. Nothing here is simulated.
"""

from __future__ import annotations

import subprocess
import time
import urllib.request

from tests.cluster.helpers import ISVC, POD, Kube, isvc_manifest
from tests.polling import wait_for
from triton_operator.devcluster import LocalCluster
from triton_operator.devcluster import realnode as rn
from triton_operator.devcluster.inference import infer_identity, infer_identity_once_routed

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
BROKEN_MESSAGE = "broken model: initialize() raises on purpose"


def triton_ready(pod_ip: str) -> bool:
    """Triton's own word, asked directly (not through the pod's readiness)."""
    try:
        with _DIRECT.open(f"http://{pod_ip}:8000/v2/health/ready", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def phase(kube: Kube, name: str) -> str | None:
    return kube.status(name).get("phase")


def test_a_cpu_service_serves_real_inference_through_its_service(kube: Kube) -> None:
    kube.create(isvc_manifest("identity", modelRepository={"uri": "pvc://triton-models"}, gpu={"count": 0}))
    seen: list[str | None] = []
    started = time.monotonic()
    while phase(kube, "identity") != "Ready":
        seen.append(phase(kube, "identity"))
        assert time.monotonic() - started < 180, f"not Ready after 180 s; phases seen: {sorted(set(map(str, seen)))}"
        time.sleep(0.1)
    pods = kube.list(POD, "serving.triton-operator.dev/inferenceservice=identity")
    assert [p["spec"]["nodeName"] for p in pods] == [rn.REAL_NODE_NAME]
    assert triton_ready(pods[0]["status"]["podIP"]), "status said Ready before Triton did"
    assert "Loading" in seen  # the pod ran before Triton was ready, and status said so
    service_ip = (kube.get(("v1", "Service"), "identity") or {})["spec"]["clusterIP"]
    sent = (0.5, -1.0, 3.25, 1e6)
    assert infer_identity_once_routed(service_ip, "http", sent) == list(sent)
    assert infer_identity(service_ip, "grpc", sent) == list(sent)
    print(f"\n[node tier] apply -> Ready with real Triton in {time.monotonic() - started:.1f} s")


def test_a_killed_triton_restarts_and_status_shows_it(kube: Kube, node_cluster: LocalCluster) -> None:
    kube.create(isvc_manifest("crashy", modelRepository={"uri": "pvc://triton-models"}, gpu={"count": 0}))
    wait_for("Ready", lambda: phase(kube, "crashy") == "Ready", timeout=180)
    pod = kube.list(POD, "serving.triton-operator.dev/inferenceservice=crashy")[0]
    container_id = pod["status"]["containerStatuses"][0]["containerID"].removeprefix("containerd://")
    subprocess.run(
        ["ctr", "-a", node_cluster.containerd_socket, "-n", "k8s.io", "tasks", "kill", "-s", "SIGKILL", container_id],
        check=True,
    )
    ready = wait_for(
        "status to show the restart",
        lambda: (
            kube.condition("crashy", "Ready").get("reason") == "ContainerRestarted"
            and kube.condition("crashy", "Ready")
        ),
        timeout=60,
        interval=0.05,
    )
    assert ready["status"] == "False"
    assert "restarted (1 restarts)" in ready["message"]
    wait_for("Ready again", lambda: phase(kube, "crashy") == "Ready", timeout=120)
    restarted = kube.list(POD, "serving.triton-operator.dev/inferenceservice=crashy")[0]
    assert restarted["metadata"]["uid"] == pod["metadata"]["uid"]  # the same pod: the container restarted
    assert restarted["status"]["containerStatuses"][0]["restartCount"] == 1
    assert infer_identity(restarted["status"]["podIP"], "http") == [1.0, 2.0, 3.0, 4.0]


def test_a_model_that_cannot_load_shows_tritons_message(kube: Kube) -> None:
    kube.create(isvc_manifest("broken", modelRepository={"uri": "/models/bad"}, gpu={"count": 0}))
    ready = wait_for(
        "Triton's load error in status",
        lambda: BROKEN_MESSAGE in (c := kube.condition("broken", "Ready")).get("message", "") and c,
        timeout=120,
    )
    assert ready["status"] == "False"
    assert phase(kube, "broken") in {"Failed", "Loading"}
    wait_for("phase Failed once Kubernetes backs off", lambda: phase(kube, "broken") == "Failed", timeout=120)
    assert BROKEN_MESSAGE in kube.condition("broken", "Ready")["message"]
    assert kube.status("broken")["readyReplicas"] == 0
    assert (kube.get(ISVC, "broken") or {})["status"]["conditions"]
