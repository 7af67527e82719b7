"""The prometheus-adapter rule of the HPA engine (deploy/prometheus-adapter/rules.yaml), evaluated by a real
Prometheus scraping a real Triton that serves two models with very different queue times: the metric it serves
is the request-weighted queue latency, not the average of the two models' averages.

The rule's template variables are filled in as prometheus-adapter fills them for a Pods metric request of one
pod (``<<.LabelMatchers>>`` the namespace and pod, ``<<.GroupBy>>`` the pod label).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.triton.conftest import GOOD
from tests.triton.helpers import infer_concurrently, metric_samples
from triton_operator.resources.horizontalpodautoscaler import QUEUE_LATENCY_METRIC
from triton_operator.testing import PrometheusServer, TritonServer

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus-adapter" / "rules.yaml"


@pytest.fixture(scope="module")
def fresh_triton(tritonserver_bin: Path) -> Iterator[TritonServer]:
    """A Triton of its own: its counters start at zero, before Prometheus's first scrape."""
    with TritonServer(GOOD, model_control_mode="poll", executable=tritonserver_bin) as server:
        yield server


def the_rule() -> dict[str, object]:
    (rule,) = yaml.safe_load(RULES.read_text())["rules"]["custom"]
    return rule  # type: ignore[no-any-return]


def test_the_rule_serves_the_metric_the_hpa_targets() -> None:
    rule = the_rule()
    assert rule["name"] == {"matches": "^nv_inference_queue_duration_us$", "as": QUEUE_LATENCY_METRIC}
    assert rule["resources"] == {"overrides": {"namespace": {"resource": "namespace"}, "pod": {"resource": "pod"}}}


def test_the_rule_weights_queue_time_by_requests_across_models(
    fresh_triton: TritonServer, prometheus_bin: Path
) -> None:
    labels = {"namespace": "serving", "pod": "triton-0"}
    with PrometheusServer([(f"{fresh_triton.host}:{fresh_triton.metrics_port}", labels)], executable=prometheus_bin) as prometheus:
        prometheus.wait_for_scrape()  # a scrape of the zeroed counters first
        for _ in range(4):  # many quick requests with little queueing on identity, few long-queued ones on sleeper
            infer_concurrently(fresh_triton, "identity", 64)
        infer_concurrently(fresh_triton, "sleeper", 48)
        text = fresh_triton.metrics_text()
        prometheus.wait_for_scrape(after=time.time() + 0.1)

        queue = metric_samples(text, "nv_inference_queue_duration_us")
        success = metric_samples(text, "nv_inference_request_success")
        weighted = sum(queue.values()) / sum(success.values()) / 1000
        per_model_average = sum(queue[m] / success[m] for m in queue) / len(queue) / 1000
        assert per_model_average > 1.5 * weighted, "the two models' queue times must differ for this test to mean anything"

        query = str(the_rule()["metricsQuery"]).replace("<<.LabelMatchers>>", 'namespace="serving",pod="triton-0"')
        query = query.replace("<<.GroupBy>>", "pod")
        (result,) = prometheus.query(query)
        served = float(result["value"][1])
        assert result["metric"] == {"pod": "triton-0"}
        assert served == pytest.approx(weighted, rel=0.05), f"rule {served:.2f} ms, weighted {weighted:.2f} ms, per-model average {per_model_average:.2f} ms"
