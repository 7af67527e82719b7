"""The ClusterIP Service in front of the Triton pods."""

from __future__ import annotations

from triton_operator.api.v1alpha1 import InferenceService
from triton_operator.resources.meta import (
    GRPC_PORT,
    HTTP_PORT,
    METRICS_PORT,
    Manifest,
    object_meta,
    selector_labels,
)


def build_service(isvc: InferenceService) -> Manifest:
    """HTTP, gRPC and metrics ports, named so that protocol-aware meshes and ServiceMonitors find them."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(isvc),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(isvc),
            "ports": [
                {"name": "http", "port": HTTP_PORT, "targetPort": "http", "protocol": "TCP", "appProtocol": "http"},
                {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "grpc"},
                {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics", "protocol": "TCP", "appProtocol": "http"},
            ],
        },
    }
