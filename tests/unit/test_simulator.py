"""The fleet simulator against queueing theory and against the Triton behaviour it claims to model."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest
from benchmarks.autoscaling import traces
from benchmarks.autoscaling.baselines import Fixed
from benchmarks.autoscaling.simulator import (
    Cadence,
    Fleet,
    Pod,
    ReplicaConfig,
    Run,
    Scrape,
    ServiceModel,
    _Replica,
    simulate,
)

SLEEPER = ReplicaConfig(ServiceModel(base_ms=50.0))


class Scripted:
    """Writes planned counts at planned times and records every scrape."""

    def __init__(self, plan: dict[float, int]) -> None:
        self.plan = plan
        self.cadence = Cadence(scrape_interval=1.0, period=1.0)
        self.scrapes: list[Scrape] = []

    def observe(self, now: float, scrapes: Sequence[Scrape]) -> None:
        self.scrapes.extend(scrapes)

    def tick(self, now: float, current: int, ready_pods: Sequence[str]) -> int:
        return self.plan.get(now, current)


def md1_wait_ms(rate: float, service_ms: float) -> float:
    """Mean queue time of M/D/1 (Pollaczek-Khinchine with a deterministic service time)."""
    rho = rate * service_ms / 1000
    return rho * service_ms / (2 * (1 - rho))


@pytest.mark.parametrize(("rate", "service_ms", "tolerance"), [(50.0, 10.0, 0.1), (80.0, 10.0, 0.15), (40.0, 5.0, 0.1)])
def test_one_replica_without_batching_waits_as_md1(rate: float, service_ms: float, tolerance: float) -> None:
    replica = ReplicaConfig(ServiceModel(base_ms=service_ms), max_batch_size=1)
    run = simulate(traces.constant(rate, 600), Fleet(replica, 0.0), Fixed(1, 600.0), seed=3)
    assert np.mean(run.queue_ms) == pytest.approx(md1_wait_ms(rate, service_ms), rel=tolerance)


@pytest.mark.parametrize("instances", [1, 2])
def test_an_overloaded_replica_runs_full_batches_at_its_peak_rate(instances: int) -> None:
    replica = ReplicaConfig(ServiceModel(base_ms=50.0, overhead_ms=2.0), max_batch_size=8, instances=instances)
    holder = Fixed(1, scrape_interval=30.0)
    simulate(traces.constant(3 * replica.peak_rate, 30), Fleet(replica, 0.0), holder, seed=1)
    counters = holder.last[0].triton
    assert counters.success / counters.executions == pytest.approx(8, rel=0.01)
    assert counters.success / 30 == pytest.approx(replica.peak_rate, rel=0.02)


def _batch_sizes(arrivals: list[float], config: ReplicaConfig) -> list[int]:
    """Run one replica over exact arrival times; the sizes of its batches in order."""
    pod = Pod("p", 0.0, 0.0)
    replica = _Replica(pod, 0, config)
    times = np.array(arrivals)
    starts = np.full(len(times), np.nan)
    replica.enqueue(np.arange(len(times)), times)
    replica.advance(10.0, starts)
    _, sizes = np.unique(starts, return_counts=True)
    return [int(n) for n in sizes]


@pytest.mark.parametrize(
    ("arrivals", "sizes"),
    [
        # one request alone on an idle instance, then two that arrive while it runs: they share the next batch
        ([0.0, 0.010, 0.020], [1, 2]),
        # ten arrive during the first batch: eight fill the next; the two left behind are sealed with the next
        # arrival (60 ms) and the one at 80 ms waits for a batch of its own (measured on Triton 2.51)
        ([0.0, *[0.010 + i * 1e-4 for i in range(10)], 0.060, 0.080], [1, 8, 3, 1]),
        # nine during the first batch: the one left behind takes the 60 ms arrival only
        ([0.0, *[0.010 + i * 1e-4 for i in range(9)], 0.060, 0.080], [1, 8, 2, 1]),
    ],
)
def test_dynamic_batcher_forms_batches_as_triton_does(arrivals: list[float], sizes: list[int]) -> None:
    assert _batch_sizes(arrivals, SLEEPER) == sizes


def test_batch_waits_at_most_the_queue_delay_for_more_requests() -> None:
    config = ReplicaConfig(ServiceModel(base_ms=50.0), max_queue_delay_ms=5.0)
    # the first two arrive within 5 ms and go together; the third, 9 ms after the first, does not
    assert _batch_sizes([0.0, 0.004, 0.009], config) == [2, 1]


def test_counters_are_monotonic_and_match_the_requests() -> None:
    rates = np.concatenate([np.full(50, 120.0), np.zeros(10)])  # quiet at the end: the last scrape sees everything
    recorder = Scripted({})
    run = simulate(traces.Trace(rates), Fleet(SLEEPER, 0.0, initial_replicas=2), recorder, seed=7)
    by_pod: dict[str, list[Scrape]] = {}
    for scrape in recorder.scrapes:
        by_pod.setdefault(scrape.triton.pod, []).append(scrape)
    for scrapes in by_pod.values():
        for field in ("queue_us", "success", "compute_us", "executions"):
            values = [getattr(s.triton, field) for s in scrapes]
            assert values == sorted(values), field
        assert [s.request_seconds for s in scrapes] == sorted(s.request_seconds for s in scrapes)
    last = [scrapes[-1].triton for scrapes in by_pod.values()]
    assert sum(s.success for s in last) == len(run.arrivals)
    assert sum(s.queue_us for s in last) / sum(s.success for s in last) / 1000 == pytest.approx(np.mean(run.queue_ms))
    # each request records its batch's compute time: 50 ms, whatever the batch
    assert sum(s.compute_us for s in last) / sum(s.success for s in last) == pytest.approx(50_000)
    starts = run.arrivals + run.queue_ms / 1000
    batches = len({(pod, start) for pod, start in zip(run.served_by.tolist(), starts.tolist(), strict=True)})
    assert sum(s.executions for s in last) == batches
    assert all(s.pending == 0 for s in last)


def test_pending_counts_queued_requests_not_executing_ones() -> None:
    recorder = Scripted({})
    run = simulate(traces.constant(400.0, 3), Fleet(SLEEPER, 0.0), recorder, seed=2)
    first = recorder.scrapes[0].triton  # after 1 s at 400 req/s on a replica that serves 160 req/s
    arrived = int(np.sum(run.arrivals <= first.at))
    assert arrived - first.success - first.pending == SLEEPER.max_batch_size  # the full batch executing


@pytest.mark.parametrize("delay", [0.0, 7.5, 15.0])
def test_a_new_pod_serves_only_after_the_start_delay(delay: float) -> None:
    run = simulate(traces.constant(100.0, 60), Fleet(SLEEPER, delay), Scripted({10.0: 2}), seed=4)
    new = run.pods[1]
    assert (new.requested_at, new.ready_at) == (10.0, 10.0 + delay)
    served = run.arrivals[run.served_by == 1]
    assert served.min() >= 10.0 + delay
    assert served.min() < 10.0 + delay + 0.1  # and from then on it takes its share
    assert run.replica_seconds == pytest.approx(60 + 50)  # counted from the request, not from readiness


def test_scale_down_lets_removed_pods_finish_every_request() -> None:
    # 4 pods at 3x one pod's peak: every pod has a queue when 3 are removed
    rates = np.concatenate([np.full(20, 3 * SLEEPER.peak_rate), np.full(40, 0.5 * SLEEPER.peak_rate)])
    run = simulate(traces.Trace(rates), Fleet(SLEEPER, 5.0, initial_replicas=4), Scripted({20.0: 1}), seed=5)
    assert np.isfinite(run.queue_ms).all()
    removed = [pod for pod in run.pods if math.isfinite(pod.removed_at)]
    assert len(removed) == 3
    for pod in removed:
        index = run.pods.index(pod)
        assert (run.arrivals[run.served_by == index] < pod.removed_at).all()  # nothing new after removal
        assert pod.finished_at > pod.removed_at  # it drained its queue first
    assert run.replica_seconds > 60 + 3 * 20  # the drain counts


def test_scale_down_removes_pods_not_ready_first_then_the_newest() -> None:
    plan = {10.0: 3, 12.0: 4, 20.0: 3, 40.0: 2}  # pods 2 and 3 are requested at 10 and 12 s, serve from 30 and 32 s
    run = simulate(traces.constant(50.0, 60), Fleet(SLEEPER, 20.0, initial_replicas=2), Scripted(plan), seed=6)
    removed = {pod.name: pod.removed_at for pod in run.pods if math.isfinite(pod.removed_at)}
    assert removed == {"pod-3": 20.0, "pod-2": 40.0}


def test_same_seed_same_run_and_another_seed_another() -> None:
    def once(seed: int) -> Run:
        return simulate(traces.constant(200.0, 30), Fleet(SLEEPER, 0.0, 2), Fixed(2), seed=seed)

    a, b, c = once(1), once(1), once(2)
    assert np.array_equal(a.queue_ms, b.queue_ms)
    assert np.array_equal(a.served_by, b.served_by)
    assert len(a.arrivals) != len(c.arrivals) or not np.array_equal(a.arrivals, c.arrivals)


def test_windows_are_judged_by_the_mean_queue_time_of_their_arrivals() -> None:
    run = Run(
        duration=30.0,
        arrivals=np.array([1.0, 2.0, 11.0, 12.0, 25.0]),
        queue_ms=np.array([10.0, 90.0, 10.0, 20.0, np.inf]),
        served_by=np.zeros(5, dtype=np.int64),
        pods=[],
        initial_replicas=1,
    )
    assert run.window_queue_ms(10.0).tolist() == [50.0, 15.0, math.inf]
    assert run.attainment(50.0) == pytest.approx(2 / 3)
    assert run.attainment(40.0) == pytest.approx(1 / 3)
