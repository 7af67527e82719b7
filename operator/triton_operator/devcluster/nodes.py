"""The fake nodes of the local cluster: what GPU fleets look like to the scheduler, and registering them.

The nodes look like GPU Feature Discovery and the NVIDIA device plugin would make them look (the product
label, the ``nvidia.com/gpu`` extended resource and the taint most GPU pools carry), so the operator's
scheduling fields are judged by the real scheduler. Two products exist so tests can prove a product selector
picks the right pool, and CPU-only nodes exist so ``gpu.count: 0`` has somewhere to go.

Capacity lives in the node *status*, written through the status subresource as a kubelet would. kwok's node
initialisation keeps a capacity that is already there but fills in its own (cpu 1k, memory 1Ti, pods 1M) if
it sees the node first, so nodes are created, their status patched, and only then is kwok started.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .kubeapi import HttpsJson
from .kwok import KWOK_NODE_ANNOTATION

GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
GPU_COUNT_LABEL = "nvidia.com/gpu.count"
A100 = "NVIDIA-A100-SXM4-80GB"
H100 = "NVIDIA-H100-80GB-HBM3"
#: The taint GPU node pools commonly carry so that only pods asking for GPUs (which tolerate it) land there.
GPU_TAINT: dict[str, str] = {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}


@dataclass(frozen=True)
class FakeNode:
    """One kwok-managed node."""

    name: str
    capacity: dict[str, str]
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[dict[str, str], ...] = ()

    def manifest(self) -> dict[str, Any]:
        """The Node object to create (status is patched separately)."""
        key, value = KWOK_NODE_ANNOTATION
        labels = {
            "type": "kwok",
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            **self.labels,
        }
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.name, "labels": labels, "annotations": {key: value}},
            "spec": {"taints": [dict(t) for t in self.taints]},
        }

    def status_patch(self) -> dict[str, Any]:
        """A merge patch for the status subresource: capacity = allocatable (nothing is reserved)."""
        return {"status": {"capacity": dict(self.capacity), "allocatable": dict(self.capacity)}}


def _gpu_node(name: str, product: str) -> FakeNode:
    return FakeNode(
        name=name,
        capacity={"cpu": "96", "memory": "1Ti", "pods": "250", GPU_RESOURCE: "8"},
        labels={GPU_PRODUCT_LABEL: product, GPU_COUNT_LABEL: "8"},
        taints=(GPU_TAINT,),
    )


def default_nodes(cpu_nodes: bool = True) -> list[FakeNode]:
    """4 A100 nodes, 2 H100 nodes (8 GPUs each, tainted) and, unless a real node takes their place (then CPU pods
    must land on it, not on a node that only pretends to run them), 2 CPU-only nodes."""
    nodes = [_gpu_node(f"gpu-a100-{i}", A100) for i in range(4)]
    nodes += [_gpu_node(f"gpu-h100-{i}", H100) for i in range(2)]
    if cpu_nodes:
        nodes += [FakeNode(f"cpu-{i}", {"cpu": "32", "memory": "128Gi", "pods": "250"}) for i in range(2)]
    return nodes


def register_nodes(api: HttpsJson, nodes: list[FakeNode]) -> None:
    """Create each node (or keep an existing one) and set its capacity through the status subresource."""
    for node in nodes:
        api.request("POST", "/api/v1/nodes", node.manifest(), ok=(201, 409))
        api.request(
            "PATCH",
            f"/api/v1/nodes/{node.name}/status",
            node.status_patch(),
            content_type="application/merge-patch+json",
        )


def node_problems(node: dict[str, Any], expected: FakeNode) -> list[str]:
    """Why ``node`` (as read from the API) is not yet a ready, schedulable ``expected``; empty when it is."""
    problems: list[str] = []
    status = node.get("status", {})
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions", [])}
    if conditions.get("Ready") != "True":
        problems.append(f"Ready={conditions.get('Ready', 'missing')}")
    # The node lifecycle controller removes these once it has seen the node Ready.
    taints = {t.get("key") for t in node.get("spec", {}).get("taints", [])}
    problems += [f"taint {t}" for t in sorted(taints) if t and t.startswith("node.kubernetes.io/")]
    allocatable = status.get("allocatable", {})
    for resource, quantity in expected.capacity.items():
        if allocatable.get(resource) != quantity:
            problems.append(f"allocatable {resource}={allocatable.get(resource)} (want {quantity})")
    return problems
