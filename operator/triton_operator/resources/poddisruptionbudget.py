"""The PodDisruptionBudget that keeps voluntary evictions (node drains) from emptying the fleet."""

from __future__ import annotations

from triton_operator.api.v1alpha1 import InferenceService
from triton_operator.resources.meta import Manifest, object_meta, selector_labels


def wants_disruption_budget(isvc: InferenceService) -> bool:
    """Only when more than one replica may run: with one, a budget would block every node drain."""
    budget = isvc.spec.disruption_budget
    enabled = budget.enabled if budget else True
    return enabled and isvc.spec.max_possible_replicas > 1


def build_pod_disruption_budget(isvc: InferenceService) -> Manifest | None:
    """The budget, or None when none should exist (so the reconciler removes a stale one)."""
    if not wants_disruption_budget(isvc):
        return None
    budget = isvc.spec.disruption_budget
    if budget and budget.min_available is not None:
        limit = {"minAvailable": budget.min_available}
    else:
        limit = {"maxUnavailable": budget.max_unavailable if budget and budget.max_unavailable is not None else 1}
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": object_meta(isvc),
        "spec": {**limit, "selector": {"matchLabels": selector_labels(isvc)}},
    }
