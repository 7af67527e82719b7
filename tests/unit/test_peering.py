"""kopf's peering rule as the operator reads it: who works, who stands by, and agreement with kopf itself.

The operator gates its own tasks (reconcile workers, autoscaler, model control) on ``policy.peering.standing``,
while kopf gates its watches on its own ``process_peering_event``. The two must agree on every input, or a replica
would reconcile from paused watches (or sit idle while kopf feeds it). The agreement test runs kopf's function on
the same peering objects and compares.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import kopf
import pytest
from kopf._cogs.aiokits import aiotoggles
from kopf._cogs.structs import references
from kopf._core.engines import peering as kopf_peering

from triton_operator.policy.peering import default_priority, peers_of, standing

ME = "triton-operator@pod-a.1"
WHERE = "ClusterKopfPeering triton-operator"


def record(priority: int, seconds_ago: float = 1, lifetime: int = 60) -> dict[str, Any]:
    """A peer's record, last seen ``seconds_ago`` before the moment ``peering`` makes the object."""
    return {"priority": priority, "lifetime": lifetime, "ago": seconds_ago}


def peering(records: dict[str, Any], at: dt.datetime) -> dict[str, Any]:
    """The peering object holding these records, their ages counted back from ``at``. Made when a test runs, not
    when the module is collected: kopf measures a record's age against the clock."""
    status = {}
    for identity, fields in records.items():
        aged = isinstance(fields, dict) and "ago" in fields
        status[identity] = (
            {**{k: v for k, v in fields.items() if k != "ago"}, "lastseen": (at - dt.timedelta(seconds=fields["ago"])).isoformat()}
            if aged
            else fields
        )
    return {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "triton-operator"}, "status": status}


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


#: (case, status records of the peering object, this replica's priority, works?)
CASES: list[tuple[str, dict[str, dict[str, Any]], int, bool]] = [
    ("nobody recorded yet", {}, 0, True),
    ("only this replica", {ME: record(0)}, 0, True),
    ("a lower live peer", {ME: record(5), "b": record(4)}, 5, True),
    ("a higher live peer", {ME: record(4), "b": record(5)}, 4, False),
    ("a higher peer whose record expired", {"b": record(5, seconds_ago=61)}, 4, True),
    ("a higher peer with a short lifetime, expired", {"b": record(5, seconds_ago=11, lifetime=10)}, 4, True),
    ("a higher peer with a long lifetime, alive", {"b": record(5, seconds_ago=100, lifetime=300)}, 4, False),
    ("the same priority, alive: kopf pauses both", {ME: record(3), "b": record(3)}, 3, False),
    ("the same priority, expired", {"b": record(3, seconds_ago=90)}, 3, True),
    ("a higher peer without lastseen counts as seen now", {"b": {"priority": 9}}, 3, False),
    ("an older replica by default priority", {"b": record(default_priority(100.0))}, default_priority(200.0), False),
    ("a younger replica by default priority", {"b": record(default_priority(300.0))}, default_priority(200.0), True),
    ("an explicit priority outranks the defaults", {"b": record(default_priority(1.0))}, 0, True),
    ("this replica's own stale record does not block it", {ME: record(99, seconds_ago=1)}, 1, True),
    ("a lower live peer and a higher dead one", {"b": record(1), "c": record(9, seconds_ago=70)}, 5, True),
]


@pytest.mark.parametrize(("records", "priority", "works"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_standing(records: dict[str, dict[str, Any]], priority: int, works: bool) -> None:
    at = now()
    verdict = standing({WHERE: peering(records, at)}, ME, priority, at)
    assert verdict.active is works, verdict.reason


async def kopf_pauses(body: dict[str, Any], priority: int) -> bool:
    """kopf's own decision on this peering object: does it pause the operator with this identity and priority?"""
    settings = kopf.OperatorSettings()
    settings.peering.name = "triton-operator"
    settings.peering.priority = priority
    paused = aiotoggles.Toggle(True)  # mandatory peering starts paused, as `--peering` does
    woken = asyncio.Event()
    woken.set()  # kopf would otherwise sleep until the next peer expires, then write
    await kopf_peering.process_peering_event(
        raw_event={"type": "MODIFIED", "object": body},  # type: ignore[typeddict-item]
        namespace=None,
        resource=references.Resource("kopf.dev", "v1", "clusterkopfpeerings"),
        identity=kopf_peering.Identity(ME),
        settings=settings,
        autoclean=False,
        stream_pressure=woken,
        conflicts_found=paused,
    )
    return paused.is_on()


@pytest.mark.parametrize(("records", "priority"), [c[1:3] for c in CASES], ids=[c[0] for c in CASES])
def test_kopf_decides_the_same(records: dict[str, dict[str, Any]], priority: int) -> None:
    at = now()
    body = peering(records, at)
    assert asyncio.run(kopf_pauses(body, priority)) is not standing({WHERE: body}, ME, priority, at).active


def test_a_missing_peering_object_means_standing_by_with_the_fix() -> None:
    verdict = standing({WHERE: None}, ME, 0, now())
    assert not verdict.active
    assert "does not exist" in verdict.reason
    assert "chart" in verdict.reason


def test_every_watched_namespace_must_let_this_replica_work() -> None:
    clear, blocked = peering({}, now()), peering({"b": record(10)}, now())
    assert standing({"KopfPeering a/p": clear, "KopfPeering b/p": clear}, ME, 0, now()).active
    verdict = standing({"KopfPeering a/p": clear, "KopfPeering b/p": blocked}, ME, 0, now())
    assert not verdict.active
    assert "KopfPeering b/p" in verdict.reason
    assert "b has a higher priority" in verdict.reason
    assert not standing({}, ME, 0, now()).active


def test_the_same_priority_names_the_fix() -> None:
    verdict = standing({WHERE: peering({"b": record(0)}, now())}, ME, 0, now())
    assert "same priority" in verdict.reason
    assert "--priority" in verdict.reason


@pytest.mark.parametrize(
    "bad",
    [None, "garbage", {"priority": "high"}, {"priority": 1, "lifetime": None}, {"priority": 5, "lastseen": "yesterday"}],
    ids=["null", "string", "priority not a number", "lifetime null", "lastseen unparsable"],
)
def test_odd_records_never_raise(bad: Any) -> None:
    body = peering({"b": bad, "c": record(1)}, now())
    parsed = peers_of(body, now())
    assert "c" in {p.identity for p in parsed}
    standing({WHERE: body}, ME, 0, now())  # no exception: a peer's garbage must not stop this replica


def test_default_priorities_order_replicas_by_start_time_below_zero() -> None:
    assert default_priority(1000.0) > default_priority(1000.001) > default_priority(2000.0)
    assert default_priority(1.0) < 0


class FakeApi:
    """The peering objects as the API server would return them (None is a 404), and empty lists for the sync."""

    def __init__(self) -> None:
        self.objects: dict[str | None, dict[str, Any] | None] = {}
        self.fail: Exception | None = None
        self.lists = 0

    async def get_peering(self, name: str, namespace: str | None) -> dict[str, Any] | None:
        if self.fail is not None:
            raise self.fail
        return self.objects.get(namespace)

    async def list_objects(self, api_version: str, kind: str, namespace: str | None, label_selector: str | None = None) -> list[dict[str, Any]]:
        self.lists += 1
        return []


def test_the_gate_starts_and_stops_the_controller_with_the_standing() -> None:
    from triton_operator.controller import Controller
    from triton_operator.peering import Peering, PeeringGate

    async def scenario() -> None:
        api = FakeApi()
        controller = Controller(kube=api)  # type: ignore[arg-type]  (no service to reconcile: lists only)
        gate = PeeringGate(api, controller, Peering("p", (), ME, 5))

        api.objects[None] = None  # the object is missing: stand by, and say how to fix it
        assert not (await gate.check()).active
        assert not controller.working

        api.objects[None] = peering({"b": record(9)}, now())  # a higher peer works
        assert "standing by" in (await gate.check()).reason
        assert not controller.working
        # kopf's watches are paused now, but an event may already be in flight: it is kept, not reconciled
        controller.on_service_event("ADDED", {"metadata": {"namespace": "a", "name": "x", "resourceVersion": "1"}})
        assert len(controller.queue) == 1
        assert controller.working is False

        api.objects[None] = peering({"b": record(1)}, now())  # the peer is outranked now: work, starting with what was seen
        assert (await gate.check()).active
        assert controller.working
        assert api.lists == 6  # the sync listed each watched kind before any reconcile
        kept = controller.store

        api.fail = ConnectionError("apiserver away")  # unreadable: the standing holds
        with pytest.raises(ConnectionError):
            await gate.check()
        assert controller.working
        api.fail = None

        api.objects[None] = peering({"b": record(5)}, now())  # the same priority: kopf pauses both, so this replica stops
        assert not (await gate.check()).active
        assert not controller.working
        assert controller.store is not kept
        assert not controller.store.services
        await controller.stop()

    asyncio.run(scenario())
