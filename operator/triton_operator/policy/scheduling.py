"""Why Triton pods cannot be placed, said in the terms of the InferenceService rather than the scheduler's."""

from __future__ import annotations

from collections.abc import Sequence

from triton_operator.api.v1alpha1 import GPU_PRODUCT_LABEL, InferenceService
from triton_operator.policy.observations import NodeObservation


def _count(value: str | None) -> int:
    """An extended-resource quantity (always whole numbers for devices)."""
    try:
        return int(value) if value is not None else 0
    except ValueError:
        return 0


def explain_unschedulable(
    isvc: InferenceService, nodes: Sequence[NodeObservation], scheduler_message: str | None
) -> str:
    """The first placement requirement no node meets, else the scheduler's own words.

    Checked in the order a user fixes them: the GPU product, the node selector, then GPUs per node. A fleet
    that fits on paper but not right now (GPUs in use) falls through to the scheduler's message.
    """
    gpu = isvc.spec.gpu
    candidates = [n for n in nodes if not n.unschedulable]
    if gpu.count > 0 and gpu.product:
        products = sorted({n.labels[GPU_PRODUCT_LABEL] for n in candidates if GPU_PRODUCT_LABEL in n.labels})
        candidates = [n for n in candidates if n.labels.get(GPU_PRODUCT_LABEL) == gpu.product]
        if not candidates:
            offered = ", ".join(products) if products else "none"
            return f"no node offers {GPU_PRODUCT_LABEL}={gpu.product} (products in the cluster: {offered})"
    for key, value in sorted((isvc.spec.node_selector or {}).items()):
        candidates = [n for n in candidates if n.labels.get(key) == value]
        if not candidates:
            return f"no node matches spec.nodeSelector {key}={value}"
    if gpu.count > 0:
        most = max((_count(n.allocatable.get(gpu.resource_name)) for n in candidates), default=0)
        if most == 0:
            return f"no node offers {gpu.resource_name}" + (f" among {gpu.product} nodes" if gpu.product else "")
        if gpu.count > most:
            where = f" {gpu.product}" if gpu.product else ""
            return (
                f"no{where} node has {gpu.count} allocatable {gpu.resource_name} "
                f"(the most on one node is {most}); lower spec.gpu.count"
            )
    if scheduler_message:
        return f"the scheduler cannot place the pods: {scheduler_message}"
    return "the scheduler has not placed the pods yet"
