"""What kubectl users see of the API: explain, short name, printer columns, categories."""

from __future__ import annotations

from tests.cluster.helpers import Kube, isvc_manifest


def test_kubectl_explain_teaches_the_api(kube: Kube) -> None:
    text = kube.kubectl("explain", "tis.spec.autoscaling").stdout
    assert "Scale replicas on Triton's queue latency" in text
    for field in ("minReplicas", "maxReplicas", "targetQueueLatencyMilliseconds", "engine", "metricsSource"):
        assert field in text
    gpu = kube.kubectl("explain", "inferenceservice.spec.gpu.product").stdout
    assert "nvidia.com/gpu.product" in gpu


def test_short_name_category_and_printer_columns(kube: Kube) -> None:
    kube.create(isvc_manifest("columns"))
    header = kube.kubectl("get", "tis").stdout.splitlines()[0].split()
    assert header[:7] == ["NAME", "READY", "PHASE", "REPLICAS", "MODELS", "QUEUE", "LATENCY"]
    assert "columns" in kube.kubectl("get", "triton").stdout  # the `triton` category
