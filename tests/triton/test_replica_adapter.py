"""The Triton adapter against real Triton: the repository index and readiness, loads with a config override
merged by the policy, Triton's error texts carried through, and replicas that do not answer.

Each test runs its coroutine with asyncio.run (one event loop per test, the adapter's clients closed inside it),
so no leaked keep-alive connection delays the server's shutdown.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.triton.helpers import http_input
from triton_operator.adapters.triton import (
    TritonReplica,
    TritonRequestFailed,
    observe,
    observe_all,
)
from triton_operator.api.v1alpha1 import ModelConfigOverride, Phase
from triton_operator.policy.models import (
    Load,
    ModelEntry,
    ReplicaModels,
    configs_needed,
    merge_config,
    override_in_effect,
    plan_actions,
    read_marker,
    reduce_models,
)
from triton_operator.testing import TritonServer, free_ports

T = TypeVar("T")

BROKEN = "broken model: initialize() raises on purpose (tests/models/bad/broken)"
OVERRIDE = ModelConfigOverride.model_validate(
    {"maxBatchSize": 4, "dynamicBatching": {"maxQueueDelayMicroseconds": 500, "preferredBatchSizes": [2, 4]}}
)


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def replica(server: TritonServer, **kwargs: Any) -> TritonReplica:
    return TritonReplica(server.host, server.http_port, **kwargs)


def by_name(entries: tuple[ModelEntry, ...]) -> dict[str, ModelEntry]:
    return {entry.name: entry for entry in entries}


async def wait_for(check: Callable[[], Coroutine[Any, Any, bool]], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"not reached within {timeout} s"
        await asyncio.sleep(0.05)


async def converge(server: TritonServer, wanted: dict[str, ModelConfigOverride | None]) -> list[list[Any]]:
    """What the reconciler will do for one replica: observe, fetch the configs the plan needs, plan, perform;
    until the plan is empty. Returns the plans carried out (bounded: a plan that never empties fails)."""
    plans: list[list[Any]] = []
    async with replica(server) as triton:
        for _ in range(4):
            observed = await observe("pod-0", server.host, port=server.http_port)
            configs = {name: await triton.config(name) for name in configs_needed(wanted, observed)}
            plan = plan_actions(wanted, observed, configs)
            if not plan:
                return plans
            plans.append(plan)
            for action in plan:
                await triton.perform(action)
            await wait_for(lambda: _settled(triton))
    raise AssertionError(f"no convergence after {plans}")


async def _settled(triton: TritonReplica) -> bool:
    return all(entry.state not in ("LOADING", "UNLOADING") for entry in await triton.index())


@pytest.fixture
def closed_port() -> int:
    """A loopback port where nothing listens (connection refused at once)."""
    return free_ports(1)[0]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts TCP connections (the kernel completes the handshake) but never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


def test_index_and_readiness_on_the_good_server(good_server: TritonServer) -> None:
    async def check() -> None:
        async with replica(good_server) as triton:
            assert await triton.server_live()
            assert await triton.server_ready()
            assert await triton.model_ready("identity")
            assert not await triton.model_ready("no-such-model")
            index = by_name(await triton.index())
            config = await triton.config("identity")
        assert index["identity"] == ModelEntry("identity", "1", "READY", None)
        assert index["sleeper"] == ModelEntry("sleeper", "1", "READY", None)
        assert config["max_batch_size"] == 8
        assert config["input"][0]["name"] == "INPUT0"

        observed = await observe("pod-0", good_server.host, port=good_server.http_port)
        assert observed.reachable
        assert observed.error is None
        verdict = reduce_models(None, [observed])  # poll mode: the whole repository is wanted
        assert verdict.phase is Phase.READY
        assert verdict.models == [
            {"name": "identity", "version": "1", "state": "READY"},
            {"name": "sleeper", "version": "1", "state": "READY"},
        ]
        assert verdict.condition["status"] == "True"

    run(check())


def test_override_merged_into_the_config_takes_effect_and_inference_works(explicit_server: TritonServer) -> None:
    """The two-step load for a model with an override: the repository config first, then a reload in place with
    the override merged into the complete config Triton reported. The next plan is empty; taking the override
    away reloads the repository's config, again without an unload."""

    async def load_with_override() -> tuple[list[list[Any]], dict[str, Any]]:
        plans = await converge(explicit_server, {"identity": OVERRIDE})
        async with replica(explicit_server) as triton:
            return plans, await triton.config("identity")

    plans, config = run(load_with_override())
    assert plans[0] == [Load("identity")]
    assert len(plans) == 2
    assert isinstance(plans[1][0], Load)
    assert plans[1][0].config is not None
    assert config["max_batch_size"] == 4
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 500
    assert config["dynamic_batching"]["preferred_batch_size"] == [2, 4]
    assert config["input"][0]["name"] == "INPUT0"  # the rest of the repository config is still there
    assert override_in_effect(config, OVERRIDE)
    assert read_marker(config) is not None  # Triton keeps the record of what was overridden

    with httpclient.InferenceServerClient(explicit_server.http_address) as client:
        data = np.arange(12, dtype=np.float32).reshape(4, 3)
        np.testing.assert_array_equal(client.infer("identity", [http_input(data)]).as_numpy("OUTPUT0"), data)
        with pytest.raises(InferenceServerException, match="batch-size must be <= 4"):
            client.infer("identity", [http_input(np.ones((5, 3), dtype=np.float32))])

    async def take_override_away() -> tuple[list[list[Any]], dict[str, Any]]:
        plans = await converge(explicit_server, {"identity": None})
        async with replica(explicit_server) as triton:
            return plans, await triton.config("identity")

    plans, config = run(take_override_away())
    assert len(plans) == 1
    assert config["max_batch_size"] == 8
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] == 100
    assert read_marker(config) is None
    with httpclient.InferenceServerClient(explicit_server.http_address) as client:
        data = np.ones((8, 2), dtype=np.float32)
        np.testing.assert_array_equal(client.infer("identity", [http_input(data)]).as_numpy("OUTPUT0"), data)


def test_changing_the_model_list_loads_and_unloads(explicit_server: TritonServer) -> None:
    async def check() -> None:
        first = await converge(explicit_server, {"identity": None, "sleeper": None})
        assert sorted(a.name for a in first[0]) == ["identity", "sleeper"]
        assert await converge(explicit_server, {"identity": None, "sleeper": None}) == []  # idempotent
        observed = await observe("pod-0", explicit_server.host, port=explicit_server.http_port)
        assert reduce_models(["identity", "sleeper"], [observed]).phase is Phase.READY

        second = await converge(explicit_server, {"sleeper": None})
        assert [type(a).__name__ + ":" + a.name for a in second[0]] == ["Unload:identity"]
        observed = await observe("pod-0", explicit_server.host, port=explicit_server.http_port)
        assert by_name(observed.entries)["identity"] == ModelEntry("identity", "1", "UNAVAILABLE", "unloaded")
        assert by_name(observed.entries)["sleeper"].state == "READY"

    run(check())


def test_unload_is_asynchronous_and_shows_after_polling(explicit_server: TritonServer) -> None:
    async def check() -> list[str | None]:
        async with replica(explicit_server) as triton:
            await triton.load("identity")
            await triton.unload("identity")  # answers while the model is still unloading
            states = [by_name(await triton.index())["identity"].state]

            async def unloaded() -> bool:
                entry = by_name(await triton.index())["identity"]
                states.append(entry.state)
                return entry == ModelEntry("identity", "1", "UNAVAILABLE", "unloaded")

            await wait_for(unloaded)
            await triton.unload("identity")  # unloading what is not loaded is no error
            await triton.unload("no-such-model")
            return states

    states = run(check())
    assert states[-1] == "UNAVAILABLE"
    assert set(states) <= {"READY", "UNLOADING", "UNAVAILABLE"}


def test_a_model_missing_from_the_repository_is_named(explicit_server: TritonServer) -> None:
    async def check() -> TritonRequestFailed:
        async with replica(explicit_server) as triton:
            with pytest.raises(TritonRequestFailed) as info:
                await triton.load("nope")
        return info.value

    error = run(check())
    assert error.status == "500"
    assert error.triton_message == "failed to load 'nope', failed to poll from model repository"
    assert str(error) == (
        f"Triton at {explicit_server.http_address}: loading model 'nope': [500] failed to load 'nope', failed to "
        "poll from model repository: the model repository has no model named 'nope'"
    )
    observed = run(observe("pod-0", explicit_server.host, port=explicit_server.http_port))
    assert "nope" not in by_name(observed.entries)  # Triton keeps no trace of it: the caller's record must
    verdict = reduce_models(["nope"], [ReplicaModels("pod-0", True, None, observed.entries, {"nope": str(error)})])
    assert verdict.phase is Phase.FAILED
    assert "model nope loads on no replica: not in the model repository of pod-0" in verdict.condition["message"]


def test_a_config_triton_cannot_use_is_told_apart_from_a_missing_model(explicit_server: TritonServer) -> None:
    """Triton answers an invalid config with the same words as an unknown model; the adapter says which."""

    async def check() -> str:
        async with replica(explicit_server) as triton:
            await triton.load("identity")
            config = await triton.config("identity")
            invalid = {**config, "max_batch_size": 4}  # its preferred_batch_size [8] is now above max_batch_size
            with pytest.raises(TritonRequestFailed) as info:
                await triton.load("identity", invalid)
            assert (await triton.config("identity"))["max_batch_size"] == 8  # the old config still serves
            # merge_config drops the preferred sizes the new max_batch_size no longer allows
            await triton.load("identity", merge_config(config, ModelConfigOverride(max_batch_size=4)))
            assert (await triton.config("identity"))["max_batch_size"] == 4
        return str(info.value)

    message = run(check())
    assert "failed to poll from model repository" in message
    assert "could not use the config sent with the load request" in message


def test_a_broken_model_shows_unavailable_with_tritons_reason(explicit_server: TritonServer) -> None:
    async def check() -> tuple[TritonRequestFailed, ReplicaModels, bool]:
        async with replica(explicit_server) as triton:
            with pytest.raises(TritonRequestFailed) as info:
                await triton.load("broken")
            ready = await triton.server_ready()
        return info.value, await observe("pod-0", explicit_server.host, port=explicit_server.http_port), ready

    error, observed, ready = run(check())
    assert error.status == "400"
    assert f"load failed for model 'broken': version 1 is at UNAVAILABLE state: Internal: RuntimeError: {BROKEN}" in (
        str(error)
    )
    assert not ready  # explicit mode: one failed model makes the whole server unready
    entry = by_name(observed.entries)["broken"]
    assert entry.state == "UNAVAILABLE"
    assert entry.reason is not None
    assert entry.reason.startswith(f"Internal: RuntimeError: {BROKEN}")
    verdict = reduce_models(["broken"], [observed])
    assert verdict.phase is Phase.FAILED
    assert verdict.models == [
        {
            "name": "broken",
            "state": "UNAVAILABLE",
            "reason": f"failed to load on pod-0: Internal: RuntimeError: {BROKEN}",
        }
    ]
    assert plan_actions({"broken": None}, observed, {}) == [Load("broken", None, f"Internal: RuntimeError: {BROKEN}")]


def test_a_rejected_override_leaves_the_old_config_serving(explicit_server: TritonServer) -> None:
    """A reload Triton rejects leaves the loaded config in place: the index still says READY, so only the load
    error, kept by the caller, can tell status that the override is not in effect."""
    gpu = ModelConfigOverride.model_validate({"instanceGroups": [{"count": 1, "kind": "GPU"}]})

    async def check() -> tuple[TritonRequestFailed, ReplicaModels, dict[str, Any]]:
        async with replica(explicit_server) as triton:
            await triton.load("identity")
            config = await triton.config("identity")
            with pytest.raises(TritonRequestFailed) as info:
                await triton.load("identity", merge_config(config, gpu))
            after = await triton.config("identity")
        observed = await observe(
            "pod-0", explicit_server.host, port=explicit_server.http_port, load_errors={"identity": str(info.value)}
        )
        return info.value, observed, after

    error, observed, config = run(check())
    assert error.status == "400"
    assert "has kind KIND_GPU but no GPUs are available" in str(error)
    assert by_name(observed.entries)["identity"].state == "READY"
    assert config["instance_group"][0]["kind"] == "KIND_CPU"
    assert not override_in_effect(config, gpu)
    verdict = reduce_models(["identity"], [observed])
    assert verdict.phase is Phase.DEGRADED
    assert "the previous config still serves on pod-0, Triton rejected the new one" in verdict.models[0]["reason"]
    plan = plan_actions({"identity": gpu}, observed, {"identity": config})
    assert len(plan) == 1
    assert isinstance(plan[0], Load)
    assert plan[0].last_error  # a retry: the caller backs off before sending it
    assert json.loads(plan[0].config or "{}")["instance_group"] == [{"count": 1, "kind": "KIND_GPU"}]


def test_nothing_listening_is_unreachable_at_once(closed_port: int) -> None:
    started = time.monotonic()
    observed = run(observe("pod-0", "127.0.0.1", port=closed_port, timeout=5.0))
    elapsed = time.monotonic() - started
    assert not observed.reachable
    assert observed.entries == ()
    assert observed.error is not None
    assert observed.error.startswith(f"cannot connect to Triton at 127.0.0.1:{closed_port}: ")
    assert elapsed < 2.0
    verdict = reduce_models(["identity"], [observed])
    assert verdict.phase is None
    assert verdict.condition["status"] == "Unknown"
    assert verdict.models[0]["state"] == "UNKNOWN"


def test_a_replica_that_never_answers_costs_one_timeout(silent_port: int, good_server: TritonServer) -> None:
    started = time.monotonic()
    silent = run(observe("silent", "127.0.0.1", port=silent_port, timeout=0.5))
    assert time.monotonic() - started < 2.0
    assert not silent.reachable
    assert silent.error == f"Triton at 127.0.0.1:{silent_port} did not answer the repository index within 0.5 s"

    async def fleet() -> list[ReplicaModels]:
        return list(
            await asyncio.gather(
                observe("silent", "127.0.0.1", port=silent_port, timeout=0.5),
                observe("good", good_server.host, port=good_server.http_port, timeout=0.5),
            )
        )

    both = run(fleet())
    assert [r.reachable for r in both] == [False, True]
    verdict = reduce_models(None, both)
    assert verdict.phase is Phase.DEGRADED
    assert verdict.condition["reason"] == "ReplicaUnreachable"
    assert (
        f"no model index from silent: Triton at 127.0.0.1:{silent_port} did not answer" in verdict.condition["message"]
    )
    assert [m["state"] for m in verdict.models] == ["READY", "READY"]  # from the replica that answered


def test_observe_all_asks_replicas_concurrently_and_keeps_their_order(silent_port: int) -> None:
    pods = [(f"pod-{i}", "127.0.0.1") for i in range(4)]
    started = time.monotonic()
    observed = run(observe_all(pods, port=silent_port, timeout=0.5))
    assert time.monotonic() - started < 1.5  # one timeout for the fleet, not one per replica
    assert [r.pod for r in observed] == [pod for pod, _ in pods]
    assert not any(r.reachable for r in observed)
