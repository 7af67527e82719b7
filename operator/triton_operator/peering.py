"""Work only while kopf would: the operator's own tasks follow kopf's peering, one replica at a time.

kopf pauses a replica's watches while a peer outranks it, but the reconcile workers, the built-in autoscaler and
model control are the operator's, not kopf's. This gate reads the peering objects every ``interval`` seconds,
applies kopf's rule (``policy.peering.standing``) and starts or stops the controller to match: a replica standing by
makes no reconcile, no scaling and no model load. Without ``--peering`` the operator is standalone and the gate is
not used.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from triton_operator.complaints import Complaint
from triton_operator.controller import Controller
from triton_operator.policy.peering import Standing, standing

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_SECONDS = 1.0


class PeeringApi(Protocol):
    async def get_peering(self, name: str, namespace: str | None) -> dict[str, Any] | None: ...


@dataclass(frozen=True)
class Peering:
    """This replica's place among its peers: the peering object's name, where it lives, and who this replica is."""

    name: str
    namespaces: Sequence[str]  # empty: the cluster-wide ClusterKopfPeering
    identity: str
    priority: int


class PeeringGate:
    """Starts the controller while this replica's standing is active, stops it (forgetting what it saw) while not."""

    def __init__(self, kube: PeeringApi, controller: Controller, peering: Peering, interval: float = DEFAULT_INTERVAL_SECONDS) -> None:
        self.kube = kube
        self.controller = controller
        self.peering = peering
        self.interval = interval
        self.standing = Standing(False, "the peering objects have not been read yet")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="peering gate")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        complaint = Complaint(log)
        while True:
            try:
                await self.check()
                complaint.clear()
            except asyncio.CancelledError:
                raise
            except Exception as problem:  # the API server away, a list refused: tried again at the next check
                complaint.say(f"{problem}; trying again every {self.interval:.0f} s ({self.standing.reason})")
            await asyncio.sleep(self.interval)

    async def _read(self) -> dict[str, dict[str, Any] | None]:
        name = self.peering.name
        if not self.peering.namespaces:
            return {f"ClusterKopfPeering {name}": await self.kube.get_peering(name, None)}
        found = await asyncio.gather(*(self.kube.get_peering(name, ns) for ns in self.peering.namespaces))
        return {f"KopfPeering {ns}/{name}": obj for ns, obj in zip(self.peering.namespaces, found, strict=True)}

    async def check(self) -> Standing:
        """Read the peering objects once and start or stop the controller to match."""
        now = standing(await self._read(), self.peering.identity, self.peering.priority, dt.datetime.now(dt.UTC))
        if now != self.standing:
            log.info("%s (identity %s, priority %d)", now.reason, self.peering.identity, self.peering.priority)
        self.standing = now
        if now.active and not self.controller.working:
            await self.controller.start()
        elif not now.active and self.controller.working:
            await self.controller.stop(forget=True)
        return now
