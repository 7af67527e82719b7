"""status.autoscaler: what to write after a decision, and when writing is worth an API call. No I/O.

The decision is made every couple of seconds; writing each one would cost a thousand services hundreds of writes
a second and make an idle fleet write forever. So status is written when the decision changes (a new desired
count, or a different verdict: holding, scaling, no metrics), and otherwise only to refresh a queue latency that
moved by more than :data:`LATENCY_CHANGE` and not more often than every :data:`REFRESH_SECONDS`.
"""

from __future__ import annotations

from typing import Any

from triton_operator.policy.autoscaling import Decision

LATENCY_CHANGE = 0.1
REFRESH_SECONDS = 15.0


def verdict_of(reason: str) -> str:
    """The part of a reason after its measurements ("holding 3", "scaling up 2 -> 4"): numbers before it move
    with every sample, the verdict only when the decision does."""
    return reason.rsplit(": ", 1)[-1]


def autoscaler_status(decision: Decision, previous: dict[str, Any], scaled_at: str | None) -> dict[str, Any]:
    """status.autoscaler after ``decision``; ``scaled_at`` is set when the replica count was just written."""
    status: dict[str, Any] = {"desiredReplicas": decision.desired, "reason": decision.reason}
    if decision.queue_ms is not None:
        status["queueLatencyMilliseconds"] = round(decision.queue_ms, 1)
    last_scale = scaled_at or previous.get("lastScaleTime")
    if last_scale:
        status["lastScaleTime"] = last_scale
    return status


def worth_writing(previous: dict[str, Any], new: dict[str, Any], seconds_since_write: float) -> bool:
    """Whether ``new`` says something ``previous`` does not, enough to spend a write on."""
    if not previous:
        return True
    for key in ("desiredReplicas", "lastScaleTime"):
        if previous.get(key) != new.get(key):
            return True
    if verdict_of(str(previous.get("reason", ""))) != verdict_of(str(new.get("reason", ""))):
        return True
    before, after = previous.get("queueLatencyMilliseconds"), new.get("queueLatencyMilliseconds")
    if (before is None) != (after is None):
        return True
    if before is None or after is None or seconds_since_write < REFRESH_SECONDS:
        return False
    return bool(abs(after - before) > max(1.0, LATENCY_CHANGE * abs(before)))
