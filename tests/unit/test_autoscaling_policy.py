"""The queue-latency policy, table-driven: counters in, desired replicas and a reason out."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from triton_operator.policy.autoscaling import (
    Decision,
    Memory,
    ReplicaSample,
    Settings,
    decide,
    measure,
    remember,
)

SETTINGS = Settings(min_replicas=1, max_replicas=20, target_ms=50.0, scale_down_window=60.0)


@dataclass(frozen=True)
class Load:
    """What each replica sees per second: completed requests, their queue and compute time, batches, backlog."""

    rps: float
    queue_ms: float
    compute_ms: float = 10.0
    batch: float = 1.0
    pending: float = 0.0


def run(loads: dict[str, Load], seconds: int, *, current: int, ready: int | None = None, settings: Settings = SETTINGS,
        memory: Memory | None = None, start: float = 0.0) -> tuple[Decision, Memory]:
    """Feed ``seconds`` of 1-s samples per replica and decide after each, as the operator's loop does; the last
    decision is returned with the memory."""
    memory = memory or Memory()
    counters = {pod: [0.0, 0.0, 0.0, 0.0] for pod in loads}
    decision = Decision(current, "")
    for second in range(seconds + 1):
        now = start + second
        samples = []
        for pod, load in loads.items():
            c = counters[pod]
            if second:
                c[0] += load.rps * load.queue_ms * 1000
                c[1] += load.rps
                c[2] += load.rps * load.compute_ms * 1000
                c[3] += load.rps / load.batch
            samples.append(ReplicaSample(pod, now, c[0], c[1], c[2], c[3], load.pending))
        remember(memory, samples, keep_seconds=15)
        decision = decide(settings, memory, current, len(loads) if ready is None else ready, now)
    return decision, memory


def pods(n: int, load: Load) -> dict[str, Load]:
    return {f"p{i}": load for i in range(n)}


@pytest.mark.parametrize(
    ("loads", "current", "ready", "desired", "reason_part"),
    [
        ({}, 3, 3, 3, "no metrics yet from the ready replicas: holding 3 without metrics"),
        (pods(2, Load(50, 5)), 2, 0, 2, "no ready replica to measure: holding 2 without metrics"),
        # 2 replicas at 200 ms queue time, 10 ms compute: n (L + S) / (T + S) = 2 * 210 / 60 -> 7, but at most
        # max(2n, n + 4) = 6 per step
        (pods(2, Load(90, 200)), 2, 2, 6, "scaling up 2 -> 6 (fast path)"),
        (pods(4, Load(90, 70)), 4, 4, 6, "scaling up 4 -> 6"),
        (pods(3, Load(90, 52)), 3, 3, 3, "holding 3"),  # within 10% of the target
        (pods(10, Load(90, 60, compute_ms=10)), 10, 10, 12, "scaling up 10 -> 12"),
        (pods(12, Load(90, 2000)), 12, 12, 20, "scaling up 12 -> 20"),  # clamped to maxReplicas
    ],
    ids=["no-samples", "none-ready", "overload-rate-limited", "over-target", "at-target", "slightly-over", "clamped"],
)
def test_decisions(loads: dict[str, Load], current: int, ready: int, desired: int, reason_part: str) -> None:
    decision, _ = run(loads, 12, current=current, ready=ready)
    assert decision.desired == desired, decision.reason
    assert reason_part in decision.reason


def test_queue_latency_is_request_weighted_across_replicas() -> None:
    """A busy replica's requests count for more than an idle one's: (100 * 80 + 10 * 0) / 110, not (80 + 0) / 2."""
    memory = Memory()
    run({"busy": Load(100, 80), "idle": Load(10, 0)}, 10, current=2, memory=memory)
    measured = measure(memory, 10, 10)
    assert measured is not None
    assert measured.queue_ms == pytest.approx(100 * 80 / 110)
    assert measured.completed_per_second == pytest.approx(110)


def test_the_mean_batch_comes_from_the_executions_counter() -> None:
    memory = Memory()
    run({"p": Load(100, 10, compute_ms=40, batch=8)}, 10, current=1, memory=memory)
    measured = measure(memory, 10, 10)
    assert measured is not None
    assert measured.mean_batch == pytest.approx(8)


def test_a_counter_reset_after_a_pod_restart_counts_from_zero() -> None:
    memory = Memory()
    remember(memory, [ReplicaSample("p", 0, 5e6, 1000, 1e7, 1000, 0)], 15)
    remember(memory, [ReplicaSample("p", 5, 6e6, 1100, 1.1e7, 1100, 0)], 15)
    remember(memory, [ReplicaSample("p", 10, 1e6, 100, 1e6, 100, 0)], 15)  # restarted: counters from zero
    measured = measure(memory, 10, 10)
    assert measured is not None
    assert measured.completed_per_second == pytest.approx(200 / 10)
    assert measured.queue_ms == pytest.approx((1e6 + 1e6) / 200 / 1000)


def test_a_replica_without_samples_is_forgotten_and_the_others_decide() -> None:
    memory = Memory()
    run(pods(2, Load(50, 5)), 5, current=2, memory=memory)
    remember(memory, [ReplicaSample("p0", 6, 0, 0, 0, 0, 0)], 15)  # p1 gone (or not ready), p0 restarted
    assert set(memory.samples) == {"p0"}


def test_idle_scales_down_only_after_the_stabilization_window() -> None:
    memory = Memory()
    held, memory = run(pods(4, Load(0, 0)), 30, current=4, memory=memory)
    assert held.desired == 4
    assert "scale-down stabilization 60 s" in held.reason
    later, _ = run(pods(4, Load(0, 0)), 40, current=4, memory=memory, start=31)
    assert later.desired == 1


def test_low_load_scales_down_from_the_throughput_proven_within_the_target() -> None:
    """A replica was seen completing 100 req/s within the target; 6 replicas now carry 20 req/s each: the fleet
    may shrink to what 1.5x the proven throughput carries: 120 / 150 -> 1 replica, once stabilized."""
    memory = Memory()
    run({"p0": Load(100, 40)}, 12, current=1, memory=memory)
    assert memory.proven_per_replica == pytest.approx(100)
    decision, _ = run(pods(6, Load(20, 1)), 80, current=6, memory=memory, start=13)
    assert decision.desired == 1
    assert "scaling down 6 -> 1" in decision.reason


def test_without_proven_throughput_low_latency_explores_half_again() -> None:
    """Never seen busier than now (20 req/s each on 6): one step may load replicas 1.5x: 120 / 30 -> 4."""
    decision, _ = run(pods(6, Load(20, 1)), 80, current=6)
    assert decision.desired == 4


def test_a_growing_backlog_scales_up_before_queue_times_show_it() -> None:
    """Queue time is recorded when a request completes; a backlog growing by 50 requests/s at 100 req/s
    completed per replica is a wait of seconds already: the fast path sizes from arrivals over completions."""
    memory = Memory()
    decision = Decision(2, "")
    for second in range(6):
        remember(
            memory,
            [ReplicaSample(f"p{i}", second, second * 100 * 20_000, second * 100, second * 100 * 10_000, second * 100, 50 * second)
             for i in range(2)],
            keep_seconds=15,
        )
        decision = decide(SETTINGS, memory, 2, 2, second)
    assert decision.desired == 3  # 2 x (150 arriving / 100 completed)
    assert decision.panic
    assert "fast path" in decision.reason
    assert memory.panic_until > 5


def test_a_steady_backlog_behind_a_batch_is_not_an_overload() -> None:
    """Requests waiting for the running batch (pending, but not growing) leave with the next one."""
    decision, _ = run(pods(2, Load(100, 20, pending=7)), 12, current=2)
    assert not decision.panic


def test_no_scale_down_while_the_fast_path_holds() -> None:
    memory = Memory()
    run(pods(2, Load(100, 300)), 5, current=2, memory=memory)
    calm, _ = run(pods(4, Load(5, 0)), 10, current=4, memory=memory, start=6)
    assert calm.desired == 4


def test_requests_pending_but_none_completing_holds() -> None:
    decision, _ = run(pods(2, Load(0, 0, pending=3)), 12, current=2)
    assert decision.desired == 2
    assert "pending but none completed" in decision.reason


def test_never_below_min_or_above_max() -> None:
    settings = Settings(min_replicas=3, max_replicas=5, target_ms=50.0, scale_down_window=0.0)
    low, _ = run(pods(4, Load(0, 0)), 12, current=4, settings=settings)
    assert low.desired == 3
    high, _ = run(pods(4, Load(90, 500)), 12, current=4, settings=settings)
    assert high.desired == 5




def test_the_first_decision_with_metrics_may_scale_up_at_once() -> None:
    """No history blocks a scale-down (an operator restart must not give capacity back), never a scale-up."""
    memory = Memory()
    remember(memory, [ReplicaSample("p", 0, 0, 0, 0, 0, 0)], 15)
    remember(memory, [ReplicaSample("p", 2, 2 * 50 * 20_000, 100, 100 * 20_000, 100, 40)], 15)
    decision = decide(SETTINGS, memory, 1, 1, 2)
    assert decision.desired == 2
    assert decision.panic
