"""Triton's exit explained from its log: model load failures and the fatal error, nothing else."""

from __future__ import annotations

import pytest

from triton_operator.policy.triton_log import explain_triton_exit

BROKEN = (
    "E1123 05:07:51.469722 30117 model_lifecycle.cc:642] \"failed to load 'broken' version 1: Internal: "
    "RuntimeError: broken model: initialize() raises on purpose (tests/models/bad/broken)\\n\\nAt:\\n  "
    '/models/bad/broken/1/model.py(18): initialize\\n"'
)
MISSING = (
    "E1123 model_lifecycle.cc:642] \"failed to load 'resnet50' version 3: Not found: unable to load shared library\""
)
FATAL = "error: creating server: Internal - failed to load all models"
TABLE = "| min_supported_compute_capability | 6.0 |"


@pytest.mark.parametrize(
    ("log", "expected"),
    [
        (
            "\n".join([TABLE, BROKEN, TABLE, FATAL]),
            "model 'broken' version 1 failed to load: Internal: RuntimeError: broken model: initialize() raises on "
            "purpose (tests/models/bad/broken) (Triton exited: creating server: Internal - failed to load all models)",
        ),
        (
            "\n".join([BROKEN, MISSING]),
            "model 'broken' version 1 failed to load: Internal: RuntimeError: broken model: initialize() raises on "
            "purpose (tests/models/bad/broken); model 'resnet50' version 3 failed to load: Not found: unable to load "
            "shared library",
        ),
        (
            "\n".join(
                [TABLE, "error: failed to start GRPC service: Unavailable - Socket '0.0.0.0:8001' already in use"]
            ),
            "Triton exited: failed to start GRPC service: Unavailable - Socket '0.0.0.0:8001' already in use",
        ),
        (TABLE, None),
        ("", None),
    ],
    ids=["load-failure-and-exit", "two-models", "fatal-only", "nothing", "empty"],
)
def test_explain_triton_exit(log: str, expected: str | None) -> None:
    assert explain_triton_exit(log) == expected
