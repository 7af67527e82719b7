"""The operator against a real control plane: children, placement by the real scheduler, status, repair, GC.

kwok plays the GPU nodes (and marks their pods running and ready); everything else is the real thing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.helpers import DEPLOYMENT, ISVC, PDB, POD, SERVICE, Kube, isvc_manifest, operator_requests
from tests.polling import wait_for
from triton_operator.devmode import OperatorProcess
from triton_operator.render import render_manifests
from triton_operator.yamlio import load_all_yaml

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))
H100 = "NVIDIA-H100-80GB-HBM3"

pytestmark = pytest.mark.usefixtures("operator")


def ready(kube: Kube, name: str) -> dict[str, Any] | None:
    """The status once its Ready condition is True, judged on that same read (a second read could be newer than
    the status returned: Degraded on the way, Ready just after)."""
    status = kube.status(name)
    conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
    return status if conditions.get("Ready") == "True" else None


def pods_of(kube: Kube, name: str) -> list[dict[str, Any]]:
    return kube.list(POD, f"serving.triton-operator.dev/inferenceservice={name}")


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.stem for e in EXAMPLES])
def test_every_example_is_reconciled_into_what_render_prints(kube: Kube, example: Path) -> None:
    kube.kubectl("apply", "-f", str(example))
    rendered = list(load_all_yaml(render_manifests(example.read_text())))
    for expected in rendered:
        kind = (expected["apiVersion"], expected["kind"])
        live = wait_for(f"{expected['kind']} {expected['metadata']['name']}", lambda k=kind, e=expected: kube.get(k, e["metadata"]["name"]))
        assert live["metadata"]["labels"] == expected["metadata"]["labels"]
        owner = live["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["controller"]) == ("InferenceService", expected["metadata"]["name"], True)
        if expected["kind"] == "Deployment":
            template = live["spec"]["template"]["spec"]
            want = expected["spec"]["template"]["spec"]
            assert template["containers"][0]["args"] == want["containers"][0]["args"]
            assert template.get("nodeSelector") == want.get("nodeSelector")
            assert template["containers"][0].get("resources", {}).get("limits") == _normalised(
                want["containers"][0].get("resources", {}).get("limits")
            )
            assert ("replicas" in expected["spec"]) == ("replicas" in _owned_spec_fields(live))
        if expected["kind"] == "PodDisruptionBudget":
            assert {k: live["spec"].get(k) for k in ("maxUnavailable", "minAvailable") if k in expected["spec"]} == {
                k: expected["spec"][k] for k in ("maxUnavailable", "minAvailable") if k in expected["spec"]
            }
    name = rendered[0]["metadata"]["name"]
    status = wait_for("status written", lambda: kube.status(name).get("observedGeneration"))
    assert status == 1
    # No PDB for a single replica; a PDB exactly when render printed one.
    assert (kube.get(PDB, name) is not None) == any(m["kind"] == "PodDisruptionBudget" for m in rendered)


def _normalised(limits: dict[str, Any] | None) -> dict[str, str] | None:
    return {k: str(v) for k, v in limits.items()} if limits else None


def _owned_spec_fields(live: dict[str, Any]) -> dict[str, Any]:
    entry = next(m for m in live["metadata"]["managedFields"] if m["manager"] == "triton-operator" and m["operation"] == "Apply")
    return {k.removeprefix("f:"): v for k, v in entry["fieldsV1"]["f:spec"].items()}


def test_gpu_pods_land_only_on_nodes_of_the_requested_product_and_become_ready(kube: Kube) -> None:
    kube.create(isvc_manifest("h100", gpu={"count": 8, "product": H100}, replicas=2))
    status = wait_for("Ready", lambda: ready(kube, "h100"))
    assert status["phase"] == "Ready"
    assert (status["replicas"], status["readyReplicas"]) == (2, 2)
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Reconciled": "True", "PodsScheduled": "True", "Available": "True", "ModelsReady": "Unknown", "Ready": "True"
    }
    # kwok's pods have addresses nobody answers for: the models are reported unknown, never guessed
    models_ready = next(c for c in status["conditions"] if c["type"] == "ModelsReady")
    assert models_ready["reason"] == "ReplicasUnreachable"
    assert "cannot connect to Triton at 10.244." in models_ready["message"]
    nodes = {p["spec"]["nodeName"] for p in pods_of(kube, "h100")}
    assert len(nodes) == 2  # 8 GPUs each: one pod per H100 node
    assert all(n.startswith("gpu-h100-") for n in nodes), nodes
    events = kube.kubectl("get", "events", "--field-selector", "involvedObject.name=h100", "-o", "json").stdout
    assert "AllReplicasReady" in {e["reason"] for e in json.loads(events)["items"]}


def test_cpu_only_service_lands_on_cpu_nodes(kube: Kube) -> None:
    kube.create(isvc_manifest("cpu", gpu={"count": 0}, replicas=2))
    wait_for("Ready", lambda: ready(kube, "cpu"))
    pods = pods_of(kube, "cpu")
    assert {p["spec"]["nodeName"][:4] for p in pods} == {"cpu-"}
    assert all("nvidia.com/gpu" not in (p["spec"]["containers"][0].get("resources") or {}).get("limits", {}) for p in pods)


@pytest.mark.parametrize(
    ("gpu", "message"),
    [
        ({"count": 1, "product": "NVIDIA-B200"}, "no node offers nvidia.com/gpu.product=NVIDIA-B200"),
        ({"count": 16}, "no node has 16 allocatable nvidia.com/gpu (the most on one node is 8)"),
        ({"count": 16, "product": H100}, f"no {H100} node has 16 allocatable nvidia.com/gpu"),
    ],
    ids=["unknown-product", "more-gpus-than-any-node", "more-gpus-than-any-h100"],
)
def test_unschedulable_pods_give_phase_scheduling_with_the_reason(kube: Kube, gpu: dict[str, Any], message: str) -> None:
    kube.create(isvc_manifest("pending", gpu=gpu))
    status = wait_for("phase Scheduling", lambda: kube.status("pending") if kube.status("pending").get("phase") == "Scheduling" else None)
    assert message in kube.condition("pending", "Ready")["message"]
    scheduled = kube.condition("pending", "PodsScheduled")
    assert (scheduled["status"], scheduled["reason"]) == ("False", "Unschedulable")
    assert message in scheduled["message"]
    assert status["readyReplicas"] == 0


def test_a_spec_change_rolls_the_deployment(kube: Kube) -> None:
    kube.create(isvc_manifest("roll", gpu={"count": 1}))
    wait_for("Ready", lambda: ready(kube, "roll"))
    before = kube.get(DEPLOYMENT, "roll")
    assert before is not None
    kube.patch(ISVC, "roll", {"spec": {"triton": {"args": ["--log-verbose=1"]}}})
    after = wait_for(
        "new pod template",
        lambda: (d := kube.get(DEPLOYMENT, "roll")) and "--log-verbose=1" in d["spec"]["template"]["spec"]["containers"][0]["args"] and d,
    )
    assert after["metadata"]["generation"] > before["metadata"]["generation"]
    wait_for("Ready on generation 2", lambda: (s := ready(kube, "roll")) and s["observedGeneration"] == 2)
    wait_for("only new pods", lambda: all("--log-verbose=1" in p["spec"]["containers"][0]["args"] for p in pods_of(kube, "roll")) or None)


def test_children_edited_or_deleted_by_hand_are_repaired(kube: Kube) -> None:
    kube.create(isvc_manifest("repair", gpu={"count": 1}, replicas=2))
    wait_for("Ready", lambda: ready(kube, "repair"))
    kube.kubectl("set", "image", "deployment/repair", "triton=example.com/not-triton:1")
    wait_for(
        "image restored",
        lambda: (d := kube.get(DEPLOYMENT, "repair")) and d["spec"]["template"]["spec"]["containers"][0]["image"].startswith("nvcr.io/"),
    )
    kube.kubectl("patch", "service", "repair", "--type=json", "-p", '[{"op":"remove","path":"/spec/ports/1"}]')
    wait_for("grpc port restored", lambda: (s := kube.get(SERVICE, "repair")) and len(s["spec"]["ports"]) == 3)
    for kind in (SERVICE, PDB, DEPLOYMENT):
        uid = (kube.get(kind, "repair") or {})["metadata"]["uid"]
        kube.delete(kind, "repair")
        wait_for(f"{kind[1]} recreated", lambda k=kind, u=uid: (c := kube.get(k, "repair")) and c["metadata"]["uid"] != u)
    wait_for("Ready again", lambda: ready(kube, "repair"))


def test_deleting_the_inference_service_garbage_collects_its_children(kube: Kube) -> None:
    kube.create(isvc_manifest("gone", gpu={"count": 1}, replicas=2))
    wait_for("children", lambda: kube.get(PDB, "gone"))
    kube.delete(ISVC, "gone")
    for kind in (DEPLOYMENT, SERVICE, PDB):
        wait_for(f"{kind[1]} collected", lambda k=kind: kube.get(k, "gone") is None, timeout=60)
    wait_for("pods collected", lambda: not pods_of(kube, "gone"), timeout=60)


def test_kubectl_scale_works_when_autoscaling_is_off(kube: Kube) -> None:
    kube.create(isvc_manifest("scaled", gpu={"count": 1}))
    wait_for("Ready", lambda: ready(kube, "scaled"))
    kube.kubectl("scale", "inferenceservice/scaled", "--replicas=3")
    wait_for("Deployment at 3", lambda: (d := kube.get(DEPLOYMENT, "scaled")) and d["spec"]["replicas"] == 3)
    status = wait_for("3 ready", lambda: (s := ready(kube, "scaled")) and s["readyReplicas"] == 3 and s)
    assert status["replicas"] == 3
    scale = json.loads(kube.kubectl("get", "--raw", f"/apis/serving.triton-operator.dev/v1alpha1/namespaces/{kube.namespace}/inferenceservices/scaled/scale").stdout)
    assert scale["status"] == {"replicas": 3, "selector": "serving.triton-operator.dev/inferenceservice=scaled"}
    assert kube.get(PDB, "scaled") is not None  # more than one replica now
    kube.kubectl("scale", "inferenceservice/scaled", "--replicas=1")
    wait_for("disruption budget removed at one replica", lambda: kube.get(PDB, "scaled") is None)


def test_with_autoscaling_the_operator_leaves_deployment_replicas_alone(kube: Kube) -> None:
    kube.create(isvc_manifest("auto", gpu={"count": 1}, autoscaling={"minReplicas": 1, "maxReplicas": 4}))
    wait_for("Deployment", lambda: kube.get(DEPLOYMENT, "auto"))
    assert "replicas" not in _owned_spec_fields(kube.get(DEPLOYMENT, "auto") or {})
    kube.kubectl("scale", "deployment/auto", "--replicas=3")  # another owner of the replica count
    kube.patch(ISVC, "auto", {"spec": {"triton": {"args": ["--log-verbose=1"]}}})  # forces a re-apply
    wait_for("re-applied", lambda: "--log-verbose=1" in (kube.get(DEPLOYMENT, "auto") or {})["spec"]["template"]["spec"]["containers"][0]["args"])
    assert (kube.get(DEPLOYMENT, "auto") or {})["spec"]["replicas"] == 3
    wait_for("3 ready", lambda: (s := ready(kube, "auto")) and s["readyReplicas"] == 3)


def test_status_is_not_rewritten_when_nothing_changes(kube: Kube, operator: OperatorProcess) -> None:
    kube.create(isvc_manifest("quiet", gpu={"count": 1}))
    wait_for("Ready", lambda: ready(kube, "quiet"))
    time.sleep(2)  # let the last events drain
    version = (kube.get(ISVC, "quiet") or {})["metadata"]["resourceVersion"]
    writes_before = _operator_writes(kube, operator)
    time.sleep(5)
    assert (kube.get(ISVC, "quiet") or {})["metadata"]["resourceVersion"] == version
    assert _operator_writes(kube, operator) == writes_before


def _operator_writes(kube: Kube, operator: OperatorProcess) -> int:
    """Write requests the operator made in this test's namespace, from the apiserver's audit log."""
    return sum(operator_requests(kube, {"create", "update", "patch", "delete"}).values())
