"""Triton's Prometheus metrics, the autoscaler's input: present per model after load, and moving under load."""

from __future__ import annotations

import threading
import time

from tests.triton.helpers import infer_concurrently, metric_samples, models_in
from triton_operator.testing import TritonServer

QUEUE = "nv_inference_queue_duration_us"
SUCCESS = "nv_inference_request_success"
PENDING = "nv_inference_pending_request_count"


def test_metrics_exist_for_every_loaded_model(good_server: TritonServer) -> None:
    present = models_in(good_server.metrics_text(), [QUEUE, SUCCESS, PENDING])
    for name, models in present.items():
        assert {"identity", "sleeper"} <= models, f"{name} has samples for {models}"


def test_counters_move_under_concurrent_load(good_server: TritonServer) -> None:
    """Queue time accrues only when requests wait: 32 at once on `sleeper` (20 ms per batch of at most 8) wait
    for up to three batches ahead of them. The pending gauge is sampled while they are in flight."""
    before = good_server.metrics_text()
    pending_seen: list[float] = []
    stop = threading.Event()

    def sample_pending() -> None:
        while not stop.is_set():
            pending_seen.append(metric_samples(good_server.metrics_text(), PENDING).get("sleeper", 0.0))
            time.sleep(0.005)

    sampler = threading.Thread(target=sample_pending, daemon=True)
    sampler.start()
    try:
        for _ in range(3):
            infer_concurrently(good_server, "sleeper", 32)
    finally:
        stop.set()
        sampler.join(timeout=10)
    after = good_server.metrics_text()

    successes = metric_samples(after, SUCCESS)["sleeper"] - metric_samples(before, SUCCESS)["sleeper"]
    queue_us = metric_samples(after, QUEUE)["sleeper"] - metric_samples(before, QUEUE)["sleeper"]
    assert successes == 96
    # Request-weighted mean queue time: the design's autoscaling signal (delta queue_us / delta successes).
    mean_queue_ms = queue_us / successes / 1000
    assert mean_queue_ms > 5, f"mean queue time {mean_queue_ms:.1f} ms with 32 concurrent 20 ms requests"
    assert max(pending_seen, default=0.0) > 0, f"pending count never above 0 in {len(pending_seen)} samples"
    assert metric_samples(after, PENDING)["sleeper"] == 0
