"""A deterministic discrete-event simulator of a fleet of Triton replicas under an autoscaler.

What it models, and why each part is there:

- Requests arrive from a :class:`~benchmarks.autoscaling.traces.Trace` and go to one ready replica chosen
  uniformly at random (kube-proxy's iptables mode picks a Service endpoint at random). A replica that is
  starting or terminating gets none.
- Each replica runs Triton's dynamic batcher: when a model instance is free and requests wait, it takes up to
  ``max_batch_size`` of them, waiting at most ``max_queue_delay`` after the oldest one arrived for the batch to
  fill, except that a full batch leaving requests behind seals them (with the next arrival) into the following
  batch, as Triton 2.51 does. A batch of ``b`` computes for ``base_ms + per_request_ms * b`` and holds its
  instance ``overhead_ms`` longer (input and output copies, the python backend's IPC): the model fitted by
  ``calibrate.py`` on a real Triton, which also measures the batching rule.
- Triton's counters, per replica: ``queue_us`` (arrival to execution start), ``success``, ``compute_us`` (every
  request of a batch records the batch's compute time), ``executions`` (batches), all updated when the batch
  completes, as Triton 2.51 does (no periodic refresh: ``calibrate.py`` checks that); and the live gauge
  ``pending``, the requests queued and not yet executing (measured on Triton: executing requests are not
  counted). Each scrape also carries the integral of requests in the pod over time, which is what Knative's
  queue-proxy averages into its concurrency metric.
- A Deployment: the autoscaler's desired count creates pods that serve only after ``pod_start_delay`` (and
  count in replica-seconds from the moment they are requested), or removes pods the way a ReplicaSet picks
  them (not-ready ones first, then the most recently ready): a removed pod gets no new requests and finishes
  every request it already has, like Triton on SIGTERM, so scale-down never drops a request.

Time advances in steps of ``dt`` (1 s): within a step every replica is an exact event simulation of its own
queue (the fleet couples replicas only through routing, which changes at pod readiness and at the autoscaler's
writes); scrapes and autoscaler ticks happen on step boundaries. Arrivals and routing draw from seeded
generators, so a run is a pure function of (trace, fleet, autoscaler, seed).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from benchmarks.autoscaling.traces import FloatArray, Trace
from triton_operator.policy.autoscaling import ReplicaSample

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class ServiceModel:
    """Time of one batch on one model instance, in milliseconds."""

    base_ms: float
    per_request_ms: float = 0.0
    overhead_ms: float = 0.0

    def compute_ms(self, batch: int) -> float:
        """What Triton records as compute time for a batch of ``batch`` requests."""
        return self.base_ms + self.per_request_ms * batch

    def occupancy_ms(self, batch: int) -> float:
        """How long a batch keeps its instance busy."""
        return self.compute_ms(batch) + self.overhead_ms


@dataclass(frozen=True)
class ReplicaConfig:
    """One Triton replica: its model's batching configuration and service time."""

    service: ServiceModel
    max_batch_size: int = 8
    max_queue_delay_ms: float = 0.1
    instances: int = 1

    @property
    def peak_rate(self) -> float:
        """Requests per second with every instance always running full batches: no load above this is served."""
        return self.instances * self.max_batch_size * 1000.0 / self.service.occupancy_ms(self.max_batch_size)

    @classmethod
    def load(cls, path: Path) -> ReplicaConfig:
        """The replica fitted by ``calibrate.py`` (its ``replica`` entry)."""
        raw = json.loads(path.read_text())["replica"]
        return cls(**{**raw, "service": ServiceModel(**raw["service"])})

    def as_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Fleet:
    """The Deployment around the replicas."""

    replica: ReplicaConfig
    pod_start_delay: float
    initial_replicas: int = 1


@dataclass(frozen=True)
class Scrape:
    """One ready pod's metrics at one instant: Triton's counters, and the time-integral of requests in the pod
    (queued or executing), the raw form of Knative's queue-proxy concurrency."""

    triton: ReplicaSample
    request_seconds: float


@dataclass(frozen=True)
class Cadence:
    """When the simulator calls an autoscaler: ``observe`` every ``scrape_interval`` seconds and ``tick`` every
    ``period`` seconds, each first at its offset (both multiples of the simulator's step)."""

    scrape_interval: float
    period: float
    scrape_offset: float = 0.0
    tick_offset: float = 0.0


class Autoscaler(Protocol):
    """What the simulator runs: a metrics reader and a decision, each at its own cadence."""

    cadence: Cadence

    def observe(self, now: float, scrapes: Sequence[Scrape]) -> None:
        """Metrics of every ready pod, taken at ``now``."""

    def tick(self, now: float, current: int, ready_pods: Sequence[str]) -> int:
        """The replica count to write: ``current`` is the Deployment's, ``ready_pods`` the pods serving."""


@dataclass
class Pod:
    """A pod's life, for replica-seconds and for tests."""

    name: str
    requested_at: float
    ready_at: float
    removed_at: float = math.inf
    finished_at: float = math.inf  # removed and its last request completed (inf: still serving)


class _Replica:
    """One Triton replica's queue, instances and counters: an exact event simulation, advanced step by step."""

    def __init__(self, pod: Pod, index: int, config: ReplicaConfig) -> None:
        self.pod = pod
        self.index = index
        self.config = config
        self.free = [pod.ready_at] * config.instances  # when each model instance is next idle
        self.ids: IntArray = np.empty(64, dtype=np.int64)  # queued requests (global ids), oldest first
        self.times: FloatArray = np.empty(64)  # their arrival times
        self.head = self.tail = 0
        self.leftovers = 0  # requests sealed into the next batch by a full one (see _next_batch)
        # batches started and not yet folded into the counters: (completion, size, queue_us, compute_us, arrivals)
        self.running: list[tuple[float, int, float, float, float]] = []
        self.queue_us = self.success = self.compute_us = self.executions = 0.0
        self.completed_request_seconds = 0.0
        self.last_completion = -math.inf

    def enqueue(self, ids: IntArray, times: FloatArray) -> None:
        """Requests routed here, in arrival order."""
        waiting, count = self.tail - self.head, len(ids)
        if self.tail + count > len(self.ids):
            size = max(2 * (waiting + count), 64)
            self.ids = np.concatenate([self.ids[self.head : self.tail], np.empty(size - waiting, dtype=np.int64)])
            self.times = np.concatenate([self.times[self.head : self.tail], np.empty(size - waiting)])
            self.head, self.tail = 0, waiting
        self.ids[self.tail : self.tail + count] = ids
        self.times[self.tail : self.tail + count] = times
        self.tail += count

    def advance(self, until: float, starts: FloatArray) -> None:
        """Start every batch that starts by ``until``, writing each request's start time into ``starts``.

        A batch that would start later stays undecided: requests arriving before then may still join it.
        """
        while self.head < self.tail:
            instance = min(range(len(self.free)), key=self.free.__getitem__)
            start, size = self._next_batch(self.free[instance])
            if start > until:
                return
            self._start(instance, start, size, starts)

    def _arrived(self, by: float, limit: int) -> int:
        """How many of the first ``limit`` queued requests arrived by ``by``."""
        return int(np.searchsorted(self.times[self.head : min(self.tail, self.head + limit)], by, "right"))

    def _next_batch(self, free_at: float) -> tuple[float, int]:
        """When the next batch starts on an instance idle from ``free_at``, and its size, given the requests queued.

        Triton waits up to max_queue_delay after the oldest request for the batch to fill. One exception, measured
        on Triton 2.51 (``calibrate.py``): a full batch that leaves requests behind seals the next batch at once,
        with those requests and the first one to arrive after, and no other request joins it however long it then
        waits for the instance (which costs queue time near saturation).
        """
        limit = self.config.max_batch_size
        if self.leftovers:
            start = max(free_at, float(self.times[self.head + self.leftovers - 1]))
            later = self.head + self.leftovers
            joins = self.leftovers < limit and later < self.tail and float(self.times[later]) <= start
            return start, self.leftovers + int(joins)
        oldest = float(self.times[self.head])
        start = max(free_at, oldest)
        deadline = oldest + self.config.max_queue_delay_ms / 1000.0
        if start < deadline and self._arrived(start, limit) < limit:
            full_at = float(self.times[self.head + limit - 1]) if self.tail - self.head >= limit else math.inf
            start = min(deadline, full_at)
        return start, self._arrived(start, limit)

    def _start(self, instance: int, start: float, size: int, starts: FloatArray) -> None:
        """Run a batch of the ``size`` oldest requests on ``instance`` from ``start``."""
        service = self.config.service
        batch = slice(self.head, self.head + size)
        starts[self.ids[batch]] = start
        arrived = float(self.times[batch].sum())
        compute = service.compute_ms(size)
        self.free[instance] = start + (compute + service.overhead_ms) / 1000.0
        self.running.append((self.free[instance], size, (size * start - arrived) * 1e6, size * compute * 1e3, arrived))
        self.head += size
        behind = int(np.searchsorted(self.times[self.head : self.tail], start, "right"))
        limit = self.config.max_batch_size
        self.leftovers = min(behind, limit) if size == limit else 0

    def fold(self, now: float) -> None:
        """Count the batches completed by ``now`` (Triton updates its counters at completion)."""
        still: list[tuple[float, int, float, float, float]] = []
        for record in self.running:
            completion, size, queue_us, compute_us, arrived = record
            if completion > now:
                still.append(record)
                continue
            self.queue_us += queue_us
            self.success += size
            self.compute_us += compute_us
            self.executions += 1
            self.completed_request_seconds += size * completion - arrived
            self.last_completion = max(self.last_completion, completion)
        self.running = still

    def scrape(self, now: float) -> Scrape:
        """The pod's metrics at ``now``; call :meth:`fold` first."""
        waiting = self.tail - self.head
        in_pod = sum(size * now - arrived for _, size, _, _, arrived in self.running)
        in_pod += waiting * now - float(self.times[self.head : self.tail].sum())
        sample = ReplicaSample(
            pod=self.pod.name,
            at=now,
            queue_us=self.queue_us,
            success=self.success,
            compute_us=self.compute_us,
            executions=self.executions,
            pending=float(waiting),
        )
        return Scrape(sample, self.completed_request_seconds + in_pod)

    @property
    def idle(self) -> bool:
        """No request queued or executing (after :meth:`fold`)."""
        return self.head == self.tail and not self.running


@dataclass
class Run:
    """What one simulation produced."""

    duration: float
    arrivals: FloatArray
    queue_ms: FloatArray  # per request, arrival to execution start; inf if never served
    served_by: IntArray  # per request, the index of its pod in ``pods`` (-1: none)
    pods: list[Pod]
    initial_replicas: int
    writes: list[tuple[float, int]] = field(default_factory=list)  # (time, count) each time the count changed

    @property
    def replica_seconds(self) -> float:
        """Pod lifetimes within the trace, from the moment each was requested until it was removed and drained."""
        return sum(max(0.0, min(pod.finished_at, self.duration) - pod.requested_at) for pod in self.pods)

    def window_queue_ms(self, window: float = 10.0) -> FloatArray:
        """Request-weighted mean queue time of the requests that arrived in each window (NaN: no request)."""
        bins = (self.arrivals // window).astype(np.int64)
        count = np.bincount(bins, minlength=math.ceil(self.duration / window))
        total = np.bincount(bins, weights=self.queue_ms, minlength=len(count))
        with np.errstate(invalid="ignore", divide="ignore"):
            return total / count

    def attainment(self, target_ms: float, window: float = 10.0) -> float:
        """Share of windows (with requests) whose mean queue time was at most ``target_ms``."""
        means = self.window_queue_ms(window)
        means = means[~np.isnan(means)]
        return float(np.mean(means <= target_ms)) if len(means) else 1.0

    def count_at(self, at: float) -> int:
        """The Deployment's replica count at ``at`` (the last write by then)."""
        return next((count for when, count in reversed(self.writes) if when <= at), self.initial_replicas)

    def first_write(self, after: float, at_least: int) -> float | None:
        """When a count of at least ``at_least`` was first written at or after ``after`` (None: never)."""
        return next((when for when, count in self.writes if when >= after and count >= at_least), None)


class _Fleet:
    """The live state of one run: pods, the replicas behind them, and the Deployment's scaling."""

    def __init__(self, fleet: Fleet, requests: int) -> None:
        self.config = fleet
        self.pods: list[Pod] = []
        self.live: list[_Replica] = []  # not yet removed, or removed with work left
        self.starts: FloatArray = np.full(requests, np.nan)
        self.served_by: IntArray = np.full(requests, -1, dtype=np.int64)

    def add(self, now: float, count: int, ready_at: float) -> None:
        for _ in range(count):
            pod = Pod(f"pod-{len(self.pods)}", now, ready_at)
            self.live.append(_Replica(pod, len(self.pods), self.config.replica))
            self.pods.append(pod)

    @property
    def current(self) -> list[_Replica]:
        """The Deployment's pods: not removed."""
        return [r for r in self.live if not math.isfinite(r.pod.removed_at)]

    def serving(self, at: float) -> list[_Replica]:
        return [r for r in self.current if r.pod.ready_at <= at]

    def scale(self, now: float, desired: int) -> None:
        """Apply a new replica count as a Deployment does."""
        current = self.current
        if desired > len(current):
            self.add(now, desired - len(current), now + self.config.pod_start_delay)
            return
        # ReplicaSet order: pods not ready first, then the most recently ready; the newest first within each
        victims = sorted(current, key=lambda r: (r.pod.ready_at <= now, -r.pod.ready_at, -r.index))
        for replica in victims[: len(current) - desired]:
            replica.pod.removed_at = now

    def route(self, t0: float, t1: float, arrivals: FloatArray, first: int, route: FloatArray) -> None:
        """Send the arrivals of [t0, t1) (global ids from ``first``) to pods ready at their arrival."""
        edges = [t0, *sorted({r.pod.ready_at for r in self.current if t0 < r.pod.ready_at < t1})]
        cuts = (first + np.searchsorted(arrivals, [*edges, t1])).tolist()
        for segment, at in enumerate(edges):
            lo, hi = cuts[segment], cuts[segment + 1]
            ready = self.serving(at)
            if hi <= lo or not ready:
                continue  # no request, or nobody to take them (they are never served)
            choice = (route[lo:hi] * len(ready)).astype(np.int64)
            order = np.argsort(choice, kind="stable")
            counts = np.bincount(choice, minlength=len(ready))
            ids = np.arange(lo, hi, dtype=np.int64)[order]
            for replica, mine in zip(ready, np.split(ids, np.cumsum(counts)[:-1]), strict=True):
                if len(mine):
                    replica.enqueue(mine, arrivals[mine - first])
                    self.served_by[mine] = replica.index

    def advance(self, until: float) -> None:
        for replica in self.live:
            replica.advance(until, self.starts)
            replica.fold(until)
            if math.isfinite(replica.pod.removed_at) and replica.idle:
                replica.pod.finished_at = max(replica.pod.removed_at, replica.last_completion)
        self.live = [r for r in self.live if not math.isfinite(r.pod.finished_at)]


def _due(step: int, dt: float, every: float, offset: float) -> bool:
    """Whether the step ending at ``step * dt`` is on the cadence ``offset + k * every``."""
    k = round(every / dt)
    first = round(offset / dt)
    return step >= first and (step - first) % k == 0


def simulate(
    trace: Trace,
    fleet: Fleet,
    autoscaler: Autoscaler,
    *,
    seed: int,
    dt: float = 1.0,
    drain_limit: float = 3600.0,
) -> Run:
    """Run ``trace`` through ``fleet`` under ``autoscaler``; then let the queues drain, with no new arrivals and
    no more scaling, for at most ``drain_limit`` seconds."""
    arrivals = trace.arrivals(seed)
    route = np.random.default_rng([seed, 1]).random(len(arrivals))
    state = _Fleet(fleet, len(arrivals))
    state.add(0.0, fleet.initial_replicas, 0.0)
    cadence = autoscaler.cadence
    steps = math.ceil(trace.duration / dt)
    bounds = np.searchsorted(arrivals, np.arange(steps + 1) * dt)
    writes: list[tuple[float, int]] = []
    for step in range(1, steps + 1):
        t0, now = (step - 1) * dt, step * dt
        lo, hi = int(bounds[step - 1]), int(bounds[step])
        state.route(t0, now, arrivals[lo:hi], lo, route)
        state.advance(now)
        if _due(step, dt, cadence.scrape_interval, cadence.scrape_offset):
            autoscaler.observe(now, [r.scrape(now) for r in state.serving(now)])
        if _due(step, dt, cadence.period, cadence.tick_offset):
            current = len(state.current)
            desired = autoscaler.tick(now, current, [r.pod.name for r in state.serving(now)])
            if desired != current:
                state.scale(now, desired)
                writes.append((now, desired))
    now = steps * dt
    while any(not r.idle for r in state.live) and now < trace.duration + drain_limit:
        now += dt
        state.advance(now)
    return Run(
        duration=trace.duration,
        arrivals=arrivals,
        queue_ms=np.where(np.isnan(state.starts), np.inf, (state.starts - arrivals) * 1000.0),
        served_by=state.served_by,
        pods=state.pods,
        initial_replicas=fleet.initial_replicas,
        writes=writes,
    )
