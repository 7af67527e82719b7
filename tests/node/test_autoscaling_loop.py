"""The autoscaling loop closed for real on the real node (B6): real Triton pods, their metrics scraped by the
operator, an open-loop load from this machine through the Service. Load steps up -> the operator scales out ->
queue latency returns under the target -> load stops -> it scales in after the stabilization window.

The model is ``sleeper`` limited to batches of one (20 ms each: 50 requests/s per replica), so a few dozen
requests a second overload one replica on this 2-core machine.
"""

from __future__ import annotations

import time
from typing import Any

from tests.cluster.helpers import DEPLOYMENT, Kube, isvc_manifest
from tests.polling import wait_for
from triton_operator.testing.load import LoadGenerator

NAME = "elastic"
TARGET_MS = 40
RATE = 70.0  # requests/s: 1.4x one replica's capacity


def autoscaler(kube: Kube) -> dict[str, Any]:
    return kube.status(NAME).get("autoscaler") or {}


def spec_replicas(kube: Kube) -> int:
    return int((kube.get(DEPLOYMENT, NAME) or {}).get("spec", {}).get("replicas") or 0)


def elastic(source: dict[str, Any]) -> dict[str, Any]:
    return isvc_manifest(
        NAME,
        modelRepository={"uri": "pvc://triton-models"},
        gpu={"count": 0},
        models=[{"name": "sleeper", "config": {"maxBatchSize": 1}}],
        autoscaling={
            "minReplicas": 1,
            "maxReplicas": 3,
            "targetQueueLatencyMilliseconds": TARGET_MS,
            "scaleDown": {"stabilizationWindowSeconds": 20},
            **source,
        },
    )


def run_loop(kube: Kube) -> dict[str, float]:
    """Step the load up and down; returns the measured seconds of each phase."""
    wait_for("Ready", lambda: kube.status(NAME).get("phase") == "Ready", timeout=180)
    service_ip = (kube.get(("v1", "Service"), NAME) or {})["spec"]["clusterIP"]
    load = LoadGenerator(f"{service_ip}:8000", "sleeper").start(RATE)
    stepped = time.monotonic()
    try:
        wait_for("scale-out written", lambda: spec_replicas(kube) >= 2, timeout=60, interval=0.1)
        decided = time.monotonic() - stepped
        first_scale = autoscaler(kube)
        wait_for(
            "the new replicas ready",
            lambda: kube.status(NAME).get("readyReplicas", 0) >= spec_replicas(kube) >= 2,
            timeout=120,
            interval=0.2,
        )
        ready = time.monotonic() - stepped
        seen: list[dict[str, Any]] = []

        def under_target() -> bool:
            seen.append(autoscaler(kube))
            return 0 <= seen[-1].get("queueLatencyMilliseconds", 1e9) < TARGET_MS

        try:
            wait_for("queue latency back under the target", under_target, timeout=90, interval=0.2)
        except AssertionError as error:
            changes = [s for i, s in enumerate(seen) if i == 0 or s != seen[i - 1]]
            raise AssertionError(f"{error}; status.autoscaler as it changed: {changes[-8:]}; load: {load.stats().sent} sent") from None
        recovered = time.monotonic() - stepped
    finally:
        stats = load.stop()
    stopped = time.monotonic()
    wait_for("scale-in after the stabilization window", lambda: spec_replicas(kube) == 1, timeout=120, interval=0.5)
    scaled_in = time.monotonic() - stopped
    assert stats.succeeded > 0, stats.last_error
    assert stats.failed <= stats.sent * 0.01, f"{stats.failed} of {stats.sent} requests failed: {stats.last_error}"
    assert "scaling up 1 -> " in first_scale.get("reason", "") or first_scale.get("desiredReplicas", 0) >= 2
    return {"decided": decided, "ready": ready, "recovered": recovered, "scaled_in": scaled_in}


def test_the_operator_scales_real_triton_out_and_in_on_queue_latency(kube: Kube) -> None:
    kube.create(elastic({}))
    timings = run_loop(kube)
    assert timings["scaled_in"] >= 20, "scale-in waited for the stabilization window"
    print(
        "\n[node tier] B6 (Pods source): load step -> scale-out written {decided:.1f} s, new replicas ready "
        "{ready:.1f} s, queue latency under target {recovered:.1f} s; load stopped -> scaled in {scaled_in:.1f} s".format(
            **timings
        )
    )
