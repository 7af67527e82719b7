"""Triton python-backend model `sleeper`: OUTPUT0 is INPUT0, after sleeping `sleep_ms` per batch.

A fixed service time per batch makes queueing predictable: with one instance and dynamic batching, N concurrent
clients wait about (N / max_batch_size) * sleep_ms, which is what the queue-latency autoscaler must see. The time is
the `sleep_ms` parameter of config.pbtxt (default 20), so a test can change it through Triton's load API with a JSON
config override instead of editing files.
"""

from __future__ import annotations

import json
import time
from typing import Any

import triton_python_backend_utils as pb_utils

DEFAULT_SLEEP_MS = 20.0


class TritonPythonModel:
    """Sleeps once per execute() call (one batch), then echoes every request's input."""

    sleep_seconds: float = DEFAULT_SLEEP_MS / 1000

    def initialize(self, args: dict[str, str]) -> None:
        """Read `sleep_ms` from the model configuration Triton hands over as JSON."""
        config = json.loads(args["model_config"])
        raw = config.get("parameters", {}).get("sleep_ms", {}).get("string_value", "")
        try:
            sleep_ms = float(raw) if raw != "" else DEFAULT_SLEEP_MS
        except ValueError as exc:
            raise ValueError(f"sleeper: parameter sleep_ms must be a number of milliseconds, got {raw!r}") from exc
        if sleep_ms < 0:
            raise ValueError(f"sleeper: parameter sleep_ms must be >= 0, got {sleep_ms}")
        self.sleep_seconds = sleep_ms / 1000

    def execute(self, requests: list[Any]) -> list[Any]:
        """Sleep for one batch, then return one response per request, in order."""
        time.sleep(self.sleep_seconds)
        responses = []
        for request in requests:
            data = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("OUTPUT0", data)]))
        return responses
