"""A real inference against the test models, from this machine, over HTTP or gRPC (the KServe v2 protocol)."""

from __future__ import annotations

import time
from typing import Any, Literal

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

Protocol = Literal["http", "grpc"]


def infer_identity(
    host: str, protocol: Protocol = "http", values: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0)
) -> list[float]:
    """Send ``values`` to the ``identity`` model at ``host`` (ports 8000 and 8001) and return what came back."""
    data = np.array([values], dtype=np.float32)
    client: Any
    if protocol == "http":
        client = httpclient.InferenceServerClient(f"{host}:8000", connection_timeout=10, network_timeout=30)
        tensor: Any = httpclient.InferInput("INPUT0", list(data.shape), "FP32")
    else:
        client = grpcclient.InferenceServerClient(f"{host}:8001")
        tensor = grpcclient.InferInput("INPUT0", list(data.shape), "FP32")
    tensor.set_data_from_numpy(data)
    try:
        result = client.infer("identity", [tensor])
        return [float(v) for v in result.as_numpy("OUTPUT0")[0]]
    finally:
        client.close()


def infer_identity_once_routed(
    host: str, protocol: Protocol = "http", values: tuple[float, ...] = (1.0, 2.0, 3.0, 4.0), timeout: float = 15.0
) -> list[float]:
    """:func:`infer_identity` through a Service that just got its first ready pod: kube-proxy programs the
    Service's rules a moment after the pod turns Ready (the EndpointSlice controller, then kube-proxy's sync), and
    until then the node refuses the connection. Only that refusal is retried, for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return infer_identity(host, protocol, values)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
