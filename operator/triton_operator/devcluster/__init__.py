"""The local Kubernetes cluster of the cluster test tier and of ``triton-operator dev up``.

A real etcd, kube-apiserver, kube-controller-manager and kube-scheduler on 127.0.0.1 (built from Go
modules: see ``hack/build-cluster-binaries.sh``), with kwok faking GPU nodes, because whatever can run here
runs for real and only the GPU nodes cannot. Usage::

    cluster = LocalCluster()
    cluster.up()            # idempotent; prints progress to stderr
    ...                     # cluster.kubeconfig, cluster.operator_kubeconfig, cluster.audit_log
    cluster.down()
"""

from __future__ import annotations

from .cluster import LocalCluster
from .errors import ClusterError
from .nodes import A100, GPU_PRODUCT_LABEL, GPU_RESOURCE, GPU_TAINT, H100, FakeNode, default_nodes

__all__ = [
    "A100",
    "GPU_PRODUCT_LABEL",
    "GPU_RESOURCE",
    "GPU_TAINT",
    "H100",
    "ClusterError",
    "FakeNode",
    "LocalCluster",
    "default_nodes",
]
