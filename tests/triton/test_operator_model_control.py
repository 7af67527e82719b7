"""The operator's model control against real Triton replicas: two tritonserver processes stand in for two pods
(same port, addresses 127.0.0.2 and 127.0.0.3, explicit mode with --strict-readiness=false, as the Deployment
runs them). ``ModelControl.sync`` is what every reconcile calls; here it is called the way the controller does,
again whenever a finished load asks for a reconcile.

What stands in for Kubernetes is only the recorder of readiness-gate writes (the node tier runs the same flow
through a real API server and kubelet).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tritonclient.http as httpclient

from tests.triton.conftest import BAD, GOOD
from triton_operator.api.v1alpha1 import InferenceService
from triton_operator.model_control import ModelControl, ModelsOutcome
from triton_operator.policy.observations import PodObservation
from triton_operator.policy.readiness_gate import GATE
from triton_operator.render import parse_inference_service
from triton_operator.testing import TritonServer, free_ports

KEY = ("ns", "svc")
HOSTS = {"pod-a": "127.0.0.2", "pod-b": "127.0.0.3"}


@pytest.fixture
def replicas(tritonserver_bin: Path) -> Iterator[dict[str, TritonServer]]:
    port = free_ports(1)[0]
    servers = {
        pod: TritonServer(
            [GOOD, BAD],
            model_control_mode="explicit",
            extra_args=["--strict-readiness=false"],
            http_port=port,
            host=host,
            executable=tritonserver_bin,
        )
        for pod, host in HOSTS.items()
    }
    try:
        for server in servers.values():
            server.start()
        yield servers
    finally:
        for server in servers.values():
            server.stop()


class GateRecorder:
    """Records readiness-gate writes (pod -> conditions written, in order)."""

    def __init__(self) -> None:
        self.writes: dict[str, list[dict[str, Any]]] = {}

    async def patch_pod_condition(self, namespace: str, pod: str, condition: dict[str, Any]) -> None:
        assert namespace == KEY[0]
        self.writes.setdefault(pod, []).append(condition)


def isvc(models: list[dict[str, Any]]) -> InferenceService:
    return parse_inference_service(
        {
            "apiVersion": "serving.triton-operator.dev/v1alpha1",
            "kind": "InferenceService",
            "metadata": {"name": KEY[1], "namespace": KEY[0], "generation": 1},
            "spec": {"modelRepository": {"uri": "/models"}, "models": models},
        }
    )


def pods(gates: GateRecorder, hosts: dict[str, str] = HOSTS) -> list[PodObservation]:
    """The pods as the watch would show them, with the gate conditions written so far."""
    result = []
    for name, host in hosts.items():
        written = gates.writes.get(name, [])
        conditions = ((GATE, written[-1]["status"], written[-1]["message"]),) if written else ()
        result.append(
            PodObservation(
                name,
                scheduled=True,
                ready=bool(written) and written[-1]["status"] == "True",
                ip=host,
                running_since="2026-11-23T07:00:00Z",
                readiness_gates=(GATE,),
                conditions=conditions,
            )
        )
    return result


class Loop:
    """Drives ModelControl as the controller does: sync, and sync again when a finished task asks for it."""

    def __init__(self, port: int, **kwargs: Any) -> None:
        self.gates = GateRecorder()
        self.requested = asyncio.Event()
        self.control = ModelControl(
            self.gates, lambda key: self.requested.set(), lambda: "2026-11-23T07:00:05Z", port=port, **kwargs
        )

    async def settle(self, service: InferenceService, hosts: dict[str, str] = HOSTS, rounds: int = 20) -> ModelsOutcome:
        """Sync until nothing is under way (no task running), then once more to observe the outcome."""
        for _ in range(rounds):
            self.requested.clear()
            outcome = await self.control.sync(KEY, service, pods(self.gates, hosts))
            if self.requested.is_set():
                continue  # a task finished while sync observed: that outcome may predate it, as the controller knows
            if not self.control.busy(KEY):
                loading = any(m["state"] in ("LOADING", "UNKNOWN") for m in outcome.verdict.models)
                if loading or (outcome.resync_after is not None and outcome.resync_after <= 3.0):
                    await asyncio.sleep(min(outcome.resync_after or 1.0, 1.0))  # under way: look again soon
                    continue
                return outcome
            await asyncio.wait_for(self.requested.wait(), 60)
        raise AssertionError(f"model control did not settle in {rounds} rounds")


def index(server: TritonServer) -> dict[str, str]:
    with httpclient.InferenceServerClient(server.http_address) as client:
        return {row["name"]: row.get("state", "") for row in client.get_model_repository_index()}


def states(outcome: ModelsOutcome) -> dict[str, str]:
    return {m["name"]: m["state"] for m in outcome.verdict.models}


def test_models_are_loaded_changed_and_unloaded_in_place_on_every_replica(replicas: dict[str, TritonServer]) -> None:
    pids = {pod: server.pid for pod, server in replicas.items()}
    port = replicas["pod-a"].http_port

    async def scenario() -> None:
        loop = Loop(port)
        outcome = await loop.settle(isvc([{"name": "identity"}]))
        assert states(outcome) == {"identity": "READY"}
        assert outcome.verdict.condition["status"] == "True"
        assert outcome.resync_after == loop.control.settled_resync
        # both gates opened once the replica served its models, with the restart count recorded
        assert {pod: [w["status"] for w in writes] for pod, writes in loop.gates.writes.items()} == {
            "pod-a": ["True"],
            "pod-b": ["True"],
        }

        # add a model with a config override: loaded in place, with the override in effect
        outcome = await loop.settle(isvc([{"name": "identity"}, {"name": "sleeper", "config": {"maxBatchSize": 2}}]))
        assert states(outcome) == {"identity": "READY", "sleeper": "READY"}
        for server in replicas.values():
            with httpclient.InferenceServerClient(server.http_address) as client:
                assert client.get_model_config("sleeper")["max_batch_size"] == 2
        assert all(len(writes) == 1 for writes in loop.gates.writes.values()), "the gate stayed open meanwhile"

        # take the override back and remove identity: sleeper reloaded with the repository config, identity gone
        outcome = await loop.settle(isvc([{"name": "sleeper"}]))
        assert states(outcome) == {"sleeper": "READY"}
        for server in replicas.values():
            # Triton's unload returns before the model is gone: its index says UNLOADING for a moment.
            for _ in range(100):
                if index(server)["identity"] != "UNLOADING":
                    break
                await asyncio.sleep(0.1)
            assert index(server)["identity"] == "UNAVAILABLE"
            with httpclient.InferenceServerClient(server.http_address) as client:
                assert client.get_model_config("sleeper")["max_batch_size"] != 2

        # an operator restart: a fresh ModelControl finds everything in place and does nothing
        fresh = Loop(port)
        fresh.gates.writes = loop.gates.writes
        outcome = await fresh.control.sync(KEY, isvc([{"name": "sleeper"}]), pods(fresh.gates))
        assert not fresh.control.busy(KEY)
        assert states(outcome) == {"sleeper": "READY"}

    asyncio.run(scenario())
    assert {pod: server.pid for pod, server in replicas.items()} == pids, "no Triton was restarted"


def test_a_rejected_override_keeps_the_old_config_serving_and_says_why(replicas: dict[str, TritonServer]) -> None:
    port = replicas["pod-a"].http_port

    async def scenario() -> None:
        loop = Loop(port)
        await loop.settle(isvc([{"name": "identity"}, {"name": "sleeper"}]))
        gpu = {"instanceGroups": [{"count": 1, "kind": "GPU"}]}
        outcome = await loop.settle(isvc([{"name": "identity", "config": gpu}, {"name": "sleeper"}]))
        models = {m["name"]: m for m in outcome.verdict.models}
        assert models["sleeper"]["state"] == "READY"
        assert models["identity"]["state"] == "DEGRADED"
        assert "the previous config still serves on pod-a, pod-b" in models["identity"]["reason"]
        assert "KIND_GPU but no GPUs are available" in models["identity"]["reason"]
        assert outcome.verdict.condition["reason"] == "ModelsDegraded"
        # retried with backoff, not in a loop: the next reconcile sends nothing and says when to look again
        again = await loop.control.sync(KEY, isvc([{"name": "identity", "config": gpu}, {"name": "sleeper"}]), pods(loop.gates))
        assert not loop.control.busy(KEY)
        assert again.resync_after is not None
        assert 5.0 < again.resync_after <= 10.5
        for server in replicas.values():
            with httpclient.InferenceServerClient(server.http_address) as client:
                assert client.is_model_ready("identity"), "the old config keeps serving"

    asyncio.run(scenario())


def test_missing_and_broken_models_fail_with_tritons_reason_while_the_rest_serve(
    replicas: dict[str, TritonServer],
) -> None:
    port = replicas["pod-a"].http_port

    async def scenario() -> None:
        loop = Loop(port)
        outcome = await loop.settle(isvc([{"name": "identity"}, {"name": "nosuch"}, {"name": "broken"}]))
        models = {m["name"]: m for m in outcome.verdict.models}
        assert models["identity"]["state"] == "READY"
        assert models["nosuch"]["state"] == "UNAVAILABLE"
        assert "the model repository has no model named 'nosuch'" in models["nosuch"]["reason"]
        assert models["broken"]["state"] == "UNAVAILABLE"
        assert "initialize() raises on purpose" in models["broken"]["reason"]
        assert outcome.verdict.condition["reason"] == "ModelLoadFailed"
        # the replicas serve what loads: their gates open rather than keeping them out of service
        assert {pod: writes[-1]["status"] for pod, writes in loop.gates.writes.items()} == {"pod-a": "True", "pod-b": "True"}

    asyncio.run(scenario())


def test_a_replica_that_does_not_answer_is_reported_not_guessed(replicas: dict[str, TritonServer]) -> None:
    port = replicas["pod-a"].http_port
    hosts = {**HOSTS, "pod-c": "127.0.0.4"}  # nothing listens there

    async def scenario() -> None:
        loop = Loop(port)
        outcome = await loop.settle(isvc([{"name": "identity"}]), hosts)
        assert states(outcome) == {"identity": "READY"}
        assert outcome.verdict.condition["status"] == "Unknown"
        assert "no model index from pod-c" in outcome.verdict.condition["message"]
        assert "cannot connect to Triton at 127.0.0.4" in outcome.verdict.condition["message"]
        assert outcome.verdict.phase is not None
        assert outcome.verdict.phase.value == "Degraded"
        assert "pod-c" not in loop.gates.writes
        assert outcome.resync_after == 30.0

    asyncio.run(scenario())
