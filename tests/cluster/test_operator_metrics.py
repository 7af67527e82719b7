"""The operator's own Prometheus metrics: reconcile durations, errors, queue depth, API writes."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from tests.cluster.helpers import Kube, isvc_manifest
from tests.polling import wait_for
from triton_operator.devmode import OperatorProcess

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def scrape(operator: OperatorProcess) -> dict[str, float]:
    with _DIRECT.open(f"http://127.0.0.1:{operator.metrics_port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


def test_metrics_count_reconciles_and_api_writes(kube: Kube, operator: OperatorProcess) -> None:
    before = scrape(operator)
    kube.create(isvc_manifest("metered", gpu={"count": 1}))
    wait_for("Ready", lambda: kube.condition("metered", "Ready").get("status") == "True")
    after = scrape(operator)
    assert (
        after["triton_operator_reconcile_duration_seconds_count{}"]
        > before["triton_operator_reconcile_duration_seconds_count{}"]
    )
    applies = "triton_operator_api_writes_total{kind=Deployment,verb=apply}"
    assert after[applies] > before.get(applies, 0)
    assert after["triton_operator_inferenceservices{}"] >= 1
    assert "triton_operator_queue_depth{}" in after
