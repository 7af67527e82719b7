"""The status reducer: observations in, status out, no I/O.

Conditions follow metav1.Condition with positive polarity (each is True when healthy), so Argo CD, Flux and
``kubectl wait --for=condition=Ready`` read them correctly. The phase is the one-word summary a person scans in
``kubectl get tis``; the Ready condition's reason and message carry what to do about it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from triton_operator.api.v1alpha1 import InferenceService, Phase
from triton_operator.policy.models import CONDITION_TYPE as MODELS_READY
from triton_operator.policy.models import READY as MODEL_READY
from triton_operator.policy.models import ModelsVerdict
from triton_operator.policy.observations import DeploymentObservation, NodeObservation, PodObservation
from triton_operator.policy.scheduling import explain_unschedulable
from triton_operator.resources.meta import GRPC_PORT, HTTP_PORT, selector_string, service_host

# The condition types this reducer owns, in the order they are listed.
RECONCILED = "Reconciled"
PODS_SCHEDULED = "PodsScheduled"
AVAILABLE = "Available"
READY = "Ready"
OWNED_CONDITIONS = (RECONCILED, PODS_SCHEDULED, AVAILABLE, MODELS_READY, READY)
RESTARTED = "ContainerRestarted"


@dataclass(frozen=True)
class Observed:
    """Everything the reducer needs about one InferenceService's world."""

    apply_error: str | None = None
    deployment: DeploymentObservation | None = None
    pods: Sequence[PodObservation] = ()
    nodes: Sequence[NodeObservation] = ()
    models: ModelsVerdict | None = None


@dataclass(frozen=True)
class Verdict:
    """The phase, with the reason and message that explain it."""

    phase: Phase
    reason: str
    message: str


def desired_replicas(isvc: InferenceService, deployment: DeploymentObservation | None) -> int:
    """Replicas the fleet should have: the spec's, or the autoscaler's (recorded on the Deployment)."""
    if isvc.spec.autoscaled:
        return deployment.spec_replicas if deployment else isvc.spec.autoscaling.min_replicas  # type: ignore[union-attr]
    return isvc.spec.replicas


def _stuck_message(pod: PodObservation) -> str:
    """For a crash loop, why the container exited (the back-off notice says nothing); otherwise the kubelet's
    message (e.g. which image could not be pulled)."""
    if pod.waiting_reason == "CrashLoopBackOff" and pod.last_termination_message:
        detail = pod.last_termination_message
    else:
        detail = pod.waiting_message or pod.last_termination_message or ""
    return f"pod {pod.name}: {pod.waiting_reason}" + (f": {detail}" if detail else "")


def verdict(isvc: InferenceService, observed: Observed) -> Verdict:
    """Decide the phase. Order matters: the most actionable explanation wins."""
    if observed.apply_error:
        return Verdict(Phase.FAILED, "ApplyFailed", observed.apply_error)
    deployment = observed.deployment
    if deployment is None:
        return Verdict(Phase.PENDING, "Creating", "the Triton Deployment is being created")

    want = desired_replicas(isvc, deployment)
    ready = deployment.ready_replicas
    live_pods = [p for p in observed.pods if not p.deleting]
    unscheduled = [p for p in live_pods if not p.scheduled]
    stuck = [p for p in live_pods if p.stuck]

    if want == 0:
        return Verdict(Phase.READY, "ScaledToZero", "replicas is 0: no Triton pod runs")
    if deployment.replica_failure and ready == 0:
        return Verdict(Phase.FAILED, "ReplicaFailure", deployment.replica_failure)
    if stuck and ready == 0:
        return Verdict(Phase.FAILED, stuck[0].waiting_reason or "PodFailing", _stuck_message(stuck[0]))
    if unscheduled:
        why = explain_unschedulable(isvc, observed.nodes, unscheduled[0].unschedulable_message)
        message = f"{len(unscheduled)} of {max(want, len(live_pods))} pods cannot be scheduled: {why}"
        return Verdict(Phase.SCHEDULING if ready == 0 else Phase.DEGRADED, "Unschedulable", message)
    if deployment.progress_deadline_exceeded and ready < want:
        return Verdict(
            Phase.FAILED if ready == 0 else Phase.DEGRADED,
            "ProgressDeadlineExceeded",
            f"{ready} of {want} replicas ready after spec.triton.startupTimeoutSeconds; see the pods' logs",
        )
    if stuck:
        return Verdict(Phase.DEGRADED, stuck[0].waiting_reason or "PodFailing", _stuck_message(stuck[0]))
    if ready >= want and deployment.rolled_out and deployment.observed_generation >= deployment.generation:
        return Verdict(Phase.READY, "AllReplicasReady", f"{ready} of {want} replicas ready")
    restarted = [p for p in live_pods if p.restart_count > 0 and not p.ready]
    if restarted:
        pod = restarted[0]
        last = f" (last exit: {pod.last_termination_message})" if pod.last_termination_message else ""
        return Verdict(
            Phase.LOADING if ready == 0 else Phase.DEGRADED,
            RESTARTED,
            f"pod {pod.name} restarted ({pod.restart_count} restarts){last}; {ready} of {want} replicas ready",
        )
    if ready == 0 or not deployment.rolled_out:
        return Verdict(Phase.LOADING, "Loading", f"{ready} of {want} replicas ready; Triton is starting and loading models")
    return Verdict(Phase.DEGRADED, "ReplicasNotReady", f"{ready} of {want} replicas ready")


def with_models(decided: Verdict, models: ModelsVerdict | None) -> Verdict:
    """Let the models speak once the pods are fine: Kubernetes may count every replica ready while a model is
    still loading, failed on some replicas, or loads nowhere; then Triton's view decides the phase. A
    Degraded fleet whose models load nowhere is Failed. Otherwise the pods' story comes first (a pod that cannot
    be scheduled explains more than the models it has not loaded)."""
    if models is None or models.phase is None:
        return decided
    reason, message = models.condition["reason"], models.condition["message"]
    if decided.phase is Phase.READY:
        if models.phase is Phase.READY:
            return Verdict(Phase.READY, decided.reason, f"{decided.message}; {message}")
        return Verdict(models.phase, reason, message)
    if decided.phase is Phase.DEGRADED and models.phase is Phase.FAILED:
        return Verdict(Phase.FAILED, reason, message)
    return decided


def _condition(type_: str, ok: bool, reason: str, message: str) -> dict[str, Any]:
    return {"type": type_, "status": "True" if ok else "False", "reason": reason, "message": message}


def conditions(isvc: InferenceService, observed: Observed, decided: Verdict) -> list[dict[str, Any]]:
    """The owned conditions, without timestamps (added by ``with_transition_times``)."""
    deployment = observed.deployment
    ready_replicas = deployment.ready_replicas if deployment else 0
    unschedulable = decided.reason == "Unschedulable"
    return [
        _condition(
            RECONCILED,
            observed.apply_error is None,
            "ApplyFailed" if observed.apply_error else "ChildrenApplied",
            observed.apply_error or "the Deployment, Service, disruption budget and HPA the spec asks for match it",
        ),
        _condition(
            PODS_SCHEDULED,
            not unschedulable,
            "Unschedulable" if unschedulable else "Scheduled",
            decided.message if unschedulable else "every pod has a node",
        ),
        _condition(
            AVAILABLE,
            ready_replicas > 0,
            "ReplicasReady" if ready_replicas > 0 else "NoReadyReplicas",
            f"{ready_replicas} replicas serve requests",
        ),
        *([observed.models.condition] if observed.models else []),
        _condition(READY, decided.phase is Phase.READY, decided.reason, decided.message),
    ]


def with_transition_times(
    new: list[dict[str, Any]], previous: Sequence[dict[str, Any]], now: str, generation: int
) -> list[dict[str, Any]]:
    """Keep lastTransitionTime unless the status flipped, so unchanged conditions produce no write."""
    before = {c.get("type"): c for c in previous}
    result = []
    for condition in new:
        old = before.get(condition["type"], {})
        changed = old.get("status") != condition["status"]
        result.append(
            {
                **condition,
                "lastTransitionTime": now if changed or "lastTransitionTime" not in old else old["lastTransitionTime"],
                "observedGeneration": generation,
            }
        )
    # Conditions owned by other writers are carried over untouched.
    result.extend(c for c in previous if c.get("type") not in OWNED_CONDITIONS)
    return result


def reduce_status(isvc: InferenceService, observed: Observed, previous: dict[str, Any], now: str) -> dict[str, Any]:
    """The owned part of status.

    ``previous`` is the object's current status; ``now`` is an RFC 3339 timestamp used only for conditions
    that transition.
    """
    decided = with_models(verdict(isvc, observed), observed.models)
    deployment = observed.deployment
    generation = isvc.metadata.generation
    models: dict[str, Any] = {}
    if observed.models is not None:
        ready = sum(1 for m in observed.models.models if m.get("state") == MODEL_READY)
        models = {"models": observed.models.models, "modelsReady": f"{ready}/{len(observed.models.models)}"}
    return {
        "observedGeneration": generation,
        "conditions": with_transition_times(
            conditions(isvc, observed, decided), previous.get("conditions") or [], now, generation
        ),
        "phase": decided.phase.value,
        "replicas": deployment.replicas if deployment else 0,
        "readyReplicas": deployment.ready_replicas if deployment else 0,
        "selector": selector_string(isvc),
        "url": f"http://{service_host(isvc)}:{HTTP_PORT}",
        "grpcUrl": f"{service_host(isvc)}:{GRPC_PORT}",
        **models,
    }


def status_patch(previous: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The merge patch that turns ``previous`` into ``new`` for the owned keys; empty when nothing changed."""
    return {key: value for key, value in new.items() if previous.get(key) != value}


def ready_condition(status: dict[str, Any]) -> dict[str, Any]:
    """The Ready condition of a status, or an empty dict."""
    return next((c for c in status.get("conditions") or [] if c.get("type") == READY), {})
