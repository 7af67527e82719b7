"""The sync's merge: a list of everything, taken while the watches deliver, fills only what they have not.

A list is a snapshot from before it returns; a watch event handled meanwhile is as new or newer. So the list adds
what is missing, never replaces what a watch delivered, and never brings back what a watch reported deleted.
"""

from __future__ import annotations

from typing import Any

from triton_operator.api.v1alpha1 import KIND
from triton_operator.resources.children import DEPLOYMENT
from triton_operator.resources.meta import INSTANCE_LABEL
from triton_operator.store import POD, Store

NS = "apps"


def service(name: str, version: str, replicas: int = 1) -> dict[str, Any]:
    return {"metadata": {"namespace": NS, "name": name, "resourceVersion": version}, "spec": {"replicas": replicas}}


def deployment(name: str, version: str) -> dict[str, Any]:
    return {"metadata": {"namespace": NS, "name": name, "uid": f"uid-{name}", "resourceVersion": version, "generation": 1}}


def pod(owner: str, name: str, ip: str) -> dict[str, Any]:
    return {"metadata": {"namespace": NS, "name": name, "labels": {INSTANCE_LABEL: owner}}, "spec": {}, "status": {"podIP": ip}}


def test_the_list_adds_what_the_watches_have_not_delivered() -> None:
    store = Store()
    store.dropped = set()
    store.fill(KIND, [service("a", "10"), service("b", "11")])
    store.fill(DEPLOYMENT.kind, [deployment("a", "12")])
    store.fill(POD, [pod("a", "a-1", "10.0.0.2"), {"metadata": {"namespace": NS, "name": "stray"}}])
    assert set(store.services) == {(NS, "a"), (NS, "b")}
    assert (store.child(DEPLOYMENT, (NS, "a")) or deployment("x", "0")).resource_version == "12"
    assert [p.name for p in store.pods_of((NS, "a"))] == ["a-1"]  # a pod without an owner label is not ours


def test_the_list_never_replaces_what_a_watch_delivered() -> None:
    store = Store()
    store.dropped = set()
    store.put_service(service("a", "20", replicas=3))  # a watch event, handled while the list was in flight
    store.put_pod((NS, "a"), pod("a", "a-1", "10.0.0.2"))
    store.fill(KIND, [service("a", "10", replicas=1)])
    store.fill(POD, [pod("a", "a-1", "10.0.0.1")])
    assert store.services[(NS, "a")]["spec"]["replicas"] == 3
    assert store.pods_of((NS, "a"))[0].ip == "10.0.0.2"


def test_the_list_never_brings_back_what_a_watch_deleted() -> None:
    store = Store()
    store.dropped = set()
    store.drop_service((NS, "gone"))
    store.drop_child(DEPLOYMENT, deployment("gone", "30"))
    store.drop_pod((NS, "a"), pod("a", "a-2", "10.0.0.3"))
    store.fill(KIND, [service("gone", "10")])
    store.fill(DEPLOYMENT.kind, [deployment("gone", "12")])
    store.fill(POD, [pod("a", "a-2", "10.0.0.3")])
    assert (NS, "gone") not in store.services
    assert store.child(DEPLOYMENT, (NS, "gone")) is None
    assert store.pods_of((NS, "a")) == []


def test_deletions_are_remembered_only_during_a_sync() -> None:
    store = Store()
    store.drop_service((NS, "gone"))  # outside a sync: nothing to remember
    assert store.dropped is None
