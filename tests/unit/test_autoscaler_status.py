"""status.autoscaler is written when the decision changes, not on every sample."""

from __future__ import annotations

from typing import Any

import pytest

from triton_operator.policy.autoscaler_status import autoscaler_status, verdict_of, worth_writing
from triton_operator.policy.autoscaling import Decision

HOLD = "queue latency 20.0 ms (target 50 ms) at 90.0 req/s over 3 ready replicas: holding 3"


def status(desired: int = 3, reason: str = HOLD, latency: float | None = 20.0, scaled: str | None = None) -> dict[str, Any]:
    return autoscaler_status(Decision(desired, reason, latency), {}, scaled)


def test_the_status_carries_the_decision_and_keeps_the_last_scale_time() -> None:
    first = autoscaler_status(Decision(4, "x: scaling up 3 -> 4", 80.04), {}, "2026-11-23T07:00:00Z")
    assert first == {
        "desiredReplicas": 4,
        "reason": "x: scaling up 3 -> 4",
        "queueLatencyMilliseconds": 80.0,
        "lastScaleTime": "2026-11-23T07:00:00Z",
    }
    later = autoscaler_status(Decision(4, HOLD, 30.0), first, None)
    assert later["lastScaleTime"] == "2026-11-23T07:00:00Z"
    assert "queueLatencyMilliseconds" not in autoscaler_status(Decision(4, "no metrics: holding 4 without metrics"), {}, None)


@pytest.mark.parametrize(
    ("previous", "new", "seconds", "write"),
    [
        ({}, status(), 0, True),
        (status(), status(), 60, False),  # nothing new
        (status(), status(reason=HOLD.replace("90.0", "91.0")), 60, False),  # only the measurements moved
        (status(), status(desired=4, reason="...: scaling up 3 -> 4"), 0, True),
        (status(), status(reason="no metrics from p: refused: no metrics yet from the ready replicas: holding 3 without metrics"), 0, True),  # another verdict
        (status(), status(latency=40.0), 5, False),  # moved, but written a moment ago
        (status(), status(latency=40.0), 20, True),
        (status(), status(latency=21.5), 20, False),  # within 10%
        (status(latency=0.2), status(latency=0.9), 20, False),  # within 1 ms
        (status(), status(latency=None), 0, True),
        (status(scaled="t1"), status(scaled="t2"), 0, True),
    ],
    ids=["first", "same", "numbers-only", "desired", "verdict", "too-soon", "moved", "small-move", "tiny", "lost-metric", "rescaled"],
)
def test_worth_writing(previous: dict[str, Any], new: dict[str, Any], seconds: float, write: bool) -> None:
    assert worth_writing(previous, new, seconds) is write


def test_verdict_of() -> None:
    assert verdict_of(HOLD) == "holding 3"
    assert verdict_of("holding 3") == "holding 3"
