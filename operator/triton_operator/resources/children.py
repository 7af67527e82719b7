"""Every child of an InferenceService, in the order they are applied."""

from __future__ import annotations

from dataclasses import dataclass

from triton_operator.api.v1alpha1 import InferenceService
from triton_operator.resources.deployment import build_deployment
from triton_operator.resources.horizontalpodautoscaler import build_horizontal_pod_autoscaler
from triton_operator.resources.meta import DEFAULTS, Manifest, OperatorDefaults
from triton_operator.resources.poddisruptionbudget import build_pod_disruption_budget
from triton_operator.resources.service import build_service


@dataclass(frozen=True)
class ChildKind:
    """A kind of child the operator manages: its API coordinates."""

    api_version: str
    kind: str
    plural: str


DEPLOYMENT = ChildKind("apps/v1", "Deployment", "deployments")
SERVICE = ChildKind("v1", "Service", "services")
PDB = ChildKind("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets")
HPA = ChildKind("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers")
CHILD_KINDS = (DEPLOYMENT, SERVICE, PDB, HPA)


@dataclass(frozen=True)
class DesiredChildren:
    """What should exist: a manifest per kind, or None for a kind that must not exist."""

    manifests: dict[ChildKind, Manifest | None]

    def present(self) -> list[Manifest]:
        """The manifests to apply, Deployment first (it is what users wait for)."""
        return [m for kind in CHILD_KINDS if (m := self.manifests.get(kind)) is not None]

    def absent(self) -> list[ChildKind]:
        """Kinds whose child must be deleted if it exists."""
        return [kind for kind in CHILD_KINDS if self.manifests.get(kind) is None]


def desired_children(isvc: InferenceService, defaults: OperatorDefaults = DEFAULTS) -> DesiredChildren:
    """Build every child from the spec and the operator's defaults."""
    return DesiredChildren(
        {
            DEPLOYMENT: build_deployment(isvc, defaults),
            SERVICE: build_service(isvc),
            PDB: build_pod_disruption_budget(isvc),
            HPA: build_horizontal_pod_autoscaler(isvc),
        }
    )
