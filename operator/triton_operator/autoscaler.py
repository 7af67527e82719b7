"""The built-in autoscaler: one loop for every InferenceService with ``spec.autoscaling.engine: Operator``.

Every ``interval`` seconds it samples the Triton counters of each such service's ready replicas (scraped from the
pods, or queried from Prometheus), hands them to the pure policy (``policy.autoscaling``), writes a changed replica
count through the Deployment's scale subresource under its own field manager, and records the decision in
status.autoscaler, an Event and the operator's Prometheus metrics. One task serves all services, a bounded number
of them at a time: no thread or task per resource, so a thousand services cost a thousand short steps per
interval, not a thousand waiting tasks.

Replicas still loading are left out by construction: only pods Kubernetes counts Ready (with explicit model
control, only once their models are loaded: the readiness gate) are sampled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Protocol

import aiohttp
from prometheus_client import Counter, Gauge
from pydantic import ValidationError

from triton_operator.adapters.metrics import MetricsRound, http_session, query_prometheus, scrape_pods
from triton_operator.api.v1alpha1 import AutoscalingEngine, InferenceService, MetricsSourceType
from triton_operator.policy.autoscaler_status import autoscaler_status, worth_writing
from triton_operator.policy.autoscaling import Decision, Memory, Settings, decide, remember
from triton_operator.policy.observations import PodObservation
from triton_operator.resources.children import DEPLOYMENT
from triton_operator.store import Key, Store

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_SECONDS = 2.0  # Triton refreshes its metrics about every 2 s
DEFAULT_CONCURRENCY = 32
MAX_PROBLEMS_SHOWN = 3

DESIRED = Gauge(
    "triton_operator_autoscaler_desired_replicas",
    "Replicas the built-in autoscaler last decided on.",
    ["namespace", "name"],
)
QUEUE_LATENCY = Gauge(
    "triton_operator_queue_latency_milliseconds",
    "Request-weighted queue latency across ready replicas over the autoscaler's metric window.",
    ["namespace", "name"],
)
SCALINGS = Counter(
    "triton_operator_autoscaler_scalings",
    "Replica counts written by the built-in autoscaler.",
    ["namespace", "name", "direction"],
)


class ScaleApi(Protocol):
    """The API calls the autoscaler makes (``adapters.kube.KubeAdapter`` in production)."""

    async def scale(self, namespace: str, name: str, replicas: int) -> None: ...
    async def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]: ...
    async def post_event(self, owner: dict[str, Any], type_: str, reason: str, message: str) -> None: ...


def _operator_engine(isvc: InferenceService) -> bool:
    autoscaling = isvc.spec.autoscaling
    return autoscaling is not None and autoscaling.engine is AutoscalingEngine.OPERATOR


def _with_problems(decision: Decision, metrics: MetricsRound) -> Decision:
    """A decision made without some replicas' metrics says which and why."""
    if not metrics.problems:
        return decision
    shown = "; ".join(f"{pod}: {why}" for pod, why in sorted(metrics.problems.items())[:MAX_PROBLEMS_SHOWN])
    more = len(metrics.problems) - MAX_PROBLEMS_SHOWN
    if more > 0:
        shown += f"; and {more} more"
    if metrics.samples:
        return replace(decision, reason=f"{decision.reason} (no metrics from {shown})")
    return replace(decision, reason=f"no metrics from {shown}: {decision.reason}")


class Autoscaler:
    """Decides and writes replica counts for the services whose autoscaling engine is the operator."""

    def __init__(
        self,
        kube: ScaleApi,
        store: Store,
        now_rfc3339: Callable[[], str],
        *,
        interval: float = DEFAULT_INTERVAL_SECONDS,
        concurrency: int = DEFAULT_CONCURRENCY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kube = kube
        self.store = store
        self.interval = interval
        self._now = now_rfc3339
        self._clock = clock
        self._limit = asyncio.Semaphore(concurrency)
        self._memories: dict[Key, Memory] = {}
        self._last_write: dict[Key, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None  # one for every scrape and query, made in the loop

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="autoscaler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _loop(self) -> None:
        while True:
            started = self._clock()
            await self.tick()
            await asyncio.sleep(max(0.0, self.interval - (self._clock() - started)))

    async def tick(self) -> None:
        """One round over every autoscaled service, a bounded number at a time."""
        if self._http is None:
            self._http = http_session()
        keys = [key for key in list(self.store.services) if (isvc := self._spec(key)) and _operator_engine(isvc)]
        for gone in set(self._memories) - set(keys):
            self._forget(gone)
        await asyncio.gather(*(self._guarded(key) for key in keys))

    async def _guarded(self, key: Key) -> None:
        async with self._limit:
            try:
                await self.step(key)
            except asyncio.CancelledError:
                raise
            except Exception:  # one service's trouble must not stop the others' autoscaling
                log.exception("%s/%s: autoscaling step failed", *key)

    def _spec(self, key: Key) -> InferenceService | None:
        try:
            return self.store.inference_service(key)
        except ValidationError:
            return None  # the reconciler reports an invalid spec in status

    def _forget(self, key: Key) -> None:
        self._memories.pop(key, None)
        self._last_write.pop(key, None)
        for gauge in (DESIRED, QUEUE_LATENCY):
            with contextlib.suppress(KeyError):  # never set: no decision was made
                gauge.remove(*key)

    async def _sample(self, isvc: InferenceService, ready: Sequence[PodObservation]) -> MetricsRound:
        autoscaling = isvc.spec.autoscaling
        assert autoscaling is not None
        if not ready:
            return MetricsRound(samples=[], problems={})
        if autoscaling.metrics_source is MetricsSourceType.PROMETHEUS and autoscaling.prometheus is not None:
            return await query_prometheus(
                autoscaling.prometheus.url, isvc.metadata.namespace, [pod.name for pod in ready], session=self._http
            )
        return await scrape_pods([(pod.name, str(pod.ip)) for pod in ready], session=self._http)

    async def step(self, key: Key) -> Decision | None:
        """Sample, decide, write. Returns the decision (None when there is nothing to scale yet)."""
        isvc = self._spec(key)
        record = self.store.child(DEPLOYMENT, key)
        if isvc is None or isvc.spec.autoscaling is None or record is None or record.deployment is None:
            return None
        settings = Settings.from_spec(isvc.spec.autoscaling)
        current = record.deployment.spec_replicas
        ready = [p for p in self.store.pods_of(key) if p.ready and p.ip and not p.deleting]
        metrics = await self._sample(isvc, ready)
        memory = self._memories.setdefault(key, Memory())
        remember(memory, metrics.samples, keep_seconds=max(settings.metric_window, settings.panic_window) + 5)
        decision = _with_problems(decide(settings, memory, current, len(ready), self._clock()), metrics)

        scaled_at = None
        if decision.desired != current:
            await self.kube.scale(key[0], key[1], decision.desired)
            scaled_at = self._now()
            SCALINGS.labels(*key, "up" if decision.desired > current else "down").inc()
            log.info("%s/%s: %s", *key, decision.reason)
        DESIRED.labels(*key).set(decision.desired)
        if decision.queue_ms is not None:
            QUEUE_LATENCY.labels(*key).set(decision.queue_ms)
        await self._record(key, decision, current, scaled_at)
        return decision

    async def _record(self, key: Key, decision: Decision, current: int, scaled_at: str | None) -> None:
        """status.autoscaler when worth a write, and an Event for every change of the replica count."""
        body = self.store.services.get(key)
        if body is None:
            return
        previous = (body.get("status") or {}).get("autoscaler") or {}
        new = autoscaler_status(decision, previous, scaled_at)
        since = self._clock() - self._last_write.get(key, float("-inf"))
        if worth_writing(previous, new, since):
            updated = await self.kube.patch_status(key[0], key[1], {"autoscaler": new})
            self.store.put_service(updated)
            self._last_write[key] = self._clock()
        if scaled_at is not None:
            try:
                await self.kube.post_event(body, "Normal", "Scaled", f"{current} -> {decision.desired}: {decision.reason}")
            except Exception as error:  # informative only
                log.warning("%s/%s: could not post the Scaled event: %s", *key, error)
