"""A small test-side client: apply manifests, read children back, wait for conditions, run kubectl."""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections import Counter
from typing import Any, TypeVar

from kubernetes import client as k8s
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError

from tests.catalogue import ISVC
from triton_operator.devcluster import LocalCluster

T = TypeVar("T")

DEPLOYMENT = ("apps/v1", "Deployment")
SERVICE = ("v1", "Service")
PDB = ("policy/v1", "PodDisruptionBudget")
POD = ("v1", "Pod")

# kubectl caches API discovery for hours; a cache from before the CRD was installed would hide `tis`.
KUBECTL_CACHE = tempfile.mkdtemp(prefix="kubectl-cache-")


def isvc_manifest(name: str, **spec: Any) -> dict[str, Any]:
    """An InferenceService with a model repository and whatever spec fields are given."""
    return {
        "apiVersion": ISVC[0],
        "kind": ISVC[1],
        "metadata": {"name": name},
        "spec": {"modelRepository": {"uri": "s3://models/test"}, **spec},
    }


class Kube:
    """Reads and writes in one test namespace as the cluster admin."""

    def __init__(self, api_client: k8s.ApiClient, cluster: LocalCluster, namespace: str) -> None:
        self.dynamic = DynamicClient(api_client)
        self.cluster = cluster
        self.namespace = namespace

    def resource(self, kind: tuple[str, str]) -> Any:
        return self.dynamic.resources.get(api_version=kind[0], kind=kind[1])

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        resource = self.resource((manifest["apiVersion"], manifest["kind"]))
        return dict(resource.create(body=manifest, namespace=self.namespace).to_dict())

    def get(self, kind: tuple[str, str], name: str) -> dict[str, Any] | None:
        try:
            return dict(self.resource(kind).get(name=name, namespace=self.namespace).to_dict())
        except NotFoundError:
            return None

    def list(self, kind: tuple[str, str], selector: str | None = None) -> list[dict[str, Any]]:
        result = self.resource(kind).get(namespace=self.namespace, label_selector=selector)
        return [dict(item.to_dict()) for item in result.items]

    def patch(self, kind: tuple[str, str], name: str, body: dict[str, Any], content_type: str = "application/merge-patch+json") -> None:
        self.resource(kind).patch(name=name, namespace=self.namespace, body=body, content_type=content_type)

    def delete(self, kind: tuple[str, str], name: str) -> None:
        self.resource(kind).delete(name=name, namespace=self.namespace)

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [
                str(self.cluster.bin_dir / "kubectl"),
                f"--kubeconfig={self.cluster.kubeconfig}",
                f"--cache-dir={KUBECTL_CACHE}",
                "-n",
                self.namespace,
                *args,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result

    def status(self, name: str) -> dict[str, Any]:
        return (self.get(ISVC, name) or {}).get("status") or {}

    def condition(self, name: str, type_: str) -> dict[str, Any]:
        return next((c for c in self.status(name).get("conditions") or [] if c["type"] == type_), {})

    def audited(self) -> list[dict[str, Any]]:
        """The operator's completed requests in this namespace, from the API server's audit log (whose policy
        records the operator's user only)."""
        entries = (json.loads(line) for line in self.cluster.audit_log.read_text().splitlines() if line.strip())
        return [
            e
            for e in entries
            if e.get("stage") == "ResponseComplete" and (e.get("objectRef") or {}).get("namespace") == self.namespace
        ]


def operator_requests(kube: Kube, verbs: set[str]) -> Counter[tuple[str, str]]:
    """(verb, resource[/subresource]) counts of the operator's requests in the namespace, from the audit log."""
    counts: Counter[tuple[str, str]] = Counter()
    for entry in kube.audited():
        ref = entry.get("objectRef") or {}
        if entry.get("verb") in verbs:
            counts[(entry["verb"], ref.get("resource", "") + ("/" + ref["subresource"] if ref.get("subresource") else ""))] += 1
    return counts


