"""Autoscaling against the real control plane: the built-in autoscaler writes replicas through the scale
subresource and explains itself in status; without metrics it holds; the HPA engine gets a real HPA, acted on
by the real kube-controller-manager.

kwok's pods have addresses nobody answers for, so here the built-in autoscaler never has metrics: that is the
"no data" case, for real. The closed loop with metrics runs on the real node (tests/node).
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.cluster.helpers import DEPLOYMENT, ISVC, Kube, isvc_manifest, operator_requests
from tests.polling import wait_for

HPA = ("autoscaling/v2", "HorizontalPodAutoscaler")

pytestmark = pytest.mark.usefixtures("operator")


def autoscaler(kube: Kube, name: str) -> dict[str, Any]:
    return kube.status(name).get("autoscaler") or {}


def replicas(kube: Kube, name: str) -> int | None:
    deployment = kube.get(DEPLOYMENT, name)
    return deployment["spec"].get("replicas") if deployment else None


def test_the_autoscaler_raises_a_service_to_min_replicas_through_the_scale_subresource(kube: Kube) -> None:
    kube.create(isvc_manifest("floor", gpu={"count": 1}, autoscaling={"minReplicas": 2, "maxReplicas": 5}))
    wait_for("2 replicas", lambda: replicas(kube, "floor") == 2, timeout=30)
    # Written through the scale subresource under the autoscaler's field manager (the API server records no
    # managedFields entry for a scale-subresource patch, so the audit log is the witness), never by the operator's
    # applies.
    scale_writes = [entry for entry in kube.audited() if entry["objectRef"].get("subresource") == "scale"]
    assert [(e["verb"], e["objectRef"]["name"]) for e in scale_writes] == [("patch", "floor")]
    assert "fieldManager=triton-operator-autoscaler" in scale_writes[0]["requestURI"]
    applied = next(m for m in (kube.get(DEPLOYMENT, "floor") or {})["metadata"]["managedFields"] if m["manager"] == "triton-operator")
    assert "f:replicas" not in applied["fieldsV1"]["f:spec"]
    status = wait_for("status.autoscaler", lambda: autoscaler(kube, "floor").get("lastScaleTime") and autoscaler(kube, "floor"))
    assert status["desiredReplicas"] == 2
    events = json.loads(kube.kubectl("get", "events", "--field-selector", "involvedObject.name=floor", "-o", "json").stdout)
    scaled = [e for e in events["items"] if e["reason"] == "Scaled"]
    assert scaled, "an Event for the replica change"
    assert scaled[0]["message"].startswith("1 -> 2: ")


def test_without_metrics_the_count_holds_and_status_says_why(kube: Kube) -> None:
    kube.create(isvc_manifest("blind", gpu={"count": 1}, autoscaling={"minReplicas": 1, "maxReplicas": 6}))
    wait_for("Deployment", lambda: replicas(kube, "blind") is not None)
    kube.kubectl("scale", "deployment/blind", "--replicas=4")
    status = wait_for(
        "holding 4 without metrics",
        lambda: "holding 4 without metrics" in autoscaler(kube, "blind").get("reason", "") and autoscaler(kube, "blind"),
        timeout=30,
    )
    assert "no metrics from blind-" in status["reason"]
    assert "cannot connect" in status["reason"] or "refused" in status["reason"] or "unreachable" in status["reason"].lower()
    assert status["desiredReplicas"] == 4
    time.sleep(6)  # three more decisions
    assert replicas(kube, "blind") == 4, "no data must never mean minReplicas"


def test_an_idle_autoscaled_service_writes_nothing(kube: Kube) -> None:
    kube.create(isvc_manifest("idle", gpu={"count": 1}, autoscaling={"minReplicas": 1, "maxReplicas": 3}))
    wait_for("status.autoscaler", lambda: autoscaler(kube, "idle").get("reason"), timeout=30)
    time.sleep(3)
    before = operator_requests(kube, {"patch", "update", "create", "delete"})
    time.sleep(8)  # four decisions
    after = operator_requests(kube, {"patch", "update", "create", "delete"})
    assert after == before, f"writes while idle: {after - before}"


def test_the_hpa_engine_gets_a_real_hpa_and_the_builtin_autoscaler_stays_out(kube: Kube) -> None:
    spec = {"minReplicas": 2, "maxReplicas": 5, "targetQueueLatencyMilliseconds": 80, "engine": "HPA"}
    kube.create(isvc_manifest("hpa", gpu={"count": 1}, autoscaling=spec))
    hpa = wait_for("HPA", lambda: kube.get(HPA, "hpa"))
    assert hpa["spec"]["metrics"][0]["pods"]["metric"]["name"] == "triton_queue_latency_milliseconds"
    assert hpa["metadata"]["ownerReferences"][0]["kind"] == "InferenceService"
    # The real HPA controller takes it over: it lifts the Deployment to minReplicas and reports that the custom
    # metric is not served (no prometheus-adapter in this cluster).
    wait_for("HPA scales to minReplicas", lambda: replicas(kube, "hpa") == 2, timeout=60)
    conditions = wait_for(
        "HPA conditions",
        lambda: {c["type"]: c for c in ((kube.get(HPA, "hpa") or {}).get("status") or {}).get("conditions") or []}
        .get("ScalingActive") and {c["type"]: c for c in (kube.get(HPA, "hpa") or {})["status"]["conditions"]},
        timeout=60,
    )
    assert conditions["ScalingActive"]["status"] == "False"
    assert "triton_queue_latency_milliseconds" in conditions["ScalingActive"]["message"]
    assert "autoscaler" not in kube.status("hpa"), "the built-in autoscaler leaves HPA services alone"
    assert ("patch", "deployments/scale") not in operator_requests(kube, {"patch"})

    applies = operator_requests(kube, {"patch"})[("patch", "horizontalpodautoscalers")]
    time.sleep(17)  # the HPA controller rewrites its status every 15 s: that is not a reason to re-apply
    assert operator_requests(kube, {"patch"})[("patch", "horizontalpodautoscalers")] == applies

    kube.patch(ISVC, "hpa", {"spec": {"autoscaling": {"engine": "Operator"}}})
    wait_for("HPA removed", lambda: kube.get(HPA, "hpa") is None)
    wait_for("the built-in autoscaler takes over", lambda: autoscaler(kube, "hpa").get("desiredReplicas") == 2, timeout=30)
