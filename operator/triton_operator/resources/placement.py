"""Where Triton pods may run: GPU resources, the GPU product selector and the GPU taint toleration.

Merged with the user's own scheduling fields so that asking for a GPU never discards what the user wrote.
"""

from __future__ import annotations

from typing import Any

from triton_operator.api.v1alpha1 import GPU_PRODUCT_LABEL, InferenceService

GPU_TAINT_KEY = "nvidia.com/gpu"


def gpu_limits(isvc: InferenceService) -> dict[str, Any]:
    """limits[resourceName] = count; nothing for CPU-only services."""
    gpu = isvc.spec.gpu
    return {gpu.resource_name: gpu.count} if gpu.count > 0 else {}


def node_selector(isvc: InferenceService) -> dict[str, str]:
    """The user's selector plus the GPU Feature Discovery product label when a product is named."""
    selector = dict(isvc.spec.node_selector or {})
    gpu = isvc.spec.gpu
    if gpu.count > 0 and gpu.product:
        selector[GPU_PRODUCT_LABEL] = gpu.product
    return selector


def tolerations(isvc: InferenceService) -> list[dict[str, Any]]:
    """The user's tolerations plus one for the nvidia.com/gpu NoSchedule taint that GPU node pools carry."""
    result = [t.model_dump(by_alias=True, exclude_none=True) for t in isvc.spec.tolerations or []]
    if isvc.spec.gpu.count > 0:
        gpu_toleration = {"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}
        already = any(
            t.get("key") in (GPU_TAINT_KEY, None) and t.get("operator") == "Exists" and t.get("effect") in ("NoSchedule", None)
            for t in result
        )
        if not already:
            result.append(gpu_toleration)
    return result


def scheduling_fields(isvc: InferenceService) -> dict[str, Any]:
    """Pod spec fields for placement, leaving out the empty ones so server-side apply owns nothing needlessly."""
    spec = isvc.spec
    fields: dict[str, Any] = {
        "nodeSelector": node_selector(isvc),
        "tolerations": tolerations(isvc),
        "affinity": spec.affinity,
        "topologySpreadConstraints": spec.topology_spread_constraints,
        "priorityClassName": spec.priority_class_name,
        "serviceAccountName": spec.service_account_name,
    }
    return {key: value for key, value in fields.items() if value}
