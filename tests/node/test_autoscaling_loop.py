"""The autoscaling loop closed for real on the real node (B6): real Triton pods, their metrics scraped by the
operator, an open-loop load from this machine through the Service. Load steps up -> the operator scales out ->
queue latency returns under the target -> load stops -> it scales in after the stabilization window.

The model is ``sleeper`` limited to batches of one (20 ms each: 50 requests/s per replica), so a few dozen
requests a second overload one replica on this 2-core machine.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.cluster.helpers import DEPLOYMENT, POD, Kube, isvc_manifest
from tests.polling import wait_for
from triton_operator.devmode import OperatorProcess
from triton_operator.testing import PrometheusServer, file_sd_scrape
from triton_operator.testing.load import LoadGenerator

NAME = "elastic"
TARGET_MS = 40
RATE = 70.0  # requests/s: 1.4x one replica's capacity


def autoscaler(kube: Kube) -> dict[str, Any]:
    return kube.status(NAME).get("autoscaler") or {}


def operator_queue_latency(operator: OperatorProcess, namespace: str) -> float | None:
    """The queue latency of the autoscaler's last decision, from the operator's own metrics (status.autoscaler
    refreshes it at most every 15 s; the metric follows every decision)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{operator.metrics_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        if family.name == "triton_operator_queue_latency_milliseconds":
            for sample in family.samples:
                if sample.labels == {"namespace": namespace, "name": NAME}:
                    return float(sample.value)
    return None


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


def routes(url: str) -> bool:
    """True once a GET through the Service is answered (no proxy)."""
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def run_loop(kube: Kube, operator: OperatorProcess) -> dict[str, float]:
    """Step the load up and down; returns the measured seconds of each phase."""
    wait_for("Ready", lambda: kube.status(NAME).get("phase") == "Ready", timeout=180)
    service_ip = (kube.get(("v1", "Service"), NAME) or {})["spec"]["clusterIP"]
    # kube-proxy programs the Service a moment after its first pod turns Ready; until then the node refuses
    # connections. That lag is kube-proxy's, not the operator's: the load starts once the Service routes.
    wait_for("the Service to route", lambda: routes(f"http://{service_ip}:8000/v2/health/live"), timeout=15)
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
        wait_for(
            "queue latency back under the target",
            lambda: 0 <= (operator_queue_latency(operator, kube.namespace) or 1e9) < TARGET_MS,
            timeout=90,
            interval=0.2,
        )
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


def report(source: str, timings: dict[str, float]) -> None:
    assert timings["scaled_in"] >= 20, "scale-in waited for the stabilization window"
    print(
        f"\n[node tier] B6 ({source}): load step -> scale-out written {timings['decided']:.1f} s, new replicas "
        f"ready {timings['ready']:.1f} s, queue latency under target {timings['recovered']:.1f} s; load stopped -> "
        f"scaled in {timings['scaled_in']:.1f} s"
    )


def test_the_operator_scales_real_triton_out_and_in_on_queue_latency(kube: Kube, node_operator: OperatorProcess) -> None:
    kube.create(elastic({}))
    report("Pods source", run_loop(kube, node_operator))


@contextmanager
def discovered_pods(kube: Kube, targets_file: Path) -> Iterator[None]:
    """Write the service's running pods as Prometheus file-SD targets every half second, labelled ``namespace``
    and ``pod`` as a PodMonitor would (Debian's Prometheus has no Kubernetes discovery built in)."""
    stop = threading.Event()

    def write() -> None:
        while not stop.is_set():
            pods = kube.list(POD, f"serving.triton-operator.dev/inferenceservice={NAME}")
            groups = [
                {"targets": [f"{p['status']['podIP']}:8002"], "labels": {"namespace": kube.namespace, "pod": p["metadata"]["name"]}}
                for p in pods
                if (p.get("status") or {}).get("podIP")
            ]
            partial = targets_file.with_suffix(".tmp")
            partial.write_text(json.dumps(groups))
            partial.replace(targets_file)  # atomic: Prometheus never reads half a file
            stop.wait(0.5)

    targets_file.write_text("[]")
    thread = threading.Thread(target=write, name="pod-discovery", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)


def test_the_same_loop_through_a_real_prometheus(kube: Kube, node_operator: OperatorProcess, tmp_path: Path) -> None:
    """Prometheus scrapes the pods every second; the operator reads their counters from it with PromQL."""
    targets = tmp_path / "pods.json"
    with discovered_pods(kube, targets), PrometheusServer(scrape_configs=[file_sd_scrape("triton", targets)]) as prometheus:
        kube.create(elastic({"metricsSource": "Prometheus", "prometheus": {"url": prometheus.url}}))
        report("Prometheus source", run_loop(kube, node_operator))
