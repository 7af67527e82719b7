"""Small shared helpers of the triton tier: inputs, concurrent requests, metric samples."""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from triton_operator.testing import TritonServer

_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)", re.MULTILINE)
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def http_input(data: np.ndarray[Any, Any]) -> httpclient.InferInput:
    """INPUT0 of the test models (FP32, [batch, n]) for the HTTP client."""
    tensor = httpclient.InferInput("INPUT0", list(data.shape), "FP32")
    tensor.set_data_from_numpy(data)
    return tensor


def grpc_input(data: np.ndarray[Any, Any]) -> grpcclient.InferInput:
    """INPUT0 of the test models (FP32, [batch, n]) for the gRPC client."""
    tensor = grpcclient.InferInput("INPUT0", list(data.shape), "FP32")
    tensor.set_data_from_numpy(data)
    return tensor


def infer_concurrently(
    server: TritonServer, model: str, count: int, timeout: float = 60.0
) -> list[np.ndarray[Any, Any]]:
    """Send ``count`` single-row requests at once (gRPC async_infer) and return OUTPUT0 of each, in request order.

    All requests are in flight together, so Triton's dynamic batcher sees a queue; the answers are checked by the
    caller against the distinct inputs (row i is filled with i), which also proves no response went to the wrong
    request.
    """
    results: list[Any] = [None] * count
    done = threading.Semaphore(0)

    def callback(index: int, result: Any, error: Any) -> None:
        results[index] = error if error is not None else result.as_numpy("OUTPUT0")
        done.release()

    with grpcclient.InferenceServerClient(server.grpc_address) as client:
        for i in range(count):
            data = np.full((1, 4), float(i), dtype=np.float32)
            # The client calls back with keywords (result=..., error=...).
            client.async_infer(model, [grpc_input(data)], callback=functools.partial(callback, i))
        for _ in range(count):
            assert done.acquire(timeout=timeout), "a request did not complete"
    errors = [r for r in results if not isinstance(r, np.ndarray)]
    assert not errors, errors
    return results


def metric_samples(text: str, name: str) -> dict[str, float]:
    """The samples of metric ``name`` by model, from Triton's Prometheus exposition (version label ignored).

    Parsed by hand on purpose: Triton writes counters without the ``_total`` suffix, which prometheus_client's
    parser renames, and the operator's own scraper must read exactly what Triton writes.
    """
    samples: dict[str, float] = {}
    for match in _SAMPLE.finditer(text):
        if match["name"] == name:
            labels = dict(_LABEL.findall(match["labels"] or ""))
            samples[labels.get("model", "")] = float(match["value"])
    return samples


def models_in(text: str, names: Sequence[str]) -> dict[str, set[str]]:
    """For each metric in ``names``, the models it has samples for."""
    return {name: set(metric_samples(text, name)) for name in names}
