"""kopf wiring only: watches feed the controller, startup builds it, cleanup stops it.

Every handler here is an ``on.event`` handler: kopf delivers events and nothing else. No handler makes kopf
patch objects, add finalizers or store progress annotations, so the operator writes only what the reconciler
decides to write.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import kopf

from triton_operator.adapters.kube import KubeAdapter, load_kube_config
from triton_operator.api.v1alpha1 import GROUP, PLURAL, VERSION
from triton_operator.autoscaler import DEFAULT_INTERVAL_SECONDS
from triton_operator.controller import Controller
from triton_operator.peering import PeeringGate
from triton_operator.resources.children import DEPLOYMENT, HPA, PDB, SERVICE, ChildKind
from triton_operator.resources.meta import DEFAULTS, MANAGED_BY

MANAGED = {"app.kubernetes.io/managed-by": MANAGED_BY}


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """In a pod, the service account; elsewhere $KUBECONFIG or ~/.kube/config (set by `run --kubeconfig`).

    In a pod, through the official client's in-cluster loader, as the operator's own API client: it reaches the API
    server at $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT as client-go does, where kopf's own service-account
    login names https://kubernetes.default.svc and so depends on cluster DNS. Elsewhere kopf's kubeconfig login,
    which reads $KUBECONFIG when called (the client's loader fixed it when it was imported)."""
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return kopf.login_via_client(**kwargs)
    return kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.posting.enabled = False  # events are the reconciler's, on transitions only
    settings.batching.batch_window = 0.01  # the controller's queue folds bursts; kopf need not wait
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    kube = KubeAdapter(load_kube_config(memo.get("kubeconfig")), concurrency=memo.get("api_concurrency", 8))
    controller = Controller(
        kube,
        workers=memo.get("workers", 8),
        defaults=memo.get("defaults", DEFAULTS),
        autoscale_interval=memo.get("autoscale_interval", DEFAULT_INTERVAL_SECONDS),
        namespaces=memo.get("namespaces", ()),
    )
    memo["kube"] = kube
    memo["controller"] = controller
    if memo.get("peering") is None:
        memo["starting"] = asyncio.create_task(controller.start_when_synced(), name="controller start")
    else:  # one of several replicas: work only while kopf's peering would let this one
        settings.peering.lifetime = memo.get("peering_lifetime", settings.peering.lifetime)
        memo["gate"] = PeeringGate(kube, controller, memo["peering"])
        memo["gate"].start()
    logging.getLogger(__name__).info("triton-operator started")


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    if memo.get("starting") is not None:
        memo["starting"].cancel()
        await asyncio.gather(memo["starting"], return_exceptions=True)
    if memo.get("gate") is not None:
        await memo["gate"].stop()
    await memo["controller"].stop()
    memo["kube"].close()


@kopf.on.event(GROUP, VERSION, PLURAL)
async def inference_service_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    memo["controller"].on_service_event(event.get("type"), event["object"])


def _child_handler(kind: ChildKind, group: str, version: str, plural: str) -> None:
    async def handler(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
        memo["controller"].on_child_event(kind, event.get("type"), event["object"])

    handler.__name__ = f"{plural}_event"
    kopf.on.event(group, version, plural, labels=MANAGED, id=f"{plural}-event")(handler)


_child_handler(DEPLOYMENT, "apps", "v1", "deployments")
_child_handler(SERVICE, "", "v1", "services")
_child_handler(PDB, "policy", "v1", "poddisruptionbudgets")
_child_handler(HPA, "autoscaling", "v2", "horizontalpodautoscalers")


@kopf.on.event("", "v1", "pods", labels=MANAGED)
async def pod_event(event: kopf.RawEvent, memo: kopf.Memo, **_: Any) -> None:
    memo["controller"].on_pod_event(event.get("type"), event["object"])
