"""The peering gate's one read, against a real API server: kopf's CRD missing, the object missing, the object there.

The gate reads the peering object every second; each answer must be a clear "not there" or the object, and a
missing CRD must not cost more than a 404 (the read goes by path, not through the dynamic client's discovery).
"""

from __future__ import annotations

import asyncio
from typing import Any

from kubernetes import client as k8s

from tests.helm import CHART
from triton_operator.adapters.kube import KubeAdapter, load_kube_config
from triton_operator.devcluster import LocalCluster
from triton_operator.devmode import kubectl

KOPF_CRDS = CHART / "crds" / "kopf-peering.yaml"


def read(cluster: LocalCluster, name: str, namespace: str | None) -> dict[str, Any] | None:
    async def once() -> dict[str, Any] | None:
        kube = KubeAdapter(load_kube_config(str(cluster.operator_kubeconfig)))
        try:
            return await kube.get_peering(name, namespace)
        finally:
            kube.close()

    return asyncio.run(once())


def test_a_missing_crd_a_missing_object_and_a_present_one(cluster: LocalCluster, api_client: k8s.ApiClient, namespace: str) -> None:
    kubectl(cluster, "delete", "-f", str(KOPF_CRDS), "--ignore-not-found", "--wait")
    assert read(cluster, "triton-operator", None) is None  # no CRD: a 404 like any other
    assert read(cluster, "triton-operator", namespace) is None

    kubectl(cluster, "apply", "-f", str(KOPF_CRDS))
    kubectl(cluster, "wait", "--for=condition=Established", "crd/clusterkopfpeerings.kopf.dev", "crd/kopfpeerings.kopf.dev")
    assert read(cluster, "triton-operator", namespace) is None  # the CRD, but no object

    custom = k8s.CustomObjectsApi(api_client)
    record = {"priority": 5, "lifetime": 60, "lastseen": "2026-01-01T00:00:00+00:00"}
    custom.create_namespaced_custom_object(
        "kopf.dev", "v1", namespace, "kopfpeerings", {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "p"}, "status": {"a": record}}
    )
    custom.create_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "p"}})
    try:
        namespaced = read(cluster, "p", namespace)
        assert namespaced is not None
        assert namespaced["status"] == {"a": record}  # kopf writes status on the main resource: it is kept
        assert (read(cluster, "p", None) or {})["kind"] == "ClusterKopfPeering"
    finally:
        custom.delete_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", "p")
