"""Names, labels and owner references shared by every child of an InferenceService."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from triton_operator.api.v1alpha1 import API_VERSION, DEFAULT_TRITON_IMAGE, KIND, InferenceService

FIELD_MANAGER = "triton-operator"
MANAGED_BY = "triton-operator"
INSTANCE_LABEL = "serving.triton-operator.dev/inferenceservice"
HTTP_PORT = 8000
GRPC_PORT = 8001
METRICS_PORT = 8002

Manifest = dict[str, Any]


@dataclass(frozen=True)
class OperatorDefaults:
    """Defaults set by whoever runs the operator (its command line), not by each InferenceService."""

    triton_image: str = DEFAULT_TRITON_IMAGE


DEFAULTS = OperatorDefaults()


def selector_labels(isvc: InferenceService) -> dict[str, str]:
    """The pod selector. Immutable on a Deployment, so it holds only what never changes: the owner's name."""
    return {INSTANCE_LABEL: isvc.metadata.name}


def selector_string(isvc: InferenceService) -> str:
    """The selector as ``kubectl`` and the scale subresource spell it."""
    return ",".join(f"{key}={value}" for key, value in selector_labels(isvc).items())


def labels(isvc: InferenceService) -> dict[str, str]:
    """Recommended labels, so dashboards and ``kubectl get -l`` find the fleet, plus the selector label."""
    return {
        "app.kubernetes.io/name": "triton-inference-server",
        "app.kubernetes.io/instance": isvc.metadata.name,
        "app.kubernetes.io/component": "predictor",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        **selector_labels(isvc),
    }


def owner_reference(isvc: InferenceService) -> dict[str, Any]:
    """A controller reference: garbage collection removes the child when the InferenceService goes."""
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": isvc.metadata.name,
        "uid": isvc.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def object_meta(isvc: InferenceService) -> dict[str, Any]:
    """metadata of a child: same name and namespace as its owner."""
    return {
        "name": isvc.metadata.name,
        "namespace": isvc.metadata.namespace,
        "labels": labels(isvc),
        "ownerReferences": [owner_reference(isvc)],
    }


def service_host(isvc: InferenceService) -> str:
    """The in-cluster DNS name of the Service."""
    return f"{isvc.metadata.name}.{isvc.metadata.namespace}.svc"
