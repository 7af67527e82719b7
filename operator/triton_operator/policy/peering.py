"""Which operator replica works: kopf's peering rule, read from the peering objects, as a pure function.

With ``run --peering NAME`` every replica records itself (priority, lifetime, last seen) in the status of a kopf
peering object (ClusterKopfPeering cluster-wide, KopfPeering in each watched namespace), and kopf pauses a replica's
watches while a live peer has a higher priority, or the same one (then every replica pauses). kopf pauses only what
it runs, though: the reconcile workers, the built-in autoscaler and model control are this operator's own tasks. So
the operator reads the same objects and applies the same rule to run them only while kopf would not pause it.
``tests/unit/test_peering.py`` holds this function to kopf's own ``process_peering_event`` on a table of cases.

Each replica's default priority orders the replicas by start time, the oldest first: a replica that starts during a
rolling update finds the running one ahead of it and waits, instead of taking over while the old one still works.
An explicit ``--priority`` of 0 or more outranks every default one (kopf's ``--dev`` uses 666).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: kopf's default lifetime of a peer's record, in seconds, when a record names none.
DEFAULT_LIFETIME_SECONDS = 60


def default_priority(started_at: float) -> int:
    """A priority that is higher the earlier the process started (microseconds before the epoch, negated), so the
    oldest replica works and the others wait; below 0, so any explicit priority outranks it."""
    return -int(started_at * 1_000_000)


@dataclass(frozen=True)
class Peer:
    """One operator's record in a peering object's status."""

    identity: str
    priority: int
    deadline: dt.datetime

    def alive(self, now: dt.datetime) -> bool:
        return self.deadline > now


def _parse_time(text: Any, now: dt.datetime) -> dt.datetime:
    """kopf writes ``datetime.isoformat()``; a record without one counts as seen now, as kopf counts it."""
    if not isinstance(text, str):
        return now
    try:
        seen = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return now
    return seen if seen.tzinfo else seen.replace(tzinfo=dt.UTC)


def peers_of(peering: Mapping[str, Any], now: dt.datetime) -> list[Peer]:
    """The records in a peering object's status. A record that is not a mapping, or has a priority or lifetime that
    is not a number, is skipped: kopf itself would fail on it, and this operator must not."""
    peers = []
    for identity, record in (peering.get("status") or {}).items():
        if not isinstance(record, Mapping):
            continue
        try:
            priority = int(record.get("priority", 0))
            lifetime = int(record.get("lifetime", DEFAULT_LIFETIME_SECONDS))
        except (TypeError, ValueError):
            continue
        seen = _parse_time(record.get("lastseen"), now)
        peers.append(Peer(str(identity), priority, seen + dt.timedelta(seconds=lifetime)))
    return peers


@dataclass(frozen=True)
class Standing:
    """Whether this replica works, and why, in words for its log and metrics."""

    active: bool
    reason: str


def standing(
    peerings: Mapping[str, Mapping[str, Any] | None],
    identity: str,
    priority: int,
    now: dt.datetime,
) -> Standing:
    """This replica's standing across its peering objects (one per watched namespace, or the cluster-wide one),
    keyed by where they live. It works only when no object is missing and none holds a live peer with a priority
    as high as its own; like kopf, it does not need to have written its own record yet."""
    if not peerings:
        return Standing(False, "no peering object to read")
    for where, peering in sorted(peerings.items()):
        if peering is None:
            return Standing(False, f"the peering object {where} does not exist: create it (the Helm chart does)")
        others = [peer for peer in peers_of(peering, now) if peer.identity != identity and peer.alive(now)]
        ahead = sorted(peer.identity for peer in others if peer.priority > priority)
        if ahead:
            return Standing(False, f"standing by: {', '.join(ahead)} has a higher priority in {where}")
        tied = sorted(peer.identity for peer in others if peer.priority == priority)
        if tied:
            return Standing(False, f"paused: {', '.join(tied)} has the same priority {priority} in {where} (kopf pauses both); give each a distinct --priority")
    return Standing(True, "active: no live peer has a priority as high")

