"""The Kubernetes API, thin: server-side apply of children, deletes, status patches, node lists, events.

Built on the official client's dynamic client. Its calls block, so every method runs in a small thread pool
and is awaited from the operator's event loop; the pool size bounds the operator's concurrent API requests.
Every write is counted (``triton_operator_api_writes_total``) so an idle operator can be shown to write nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import itertools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import NotFoundError
from prometheus_client import Counter

from triton_operator.api.v1alpha1 import API_VERSION, KIND
from triton_operator.resources.children import ChildKind
from triton_operator.resources.meta import FIELD_MANAGER, Manifest

T = TypeVar("T")

API_WRITES = Counter(
    "triton_operator_api_writes",
    "Write requests the operator sent to the Kubernetes API.",
    ["verb", "kind"],
)

_event_sequence = itertools.count()


def _plain(_client: Any, data: dict[str, Any]) -> dict[str, Any]:
    """Keep responses as plain dicts: the dynamic client's ResourceInstance wrapper costs time and memory."""
    return data


def load_kube_config(kubeconfig: str | None = None) -> k8s_client.ApiClient:
    """An ApiClient from a kubeconfig file, $KUBECONFIG, ~/.kube/config, or the in-cluster service account."""
    configuration = k8s_client.Configuration()
    try:
        k8s_config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    except (k8s_config.ConfigException, TypeError):
        if kubeconfig:
            raise
        k8s_config.load_incluster_config(client_configuration=configuration)
    return k8s_client.ApiClient(configuration)


#: kopf's peering objects (ClusterKopfPeering, KopfPeering).
PEERING_GROUP, PEERING_VERSION = "kopf.dev", "v1"

#: The field manager of replica counts the built-in autoscaler writes.
AUTOSCALER_FIELD_MANAGER = "triton-operator-autoscaler"


class KubeAdapter:
    """Blocking dynamic-client calls behind async methods."""

    def __init__(self, api_client: k8s_client.ApiClient, concurrency: int = 8) -> None:
        api_client.configuration.connection_pool_maxsize = concurrency
        # Rebuild the pool manager so the new size takes effect.
        api_client.rest_client = type(api_client.rest_client)(api_client.configuration)
        self._dynamic = DynamicClient(api_client)
        self._core = k8s_client.CoreV1Api(api_client)
        self._custom = k8s_client.CustomObjectsApi(api_client)
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="kube")
        self._resources: dict[tuple[str, str], Any] = {}

    async def _run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))

    def _resource(self, api_version: str, kind: str) -> Any:
        """Discovery is slow; each resource is looked up once."""
        key = (api_version, kind)
        if key not in self._resources:
            self._resources[key] = self._dynamic.resources.get(api_version=api_version, kind=kind)
        return self._resources[key]

    async def apply(self, manifest: Manifest) -> dict[str, Any]:
        """Server-side apply under the operator's field manager, forcing ownership of exactly the fields it sets."""
        resource = self._resource(manifest["apiVersion"], manifest["kind"])
        API_WRITES.labels("apply", manifest["kind"]).inc()
        return await self._run(
            self._dynamic.server_side_apply,
            resource,
            body=manifest,
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
            serializer=_plain,
        )

    async def delete(self, kind: ChildKind, namespace: str, name: str) -> None:
        """Delete a child that should no longer exist; already gone is fine."""
        resource = self._resource(kind.api_version, kind.kind)
        API_WRITES.labels("delete", kind.kind).inc()
        with contextlib.suppress(NotFoundError):
            await self._run(self._dynamic.delete, resource, name=name, namespace=namespace, serializer=_plain)

    async def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch the InferenceService's status subresource; returns the updated object."""
        resource = self._resource(API_VERSION, KIND).status
        API_WRITES.labels("patch_status", KIND).inc()
        return await self._run(
            self._dynamic.patch,
            resource,
            body={"status": patch},
            name=name,
            namespace=namespace,
            content_type="application/merge-patch+json",
            serializer=_plain,
        )

    async def scale(self, namespace: str, name: str, replicas: int) -> None:
        """Set the Deployment's replicas through its scale subresource, under the autoscaler's own field manager
        (so the owner of spec.replicas is visible in managedFields, apart from the operator's applies)."""
        resource = self._resource("apps/v1", "Deployment").subresources["scale"]
        API_WRITES.labels("scale", "Deployment").inc()
        await self._run(
            self._dynamic.patch,
            resource,
            body={"spec": {"replicas": replicas}},
            name=name,
            namespace=namespace,
            content_type="application/merge-patch+json",
            field_manager=AUTOSCALER_FIELD_MANAGER,
            serializer=_plain,
        )

    async def patch_pod_condition(self, namespace: str, pod: str, condition: dict[str, Any]) -> None:
        """Set one condition (a readiness gate) in a pod's status. A strategic merge patch merges conditions by
        type, so the kubelet's own conditions are left alone."""
        resource = self._resource("v1", "Pod").status
        API_WRITES.labels("patch_status", "Pod").inc()
        await self._run(
            self._dynamic.patch,
            resource,
            body={"status": {"conditions": [condition]}},
            name=pod,
            namespace=namespace,
            content_type="application/strategic-merge-patch+json",
            serializer=_plain,
        )

    async def list_objects(self, api_version: str, kind: str, namespace: str | None, label_selector: str | None = None) -> list[dict[str, Any]]:
        """Every object of a kind in a namespace (None: all namespaces), as plain dicts."""
        result = await self._run(
            self._dynamic.get, self._resource(api_version, kind), namespace=namespace, label_selector=label_selector, serializer=_plain
        )
        return list(result.get("items") or [])

    async def list_nodes(self) -> list[dict[str, Any]]:
        """All nodes, as plain dicts (read only when pods cannot be scheduled)."""
        result = await self._run(self._dynamic.get, self._resource("v1", "Node"), serializer=_plain)
        return list(result.get("items") or [])

    async def get_peering(self, name: str, namespace: str | None) -> dict[str, Any] | None:
        """kopf's peering object: the ClusterKopfPeering ``name`` (namespace None) or the KopfPeering ``name`` in the
        namespace; None when it, or kopf's CRD, does not exist. Read by path, without discovery: a missing CRD must
        not make every read refresh the dynamic client's discovery cache, which the reconciler shares."""
        found: object  # the client's stubs say object; it returns the parsed JSON
        try:
            if namespace is None:
                found = await self._run(self._custom.get_cluster_custom_object, PEERING_GROUP, PEERING_VERSION, "clusterkopfpeerings", name)
            else:
                found = await self._run(self._custom.get_namespaced_custom_object, PEERING_GROUP, PEERING_VERSION, namespace, "kopfpeerings", name)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return found if isinstance(found, dict) else None

    async def read_previous_log(self, namespace: str, pod: str, container: str, tail_lines: int = 400) -> str:
        """The end of the log of a container's previous run (the one that exited)."""
        text = await self._run(
            self._core.read_namespaced_pod_log,
            pod,
            namespace,
            container=container,
            previous=True,
            tail_lines=tail_lines,
            _request_timeout=10,
        )
        return str(text)

    async def post_event(self, owner: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """A core/v1 Event on the InferenceService, as ``kubectl describe`` shows them."""
        metadata = owner.get("metadata") or {}
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{metadata.get('name')}.{int(dt.datetime.now(dt.UTC).timestamp() * 1e6):x}{next(_event_sequence)}",
                "namespace": metadata.get("namespace"),
            },
            "involvedObject": {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "name": metadata.get("name"),
                "namespace": metadata.get("namespace"),
                "uid": metadata.get("uid"),
                "resourceVersion": metadata.get("resourceVersion"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": FIELD_MANAGER},
            "reportingComponent": FIELD_MANAGER,
            "reportingInstance": FIELD_MANAGER,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        API_WRITES.labels("create", "Event").inc()
        await self._run(self._dynamic.create, self._resource("v1", "Event"), body=event, serializer=_plain)

    def close(self) -> None:
        """Stop the thread pool."""
        self._pool.shutdown(wait=False, cancel_futures=True)
