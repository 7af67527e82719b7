"""The queue-latency autoscaling policy: Triton's counters in, desired replicas out. No I/O.

Inputs are per-replica samples of Triton's counters, summed over the replica's models (:class:`ReplicaSample`),
taken only from ready replicas (a replica still loading would report queue time for requests it never got). From
them, over a window:

- queue latency, request-weighted: the sum of ``nv_inference_queue_duration_us`` deltas over the sum of
  ``nv_inference_request_success`` deltas, across replicas and models (not an average of per-model averages,
  which under-reports by about the number of models: triton-inference-server/server#8979);
- compute time per request (``nv_inference_compute_infer_duration_us``: every request of a batch records the
  batch's time), throughput, and the mean batch (``nv_inference_exec_count``, batches run);
- the backlog now: ``nv_inference_pending_request_count`` (requests waiting in the queue, not the batch running).
  Queue time is recorded when a request completes, so under a sudden overload it lags; a backlog that grows shows
  the overload at once.

The decision, in order:

1. No usable samples: hold the current count and say why (never fall to minReplicas for lack of data).
2. The fast path (Knative's panic mode): when the short window's queue latency, or the wait behind a *growing*
   backlog, exceeds ``panic_threshold`` x target, scale up at once in proportion to arrivals over completions
   (replicas that cannot keep up complete at their capacity), and do not scale down until ``panic_hold``
   seconds pass without another such reading. While requested pods are still starting, the old pods' rising
   latency asks for nothing more: a Service does not move requests already queued.
3. Above the target: replicas grow with time in system, ``n * (latency + compute) / (target + compute)``.
4. Below the target, queue time says little about how many replicas could go (under dynamic batching it is about
   half a batch at any load; without batching, near zero). What does: the most requests per second one replica
   was seen to complete within the target. The fleet shrinks to what carries the arrivals at ``EXPLORE`` (1.5)
   times that throughput: a step into the unknown small enough to be safe, and what is learnt grows as the fleet
   consolidates. Idle (no arrivals, no backlog): down to minReplicas.
5. Hysteresis: within ``tolerance`` of the target, the count holds; above the target it never falls.
6. Stabilization (as the HPA's behavior field): scale up to the lowest recommendation of the scale-up window, down
   to the highest of the scale-down window; at most ``max(2n, n + 4)`` replicas per step up; clamped to
   [minReplicas, maxReplicas].

Measured in a simulator calibrated on real Triton (benchmarks/results/autoscaling.md): an earlier version sized
replicas from busy time, which dynamic batching inflates (many small batches at low load), and kept 6x the
replicas an oracle needs.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from triton_operator.api.v1alpha1 import AutoscalingSpec

#: Default scale-down stabilization, as the HPA's: capacity is removed only when it was not needed for 5 minutes.
DEFAULT_SCALE_DOWN_WINDOW = 300.0
#: How far past the per-replica throughput already seen within the target a scale-down may go in one step.
EXPLORE = 1.5


@dataclass(frozen=True)
class ReplicaSample:
    """One ready replica's counters at one instant, summed over its models. ``at`` is in seconds on one clock for
    all samples (the operator uses time.monotonic())."""

    pod: str
    at: float
    queue_us: float
    success: float
    compute_us: float
    executions: float
    pending: float


@dataclass(frozen=True)
class Settings:
    """The knobs, from spec.autoscaling and the operator's defaults."""

    min_replicas: int
    max_replicas: int
    target_ms: float
    scale_up_window: float = 0.0
    scale_down_window: float = DEFAULT_SCALE_DOWN_WINDOW
    metric_window: float = 10.0
    panic_window: float = 4.0
    panic_threshold: float = 2.0
    panic_hold: float = 30.0
    tolerance: float = 0.1

    @classmethod
    def from_spec(cls, spec: AutoscalingSpec) -> Settings:
        up = spec.scale_up.stabilization_window_seconds if spec.scale_up else None
        down = spec.scale_down.stabilization_window_seconds if spec.scale_down else None
        return cls(
            min_replicas=spec.min_replicas,
            max_replicas=spec.max_replicas,
            target_ms=float(spec.target_queue_latency_milliseconds),
            scale_up_window=float(up) if up is not None else 0.0,
            scale_down_window=float(down) if down is not None else DEFAULT_SCALE_DOWN_WINDOW,
        )


@dataclass(frozen=True)
class Measured:
    """What the samples say over one window."""

    queue_ms: float  # request-weighted queue time of the requests completed in the window
    compute_ms: float  # compute time per completed request
    completed_per_second: float
    arrivals_per_second: float  # completions plus backlog growth
    mean_batch: float  # requests per batch Triton ran (dynamic batching)
    pending: float  # backlog at the end of the window, all replicas
    replicas: int  # replicas with at least two samples in the window

    @property
    def backlog_wait_ms(self) -> float:
        """The wait a request arriving now faces: the queued requests ahead of it, drained at the current
        throughput (Triton's pending gauge counts requests waiting in the queue, not the batch executing)."""
        if self.pending <= 0:
            return 0.0
        if self.completed_per_second <= 0:
            return math.inf
        return self.pending / self.completed_per_second * 1000.0


@dataclass
class Memory:
    """What the policy carries from one decision to the next, per InferenceService. Losing it (an operator
    restart) costs one metric window of holding, nothing else."""

    samples: dict[str, list[ReplicaSample]] = field(default_factory=dict)
    recommendations: list[tuple[float, int]] = field(default_factory=list)
    proven_per_replica: float = 0.0  # the most requests/s one replica was seen to complete within the target
    panic_until: float = -math.inf


@dataclass(frozen=True)
class Decision:
    """The desired replicas and why, with the inputs that made it (for status, the Event and metrics)."""

    desired: int
    reason: str
    queue_ms: float | None = None
    panic: bool = False


def remember(memory: Memory, samples: Iterable[ReplicaSample], keep_seconds: float) -> None:
    """Add this round's samples; forget replicas that sent none (gone or no longer ready) and samples older than
    ``keep_seconds`` (one older sample per replica is kept, as the base of the window's delta)."""
    fresh: dict[str, list[ReplicaSample]] = {}
    for sample in samples:
        history = [*memory.samples.get(sample.pod, []), sample]
        cutoff = sample.at - keep_seconds
        while len(history) > 2 and history[1].at <= cutoff:
            history.pop(0)
        fresh[sample.pod] = history
    memory.samples = fresh


def _delta(values: Sequence[float]) -> float:
    """Increase of a counter over consecutive samples; a drop means the replica restarted and counted from zero."""
    total = 0.0
    for before, after in itertools.pairwise(values):
        total += after - before if after >= before else after
    return total


def measure(memory: Memory, now: float, window: float) -> Measured | None:
    """The window's numbers across replicas, or None when no replica has two samples in it."""
    queue = success = compute = per_second = pending_growth = pending = batches = 0.0
    replicas = 0
    for history in memory.samples.values():
        start = next((i for i in range(len(history) - 1, -1, -1) if history[i].at <= now - window), 0)
        span = history[start:]
        pending += span[-1].pending
        if len(span) < 2 or span[-1].at <= span[0].at:
            continue
        seconds = span[-1].at - span[0].at
        replicas += 1
        queue += _delta([s.queue_us for s in span])
        done = _delta([s.success for s in span])
        success += done
        compute += _delta([s.compute_us for s in span])
        batches += _delta([s.executions for s in span])
        per_second += done / seconds
        pending_growth += (span[-1].pending - span[0].pending) / seconds
    if replicas == 0:
        return None
    return Measured(
        queue_ms=queue / success / 1000.0 if success else 0.0,
        compute_ms=compute / success / 1000.0 if success else 0.0,
        completed_per_second=per_second,
        arrivals_per_second=max(0.0, per_second + pending_growth),
        mean_batch=success / batches if batches else 1.0,
        pending=pending,
        replicas=replicas,
    )


def _clamp(settings: Settings, replicas: int) -> int:
    return max(settings.min_replicas, min(settings.max_replicas, replicas))


def _stabilized(settings: Settings, memory: Memory, now: float, current: int, recommended: int) -> int:
    """The HPA's rule: up to the lowest recommendation of the scale-up window, down to the highest of the
    scale-down window. Without a history (a new service, or the operator restarted) the current count stands
    for it: nothing is given back before one scale-down window has shown it is not needed."""
    if not memory.recommendations and recommended < current:
        memory.recommendations.append((now, current))
    memory.recommendations.append((now, recommended))
    horizon = now - max(settings.scale_up_window, settings.scale_down_window)
    memory.recommendations = [(at, r) for at, r in memory.recommendations if at >= horizon]
    up = [r for at, r in memory.recommendations if at >= now - settings.scale_up_window]
    down = [r for at, r in memory.recommendations if at >= now - settings.scale_down_window]
    if recommended > current:
        return max(current, min(up))
    if recommended < current:
        return min(current, max(down))
    return current


def _recommend(
    settings: Settings,
    memory: Memory,
    stable: Measured,
    fast: Measured,
    latency: float,
    serving: int,
    current: int,
    panic: bool,
) -> int:
    """The replica count the measurements ask for, before stabilization and limits."""
    target, compute = settings.target_ms, stable.compute_ms
    proven = memory.proven_per_replica
    by_proven = math.ceil(stable.arrivals_per_second / proven - 1e-9) if proven else 0
    by_latency = math.ceil(serving * (latency + compute) / (target + compute) - 1e-9)
    if panic:
        # Arrivals the fleet cannot complete: grow in proportion. While requested pods are still starting, the
        # growing latency of the old ones is no reason for more (a Service does not move queued requests).
        growth = fast.arrivals_per_second / fast.completed_per_second if fast.completed_per_second else 2.0
        by_growth = math.ceil(serving * growth - 1e-9)
        return max(by_growth, by_proven, current, by_latency if current <= serving else 0)
    if latency > target * (1 + settings.tolerance):
        return max(by_latency, by_proven, current)
    if stable.arrivals_per_second == 0 and stable.pending == 0:
        return 0  # idle: down to minReplicas, once the scale-down window agrees
    if latency < target * (1 - settings.tolerance) and proven:
        # Below the target queue time says little (under dynamic batching it is about half a batch at any load):
        # size from the most one replica was seen to complete within the target, and explore at most half as
        # much again per step, so that what is learnt grows as the fleet consolidates.
        explore = math.ceil(stable.arrivals_per_second / (EXPLORE * proven) - 1e-9)
        return max(explore, 1 if stable.arrivals_per_second > 0 else 0)
    return current  # within the tolerance of the target (or nothing learnt yet): hold


def decide(settings: Settings, memory: Memory, current: int, ready: int, now: float) -> Decision:
    """The desired replicas now. ``current`` is the Deployment's replica count, ``ready`` how many serve; the
    samples were given to :func:`remember` before."""
    target = settings.target_ms
    stable = measure(memory, now, settings.metric_window)
    if ready == 0 or stable is None:
        why = "no ready replica to measure" if ready == 0 else "no metrics yet from the ready replicas"
        return Decision(_clamp(settings, current), f"{why}: holding {current} without metrics")
    fast = measure(memory, now, settings.panic_window) or stable
    # The backlog only counts while it grows: requests waiting behind a running batch leave with the next one.
    growing = fast.arrivals_per_second > 1.05 * fast.completed_per_second
    latency_now = max(fast.queue_ms, fast.backlog_wait_ms if growing else 0.0)
    if latency_now > settings.panic_threshold * target:
        memory.panic_until = now + settings.panic_hold
    panic = now < memory.panic_until

    if stable.completed_per_second == 0 and stable.pending > 0:
        return Decision(
            _clamp(settings, current),
            f"{stable.pending:g} requests pending but none completed in {settings.metric_window:g} s: "
            f"holding {current} without throughput",
            stable.queue_ms,
            panic,
        )
    latency = max(stable.queue_ms, fast.queue_ms) if panic else stable.queue_ms
    serving = max(ready, 1)
    if stable.queue_ms <= target and stable.replicas:
        memory.proven_per_replica = max(memory.proven_per_replica, stable.completed_per_second / stable.replicas)
    recommended = _recommend(settings, memory, stable, fast, latency, serving, current, panic)
    recommended = min(recommended, max(2 * current, current + 4))
    desired = _clamp(settings, _stabilized(settings, memory, now, current, _clamp(settings, recommended)))

    detail = (
        f"queue latency {latency:.1f} ms (target {target:g} ms) at {stable.completed_per_second:.1f} req/s "
        f"in batches of {stable.mean_batch:.1f} over {stable.replicas} ready replicas"
    )
    if desired > current:
        reason = f"{detail}: scaling up {current} -> {desired}" + (" (fast path)" if panic else "")
    elif desired < current:
        reason = f"{detail}: scaling down {current} -> {desired}"
    elif _clamp(settings, recommended) < current:
        reason = f"{detail}: holding {current} (scale-down stabilization {settings.scale_down_window:g} s)"
    else:
        reason = f"{detail}: holding {current}"
    return Decision(desired, reason, stable.queue_ms, panic)
