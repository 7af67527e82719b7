"""Explicit model control's pure rules: the readiness gate, which actions may run, and model Events."""

from __future__ import annotations

from typing import Any

import pytest

from triton_operator.policy.model_events import ModelEvent, model_events
from triton_operator.policy.models import Load, ModelEntry, ReplicaModels, Unload
from triton_operator.policy.observations import PodObservation
from triton_operator.policy.readiness_gate import GATE, gate_change, replica_settled, runnable_actions

LOADED = "every model in spec.models was loaded, or failed and is retried (container restarts: {})"


def pod(gate: tuple[str, str] | None = None, *, restarts: int = 0, gated: bool = True, running: bool = True) -> PodObservation:
    return PodObservation(
        "p",
        scheduled=True,
        ready=False,
        restart_count=restarts,
        ip="10.88.0.5",
        running_since="2026-11-23T07:00:00Z" if running else None,
        readiness_gates=(GATE,) if gated else (),
        conditions=((GATE, *gate),) if gate else (),
    )


@pytest.mark.parametrize(
    ("observed", "settled", "expected"),
    [
        (pod(), True, ("True", "ModelsLoaded", LOADED.format(0))),
        (pod(), False, None),  # still loading: no condition, the pod stays unready
        (pod(running=False), True, None),  # no container run to speak for
        (pod(gated=False), True, None),  # poll mode: no gate to set
        (pod(("True", LOADED.format(0))), True, None),  # already right: no write
        (pod(("True", LOADED.format(0))), False, None),  # a model added later: keep serving the others
        (pod(("False", "restarted")), True, ("True", "ModelsLoaded", LOADED.format(0))),
        (
            pod(("True", LOADED.format(0)), restarts=1),
            False,
            ("False", "ContainerRestarted", "Triton restarted empty; the operator is loading spec.models again"),
        ),
        (pod(("True", LOADED.format(1)), restarts=1), True, None),  # set after the restart already
        (pod(("True", "set by hand"), restarts=3), False, None),  # unreadable record: not taken as a restart
        (pod(("False", "x"), restarts=2), True, ("True", "ModelsLoaded", LOADED.format(2))),
    ],
    ids=[
        "settled-opens",
        "unsettled-waits",
        "not-running",
        "no-gate",
        "open-stays",
        "open-stays-while-loading-more",
        "closed-reopens",
        "restart-closes",
        "open-after-restart",
        "unreadable-record",
        "reopens-with-new-count",
    ],
)
def test_gate_change(observed: PodObservation, settled: bool, expected: tuple[str, str, str] | None) -> None:
    change = gate_change(observed, settled)
    assert (None if change is None else (change.status, change.reason, change.message)) == expected
    if change is not None:
        condition = change.as_condition("2026-11-23T07:00:05Z")
        assert (condition["type"], condition["lastTransitionTime"]) == (GATE, "2026-11-23T07:00:05Z")


WANTED: dict[str, Any] = {"a": None, "b": None}


@pytest.mark.parametrize(
    ("replica", "runnable", "settled"),
    [
        (ReplicaModels("p", True, entries=(ModelEntry("a", "1", "READY"), ModelEntry("b", "1", "READY"))), [], True),
        (ReplicaModels("p", True, entries=(ModelEntry("a", "1", "READY"),)), [Load("b")], False),
        (ReplicaModels("p", True, entries=(ModelEntry("a", "1", "READY"), ModelEntry("b", "1", "LOADING"))), [], False),
        (ReplicaModels("p", True, entries=(ModelEntry("a", "1", "READY"), ModelEntry("c", "1", "UNLOADING"))), [], True),
        (ReplicaModels("p", False, error="refused"), [], False),
        # b failed and waits out its backoff: nothing to do now, so the replica serves what it has
        (ReplicaModels("p", True, entries=(ModelEntry("a", "1", "READY"), ModelEntry("b", "1", "UNAVAILABLE", "bad"))), [], True),
    ],
    ids=["all-ready", "load-to-send", "loading", "unwanted-unloading", "unreachable", "failed-in-backoff"],
)
def test_replica_settled(replica: ReplicaModels, runnable: list[Any], settled: bool) -> None:
    assert replica_settled(WANTED, replica, runnable) is settled


def test_runnable_actions_hold_back_loads_in_backoff_only() -> None:
    actions = [Unload("old"), Load("a", None, "failed before"), Load("b")]
    assert runnable_actions(actions, {"a"}) == [Unload("old"), Load("b")]
    assert runnable_actions(actions, set()) == actions


def model(name: str, state: str, reason: str | None = None, version: str | None = "1") -> dict[str, Any]:
    return {k: v for k, v in {"name": name, "state": state, "reason": reason, "version": version}.items() if v}


@pytest.mark.parametrize(
    ("previous", "current", "expected"),
    [
        (None, [model("a", "READY")], [ModelEvent("Normal", "ModelReady", "model a version 1 is READY")]),
        ([model("a", "READY")], [model("a", "READY")], []),
        ([model("a", "LOADING", "loading on p")], [model("a", "LOADING", "loading on p, q")], []),
        (
            [model("a", "READY")],
            [model("a", "DEGRADED", "failed to load on p: boom")],
            [ModelEvent("Warning", "ModelDegraded", "model a version 1 is DEGRADED: failed to load on p: boom")],
        ),
        (
            [],
            [model("x", "UNAVAILABLE", "not in the model repository of p", version=None)],
            [ModelEvent("Warning", "ModelFailed", "model x is UNAVAILABLE: not in the model repository of p")],
        ),
        (
            [model("a", "READY"), model("b", "READY")],
            [model("a", "READY")],
            [ModelEvent("Normal", "ModelRemoved", "model b is no longer served (removed from spec.models or from the repository)")],
        ),
    ],
    ids=["appears-ready", "steady", "same-state-new-reason", "degrades", "fails", "removed"],
)
def test_model_events(
    previous: list[dict[str, Any]] | None, current: list[dict[str, Any]], expected: list[ModelEvent]
) -> None:
    assert model_events(previous, current) == expected


def test_pod_observation_reads_ip_gate_and_running_start() -> None:
    body = {
        "metadata": {"name": "p"},
        "spec": {"nodeName": "n", "readinessGates": [{"conditionType": GATE}]},
        "status": {
            "podIP": "10.88.0.9",
            "conditions": [
                {"type": "Ready", "status": "False"},
                {"type": GATE, "status": "True", "message": LOADED.format(0)},
            ],
            "containerStatuses": [{"restartCount": 0, "state": {"running": {"startedAt": "2026-11-23T07:00:00Z"}}}],
        },
    }
    observed = PodObservation.from_pod(body)
    assert (observed.ip, observed.running_since, observed.readiness_gates) == ("10.88.0.9", "2026-11-23T07:00:00Z", (GATE,))
    assert observed.condition(GATE) == ("True", LOADED.format(0))
    assert observed.condition("Ready") is None  # the kubelet's conditions are read as fields, not kept twice
