"""Reconcile one InferenceService: build its children, apply what changed, write status if it changed.

Level-based: a reconcile reads only the store (what the watches delivered) and compares with what should be,
so it does not matter which event triggered it, how many were folded together, or whether the operator
restarted in between. Writes happen only when something differs, which keeps an idle operator at zero writes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import time
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic.exceptions import DynamicApiError
from pydantic import ValidationError

from triton_operator.api.v1alpha1 import InferenceService, Phase
from triton_operator.model_control import ModelControl
from triton_operator.policy.model_events import model_events
from triton_operator.policy.observations import NodeObservation, PodObservation
from triton_operator.policy.status import RESTARTED, Observed, ready_condition, reduce_status, status_patch
from triton_operator.policy.triton_log import explain_triton_exit
from triton_operator.resources.children import CHILD_KINDS, DEPLOYMENT, ChildKind, desired_children
from triton_operator.resources.deployment import CONTAINER_NAME
from triton_operator.resources.meta import DEFAULTS, Manifest, OperatorDefaults
from triton_operator.store import Key, Store

log = logging.getLogger(__name__)

NODE_CACHE_SECONDS = 10.0
WARNING_PHASES = {Phase.SCHEDULING.value, Phase.DEGRADED.value, Phase.FAILED.value}


class Kube(Protocol):
    """The API calls a reconcile makes (``adapters.kube.KubeAdapter`` in production)."""

    async def apply(self, manifest: Manifest) -> dict[str, Any]: ...
    async def delete(self, kind: ChildKind, namespace: str, name: str) -> None: ...
    async def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> dict[str, Any]: ...
    async def list_nodes(self) -> list[dict[str, Any]]: ...
    async def read_previous_log(self, namespace: str, pod: str, container: str, tail_lines: int = 400) -> str: ...
    async def post_event(self, owner: dict[str, Any], type_: str, reason: str, message: str) -> None: ...
    async def patch_pod_condition(self, namespace: str, pod: str, condition: dict[str, Any]) -> None: ...


class RetryLater(Exception):
    """The reconcile recorded a problem in status and wants to try again after a backoff."""


def digest(manifest: Manifest) -> str:
    """A stable fingerprint of a manifest, to skip applies that would change nothing."""
    return hashlib.sha256(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def kind_of(manifest: Manifest) -> ChildKind:
    return next(k for k in CHILD_KINDS if k.kind == manifest["kind"])


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def api_error_message(error: DynamicApiError) -> str:
    """The API server's own message (it names the field), without the HTTP noise around it."""
    try:
        body = json.loads(error.body or "")
        return str(body.get("message") or error.summary())
    except (TypeError, ValueError):
        return str(error.summary())


@dataclass
class NodeCache:
    """Nodes are read only to explain unschedulable pods, and at most every few seconds."""

    nodes: list[NodeObservation] = field(default_factory=list)
    fetched_at: float = float("-inf")

    async def get(self, kube: Kube) -> list[NodeObservation]:
        if time.monotonic() - self.fetched_at > NODE_CACHE_SECONDS:
            self.nodes = [NodeObservation.from_node(n) for n in await kube.list_nodes()]
            self.fetched_at = time.monotonic()
        return self.nodes


class Reconciler:
    """Turns the store's view of one InferenceService into API writes."""

    def __init__(self, kube: Kube, store: Store, models: ModelControl, defaults: OperatorDefaults = DEFAULTS) -> None:
        self.kube = kube
        self.store = store
        self.models = models
        self.defaults = defaults
        self.nodes = NodeCache()
        # Per InferenceService: (pod, restart count) -> Triton's explanation of that exit, read once.
        self.exits: dict[Key, dict[tuple[str, int], str | None]] = {}

    async def reconcile(self, key: Key) -> float | None:
        """Bring one InferenceService's children and status up to date; returns after how many seconds to look
        again though nothing changes (the models are observed by asking Triton, which sends no events)."""
        body = self.store.services.get(key)
        if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
            self.exits.pop(key, None)
            self.models.forget(key)
            return None  # gone or going: garbage collection removes the children
        try:
            isvc = self.store.inference_service(key)
        except ValidationError as error:
            # The CRD schema rejects these at admission; an older CRD or a hand-edited one may not.
            await self._write_status_for_invalid(key, body, error)
            return None

        assert isvc is not None  # the body was there a moment ago, and nothing awaited since
        apply_error = await self._apply_children(key, isvc)
        resync_after = await self._write_status(key, isvc, apply_error)
        if apply_error:
            raise RetryLater(apply_error)
        return resync_after

    async def _apply_children(self, key: Key, isvc: InferenceService) -> str | None:
        """Apply each child that differs from what is live, concurrently (a Service's ClusterIP allocation is
        slow and must not hold up the Deployment); delete children that should not exist."""
        desired = desired_children(isvc, self.defaults)
        fingerprinted = [(manifest, digest(manifest)) for manifest in desired.present()]
        stale = [(m, d) for m, d in fingerprinted if not self.store.is_current(key, kind_of(m), d)]
        outcomes = await asyncio.gather(*(self._apply_one(key, m, d) for m, d in stale), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        for kind in desired.absent():
            child = self.store.child(kind, key)
            if child is not None and child.controlled:  # never delete what another controller owns
                await self.kube.delete(kind, *key)
        return next((o for o in outcomes if isinstance(o, str)), None)

    async def _apply_one(self, key: Key, manifest: Manifest, fingerprint: str) -> str | None:
        """Apply one child; a rejection the user must fix comes back as a message, anything else raises."""
        kind = kind_of(manifest)
        try:
            result = await self.kube.apply(manifest)
        except DynamicApiError as error:
            if error.status in (400, 403, 404, 409, 422):
                return f"cannot apply {kind.kind} {manifest['metadata']['name']}: {api_error_message(error)}"
            raise
        self.store.record_applied(key, kind, fingerprint, result)
        return None

    async def _write_status(self, key: Key, isvc: InferenceService, apply_error: str | None) -> float | None:
        deployment_record = self.store.child(DEPLOYMENT, key)
        pods = await self._with_exit_reasons(key, self.store.pods_of(key))
        needs_nodes = any(not pod.scheduled and not pod.deleting for pod in pods)
        models = await self.models.sync(key, isvc, pods)
        observed = Observed(
            apply_error=apply_error,
            deployment=deployment_record.deployment if deployment_record else None,
            pods=pods,
            nodes=await self.nodes.get(self.kube) if needs_nodes else [],
            models=models.verdict,
        )
        body = self.store.services.get(key)
        if body is None:  # deleted while Triton was asked
            return None
        previous = body.get("status") or {}
        new = reduce_status(isvc, observed, previous, now_rfc3339())
        await self._patch_status(key, body, previous, new)
        return models.resync_after

    async def _with_exit_reasons(self, key: Key, pods: list[PodObservation]) -> list[PodObservation]:
        """Pods whose Triton exited carry Triton's own reason (from the previous run's log), read once per exit."""
        known = self.exits.get(key, {})
        current: dict[tuple[str, int], str | None] = {}
        result = []
        for pod in pods:
            exit_id = (pod.name, pod.restart_count)
            if pod.restart_count == 0 or pod.ready:
                result.append(pod)
                continue
            if exit_id not in known:
                known[exit_id] = await self._explain_exit(key[0], pod.name)
            current[exit_id] = known[exit_id]
            reason = current[exit_id]
            result.append(replace(pod, last_termination_message=reason) if reason else pod)
        if current:
            self.exits[key] = current
        else:
            self.exits.pop(key, None)
        return result

    async def _explain_exit(self, namespace: str, pod: str) -> str | None:
        try:
            return explain_triton_exit(await self.kube.read_previous_log(namespace, pod, CONTAINER_NAME))
        except (DynamicApiError, ApiException) as error:  # no previous log (yet): keep the kubelet's words
            log.debug("no previous log for %s/%s: %s", namespace, pod, error)
            return None

    async def _write_status_for_invalid(self, key: Key, body: dict[str, Any], error: ValidationError) -> None:
        problems = "; ".join(
            f"spec.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" if e["loc"] else e["msg"] for e in error.errors()
        )
        message = f"invalid spec: {problems}"
        previous = body.get("status") or {}
        generation = int((body.get("metadata") or {}).get("generation") or 0)
        old_ready = ready_condition(previous)
        new = {
            "observedGeneration": generation,
            "phase": Phase.FAILED.value,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "False",
                    "reason": "InvalidSpec",
                    "message": message,
                    "lastTransitionTime": old_ready.get("lastTransitionTime", now_rfc3339())
                    if old_ready.get("status") == "False"
                    else now_rfc3339(),
                    "observedGeneration": generation,
                }
            ],
        }
        await self._patch_status(key, body, previous, new)

    async def _patch_status(
        self, key: Key, body: dict[str, Any], previous: dict[str, Any], new: dict[str, Any]
    ) -> None:
        patch = status_patch(previous, new)
        if not patch:
            return
        updated = await self.kube.patch_status(key[0], key[1], patch)
        self.store.put_service(updated)
        if "models" in patch:
            for event in model_events(previous.get("models"), new.get("models") or []):
                await self._post_event(updated, event.type, event.reason, event.message)
        if "phase" in patch or "conditions" in patch:
            await self._announce(updated, previous, new)

    async def _announce(self, body: dict[str, Any], previous: dict[str, Any], new: dict[str, Any]) -> None:
        """An Event when the phase or the Ready reason changes, with the reason a user can act on."""
        before, after = ready_condition(previous), ready_condition(new)
        if previous.get("phase") == new.get("phase") and before.get("reason") == after.get("reason"):
            return
        phase = str(new.get("phase"))
        reason = str(after.get("reason") or phase)
        event_type = "Warning" if phase in WARNING_PHASES or reason == RESTARTED else "Normal"
        await self._post_event(body, event_type, reason, f"{phase}: {after.get('message', '')}")

    async def _post_event(self, body: dict[str, Any], type_: str, reason: str, message: str) -> None:
        try:
            await self.kube.post_event(body, type_, reason, message)
        except DynamicApiError as error:  # an event is informative; losing one must not fail the reconcile
            log.warning("could not post event %s on %s: %s", reason, (body.get("metadata") or {}).get("name"), error)
