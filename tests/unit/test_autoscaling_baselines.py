"""The baseline autoscalers behave as the HPA and the KPA are documented to, and the oracle is what it claims."""

from __future__ import annotations

import numpy as np
import pytest
from benchmarks.autoscaling import traces
from benchmarks.autoscaling.baselines import Hpa, Kpa, Oracle, oracle_counts, replica_capacity
from benchmarks.autoscaling.simulator import Fleet, ReplicaConfig, Scrape, ServiceModel, simulate

from triton_operator.policy.autoscaling import ReplicaSample

TARGET = 50.0


def scrape(pod: str, at: float, *, success: float = 0.0, queue_ms: float = 0.0, concurrency: float = 0.0) -> Scrape:
    """A pod's cumulative counters at ``at`` after constant load since 0: ``success`` requests per second with
    ``queue_ms`` each, and ``concurrency`` requests in the pod on average."""
    done = success * at
    triton = ReplicaSample(
        pod, at, queue_us=done * queue_ms * 1000, success=done, compute_us=0.0, executions=0.0, pending=0.0
    )
    return Scrape(triton, request_seconds=concurrency * at)


# -- HPA --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "values", "missing", "unready", "expected"),
    [
        (4, [54.0] * 4, 0, 0, 4),  # 8 % over: within the 10 % tolerance
        (4, [46.0] * 4, 0, 0, 4),  # 8 % under: within
        (4, [60.0] * 4, 0, 0, 5),  # ceil(1.2 x 4)
        (4, [25.0] * 4, 0, 0, 2),  # ceil(0.5 x 4)
        (4, [100.0, 100.0], 2, 0, 4),  # scale-up: missing pods count as 0, ratio 1.0 -> hold
        (4, [10.0, 10.0], 2, 0, 3),  # scale-down: missing pods count at the target, ceil(0.6 x 4)
        (2, [100.0], 0, 1, 2),  # scale-up with a pod not ready: it counts as 0, ratio 1.0 -> hold
        (2, [300.0], 0, 1, 6),  # ... at 0 it still leaves a ratio of 3: ceil(3 x 2)
    ],
)
def test_hpa_replica_calculation(current: int, values: list[float], missing: int, unready: int, expected: int) -> None:
    assert Hpa(TARGET, 1, 20).replicas_for_metric(current, values, missing, unready) == expected


@pytest.mark.parametrize(
    ("proposals", "expected"),
    [
        # (time, metric proposal) in order from a count of 10: down only to the highest proposal of the last 300 s
        ([(0, 10), (15, 2), (30, 3), (299, 2)], [10, 10, 10, 10]),
        ([(0, 10), (15, 2), (301, 2)], [10, 10, 2]),
        ([(0, 10), (15, 4), (200, 6), (301, 3)], [10, 10, 10, 6]),
    ],
)
def test_hpa_scale_down_waits_out_the_stabilization_window(
    proposals: list[tuple[float, int]], expected: list[int]
) -> None:
    hpa = Hpa(TARGET, 1, 20)
    got, current = [], 10
    for now, proposal in proposals:
        current = hpa.normalize(now, current, proposal)
        got.append(current)
    assert got == expected


def _hpa_sync(hpa: Hpa, now: float, pods: list[str], queue_ms: float) -> int:
    """Two Prometheus scrapes (15 s apart, the last 7 s before the sync) showing ``queue_ms``, then a sync."""
    for at in (now - 22.0, now - 7.0):
        hpa.observe(at, [scrape(p, at, success=100.0, queue_ms=queue_ms) for p in pods])
    return hpa.tick(now, len(pods), pods)


@pytest.mark.parametrize(("start", "steps"), [(1, [5, 10, 20]), (2, [6, 12, 24]), (10, [20, 40, 60])])
def test_hpa_scales_up_by_the_larger_of_100_percent_and_4_pods_per_15_s(start: int, steps: list[int]) -> None:
    hpa = Hpa(TARGET, 1, 60)
    current, got = start, []
    for sync in range(len(steps)):
        current = _hpa_sync(hpa, 30.0 + 15.0 * sync, [f"p{i}" for i in range(current)], queue_ms=5000.0)
        got.append(current)
    assert got == steps


def test_hpa_without_metrics_keeps_the_count() -> None:
    hpa = Hpa(TARGET, 1, 20)
    hpa.observe(8.0, [scrape("p0", 8.0, success=100.0, queue_ms=500.0)])  # one scrape: no rate yet
    assert hpa.tick(15.0, 3, ["p0"]) == 3


# -- KPA --------------------------------------------------------------------------------------------------------


def _kpa_run(kpa: Kpa, pods: int, concurrency_at: dict[int, float], until: int) -> list[tuple[int, int, bool]]:
    """Feed each second the total concurrency ``concurrency_at`` gives (the last value set holds), spread over
    ``pods`` pods whose count follows the KPA's decisions instantly; (second, count, panicking) at each tick."""
    total = 0.0
    seconds = {f"p{i}": 0.0 for i in range(pods)}
    decisions = []
    for now in range(1, until + 1):
        total = concurrency_at.get(now, total)
        names = list(seconds)
        for name in names:
            seconds[name] += total / len(names)
        kpa.observe(float(now), [Scrape(ReplicaSample(n, now, 0, 0, 0, 0, 0), seconds[n]) for n in names])
        if now % 2 == 0:
            count = kpa.tick(float(now), len(names), names)
            decisions.append((now, count, kpa.panicking))
            seconds = {f"p{i}": seconds.get(f"p{i}", 0.0) for i in range(count)}
    return decisions


def test_kpa_panics_when_the_short_window_wants_twice_the_ready_pods() -> None:
    kpa = Kpa(target=10.0, min_replicas=1, max_replicas=50)
    decisions = _kpa_run(kpa, 2, {1: 15.0, 100: 60.0}, until=106)
    before = [d for d in decisions if d[0] < 100]
    assert all(count == 2 and not panic for _, count, panic in before)  # ceil(15 / 10) = 2 pods, steady
    # at 100 s the 6 s window averages (15 x 5 + 60) / 6 = 22.5: 3 pods, 150 % of 2, no panic; at 102 s it averages
    # (15 x 3 + 60 x 3) / 6 = 37.5: 4 pods, 200 %; the stable window still wants 2, the panic count wins
    assert decisions[-4][1:] == (2, False)
    assert next((now, count) for now, count, panic in decisions if panic) == (102, 4)


def test_kpa_does_not_panic_below_the_threshold() -> None:
    kpa = Kpa(target=10.0, min_replicas=1, max_replicas=50)
    decisions = _kpa_run(kpa, 4, {1: 40.0, 100: 70.0}, until=130)
    assert not any(panic for _, _, panic in decisions)  # 7 of 4 pods is 175 %
    assert decisions[-1][1] == 6  # the stable window climbs: ceil((40 x 30 + 70 x 30) / 60 / 10)


def test_kpa_never_scales_down_in_a_panic_and_leaves_it_a_stable_window_later() -> None:
    kpa = Kpa(target=10.0, min_replicas=1, max_replicas=50)
    decisions = _kpa_run(kpa, 2, {1: 15.0, 100: 80.0, 110: 15.0}, until=220)
    panicking = [(now, count) for now, count, panic in decisions if panic]
    counts = [count for _, count in panicking]
    assert counts == sorted(counts)  # only up while panicking, though the load fell back at 110 s
    first, last = panicking[0][0], panicking[-1][0]
    assert last - first >= 60  # a panic lasts at least a stable window
    after = [count for now, count, _ in decisions if now > last]
    assert after
    assert after[-1] < max(counts)  # then the stable window brings the count down


# -- the oracle -------------------------------------------------------------------------------------------------


def test_oracle_counts_cover_each_windows_peak() -> None:
    trace = traces.Trace(np.array([10.0] * 10 + [95.0] * 5 + [20.0] * 5 + [500.0] * 10))
    assert oracle_counts(trace, capacity=30.0, window=10.0, min_replicas=1, max_replicas=10) == [1, 4, 10]


@pytest.mark.parametrize(("lead", "requested_at"), [(15.0, 5.0), (0.0, 20.0)])
def test_oracle_requests_a_windows_count_lead_seconds_ahead_and_releases_it_after(
    lead: float, requested_at: float
) -> None:
    oracle = Oracle([1, 1, 5, 1, 1], window=10.0, lead=lead)
    counts = {now: oracle.tick(float(now), 1, []) for now in range(0, 50)}
    assert min(now for now, count in counts.items() if count == 5) == requested_at
    assert max(now for now, count in counts.items() if count == 5) == 29


def test_capacity_is_where_one_replicas_windows_stay_under_the_target() -> None:
    replica = ReplicaConfig(ServiceModel(base_ms=10.0), max_batch_size=1)
    capacity = replica_capacity(replica, target_ms=5.0, seconds=200.0, iterations=8)
    # M/D/1 reaches a 5 ms mean at 50 req/s; a 99 % bound on 10-s windows must sit below that
    assert 35.0 < capacity.rate < 50.0
    rho = capacity.rate * 0.010
    wait_ms = rho * 10.0 / (2 * (1 - rho))
    assert capacity.concurrency == pytest.approx(capacity.rate * (wait_ms + 10.0) / 1000, rel=0.1)  # Little's law


def test_oracle_with_lookahead_meets_a_step_that_a_reactive_one_misses() -> None:
    replica = ReplicaConfig(ServiceModel(base_ms=50.0))
    trace = traces.step(100.0, 500.0, at=60.0, duration=120.0)
    counts = oracle_counts(trace, capacity=100.0, window=10.0, min_replicas=1, max_replicas=10)
    runs = {
        lead: simulate(trace, Fleet(replica, 15.0, counts[0]), Oracle(counts, 10.0, lead), seed=1)
        for lead in (15.0, 0.0)
    }
    assert runs[15.0].attainment(TARGET) == 1.0
    assert runs[0.0].attainment(TARGET) < 1.0
