"""The metric sources' pure parts: Triton's exposition text and Prometheus's answers to samples, and the PromQL
they send. Every failure is a MetricsError that says why, never a made-up number."""

from __future__ import annotations

import math
from typing import Any

import pytest

from triton_operator.adapters.metrics import (
    METRICS,
    SCRAPED_AT,
    STALE_AFTER,
    MetricsError,
    promql,
    samples_from_text,
    samples_from_vectors,
    vector_by_pod,
)
from triton_operator.policy.autoscaling import ReplicaSample

# Verbatim from tritonserver 2.51 (nvidia-pytriton 0.7.0, CPU only) serving tests/models/good, after 12 requests to
# sleeper and 5 to identity: counters without `_total`, one label set per model and version, families in between
# that must not count (nv_inference_count, nv_inference_request_failure by reason, a gauge with `_total_` inside).
TRITON = """\
# HELP nv_inference_request_success Number of successful inference requests, all batch sizes
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="sleeper",version="1"} 12
nv_inference_request_success{model="identity",version="1"} 5
# HELP nv_inference_request_failure Number of failed inference requests, all batch sizes
# TYPE nv_inference_request_failure counter
nv_inference_request_failure{model="sleeper",reason="OTHER",version="1"} 0
nv_inference_request_failure{model="sleeper",reason="CANCELED",version="1"} 0
nv_inference_request_failure{model="sleeper",reason="REJECTED",version="1"} 0
nv_inference_request_failure{model="identity",reason="OTHER",version="1"} 0
nv_inference_request_failure{model="identity",reason="BACKEND",version="1"} 0
nv_inference_request_failure{model="identity",reason="CANCELED",version="1"} 0
nv_inference_request_failure{model="sleeper",reason="BACKEND",version="1"} 0
nv_inference_request_failure{model="identity",reason="REJECTED",version="1"} 0
# HELP nv_inference_count Number of inferences performed (does not include cached requests)
# TYPE nv_inference_count counter
nv_inference_count{model="sleeper",version="1"} 12
nv_inference_count{model="identity",version="1"} 5
# HELP nv_inference_exec_count Number of model executions performed (does not include cached requests)
# TYPE nv_inference_exec_count counter
nv_inference_exec_count{model="sleeper",version="1"} 3
nv_inference_exec_count{model="identity",version="1"} 2
# HELP nv_inference_request_duration_us Cumulative inference request duration in microseconds (includes cached requests)
# TYPE nv_inference_request_duration_us counter
nv_inference_request_duration_us{model="sleeper",version="1"} 1021312
nv_inference_request_duration_us{model="identity",version="1"} 223826
# HELP nv_inference_queue_duration_us Cumulative inference queuing duration in microseconds (includes cached requests)
# TYPE nv_inference_queue_duration_us counter
nv_inference_queue_duration_us{model="sleeper",version="1"} 670933
nv_inference_queue_duration_us{model="identity",version="1"} 89104
# HELP nv_inference_compute_input_duration_us Cumulative compute input duration in microseconds (does not include cached requests)
# TYPE nv_inference_compute_input_duration_us counter
nv_inference_compute_input_duration_us{model="sleeper",version="1"} 5256
nv_inference_compute_input_duration_us{model="identity",version="1"} 311
# HELP nv_inference_compute_infer_duration_us Cumulative compute inference duration in microseconds (does not include cached requests)
# TYPE nv_inference_compute_infer_duration_us counter
nv_inference_compute_infer_duration_us{model="sleeper",version="1"} 337858
nv_inference_compute_infer_duration_us{model="identity",version="1"} 129652
# HELP nv_inference_compute_output_duration_us Cumulative inference compute output duration in microseconds (does not include cached requests)
# TYPE nv_inference_compute_output_duration_us counter
nv_inference_compute_output_duration_us{model="sleeper",version="1"} 7132
nv_inference_compute_output_duration_us{model="identity",version="1"} 4719
# HELP nv_inference_pending_request_count Instantaneous number of pending requests awaiting execution per-model.
# TYPE nv_inference_pending_request_count gauge
nv_inference_pending_request_count{model="sleeper",version="1"} 0
nv_inference_pending_request_count{model="identity",version="1"} 0
# HELP nv_pinned_memory_pool_total_bytes Pinned memory pool total memory size, in bytes
# TYPE nv_pinned_memory_pool_total_bytes gauge
nv_pinned_memory_pool_total_bytes 0
# HELP nv_pinned_memory_pool_used_bytes Pinned memory pool used memory size, in bytes
# TYPE nv_pinned_memory_pool_used_bytes gauge
nv_pinned_memory_pool_used_bytes 0
# HELP nv_cpu_utilization CPU utilization rate [0.0 - 1.0]
# TYPE nv_cpu_utilization gauge
nv_cpu_utilization 0
# HELP nv_cpu_memory_total_bytes CPU total memory (RAM), in bytes
# TYPE nv_cpu_memory_total_bytes gauge
nv_cpu_memory_total_bytes 0
# HELP nv_cpu_memory_used_bytes CPU used memory (RAM), in bytes
# TYPE nv_cpu_memory_used_bytes gauge
nv_cpu_memory_used_bytes 0
"""
#: The sums over both models of TRITON.
TRITON_SUMS = {
    "queue_us": 670933 + 89104,
    "success": 12 + 5,
    "compute_us": 337858 + 129652,
    "executions": 3 + 2,
    "pending": 0,
}
#: What a Triton with no model loaded writes: none of the inference families.
NO_MODELS = "\n".join(line for line in TRITON.splitlines() if "nv_inference_" not in line) + "\n"


def exposition(values: dict[str, list[str]], *, typed: bool = True, suffix: str = "") -> str:
    """Exposition text of the five metrics: ``values`` maps a metric to its sample values, one per model;
    counters are named with ``suffix`` (``"_total"`` or not), with ``# TYPE`` lines when ``typed``."""
    lines: list[str] = []
    for metric in METRICS.values():
        gauge = metric == METRICS["pending"]
        if typed:
            lines.append(f"# TYPE {metric} {'gauge' if gauge else 'counter'}")
        name = metric if gauge else metric + suffix
        lines += [f'{name}{{model="m{i}",version="1"}} {v}' for i, v in enumerate(values.get(metric, ["1", "2"]))]
    return "\n".join(lines) + "\n"


def fields(sample: ReplicaSample) -> dict[str, float]:
    return {name: getattr(sample, name) for name in METRICS}


def test_triton_text_sums_every_model() -> None:
    sample = samples_from_text("triton-0", TRITON, 12.5)
    assert (sample.pod, sample.at) == ("triton-0", 12.5)
    assert fields(sample) == TRITON_SUMS


def test_versions_and_pending_are_summed() -> None:
    text = TRITON.replace(
        'nv_inference_pending_request_count{model="sleeper",version="1"} 0',
        'nv_inference_pending_request_count{model="sleeper",version="1"} 3\n'
        'nv_inference_pending_request_count{model="sleeper",version="2"} 4',
    )
    assert samples_from_text("p", text, 0.0).pending == 7


@pytest.mark.parametrize(
    ("typed", "suffix"),
    [
        pytest.param(True, "", id="typed counters without _total (Triton)"),
        pytest.param(True, "_total", id="typed counters with _total (OpenMetrics style)"),
        pytest.param(False, "", id="untyped without _total"),
        pytest.param(False, "_total", id="untyped with _total"),
    ],
)
def test_counters_with_and_without_total(typed: bool, suffix: str) -> None:
    sample = samples_from_text("p", exposition({}, typed=typed, suffix=suffix), 0.0)
    assert fields(sample) == dict.fromkeys(METRICS, 3.0)


def test_exponent_and_float_values() -> None:
    text = exposition({METRICS["queue_us"]: ["1.5e6", "0.25"]})
    assert samples_from_text("p", text, 0.0).queue_us == 1_500_000.25


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        pytest.param(
            exposition({METRICS["queue_us"]: ["1", "NaN"]}),
            'nv_inference_queue_duration_us{model="m1",version="1"} is NaN',
            id="NaN",
        ),
        pytest.param(
            exposition({METRICS["success"]: ["-4", "10"]}),
            'nv_inference_request_success{model="m0",version="1"} is -4, not a count',
            id="negative (even when the sum is not)",
        ),
        pytest.param(
            exposition({METRICS["pending"]: ["+Inf", "0"]}),
            'nv_inference_pending_request_count{model="m0",version="1"} is inf, not a count',
            id="infinite",
        ),
        pytest.param(
            exposition({METRICS["executions"]: []}),
            "metric missing: nv_inference_exec_count",
            id="a family with no samples",
        ),
        pytest.param(
            "\n".join(line for line in TRITON.splitlines() if "compute_infer" not in line),
            "metric missing: nv_inference_compute_infer_duration_us",
            id="one family missing",
        ),
        pytest.param(
            NO_MODELS,
            "metric missing: " + ", ".join(METRICS.values()),
            id="Triton with no model loaded",
        ),
        pytest.param("", "metric missing: " + ", ".join(METRICS.values()), id="empty"),
        pytest.param(
            "<html><body>Not Found</body></html>",
            "unparsable metrics text: invalid metric name:<html>",
            id="HTML",
        ),
        pytest.param(
            TRITON + "nv_inference_exec_count{model=sleeper} 1\n",
            "unparsable metrics text: Invalid labels",
            id="a broken line after good ones",
        ),
        pytest.param("{}", "unparsable metrics text", id="an empty ValueError from the parser"),
    ],
)
def test_unusable_text_says_why(text: str, reason: str) -> None:
    with pytest.raises(MetricsError) as caught:
        samples_from_text("p", text, 0.0)
    assert reason in str(caught.value)
    assert "\n" not in str(caught.value)


# -- Prometheus --------------------------------------------------------------------------------------------------


def test_promql_queries_each_metric_for_the_pods_of_one_namespace() -> None:
    queries = promql("serving", ["triton-0", "triton-1"])
    selector = '{namespace="serving", pod=~"triton-0|triton-1"}'
    assert queries == {
        **{metric: f"sum by (pod) ({metric}{selector})" for metric in METRICS.values()},
        SCRAPED_AT: f"max by (pod) (timestamp(nv_inference_request_success{selector}))",
    }


@pytest.mark.parametrize(
    ("namespace", "pods", "selector"),
    [
        pytest.param("ns", ["web.1"], '{namespace="ns", pod=~"web\\\\.1"}', id="a dot is not any character"),
        pytest.param(
            'x"} or vector(1) or {a="', ["p"], '{namespace="x\\"} or vector(1) or {a=\\"", pod=~"p"}', id="quotes"
        ),
        pytest.param("a\\b\n", ["p"], '{namespace="a\\\\b\\n", pod=~"p"}', id="backslash and newline"),
        pytest.param("ns", [".*", "a|b", "(x"], '{namespace="ns", pod=~"\\\\.\\\\*|a\\\\|b|\\\\(x"}', id="regex"),
        pytest.param("né", ["p"], '{namespace="né", pod=~"p"}', id="non-ASCII stays (no surrogate escapes)"),
    ],
)
def test_promql_escapes_what_the_user_controls(namespace: str, pods: list[str], selector: str) -> None:
    assert promql(namespace, pods)[METRICS["success"]] == f"sum by (pod) (nv_inference_request_success{selector})"


def vector(**values: str) -> dict[str, Any]:
    """The ``data`` of an instant-query answer, one element per pod."""
    return {
        "resultType": "vector",
        "result": [{"metric": {"pod": pod}, "value": [1700000000.0, v]} for pod, v in values.items()],
    }


def test_vector_by_pod_reads_values_as_prometheus_writes_them() -> None:
    values = vector_by_pod(vector(a="12", b="NaN", c="+Inf", d="1e3"))
    assert math.isnan(values.pop("b"))
    assert values == {"a": 12, "c": math.inf, "d": 1000}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        pytest.param({"resultType": "matrix", "result": []}, "not an instant vector", id="range vector"),
        pytest.param({"resultType": "scalar", "result": [1, "2"]}, "not an instant vector", id="scalar"),
        pytest.param(None, "not an instant vector: null", id="no data"),
        pytest.param(
            {"resultType": "vector", "result": [{"metric": {}, "value": [1, "2"]}]},
            "unreadable vector element",
            id="no pod label",
        ),
        pytest.param(
            {"resultType": "vector", "result": [{"metric": {"pod": "a"}, "value": [1, "many"]}]},
            "unreadable vector element",
            id="value not a number",
        ),
    ],
)
def test_vector_by_pod_rejects_other_shapes(data: Any, reason: str) -> None:
    with pytest.raises(MetricsError, match=reason):
        vector_by_pod(data)


NOW = 1_700_000_000.0


def answers(scraped_at: float = NOW - 1, **per_pod: dict[str, float | None]) -> dict[str, dict[str, float]]:
    """The answers to the six queries: for each pod its five metrics (10, 20, ... unless overridden; None: absent
    from that answer) and its scrape time."""
    out: dict[str, dict[str, float]] = {}
    for pod, overrides in per_pod.items():
        values = {metric: 10.0 * (i + 1) for i, metric in enumerate(METRICS.values())} | {SCRAPED_AT: scraped_at}
        for key, value in (values | overrides).items():
            if value is not None:
                out.setdefault(key, {})[pod] = value
    return out


def test_vectors_become_samples_at_their_scrape_time() -> None:
    measured = samples_from_vectors("ns", ["a", "b"], answers(a={}, b={}), evaluated_at=NOW, monotonic=500.0)
    assert measured.problems == {}
    assert [s.pod for s in measured.samples] == ["a", "b"]
    assert fields(measured.samples[0]) == {
        "queue_us": 10,
        "success": 20,
        "compute_us": 30,
        "executions": 40,
        "pending": 50,
    }
    assert measured.samples[0].at == pytest.approx(499.0)  # scraped 1 s before the evaluation


def test_a_scrape_time_after_the_evaluation_is_taken_as_now() -> None:
    measured = samples_from_vectors("ns", ["a"], answers(NOW + 3, a={}), evaluated_at=NOW, monotonic=500.0)
    assert measured.samples[0].at == 500.0


@pytest.mark.parametrize(
    ("per_pod", "scraped_at", "reason"),
    [
        pytest.param(
            {"b": {}},
            NOW - 1,
            "Prometheus has no Triton metrics for pod a in namespace ns (not scraped, or its series lack the "
            "namespace/pod labels)",
            id="pod missing from every answer",
        ),
        pytest.param(
            {"a": {METRICS["executions"]: None}},
            NOW - 1,
            "in Prometheus: metric missing: nv_inference_exec_count",
            id="pod missing from one answer",
        ),
        pytest.param(
            {"a": {METRICS["queue_us"]: math.nan}},
            NOW - 1,
            "in Prometheus: nv_inference_queue_duration_us is NaN",
            id="NaN",
        ),
        pytest.param(
            {"a": {METRICS["pending"]: -1.0}},
            NOW - 1,
            "in Prometheus: nv_inference_pending_request_count is -1, not a count",
            id="negative",
        ),
        pytest.param(
            {"a": {}},
            NOW - STALE_AFTER - 10,
            f"in Prometheus: stale: Prometheus last scraped it {STALE_AFTER + 10:.0f} s before the query",
            id="stale",
        ),
        pytest.param(
            {"a": {SCRAPED_AT: None}},
            NOW - 1,
            "in Prometheus: timestamp(nv_inference_request_success) is NaN",
            id="no scrape time",
        ),
    ],
)
def test_unusable_vectors_say_why(per_pod: dict[str, dict[str, float | None]], scraped_at: float, reason: str) -> None:
    measured = samples_from_vectors("ns", ["a"], answers(scraped_at, **per_pod), evaluated_at=NOW, monotonic=0.0)
    assert measured.samples == []
    assert measured.problems == {"a": reason}
