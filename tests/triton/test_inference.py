"""Inference through the real server, over HTTP and gRPC, including dynamic batching under concurrency."""

from __future__ import annotations

import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.triton.helpers import grpc_input, http_input, infer_concurrently
from triton_operator.testing import TritonServer


@pytest.mark.parametrize("model", ["identity", "sleeper"])
def test_http_infer(good_server: TritonServer, model: str) -> None:
    data = np.arange(10, dtype=np.float32).reshape(2, 5)
    with httpclient.InferenceServerClient(good_server.http_address) as client:
        result = client.infer(model, [http_input(data)])
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)


@pytest.mark.parametrize("model", ["identity", "sleeper"])
def test_grpc_infer(good_server: TritonServer, model: str) -> None:
    data = np.linspace(-1, 1, 7, dtype=np.float32).reshape(1, 7)
    with grpcclient.InferenceServerClient(good_server.grpc_address) as client:
        result = client.infer(model, [grpc_input(data)])
        assert client.is_model_ready(model)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT0"), data)


def test_models_are_ready_with_their_config(good_server: TritonServer) -> None:
    with httpclient.InferenceServerClient(good_server.http_address) as client:
        index = {m["name"]: m for m in client.get_model_repository_index()}
        config = client.get_model_config("sleeper")
    assert {index[m]["state"] for m in ("identity", "sleeper")} == {"READY"}
    assert config["max_batch_size"] == 8
    assert "dynamic_batching" in config
    assert config["parameters"]["sleep_ms"]["string_value"] == "20"


def test_dynamic_batching_groups_concurrent_requests(good_server: TritonServer) -> None:
    """16 requests at once on `sleeper` (20 ms per batch, one instance) run in far fewer than 16 executions."""

    def counts() -> tuple[int, int]:
        with httpclient.InferenceServerClient(good_server.http_address) as client:
            stats = client.get_inference_statistics("sleeper")["model_stats"][0]
        return int(stats["inference_count"]), int(stats["execution_count"])

    inferences0, executions0 = counts()
    started = time.monotonic()
    outputs = infer_concurrently(good_server, "sleeper", 16)
    elapsed = time.monotonic() - started
    for i, output in enumerate(outputs):
        np.testing.assert_array_equal(output, np.full((1, 4), float(i), dtype=np.float32))
    inferences, executions = counts()
    assert inferences - inferences0 == 16
    assert executions - executions0 < 16, "no request was batched with another"
    assert elapsed < 16 * 0.020 + 5


def test_unknown_model_is_404(good_server: TritonServer) -> None:
    with (
        httpclient.InferenceServerClient(good_server.http_address) as client,
        pytest.raises(InferenceServerException, match="unknown model") as info,
    ):
        client.infer("no-such-model", [http_input(np.zeros((1, 1), dtype=np.float32))])
    assert str(info.value.status()) == "404"


def test_wrong_input_is_400_with_triton_message(good_server: TritonServer) -> None:
    wrong = httpclient.InferInput("NOT_AN_INPUT", [1, 2], "FP32")
    wrong.set_data_from_numpy(np.zeros((1, 2), dtype=np.float32))
    with (
        httpclient.InferenceServerClient(good_server.http_address) as client,
        pytest.raises(InferenceServerException, match="NOT_AN_INPUT") as info,
    ):
        client.infer("identity", [wrong])
    assert str(info.value.status()) == "400"
