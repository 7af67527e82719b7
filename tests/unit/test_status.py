"""The status reducer: observations in, phase and conditions out."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from triton_operator.api.v1alpha1 import Phase
from triton_operator.policy.models import ModelsVerdict
from triton_operator.policy.observations import DeploymentObservation, NodeObservation, PodObservation
from triton_operator.policy.status import (
    Observed,
    reduce_status,
    status_patch,
    verdict,
    with_transition_times,
)
from triton_operator.render import parse_inference_service

A100 = "NVIDIA-A100-SXM4-80GB"
NODES = [
    NodeObservation("a100-0", {"nvidia.com/gpu.product": A100}, {"nvidia.com/gpu": "8"}),
    NodeObservation("cpu-0", {}, {"cpu": "32"}),
]


def isvc(**spec: Any) -> Any:
    return parse_inference_service(
        {
            "apiVersion": "serving.triton-operator.dev/v1alpha1",
            "kind": "InferenceService",
            "metadata": {"name": "m", "namespace": "ns", "uid": "u", "generation": 2},
            "spec": {"modelRepository": {"uri": "s3://b/m"}, **spec},
        }
    )


def deployment(want: int = 1, ready: int = 0, updated: int | None = None, **extra: Any) -> DeploymentObservation:
    return DeploymentObservation(
        generation=1,
        observed_generation=extra.pop("observed_generation", 1),
        spec_replicas=want,
        replicas=extra.pop("replicas", want),
        ready_replicas=ready,
        updated_replicas=want if updated is None else updated,
        **extra,
    )


def pending(message: str = "0/8 nodes are available") -> PodObservation:
    return PodObservation("p-1", scheduled=False, ready=False, unschedulable_message=message)


RUNNING = PodObservation("p-1", scheduled=True, ready=False)


@pytest.mark.parametrize(
    ("spec", "observed", "phase", "reason", "message_part"),
    [
        ({}, Observed(apply_error="quota exceeded"), "Failed", "ApplyFailed", "quota exceeded"),
        ({}, Observed(), "Pending", "Creating", "being created"),
        ({}, Observed(deployment=deployment(), pods=[RUNNING]), "Loading", "Loading", "0 of 1"),
        ({}, Observed(deployment=deployment(ready=1)), "Ready", "AllReplicasReady", "1 of 1"),
        (
            {"gpu": {"product": "NVIDIA-B200"}},
            Observed(deployment=deployment(), pods=[pending()], nodes=NODES),
            "Scheduling",
            "Unschedulable",
            f"no node offers nvidia.com/gpu.product=NVIDIA-B200 (products in the cluster: {A100})",
        ),
        (
            {"gpu": {"count": 16}},
            Observed(deployment=deployment(), pods=[pending()], nodes=NODES),
            "Scheduling",
            "Unschedulable",
            "no node has 16 allocatable nvidia.com/gpu (the most on one node is 8)",
        ),
        (
            {"gpu": {"count": 1, "resourceName": "nvidia.com/mig-1g.10gb"}},
            Observed(deployment=deployment(), pods=[pending()], nodes=NODES),
            "Scheduling",
            "Unschedulable",
            "no node offers nvidia.com/mig-1g.10gb",
        ),
        (
            {"nodeSelector": {"pool": "missing"}, "gpu": {"count": 0}},
            Observed(deployment=deployment(), pods=[pending()], nodes=NODES),
            "Scheduling",
            "Unschedulable",
            "no node matches spec.nodeSelector pool=missing",
        ),
        (
            {},
            Observed(deployment=deployment(), pods=[pending("0/8 nodes: 8 Insufficient nvidia.com/gpu")], nodes=NODES),
            "Scheduling",
            "Unschedulable",
            "the scheduler cannot place the pods: 0/8 nodes: 8 Insufficient nvidia.com/gpu",
        ),
        (
            {"replicas": 2},
            Observed(deployment=deployment(want=2, ready=1), pods=[pending()], nodes=NODES),
            "Degraded",
            "Unschedulable",
            "1 of 2 pods cannot be scheduled",
        ),
        (
            {},
            Observed(
                deployment=deployment(),
                pods=[PodObservation("p-1", True, False, waiting_reason="ImagePullBackOff", waiting_message="not found")],
            ),
            "Failed",
            "ImagePullBackOff",
            "pod p-1: ImagePullBackOff: not found",
        ),
        (
            {"replicas": 2},
            Observed(
                deployment=deployment(want=2, ready=1),
                pods=[
                    PodObservation(
                        "p-2",
                        True,
                        False,
                        waiting_reason="CrashLoopBackOff",
                        waiting_message="back-off 10s restarting failed container",
                        last_termination_message="model failed",
                    )
                ],
            ),
            "Degraded",
            "CrashLoopBackOff",
            "model failed",
        ),
        ({}, Observed(deployment=deployment(progress_deadline_exceeded=True)), "Failed", "ProgressDeadlineExceeded", "0 of 1"),
        ({"replicas": 2}, Observed(deployment=deployment(want=2, ready=2, updated=1)), "Loading", "Loading", "2 of 2"),
        ({"replicas": 0}, Observed(deployment=deployment(want=0)), "Ready", "ScaledToZero", "replicas is 0"),
        (
            {"autoscaling": {"minReplicas": 1, "maxReplicas": 5}},
            Observed(deployment=deployment(want=3, ready=3)),
            "Ready",
            "AllReplicasReady",
            "3 of 3",
        ),
        ({}, Observed(deployment=deployment(ready=1, observed_generation=0)), "Loading", "Loading", "1 of 1"),
        ({}, Observed(deployment=deployment(ready=0, replica_failure="exceeded quota")), "Failed", "ReplicaFailure", "exceeded quota"),
        (
            {},
            Observed(deployment=deployment(), pods=[PodObservation("p-1", True, False, restart_count=1, last_termination_message="Error")]),
            "Loading",
            "ContainerRestarted",
            "pod p-1 restarted (1 restarts) (last exit: Error); 0 of 1 replicas ready",
        ),
        (
            {"replicas": 2},
            Observed(deployment=deployment(want=2, ready=1), pods=[PodObservation("p-2", True, False, restart_count=3)]),
            "Degraded",
            "ContainerRestarted",
            "pod p-2 restarted (3 restarts); 1 of 2 replicas ready",
        ),
    ],
    ids=[
        "apply-failed", "no-deployment", "loading", "ready", "unknown-product", "too-many-gpus", "missing-mig",
        "selector-matches-nothing", "gpus-busy", "partly-unschedulable", "image-pull", "crash-loop-beside-ready",
        "deadline", "rolling", "scaled-to-zero", "autoscaled-ready", "deployment-not-observed", "replica-failure",
        "restarted-alone", "restarted-beside-ready",
    ],
)
def test_verdict(spec: dict[str, Any], observed: Observed, phase: str, reason: str, message_part: str) -> None:
    decided = verdict(isvc(**spec), observed)
    assert (decided.phase.value, decided.reason) == (phase, reason)
    assert message_part in decided.message


def test_status_fields_and_positive_conditions_when_ready() -> None:
    status = reduce_status(isvc(), Observed(deployment=deployment(ready=1)), {}, "2026-01-01T00:00:00Z")
    assert status["observedGeneration"] == 2
    assert status["phase"] == "Ready"
    assert (status["replicas"], status["readyReplicas"]) == (1, 1)
    assert status["selector"] == "serving.triton-operator.dev/inferenceservice=m"
    assert status["url"] == "http://m.ns.svc:8000"
    assert status["grpcUrl"] == "m.ns.svc:8001"
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "Reconciled": "True",
        "PodsScheduled": "True",
        "Available": "True",
        "Ready": "True",
    }


def test_unchanged_status_produces_no_patch_and_keeps_transition_times() -> None:
    observed = Observed(deployment=deployment(ready=1))
    first = reduce_status(isvc(), observed, {}, "2026-01-01T00:00:00Z")
    second = reduce_status(isvc(), observed, first, "2026-01-01T00:05:00Z")
    assert status_patch(first, second) == {}


def test_transition_time_moves_only_for_flipped_conditions() -> None:
    before = [{"type": "Ready", "status": "False", "reason": "Loading", "message": "", "lastTransitionTime": "t0"}]
    after = with_transition_times(
        [{"type": "Ready", "status": "True", "reason": "AllReplicasReady", "message": ""}], before, "t1", 3
    )
    assert after[0]["lastTransitionTime"] == "t1"
    same = with_transition_times([{"type": "Ready", "status": "False", "reason": "Other", "message": ""}], before, "t1", 3)
    assert same[0]["lastTransitionTime"] == "t0"


def test_conditions_of_other_writers_are_carried_over() -> None:
    others = [{"type": "example.com/Audited", "status": "True", "reason": "x", "message": "", "lastTransitionTime": "t0"}]
    result = with_transition_times([], others, "t1", 1)
    assert result == others


def test_status_patch_only_holds_changed_keys() -> None:
    assert status_patch({"phase": "Loading", "replicas": 1}, {"phase": "Ready", "replicas": 1}) == {"phase": "Ready"}


@pytest.mark.parametrize(
    ("pod", "expected"),
    [
        (
            {"metadata": {"name": "p"}, "status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/8"}]}},
            PodObservation("p", scheduled=False, ready=False, unschedulable_message="0/8"),
        ),
        (
            {
                "metadata": {"name": "p"},
                "spec": {"nodeName": "n"},
                "status": {
                    "conditions": [{"type": "Ready", "status": "True"}],
                    "containerStatuses": [{"restartCount": 2, "state": {"running": {}}, "lastState": {"terminated": {"reason": "Error"}}}],
                },
            },
            PodObservation("p", scheduled=True, ready=True, restart_count=2, last_termination_message="Error"),
        ),
        ({"metadata": {"name": "p", "deletionTimestamp": "x"}}, PodObservation("p", False, False, deleting=True)),
    ],
    ids=["unschedulable", "ready-after-restarts", "deleting"],
)
def test_pod_observation(pod: dict[str, Any], expected: PodObservation) -> None:
    assert PodObservation.from_pod(pod) == expected


def models_verdict(phase: Any, reason: str = "ModelsLoading", message: str = "model a: loading on p-1") -> Any:
    status = "True" if phase is Phase.READY else "False"
    condition = {"type": "ModelsReady", "status": status, "reason": reason, "message": message}
    return ModelsVerdict([{"name": "a", "state": "LOADING"}], condition, phase)


READY_FLEET = Observed(deployment=deployment(1, ready=1), pods=[PodObservation("p-1", scheduled=True, ready=True)])


@pytest.mark.parametrize(
    ("observed", "models", "phase", "reason"),
    [
        (READY_FLEET, models_verdict(Phase.LOADING), "Loading", "ModelsLoading"),
        (READY_FLEET, models_verdict(Phase.DEGRADED, "ModelsDegraded"), "Degraded", "ModelsDegraded"),
        (READY_FLEET, models_verdict(Phase.FAILED, "ModelLoadFailed"), "Failed", "ModelLoadFailed"),
        (READY_FLEET, models_verdict(Phase.READY, "ModelsReady", "model a ready on p-1"), "Ready", "AllReplicasReady"),
        (READY_FLEET, models_verdict(None, "ReplicasUnreachable"), "Ready", "AllReplicasReady"),
        # the pods' story first: an unschedulable pod explains more than its models
        (Observed(deployment=deployment(1), pods=[pending()], nodes=NODES), models_verdict(Phase.FAILED), "Scheduling", "Unschedulable"),
        (
            Observed(deployment=deployment(2, ready=1), pods=[PodObservation("p-1", scheduled=True, ready=True)]),
            models_verdict(Phase.FAILED, "ModelLoadFailed"),
            "Failed",
            "ModelLoadFailed",
        ),
    ],
    ids=["loading", "degraded", "failed", "ready", "unknown-keeps-pods", "scheduling-first", "degraded-pods-failed-models"],
)
def test_models_decide_the_phase_once_the_pods_are_fine(observed: Observed, models: Any, phase: str, reason: str) -> None:
    status = reduce_status(isvc(), replace(observed, models=models), {}, "t0")
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (status["phase"], ready["reason"]) == (phase, reason)
    assert next(c for c in status["conditions"] if c["type"] == "ModelsReady")["reason"] == models.condition["reason"]
    assert status["models"] == [{"name": "a", "state": "LOADING"}]
    assert status["modelsReady"] == "0/1"
