"""Triton python-backend model `identity`: OUTPUT0 is INPUT0, unchanged, for every request of a batch."""

from __future__ import annotations

from typing import Any

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    """Echoes its input; the cheapest model that still goes through Triton's scheduler, batcher and metrics."""

    def execute(self, requests: list[Any]) -> list[Any]:
        """Return one response per request, in order, as Triton's python backend requires."""
        responses = []
        for request in requests:
            data = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("OUTPUT0", data)]))
        return responses
