"""Triton python-backend model `broken`: initialize() always raises, so the model can never load.

Tests use it to prove that Triton's load error, with this message, reaches the client (and the operator's status).
"""

from __future__ import annotations

from typing import Any

BROKEN_MESSAGE = "broken model: initialize() raises on purpose (tests/models/bad/broken)"


class TritonPythonModel:
    """A model whose load always fails with BROKEN_MESSAGE."""

    def initialize(self, args: dict[str, str]) -> None:
        """Fail the load, the way a model with a missing weight file or a bad dependency would."""
        raise RuntimeError(BROKEN_MESSAGE)

    def execute(self, requests: list[Any]) -> list[Any]:
        """Never reached: the model never loads."""
        raise RuntimeError(BROKEN_MESSAGE)
