"""The controller: watch events in, reconciles out, through a de-duplicating queue and a few workers.

No thread or task per InferenceService: a fixed number of worker coroutines serve all of them, so the operator's
footprint depends on how much changes, not on how many services exist.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any, Protocol

from prometheus_client import Counter, Gauge, Histogram

from triton_operator.api.v1alpha1 import API_VERSION, KIND
from triton_operator.autoscaler import DEFAULT_INTERVAL_SECONDS, Autoscaler, ScaleApi
from triton_operator.complaints import Complaint
from triton_operator.model_control import ModelControl
from triton_operator.reconciler import Kube, Reconciler, RetryLater, now_rfc3339
from triton_operator.resources.children import CHILD_KINDS, ChildKind
from triton_operator.resources.meta import DEFAULTS, MANAGED_BY, OperatorDefaults
from triton_operator.store import POD, Key, Store, key_of, owner_key
from triton_operator.workqueue import WorkQueue

log = logging.getLogger(__name__)

RECONCILE_SECONDS = Histogram(
    "triton_operator_reconcile_duration_seconds",
    "Time to reconcile one InferenceService.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RECONCILE_ERRORS = Counter("triton_operator_reconcile_errors", "Reconciles that failed and were retried.", ["kind"])
QUEUE_DEPTH = Gauge("triton_operator_queue_depth", "InferenceServices waiting for or in a reconcile.")
SERVICES = Gauge("triton_operator_inferenceservices", "InferenceServices the operator watches.")
WORKING = Gauge("triton_operator_working", "1 while this replica reconciles and autoscales; 0 while it stands by for a peer.")


class ListApi(Protocol):
    async def list_objects(self, api_version: str, kind: str, namespace: str | None, label_selector: str | None = None) -> list[dict[str, Any]]: ...


class OperatorApi(Kube, ScaleApi, ListApi, Protocol):
    """Every API call the operator makes: the reconciler's, the autoscaler's and the sync's."""


#: What the sync lists: (apiVersion, kind, label selector), the same objects the kopf handlers watch.
_MANAGED_SELECTOR = f"app.kubernetes.io/managed-by={MANAGED_BY}"
SYNCED = (
    (API_VERSION, KIND, None),
    *((kind.api_version, kind.kind, _MANAGED_SELECTOR) for kind in CHILD_KINDS),
    ("v1", POD, _MANAGED_SELECTOR),
)


class Controller:
    """Owns the store, the queue and the workers."""

    def __init__(
        self,
        kube: OperatorApi,
        workers: int = 8,
        defaults: OperatorDefaults = DEFAULTS,
        autoscale_interval: float = DEFAULT_INTERVAL_SECONDS,
        namespaces: Sequence[str] = (),
    ) -> None:
        self._kube = kube
        self._namespaces = namespaces
        self._defaults = defaults
        self._autoscale_interval = autoscale_interval
        self._worker_count = workers
        self._tasks: list[asyncio.Task[None]] = []
        self.working = False
        self._fresh()
        QUEUE_DEPTH.set_function(lambda: len(self.queue))
        SERVICES.set_function(lambda: len(self.store.services))

    def _fresh(self) -> None:
        """A store, queue, model control, reconciler and autoscaler that know nothing yet."""
        self.store = Store()
        self.queue: WorkQueue[Key] = WorkQueue()
        self.models = ModelControl(self._kube, self.queue.add, now_rfc3339)
        self.reconciler = Reconciler(self._kube, self.store, self.models, self._defaults)
        self.autoscaler = Autoscaler(self._kube, self.store, now_rfc3339, interval=self._autoscale_interval)

    # ---- event intake (called by the kopf handlers) ----

    def on_service_event(self, event_type: str | None, body: dict[str, Any]) -> None:
        if event_type == "DELETED":
            self.store.drop_service(key_of(body))
            return
        self.queue.add(self.store.put_service(body))

    def on_child_event(self, kind: ChildKind, event_type: str | None, body: dict[str, Any]) -> None:
        owner = owner_key(body)
        if owner is None:
            return
        if event_type == "DELETED":
            self.store.drop_child(kind, body)
        else:
            self.store.put_child(kind, body)
        self.queue.add(owner)

    def on_pod_event(self, event_type: str | None, body: dict[str, Any]) -> None:
        owner = owner_key(body)
        if owner is None:
            return
        if event_type == "DELETED":
            self.store.drop_pod(owner, body)
        else:
            self.store.put_pod(owner, body)
        self.queue.add(owner)

    # ---- workers ----

    async def start(self) -> None:
        """Start working: list everything the watches cover, then start the reconcile workers and the autoscaler;
        every service known is reconciled. Raises when the lists fail (the caller tries again).

        The lists make the first reconciles see whole services: the watches deliver each kind on its own, so an
        InferenceService could otherwise be reconciled before its pods arrive, and its status written wrongly
        (no pod ready) and then rightly again, after every restart or takeover."""
        if self.working:
            return
        await self._sync()
        self.working = True
        WORKING.set(1)
        for key in list(self.store.services):
            self.queue.add(key)
        self._tasks = [asyncio.create_task(self._work(), name=f"reconcile-{i}") for i in range(self._worker_count)]
        self.autoscaler.start()

    async def start_when_synced(self, retry_seconds: float = 2.0) -> None:
        """``start``, tried again until the lists succeed (the API server away, a permission missing)."""
        complaint = Complaint(log)
        while True:
            try:
                await self.start()
                return
            except Exception as problem:
                complaint.say(f"cannot list what the operator watches ({problem}); trying again every {retry_seconds:.0f} s")
                await asyncio.sleep(retry_seconds)

    async def _sync(self) -> None:
        started = time.perf_counter()
        lists = [(kind, api_version, selector, namespace) for api_version, kind, selector in SYNCED for namespace in self._namespaces or (None,)]
        self.store.dropped = set()
        try:
            found = await asyncio.gather(*(self._kube.list_objects(v, k, ns, sel) for k, v, sel, ns in lists))
            for (kind, *_), bodies in zip(lists, found, strict=True):
                self.store.fill(kind, bodies)
        finally:
            self.store.dropped = None
        log.info("listed %d InferenceServices and their children and pods in %.2f s", len(self.store.services), time.perf_counter() - started)

    async def stop(self, *, forget: bool = False) -> None:
        """Stop working: no reconcile, scaling or model load runs after this returns. With ``forget``, also drop
        everything the watches delivered: a replica that stands by for a peer has its watches paused by kopf, so
        what it saw goes stale, and kopf lists everything again when it resumes them."""
        self.working = False
        WORKING.set(0)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self.autoscaler.stop()
        await self.models.stop()
        if forget:
            self._fresh()

    async def _work(self) -> None:
        while True:
            key = await self.queue.get()
            started = time.perf_counter()
            try:
                resync_after = await self.reconciler.reconcile(key)
                self.queue.forget(key)
                if resync_after is not None:
                    self.queue.add_after(key, resync_after)
            except asyncio.CancelledError:
                raise
            except RetryLater as problem:
                RECONCILE_ERRORS.labels("recorded").inc()
                delay = self.queue.retry_delay(key)
                log.info("%s/%s: %s; retrying in %.1f s", *key, problem, delay)
                self.queue.add_after(key, delay)
            except Exception:
                RECONCILE_ERRORS.labels("unexpected").inc()
                delay = self.queue.retry_delay(key)
                log.exception("%s/%s: reconcile failed; retrying in %.1f s", *key, delay)
                self.queue.add_after(key, delay)
            finally:
                RECONCILE_SECONDS.observe(time.perf_counter() - started)
                self.queue.done(key)
