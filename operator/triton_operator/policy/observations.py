"""What the operator observed of the cluster, reduced to plain values.

The adapters turn API objects into these; the pure policies read only these. Keeping them small also keeps the
operator's memory flat with thousands of pods.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Container waiting reasons that will not fix themselves without a change by the user.
FATAL_WAITING_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
        "CrashLoopBackOff",
    }
)


# Pod conditions the kubelet and scheduler own; the rest (readiness gates) are kept on the observation.
_KUBELET_CONDITIONS = frozenset({"PodScheduled", "Initialized", "ContainersReady", "Ready", "PodReadyToStartContainers"})


@dataclass(frozen=True)
class PodObservation:
    """One Triton pod."""

    name: str
    scheduled: bool
    ready: bool
    unschedulable_message: str | None = None
    waiting_reason: str | None = None
    waiting_message: str | None = None
    last_termination_message: str | None = None
    restart_count: int = 0
    deleting: bool = False
    ip: str | None = None
    running_since: str | None = None
    readiness_gates: tuple[str, ...] = ()
    conditions: tuple[tuple[str, str, str], ...] = ()

    def condition(self, type_: str) -> tuple[str, str] | None:
        """(status, message) of a pod condition other than the kubelet's, e.g. a readiness gate."""
        return next(((status, message) for kind, status, message in self.conditions if kind == type_), None)

    @property
    def stuck(self) -> bool:
        """Waiting for a reason that needs the user: a bad image, a missing secret, a crash loop."""
        return self.waiting_reason in FATAL_WAITING_REASONS

    @classmethod
    def from_pod(cls, pod: dict[str, Any]) -> PodObservation:
        """Read a core/v1 Pod (as a plain dict)."""
        metadata = pod.get("metadata") or {}
        status = pod.get("status") or {}
        conditions = {c.get("type"): c for c in status.get("conditions") or []}
        scheduled_condition = conditions.get("PodScheduled") or {}
        scheduled = scheduled_condition.get("status") == "True" or bool((pod.get("spec") or {}).get("nodeName"))
        unschedulable = (
            scheduled_condition.get("message")
            if scheduled_condition.get("status") == "False" and scheduled_condition.get("reason") == "Unschedulable"
            else None
        )
        container: dict[str, Any] = next(iter(status.get("containerStatuses") or []), {})
        state = container.get("state") or {}
        waiting = state.get("waiting") or {}
        last_terminated = (container.get("lastState") or {}).get("terminated") or {}
        return cls(
            name=metadata.get("name", ""),
            scheduled=scheduled,
            ready=(conditions.get("Ready") or {}).get("status") == "True",
            unschedulable_message=unschedulable,
            waiting_reason=waiting.get("reason"),
            waiting_message=waiting.get("message"),
            last_termination_message=last_terminated.get("message") or last_terminated.get("reason"),
            restart_count=int(container.get("restartCount") or 0),
            deleting=bool(metadata.get("deletionTimestamp")),
            ip=status.get("podIP") or None,
            running_since=(state.get("running") or {}).get("startedAt"),
            readiness_gates=tuple(
                str(gate.get("conditionType")) for gate in (pod.get("spec") or {}).get("readinessGates") or []
            ),
            conditions=tuple(
                (str(c.get("type")), str(c.get("status")), str(c.get("message") or ""))
                for c in status.get("conditions") or []
                if c.get("type") not in _KUBELET_CONDITIONS
            ),
        )


@dataclass(frozen=True)
class DeploymentObservation:
    """The Triton Deployment's spec replicas and status."""

    generation: int = 0
    observed_generation: int = 0
    spec_replicas: int = 0
    replicas: int = 0
    ready_replicas: int = 0
    updated_replicas: int = 0
    progress_deadline_exceeded: bool = False
    replica_failure: str | None = None

    @property
    def rolled_out(self) -> bool:
        """The controller saw the latest spec and every pod runs it."""
        return (
            self.observed_generation >= self.generation
            and self.updated_replicas >= self.spec_replicas
            and self.replicas == self.spec_replicas
        )

    @classmethod
    def from_deployment(cls, deployment: dict[str, Any]) -> DeploymentObservation:
        """Read an apps/v1 Deployment (as a plain dict)."""
        metadata = deployment.get("metadata") or {}
        spec = deployment.get("spec") or {}
        status = deployment.get("status") or {}
        conditions = {c.get("type"): c for c in status.get("conditions") or []}
        progressing = conditions.get("Progressing") or {}
        failure = conditions.get("ReplicaFailure") or {}
        return cls(
            generation=int(metadata.get("generation") or 0),
            observed_generation=int(status.get("observedGeneration") or 0),
            spec_replicas=int(spec.get("replicas", 1)),
            replicas=int(status.get("replicas") or 0),
            ready_replicas=int(status.get("readyReplicas") or 0),
            updated_replicas=int(status.get("updatedReplicas") or 0),
            progress_deadline_exceeded=progressing.get("reason") == "ProgressDeadlineExceeded",
            replica_failure=failure.get("message") if failure.get("status") == "True" else None,
        )


@dataclass(frozen=True)
class NodeObservation:
    """A node, as far as placing Triton pods goes."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)
    allocatable: dict[str, str] = field(default_factory=dict)
    unschedulable: bool = False

    @classmethod
    def from_node(cls, node: dict[str, Any]) -> NodeObservation:
        """Read a core/v1 Node (as a plain dict)."""
        return cls(
            name=(node.get("metadata") or {}).get("name", ""),
            labels=dict((node.get("metadata") or {}).get("labels") or {}),
            allocatable={k: str(v) for k, v in ((node.get("status") or {}).get("allocatable") or {}).items()},
            unschedulable=bool((node.get("spec") or {}).get("unschedulable")),
        )
