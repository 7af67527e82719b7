"""Explicit model control, as the operator uses it for `spec.models`: load with a JSON config override, unload,
and a model that cannot load, whose Triton message must reach the client verbatim (it goes into status).

Clients are closed at the end of each test: Triton's shutdown waits (up to --exit-timeout-secs) for open HTTP
connections, so a leaked keep-alive connection makes every teardown slow.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.triton.conftest import BAD, GOOD
from tests.triton.helpers import http_input
from triton_operator.testing import TritonServer

BROKEN_MESSAGE = "broken model: initialize() raises on purpose (tests/models/bad/broken)"


def full_config(name: str, **overrides: Any) -> str:
    """A complete model config as JSON: Triton's override REPLACES config.pbtxt, it does not merge into it."""
    config: dict[str, Any] = {
        "name": name,
        "backend": "python",
        "max_batch_size": 8,
        "dynamic_batching": {"max_queue_delay_microseconds": 100},
        "input": [{"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [-1]}],
        "output": [{"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [-1]}],
        "instance_group": [{"count": 1, "kind": "KIND_CPU"}],
    }
    config.update(overrides)
    return json.dumps(config)


def model_state(client: httpclient.InferenceServerClient, name: str) -> dict[str, Any]:
    """The repository index entry of ``name`` (state and reason appear once Triton has tried to load it)."""
    entries = {m["name"]: m for m in client.get_model_repository_index()}
    return dict(entries[name])


def wait_state(client: httpclient.InferenceServerClient, name: str, state: str, timeout: float = 30) -> dict[str, Any]:
    """Unloading is asynchronous: the API returns while the model is still UNLOADING."""
    deadline = time.monotonic() + timeout
    while (entry := model_state(client, name)).get("state") != state:
        assert time.monotonic() < deadline, f"{name} is {entry}, not {state}, after {timeout} s"
        time.sleep(0.05)
    return entry


def test_nothing_loads_in_explicit_mode_until_asked(explicit_server: TritonServer) -> None:
    with httpclient.InferenceServerClient(explicit_server.http_address) as client:
        index = {m["name"]: m for m in client.get_model_repository_index()}
    assert set(index) == {"identity", "sleeper", "broken"}
    assert all("state" not in m for m in index.values()), index
    assert explicit_server.is_ready()  # nothing asked to load, nothing failed


def test_load_with_config_override_then_unload(explicit_server: TritonServer) -> None:
    with httpclient.InferenceServerClient(explicit_server.http_address) as client:
        override = full_config("identity", max_batch_size=4, instance_group=[{"count": 2, "kind": "KIND_CPU"}])
        client.load_model("identity", config=override)
        assert client.is_model_ready("identity")  # load_model returns once loaded (or failed)
        config = client.get_model_config("identity")
        assert config["max_batch_size"] == 4
        assert config["instance_group"][0]["count"] == 2
        data = np.ones((4, 3), dtype=np.float32)
        np.testing.assert_array_equal(client.infer("identity", [http_input(data)]).as_numpy("OUTPUT0"), data)
        with pytest.raises(InferenceServerException, match="batch-size must be <= 4"):
            client.infer("identity", [http_input(np.ones((5, 3), dtype=np.float32))])

        client.unload_model("identity")
        assert wait_state(client, "identity", "UNAVAILABLE")["reason"] == "unloaded"
        assert not client.is_model_ready("identity")
        assert explicit_server.is_ready()


def test_partial_override_replaces_the_whole_config(explicit_server: TritonServer) -> None:
    """Triton does not merge an override into config.pbtxt: `{"max_batch_size": 4}` alone loads a model with no
    inputs. Whoever passes spec.models[].config to the load API must send a complete config."""
    with httpclient.InferenceServerClient(explicit_server.http_address) as client:
        client.load_model("identity", config=json.dumps({"max_batch_size": 4}))
        config = client.get_model_config("identity")
        assert config["max_batch_size"] == 4
        assert config["input"] == []
        with pytest.raises(InferenceServerException, match="expected 0 inputs"):
            client.infer("identity", [http_input(np.ones((1, 3), dtype=np.float32))])


def test_override_parameters_reach_the_model(explicit_server: TritonServer) -> None:
    """`sleeper` reads sleep_ms from its config: an override changes its service time without touching files,
    and loading an already loaded model with a new config replaces it in place."""
    data = np.ones((1, 2), dtype=np.float32)
    with httpclient.InferenceServerClient(explicit_server.http_address) as client:
        for sleep_ms, low, high in ((300, 0.3, 10.0), (0, 0.0, 0.25)):
            params = {"sleep_ms": {"string_value": str(sleep_ms)}}
            client.load_model("sleeper", config=full_config("sleeper", parameters=params))
            client.infer("sleeper", [http_input(data)])  # warm
            started = time.monotonic()
            client.infer("sleeper", [http_input(data)])
            elapsed = time.monotonic() - started
            assert low <= elapsed < high, f"sleep_ms={sleep_ms}: one inference took {elapsed:.3f} s"


def test_load_a_model_from_uploaded_files(explicit_server: TritonServer) -> None:
    """The load API can also carry the model's files, so a model need not exist in any repository."""
    code = (GOOD / "identity" / "1" / "model.py").read_bytes()
    data = np.full((1, 3), 7, dtype=np.float32)
    with httpclient.InferenceServerClient(explicit_server.http_address) as client:
        client.load_model("uploaded", config=full_config("uploaded"), files={"file:1/model.py": code})
        np.testing.assert_array_equal(client.infer("uploaded", [http_input(data)]).as_numpy("OUTPUT0"), data)


def test_broken_model_message_and_readiness(explicit_server: TritonServer) -> None:
    with httpclient.InferenceServerClient(explicit_server.http_address) as client:
        with pytest.raises(InferenceServerException) as info:
            client.load_model("broken")
        assert str(info.value.status()) == "400"
        message = str(info.value)
        assert "load failed for model 'broken'" in message
        assert BROKEN_MESSAGE in message
        entry = model_state(client, "broken")
        assert entry["state"] == "UNAVAILABLE"
        assert BROKEN_MESSAGE in entry["reason"]
        # Strict readiness: a model that failed to load makes the whole server unready (the pod leaves the
        # Service) while it stays live (the liveness probe must not restart it in a loop) ...
        assert explicit_server.is_live()
        assert not explicit_server.is_ready()
        # ... and it stays unready after the failed model is unloaded and other models load fine ...
        client.unload_model("broken")
        client.load_model("identity")
        assert client.is_model_ready("identity")
        assert not explicit_server.is_ready()
        # ... until that model loads successfully (here: the same name, fixed files uploaded through the API).
        fixed = (GOOD / "identity" / "1" / "model.py").read_bytes()
        client.load_model("broken", config=full_config("broken"), files={"file:1/model.py": fixed})
        assert explicit_server.is_ready()


def test_broken_model_message_over_grpc(explicit_server: TritonServer) -> None:
    with grpcclient.InferenceServerClient(explicit_server.grpc_address) as client:
        with pytest.raises(InferenceServerException) as info:
            client.load_model("broken")
        assert str(info.value.status()) == "StatusCode.INVALID_ARGUMENT"
        assert BROKEN_MESSAGE in str(info.value)


def test_unknown_model_load_error(explicit_server: TritonServer) -> None:
    with httpclient.InferenceServerClient(explicit_server.http_address) as client:
        with pytest.raises(InferenceServerException, match="failed to poll from model repository") as info:
            client.load_model("no-such-model")
        assert str(info.value.status()) == "500"
        assert explicit_server.is_ready()  # a name that does not exist is no failed model


def test_load_models_at_startup(tritonserver_bin: Path) -> None:
    """--load-model at startup (what the operator can pass for spec.models): ready means those loaded."""
    with (
        TritonServer(
            [GOOD, BAD], model_control_mode="explicit", load_models=["identity"], executable=tritonserver_bin
        ) as server,
        httpclient.InferenceServerClient(server.http_address) as client,
    ):
        assert server.wait_for == "ready"
        assert client.is_model_ready("identity")
        assert not client.is_model_ready("sleeper")
