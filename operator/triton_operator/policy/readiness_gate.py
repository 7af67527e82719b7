"""The pod readiness gate of explicit model control: when a replica may take traffic. No I/O.

With ``spec.models`` Triton starts with no model loaded (``--model-control-mode=explicit``, no ``--load-model``
flags, so that changing the list never changes the pod template) and runs with ``--strict-readiness=false``, so
its readiness probe means "the server answers". The operator then loads the models through Triton's API, and the
pod carries a readiness gate (:data:`GATE`) that only the operator sets: Kubernetes counts the pod Ready, and the
Service sends it requests, once the gate is True as well.

Rules:

- The gate turns True once the replica is *settled*: it answered, and every model in spec.models is loaded or has
  failed and waits for its retry (:func:`replica_settled`). A model that fails everywhere therefore does not keep
  every new replica out of service for the models that do load; status reports the failure instead.
- Once True the gate stays True while models are added, changed or removed in place: the replica keeps serving
  the models it has, and status.models shows the one still loading. Dropping the gate would take every replica out
  of the Service at once for the sake of one new model.
- A container restart empties Triton. The gate's message records the container's restart count when it turned
  True; a higher count turns it False until the models are loaded again (the restarted Triton answers within
  seconds, before any model is loaded). A count, unlike a timestamp, does not depend on the node's clock
  agreeing with the operator's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from triton_operator.policy.models import LOADING, UNLOADING, Action, Load, ReplicaModels
from triton_operator.policy.observations import PodObservation

#: The pod condition type of the readiness gate (pod.spec.readinessGates[].conditionType).
GATE = "serving.triton-operator.dev/models-loaded"

_LOADED_MESSAGE = "every model in spec.models was loaded, or failed and is retried (container restarts: {count})"
_RESTARTS = re.compile(r"\(container restarts: (\d+)\)$")


@dataclass(frozen=True)
class GateCondition:
    """The gate condition to write on a pod."""

    status: str
    reason: str
    message: str

    def as_condition(self, now: str) -> dict[str, Any]:
        return {
            "type": GATE,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "lastTransitionTime": now,
        }


def replica_settled(wanted: Mapping[str, Any], replica: ReplicaModels, runnable: Sequence[Action]) -> bool:
    """Whether the operator has done all it can for this replica now: it answered, nothing remains to be sent
    to it (``runnable``: planned actions not waiting out a retry backoff), and no wanted model is loading or
    unloading there."""
    if not replica.reachable or runnable:
        return False
    busy = {LOADING, UNLOADING}
    return not any(entry.name in wanted and entry.state in busy for entry in replica.entries)


def _restarted_since_gate(pod: PodObservation, message: str) -> bool:
    """The container restarted after the gate turned True (an unreadable message counts as no restart)."""
    recorded = _RESTARTS.search(message)
    return recorded is not None and pod.restart_count > int(recorded.group(1))


def gate_change(pod: PodObservation, settled: bool) -> GateCondition | None:
    """The gate condition this pod should get, or None when it is right as it is (or the pod has no gate)."""
    if GATE not in pod.readiness_gates:
        return None
    current = pod.condition(GATE)
    if current is not None and current[0] == "True":
        if _restarted_since_gate(pod, current[1]):
            return GateCondition(
                "False", "ContainerRestarted", "Triton restarted empty; the operator is loading spec.models again"
            )
        return None
    if settled and pod.running_since:
        return GateCondition("True", "ModelsLoaded", _LOADED_MESSAGE.format(count=pod.restart_count))
    return None


def runnable_actions(actions: Sequence[Action], in_backoff: set[str]) -> list[Action]:
    """The actions that may run now: loads of a model whose last load failed wait for their retry time."""
    return [a for a in actions if not (isinstance(a, Load) and a.name in in_backoff)]
