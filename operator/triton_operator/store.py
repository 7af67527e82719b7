"""The operator's in-memory view of the cluster, fed by watch events.

Only what reconciles read is kept: InferenceService bodies, the identity of each child, slim Deployment and
pod observations. That keeps memory flat with thousands of services and lets a reconcile run without reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from triton_operator.api.v1alpha1 import KIND, InferenceService
from triton_operator.policy.observations import DeploymentObservation, PodObservation
from triton_operator.resources.children import CHILD_KINDS, DEPLOYMENT, ChildKind
from triton_operator.resources.meta import INSTANCE_LABEL

Key = tuple[str, str]  # (namespace, name) of an InferenceService
#: The kind name ``fill`` and the deletion records use for pods (children use their ChildKind's, services KIND).
POD = "Pod"


def key_of(body: dict[str, Any]) -> Key:
    """The (namespace, name) of any object."""
    metadata = body.get("metadata") or {}
    return metadata.get("namespace", ""), metadata.get("name", "")


def _newer(candidate: str, current: str) -> bool:
    """Whether a resourceVersion is newer. They are opaque by contract but etcd revisions in practice; when they
    do not parse, the candidate wins (watch order)."""
    try:
        return int(candidate) >= int(current)
    except ValueError:
        return True


def owner_key(body: dict[str, Any]) -> Key | None:
    """The InferenceService a child or pod belongs to, from its instance label (pods carry no owner reference
    to it: theirs points at a ReplicaSet)."""
    metadata = body.get("metadata") or {}
    name = (metadata.get("labels") or {}).get(INSTANCE_LABEL)
    return (metadata.get("namespace", ""), name) if name else None


@dataclass(frozen=True)
class ChildRecord:
    """Identity of one live child, enough to tell whether someone else changed it."""

    uid: str
    generation: int
    resource_version: str
    controlled: bool
    deployment: DeploymentObservation | None = None

    @classmethod
    def from_body(cls, kind: ChildKind, body: dict[str, Any]) -> ChildRecord:
        metadata = body.get("metadata") or {}
        controlled = any(
            ref.get("controller") and ref.get("kind") == KIND for ref in metadata.get("ownerReferences") or []
        )
        return cls(
            uid=metadata.get("uid", ""),
            generation=int(metadata.get("generation") or 0),
            resource_version=metadata.get("resourceVersion", ""),
            controlled=controlled,
            deployment=DeploymentObservation.from_deployment(body) if kind == DEPLOYMENT else None,
        )


@dataclass(frozen=True)
class AppliedRecord:
    """What the operator last applied for a child and what the API server answered."""

    digest: str
    uid: str
    generation: int
    resource_version: str

    def still_matches(self, live: ChildRecord | None) -> bool:
        """True when the live child is the one applied and its spec was not changed since.

        Deployments and disruption budgets bump metadata.generation on spec changes only, so their status
        updates do not count; kinds without a generation (Services) compare resourceVersions.
        """
        if live is None or live.uid != self.uid:
            return False
        if self.generation:
            return live.generation == self.generation
        return live.resource_version == self.resource_version


@dataclass
class Store:
    """Everything the watches delivered, indexed by InferenceService."""

    services: dict[Key, dict[str, Any]] = field(default_factory=dict)
    children: dict[ChildKind, dict[Key, ChildRecord]] = field(default_factory=dict)
    pods: dict[Key, dict[str, PodObservation]] = field(default_factory=dict)
    applied: dict[Key, dict[ChildKind, AppliedRecord]] = field(default_factory=dict)
    parsed: dict[Key, tuple[str, InferenceService]] = field(default_factory=dict)
    # While a sync lists everything: what the watches reported deleted meanwhile (a list taken before the deletion
    # must not bring it back). None outside a sync.
    dropped: set[tuple[str, Key, str]] | None = None

    def put_service(self, body: dict[str, Any]) -> Key:
        """Keep an InferenceService without its managedFields: reconciles never read them, and they are often
        the largest part of an object (a thousand services would carry a thousand copies)."""
        key = key_of(body)
        current = self.services.get(key)
        metadata = body.get("metadata") or {}
        version = metadata.get("resourceVersion", "")
        if current is None or _newer(version, (current.get("metadata") or {}).get("resourceVersion", "")):
            slim_metadata = {k: v for k, v in metadata.items() if k != "managedFields"}
            self.services[key] = {**body, "metadata": slim_metadata}
        return key

    def drop_service(self, key: Key) -> None:
        """The InferenceService is gone; garbage collection removes its children."""
        self._note_drop(KIND, key)
        self.services.pop(key, None)
        self.applied.pop(key, None)
        self.parsed.pop(key, None)

    def inference_service(self, key: Key) -> InferenceService | None:
        """The InferenceService parsed, once per resourceVersion: reconciles and the autoscaler's rounds read the
        same object again and again. None when it is gone; raises pydantic's ValidationError for a spec the API
        models refuse (an older or hand-edited CRD may have let it in)."""
        body = self.services.get(key)
        if body is None:
            return None
        version = (body.get("metadata") or {}).get("resourceVersion", "")
        cached = self.parsed.get(key)
        if cached is not None and cached[0] == version:
            return cached[1]
        isvc = InferenceService.model_validate(body)
        self.parsed[key] = (version, isvc)
        return isvc

    def put_child(self, kind: ChildKind, body: dict[str, Any]) -> None:
        record = ChildRecord.from_body(kind, body)
        by_key = self.children.setdefault(kind, {})
        key = key_of(body)
        current = by_key.get(key)
        if current is None or current.uid != record.uid or _newer(record.resource_version, current.resource_version):
            by_key[key] = record

    def drop_child(self, kind: ChildKind, body: dict[str, Any]) -> None:
        key = key_of(body)
        self._note_drop(kind.kind, key)
        current = self.children.get(kind, {}).get(key)
        if current and current.uid == (body.get("metadata") or {}).get("uid"):
            del self.children[kind][key]

    def child(self, kind: ChildKind, key: Key) -> ChildRecord | None:
        return self.children.get(kind, {}).get(key)

    def put_pod(self, owner: Key, body: dict[str, Any]) -> None:
        pod = PodObservation.from_pod(body)
        self.pods.setdefault(owner, {})[pod.name] = pod

    def drop_pod(self, owner: Key, body: dict[str, Any]) -> None:
        pods = self.pods.get(owner, {})
        name = (body.get("metadata") or {}).get("name", "")
        self._note_drop(POD, owner, name)
        pods.pop(name, None)
        if not pods:
            self.pods.pop(owner, None)

    # ---- the sync: a list of everything, merged with what the watches deliver meanwhile ----

    def _note_drop(self, kind: str, key: Key, name: str = "") -> None:
        if self.dropped is not None:
            self.dropped.add((kind, key, name))

    def fill(self, kind: str, bodies: list[dict[str, Any]]) -> None:
        """Add the listed objects of a kind (``KIND``, a child kind's name, or ``POD``) that the watches have not
        delivered yet. What the watches delivered is as new or newer, and what they reported deleted since the sync
        began stays deleted."""
        dropped = self.dropped or set()
        for body in bodies:
            key = key_of(body)
            if kind == KIND:
                if key not in self.services and (kind, key, "") not in dropped:
                    self.put_service(body)
            elif kind == POD:
                owner = owner_key(body)
                if owner is not None and key[1] not in self.pods.get(owner, {}) and (kind, owner, key[1]) not in dropped:
                    self.put_pod(owner, body)
            else:
                child_kind = next(k for k in CHILD_KINDS if k.kind == kind)
                if key not in self.children.get(child_kind, {}) and (kind, key, "") not in dropped:
                    self.put_child(child_kind, body)

    def pods_of(self, key: Key) -> list[PodObservation]:
        return list(self.pods.get(key, {}).values())

    def record_applied(self, key: Key, kind: ChildKind, digest: str, body: dict[str, Any]) -> None:
        """Remember an apply and its answer (which is also the freshest view of the child)."""
        metadata = body.get("metadata") or {}
        self.applied.setdefault(key, {})[kind] = AppliedRecord(
            digest=digest,
            uid=metadata.get("uid", ""),
            generation=int(metadata.get("generation") or 0),
            resource_version=metadata.get("resourceVersion", ""),
        )
        self.put_child(kind, body)

    def is_current(self, key: Key, kind: ChildKind, digest: str) -> bool:
        """Whether applying ``digest`` again would change nothing: same manifest, child untouched since."""
        record = self.applied.get(key, {}).get(kind)
        return record is not None and record.digest == digest and record.still_matches(self.child(kind, key))
