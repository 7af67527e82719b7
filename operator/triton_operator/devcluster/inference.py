"""A real inference against the test models, from this machine, over HTTP or gRPC (the KServe v2 protocol)."""

from __future__ import annotations

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
