"""The HorizontalPodAutoscaler of ``spec.autoscaling.engine: HPA``: Kubernetes' own autoscaler on Triton's queue
latency, served as a Pods custom metric by prometheus-adapter (the README gives the adapter rule)."""

from __future__ import annotations

from typing import Any

from triton_operator.api.v1alpha1 import AutoscalingEngine, InferenceService
from triton_operator.resources.meta import Manifest, object_meta

#: The custom metric the prometheus-adapter rule in the README serves: per pod, the queue time of the requests it
#: completed over the rate window, summed over its models (request-weighted), in milliseconds.
QUEUE_LATENCY_METRIC = "triton_queue_latency_milliseconds"


def _behavior(isvc: InferenceService) -> dict[str, Any]:
    """The user's stabilization windows; the HPA's defaults for the rest."""
    autoscaling = isvc.spec.autoscaling
    assert autoscaling is not None
    behavior: dict[str, Any] = {}
    for key, policy in (("scaleUp", autoscaling.scale_up), ("scaleDown", autoscaling.scale_down)):
        if policy is not None and policy.stabilization_window_seconds is not None:
            behavior[key] = {"stabilizationWindowSeconds": policy.stabilization_window_seconds}
    return behavior


def build_horizontal_pod_autoscaler(isvc: InferenceService) -> Manifest | None:
    """The HPA, or None unless the HPA engine is chosen (so the reconciler removes a stale one)."""
    autoscaling = isvc.spec.autoscaling
    if autoscaling is None or autoscaling.engine is not AutoscalingEngine.HPA:
        return None
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": isvc.metadata.name},
        "minReplicas": autoscaling.min_replicas,
        "maxReplicas": autoscaling.max_replicas,
        "metrics": [
            {
                "type": "Pods",
                "pods": {
                    "metric": {"name": QUEUE_LATENCY_METRIC},
                    "target": {
                        "type": "AverageValue",
                        "averageValue": str(autoscaling.target_queue_latency_milliseconds),
                    },
                },
            }
        ],
    }
    behavior = _behavior(isvc)
    if behavior:
        spec["behavior"] = behavior
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": object_meta(isvc),
        "spec": spec,
    }
