"""The autoscalers the benchmarks run side by side: ours, the Kubernetes HPA, Knative's KPA, and an oracle.

Each implements :class:`~benchmarks.autoscaling.simulator.Autoscaler`: ``observe`` reads the ready pods' metrics at
the autoscaler's own scrape cadence, ``tick`` returns the replica count to write at its own period. The HPA and the
KPA follow their controllers' code (kube-controller-manager's ``podautoscaler`` package; Knative Serving's
``pkg/autoscaler/scaling``) with their default settings, so the comparison is with the algorithms as shipped,
not with a straw man; what each assumes is in its docstring.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from benchmarks.autoscaling.simulator import Cadence, Fleet, ReplicaConfig, Run, Scrape, simulate
from benchmarks.autoscaling.traces import Trace, constant
from triton_operator.autoscaler import DEFAULT_INTERVAL_SECONDS
from triton_operator.policy.autoscaling import Decision, Memory, Settings, decide, remember

# -- ours -------------------------------------------------------------------------------------------------------


class OperatorPolicy:
    """The operator's policy, called exactly as the operator's loop (``triton_operator.autoscaler``) calls it: every
    ``interval`` seconds (the operator's default unless given), ``remember`` the ready replicas' samples scraped
    that round, then ``decide``."""

    def __init__(self, settings: Settings, interval: float = DEFAULT_INTERVAL_SECONDS) -> None:
        self.settings = settings
        self.cadence = Cadence(scrape_interval=interval, period=interval)
        self.memory = Memory()
        #: every decision that changed the count, with its reason (the fast path shows there)
        self.changes: list[tuple[float, Decision]] = []

    def observe(self, now: float, scrapes: Sequence[Scrape]) -> None:
        keep = max(self.settings.metric_window, self.settings.panic_window) + 5
        remember(self.memory, [s.triton for s in scrapes], keep_seconds=keep)

    def tick(self, now: float, current: int, ready_pods: Sequence[str]) -> int:
        decision = decide(self.settings, self.memory, current, len(ready_pods), now)
        if decision.desired != current:
            self.changes.append((now, decision))
        return decision.desired


# -- the Kubernetes HPA -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HpaPolicy:
    """One ``behavior.scaleUp/scaleDown.policies`` entry: at most ``value`` pods or percent per ``period``."""

    kind: Literal["Pods", "Percent"]
    value: int
    period: float


@dataclass(frozen=True)
class HpaRules:
    """``behavior.scaleUp`` or ``behavior.scaleDown`` (selectPolicy Max: the policy allowing the largest change)."""

    stabilization: float
    policies: tuple[HpaPolicy, ...]


#: The autoscaling/v2 documented defaults.
HPA_SCALE_UP = HpaRules(0.0, (HpaPolicy("Percent", 100, 15.0), HpaPolicy("Pods", 4, 15.0)))
HPA_SCALE_DOWN = HpaRules(300.0, (HpaPolicy("Percent", 100, 15.0),))


@dataclass
class _PrometheusRate:
    """Prometheus scraping the pods' Triton counters every ``interval`` and serving
    ``rate(nv_inference_queue_duration_us[1m]) / rate(nv_inference_request_success[1m])`` per pod, which is what a
    prometheus-adapter rule for a per-pod queue-latency metric queries.

    Both rates come from the same scrapes, so Prometheus's extrapolation to the window's edges cancels in the
    ratio: the value is the counters' increase between the first and last sample inside the window. A pod needs two
    scrapes in the window to have a value, and a pod that completed nothing in it has none (0/0 is NaN, which the
    adapter drops): both are "missing" pods to the HPA.
    """

    window: float = 60.0
    series: dict[str, list[tuple[float, float, float]]] = field(default_factory=dict)

    def scrape(self, now: float, scrapes: Sequence[Scrape]) -> None:
        for scrape in scrapes:
            points = self.series.setdefault(scrape.triton.pod, [])
            points.append((now, scrape.triton.queue_us, scrape.triton.success))
            while points and points[0][0] <= now - self.window:
                points.pop(0)

    def queue_ms(self, now: float, pod: str) -> float | None:
        points = [p for p in self.series.get(pod, []) if p[0] > now - self.window]
        if len(points) < 2 or points[-1][2] <= points[0][2]:
            return None
        return (points[-1][1] - points[0][1]) / (points[-1][2] - points[0][2]) / 1000.0


class Hpa:
    """kube-controller-manager's HorizontalPodAutoscaler on a Pods metric (queue latency per pod, target average
    value ``target_ms``), fed by prometheus-adapter.

    Assumptions: the HPA syncs every 15 s (``--horizontal-pod-autoscaler-sync-period``); Prometheus scrapes every
    15 s, at a phase 8 s off the HPA's sync (so the freshest sample is 7 s old when the HPA reads it; the adapter
    queries Prometheus at request time and adds nothing, its relist only discovers metric names); the rate window
    is 1 minute. Pods not ready count as unready (they have no metric yet: Triton is still starting). Tolerance
    10 %; ``behavior`` is the autoscaling/v2 documented default (scale up by the larger of 100 % and 4 pods per
    15 s; scale down after a 300 s stabilization, by up to 100 % per 15 s).
    """

    def __init__(
        self,
        target_ms: float,
        min_replicas: int,
        max_replicas: int,
        *,
        sync_period: float = 15.0,
        scrape_interval: float = 15.0,
        scrape_phase: float = 8.0,
        tolerance: float = 0.1,
        scale_up: HpaRules = HPA_SCALE_UP,
        scale_down: HpaRules = HPA_SCALE_DOWN,
    ) -> None:
        self.target_ms = target_ms
        self.min_replicas, self.max_replicas = min_replicas, max_replicas
        self.tolerance = tolerance
        self.scale_up, self.scale_down = scale_up, scale_down
        self.cadence = Cadence(scrape_interval, sync_period, scrape_offset=scrape_phase, tick_offset=sync_period)
        self.prometheus = _PrometheusRate()
        self.recommendations: list[tuple[float, int]] = []
        self.up_events: list[tuple[float, int]] = []
        self.down_events: list[tuple[float, int]] = []

    def observe(self, now: float, scrapes: Sequence[Scrape]) -> None:
        self.prometheus.scrape(now, scrapes)

    def tick(self, now: float, current: int, ready_pods: Sequence[str]) -> int:
        if current > self.max_replicas or current < self.min_replicas:
            desired = max(self.min_replicas, min(self.max_replicas, current))
        else:
            values = [v for pod in ready_pods if (v := self.prometheus.queue_ms(now, pod)) is not None]
            if not values:
                return current  # no metrics: the HPA reports ScalingActive=False and leaves the count alone
            proposal = self.replicas_for_metric(
                current, values, len(ready_pods) - len(values), current - len(ready_pods)
            )
            desired = self.normalize(now, current, proposal)
        if desired != current:
            events = self.up_events if desired > current else self.down_events
            events.append((now, abs(desired - current)))
        return desired

    def replicas_for_metric(self, current: int, values: Sequence[float], missing: int, unready: int) -> int:
        """``calcPlainMetricReplicas``: the usage ratio over the pods with a metric, with missing pods counted at
        the target on a scale-down and at zero on a scale-up, and unready pods at zero on a scale-up; within
        the tolerance, or when the filled-in ratio flips direction, the count holds."""
        ratio = sum(values) / len(values) / self.target_ms
        up_with_unready = unready > 0 and ratio > 1.0
        if not up_with_unready and missing == 0:
            return current if abs(1.0 - ratio) <= self.tolerance else math.ceil(ratio * len(values))
        filled = [*values, *[self.target_ms if ratio < 1.0 else 0.0] * missing]
        if up_with_unready:
            filled += [0.0] * unready
        new_ratio = sum(filled) / len(filled) / self.target_ms
        if abs(1.0 - new_ratio) <= self.tolerance or (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio):
            return current
        proposal = math.ceil(new_ratio * len(filled))
        if (new_ratio < 1.0 and proposal > current) or (new_ratio > 1.0 and proposal < current):
            return current
        return proposal

    def normalize(self, now: float, current: int, proposal: int) -> int:
        """``normalizeDesiredReplicasWithBehaviors``: stabilize, then limit the rate of change, then clamp."""
        if not self.recommendations and self.scale_down.stabilization > 0:
            self.recommendations.append((now, current))  # maybeInitScaleDownStabilizationWindow
        up = min([proposal, *(r for at, r in self.recommendations if at > now - self.scale_up.stabilization)])
        down = max([proposal, *(r for at, r in self.recommendations if at > now - self.scale_down.stabilization)])
        stabilized = min(max(current, up), down)
        horizon = now - max(self.scale_up.stabilization, self.scale_down.stabilization)
        self.recommendations = [(at, r) for at, r in self.recommendations if at >= horizon] + [(now, proposal)]
        if stabilized > current:
            allowed = min(self.max_replicas, max(current, self._limit(now, current, self.scale_up, up=True)))
            return min(stabilized, allowed)
        if stabilized < current:
            allowed = max(self.min_replicas, min(current, self._limit(now, current, self.scale_down, up=False)))
            return max(stabilized, allowed)
        return stabilized

    def _limit(self, now: float, current: int, rules: HpaRules, *, up: bool) -> int:
        """``calculateScaleUpLimitWithScalingRules`` / ``calculateScaleDownLimitWithBehaviors`` with selectPolicy
        Max: from the count at the start of each policy's period, the policy allowing the largest change."""
        limits = []
        for policy in rules.policies:
            added = sum(n for at, n in self.up_events if at > now - policy.period)
            removed = sum(n for at, n in self.down_events if at > now - policy.period)
            start = current - added + removed
            if policy.kind == "Pods":
                limits.append(start + policy.value if up else start - policy.value)
            elif up:
                limits.append(math.ceil(start * (1 + policy.value / 100)))
            else:
                limits.append(int(start * (1 - policy.value / 100)))
        return max(limits) if up else min(limits)


# -- Knative's KPA ----------------------------------------------------------------------------------------------


class Kpa:
    """Knative Serving's KPA on concurrency: the pods' requests in flight, averaged per second by queue-proxy and
    scraped every second, averaged again over a 60 s stable window and a 6 s panic window (10 %).

    Every 2 s: desired = ceil(window average / ``target``) for each window, within [ready / 2, ready * 1000]
    (max scale-down rate 2, max scale-up rate 1000). Panic starts when the panic window's desired count is at
    least ``panic_threshold`` (200 %) of the ready pods, and ends once 60 s (the stable window) pass without that;
    while panicking the count is the larger of both windows' and never falls. Scale-to-zero is off (the count stays
    within [min, max] replicas), as are scale-down delay and the activator.

    ``target`` is the concurrency per pod Knative aims at, i.e. container-concurrency-target times target
    utilization; the benchmark derives it from the latency target (see :func:`replica_capacity`).
    """

    def __init__(
        self,
        target: float,
        min_replicas: int,
        max_replicas: int,
        *,
        stable_window: float = 60.0,
        panic_window_percentage: float = 10.0,
        panic_threshold: float = 2.0,
        max_scale_up_rate: float = 1000.0,
        max_scale_down_rate: float = 2.0,
        tick: float = 2.0,
    ) -> None:
        self.target = target
        self.min_replicas, self.max_replicas = min_replicas, max_replicas
        self.stable_window = stable_window
        self.panic_window = stable_window * panic_window_percentage / 100
        self.panic_threshold = panic_threshold
        self.max_scale_up_rate, self.max_scale_down_rate = max_scale_up_rate, max_scale_down_rate
        self.cadence = Cadence(scrape_interval=1.0, period=tick)
        self.previous: dict[str, tuple[float, float]] = {}
        self.concurrency: deque[tuple[float, float]] = deque()  # (time, requests in flight, all pods)
        self.panic_since: float | None = None
        self.max_panic_pods = 0

    def observe(self, now: float, scrapes: Sequence[Scrape]) -> None:
        """One bucket: the sum over pods of their average concurrency since their previous scrape."""
        total, seen = 0.0, False
        for scrape in scrapes:
            before = self.previous.get(scrape.triton.pod)
            if before is not None and now > before[0]:
                total += (scrape.request_seconds - before[1]) / (now - before[0])
                seen = True
        self.previous = {s.triton.pod: (now, s.request_seconds) for s in scrapes}
        if seen:
            self.concurrency.append((now, total))
        while self.concurrency and self.concurrency[0][0] <= now - self.stable_window:
            self.concurrency.popleft()

    def _average(self, now: float, window: float) -> float | None:
        values = [c for at, c in self.concurrency if at > now - window]
        return sum(values) / len(values) if values else None

    def tick(self, now: float, current: int, ready_pods: Sequence[str]) -> int:
        stable, panic = self._average(now, self.stable_window), self._average(now, self.panic_window)
        if stable is None or panic is None:
            return current  # no data yet: Knative does not scale
        ready = max(1, len(ready_pods))
        up_limit, down_limit = math.ceil(self.max_scale_up_rate * ready), math.floor(ready / self.max_scale_down_rate)
        by_stable, by_panic = math.ceil(stable / self.target), math.ceil(panic / self.target)
        over_threshold = by_panic / ready >= self.panic_threshold
        if over_threshold:
            self.panic_since = now
        elif self.panic_since is not None and now > self.panic_since + self.stable_window:
            self.panic_since, self.max_panic_pods = None, 0
        desired = min(max(by_stable, down_limit), up_limit)
        if self.panic_since is not None:
            desired = max(desired, min(max(by_panic, down_limit), up_limit), self.max_panic_pods)
            self.max_panic_pods = desired
        return max(self.min_replicas, min(self.max_replicas, desired))

    @property
    def panicking(self) -> bool:
        return self.panic_since is not None


# -- a fixed count, and the oracle ------------------------------------------------------------------------------


class Fixed:
    """Holds ``replicas``; keeps the last scrape (every ``scrape_interval``) for whoever needs the counters."""

    def __init__(self, replicas: int, scrape_interval: float = 1.0) -> None:
        self.replicas = replicas
        self.cadence = Cadence(scrape_interval=scrape_interval, period=scrape_interval)
        self.last: Sequence[Scrape] = ()

    def observe(self, now: float, scrapes: Sequence[Scrape]) -> None:
        self.last = scrapes

    def tick(self, now: float, current: int, ready_pods: Sequence[str]) -> int:
        return self.replicas


@dataclass(frozen=True)
class Capacity:
    """What one replica can take under the latency target."""

    rate: float  # requests per second
    concurrency: float  # mean requests in the pod (queued or executing) at that rate
    queue_ms: float  # mean queue time at that rate


def steady_state(replica: ReplicaConfig, rate: float, seconds: float, seed: int) -> tuple[Run, Scrape]:
    """One replica under a constant Poisson load: the run, and the pod's counters at its end."""
    holder = Fixed(1, scrape_interval=seconds)
    run = simulate(constant(rate, seconds), Fleet(replica, 0.0), holder, seed=seed)
    return run, holder.last[0]


def replica_capacity(
    replica: ReplicaConfig,
    target_ms: float,
    *,
    window: float = 10.0,
    share: float = 0.99,
    seconds: float = 1200.0,
    seed: int = 11,
    iterations: int = 12,
) -> Capacity:
    """The highest Poisson arrival rate at which one replica keeps the mean queue time of at least ``share`` of its
    ``window``-second windows under ``target_ms``, found by bisection on simulated runs of ``seconds``.

    This is the B5 criterion applied to a single replica, so a fleet of ``ceil(rate / capacity)`` replicas (each
    sees a Poisson stream of ``rate / n``, the fleet's windows averaging over all of them) meets it too. The
    concurrency at that rate (Little's law, measured on the same run) is what Knative's target must be for the KPA
    to aim at the same load per pod: it is the KPA's target derived from the latency target.
    """
    low, high = 0.0, replica.peak_rate
    for _ in range(iterations):
        middle = (low + high) / 2
        run, _ = steady_state(replica, middle, seconds, seed)
        if run.attainment(target_ms, window) >= share:
            low = middle
        else:
            high = middle
    run, scrape = steady_state(replica, low, seconds, seed)
    return Capacity(low, scrape.request_seconds / seconds, float(np.mean(run.queue_ms)))


def oracle_counts(trace: Trace, capacity: float, window: float, min_replicas: int, max_replicas: int) -> list[int]:
    """For each window of the trace, the fewest replicas that take its peak rate at ``capacity`` each."""
    needed = np.ceil(trace.window_peaks(window) / capacity - 1e-9).astype(int)
    return [int(n) for n in np.clip(needed, min_replicas, max_replicas)]


class Oracle:
    """Knows the trace: for each window the count of :func:`oracle_counts`, requested ``lead`` seconds (plus one
    tick) ahead of the window, and released as soon as no window in that horizon needs it.

    With ``lead`` equal to the pod start delay the pods serve from the window's first second: the benchmark's
    denominator. With ``lead`` 0 the count is requested only as its window starts: exact knowledge of the need
    without foresight, the most a right-sized reactive autoscaler could do.
    """

    def __init__(self, counts: Sequence[int], window: float, lead: float) -> None:
        self.counts = list(counts)
        self.window = window
        self.lead = lead
        self.cadence = Cadence(scrape_interval=1.0, period=1.0)

    def observe(self, now: float, scrapes: Sequence[Scrape]) -> None:
        """The oracle needs no metrics."""

    def needed(self, start: float, end: float) -> int:
        """The most replicas any window overlapping [start, end) needs."""
        first = min(int(start // self.window), len(self.counts) - 1)
        last = min(math.ceil(end / self.window), len(self.counts))
        return max(self.counts[first : max(last, first + 1)])

    def tick(self, now: float, current: int, ready_pods: Sequence[str]) -> int:
        horizon = now + self.lead + self.cadence.period if self.lead else now
        return self.needed(now, horizon)
