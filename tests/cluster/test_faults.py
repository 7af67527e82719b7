"""Faults: the operator killed mid-reconcile, a child name taken by someone else, a restart with nothing to do."""

from __future__ import annotations

import json
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.cluster.helpers import DEPLOYMENT, ISVC, POD, SERVICE, Kube, isvc_manifest, operator_requests
from tests.polling import wait_for
from triton_operator.devmode import OperatorProcess

pytestmark = pytest.mark.usefixtures("operator")


def all_ready(kube: Kube, names: list[str]) -> bool:
    services = {s["metadata"]["name"]: s.get("status") or {} for s in kube.list(ISVC)}
    return all(
        any(c["type"] == "Ready" and c["status"] == "True" for c in services.get(n, {}).get("conditions") or [])
        for n in names
    )


def test_an_operator_killed_mid_reconcile_converges_on_restart(kube: Kube, operator: OperatorProcess) -> None:
    names = [f"crash-{i}" for i in range(30)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda n: kube.create(isvc_manifest(n, gpu={"count": 0}, replicas=2)), names))
    wait_for("some children applied", lambda: kube.list(DEPLOYMENT) or None, timeout=30, interval=0.02)
    operator.stop(signal.SIGKILL)  # mid-flight: some services have children, some have status, some nothing
    operator.start()
    wait_for("all Ready after restart", lambda: all_ready(kube, names), timeout=120)
    deployments, services = kube.list(DEPLOYMENT), kube.list(SERVICE)
    assert sorted(d["metadata"]["name"] for d in deployments) == sorted(names)
    assert sorted(s["metadata"]["name"] for s in services) == sorted(names)
    for child in deployments + services:
        owners = child["metadata"]["ownerReferences"]
        assert len(owners) == 1
        assert owners[0]["name"] == child["metadata"]["name"]
        managers = [m["manager"] for m in child["metadata"]["managedFields"] if m["operation"] == "Apply"]
        assert managers == ["triton-operator"]
    pods = kube.list(POD)
    assert len([p for p in pods if not p["metadata"].get("deletionTimestamp")]) == 2 * len(names)


def test_a_restart_with_nothing_to_do_writes_no_status(kube: Kube, operator: OperatorProcess) -> None:
    kube.create(isvc_manifest("settled", gpu={"count": 1}))
    wait_for("Ready", lambda: all_ready(kube, ["settled"]))
    time.sleep(1)
    before = (kube.get(ISVC, "settled") or {})["metadata"]["resourceVersion"]
    deployment_before = (kube.get(DEPLOYMENT, "settled") or {})["metadata"]["resourceVersion"]
    operator.stop()
    operator.start()
    time.sleep(3)  # the restarted operator has listed everything and reconciled it
    after = kube.get(ISVC, "settled") or {}
    assert after["metadata"]["resourceVersion"] == before, json.dumps(after.get("status"), indent=1)
    assert (kube.get(DEPLOYMENT, "settled") or {})["metadata"]["resourceVersion"] == deployment_before


def test_a_child_name_taken_by_another_controller_is_reported_and_retried_with_backoff(kube: Kube) -> None:
    owner = kube.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "someone-else"}})
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "taken",
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "ConfigMap", "name": "someone-else", "uid": owner["metadata"]["uid"], "controller": True}
                ],
            },
            "spec": {"ports": [{"port": 80}]},
        }
    )
    kube.create(isvc_manifest("taken", gpu={"count": 1}))
    wait_for("Failed", lambda: kube.status("taken").get("phase") == "Failed")
    ready = kube.condition("taken", "Ready")
    assert ready["reason"] == "ApplyFailed"
    assert "cannot apply Service taken" in ready["message"]
    assert kube.condition("taken", "Reconciled")["status"] == "False"
    # The Deployment applied fine; its pods coming up wake the key between backoff retries (as client-go's queue
    # would), so count only once they have settled: what remains is the backoff schedule alone.
    wait_for("pods settled", lambda: ((kube.get(DEPLOYMENT, "taken") or {}).get("status") or {}).get("readyReplicas") == 1)
    time.sleep(1)
    before = operator_requests(kube, {"patch"})
    time.sleep(10)
    after = operator_requests(kube, {"patch"})
    retries = after[("patch", "services")] - before[("patch", "services")]
    assert retries <= 5, f"{retries} applies in 10 s: expected exponential backoff"  # that it keeps retrying: below
    status_writes = after[("patch", "inferenceservices/status")] - before[("patch", "inferenceservices/status")]
    assert status_writes == 0, "the failure is written once, not once per retry"
    kube.delete(SERVICE, "taken")
    wait_for("Ready once the name is free", lambda: all_ready(kube, ["taken"]), timeout=90)
