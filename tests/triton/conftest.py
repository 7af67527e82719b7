"""Fixtures of the triton tier: real tritonserver processes on loopback (see triton_operator.testing).

Model repositories are tests/models/good (every model loads, so strict readiness means "all loaded") and
tests/models/bad (models that must fail); a server that must see a failure gets `bad` beside `good` in explicit
mode, so no fixture's readiness ever depends on a broken model.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.prerequisites import missing
from triton_operator.testing import PrometheusServerError, TritonServer, find_prometheus, find_tritonserver

MODELS = Path(__file__).resolve().parents[1] / "models"
GOOD = MODELS / "good"
BAD = MODELS / "bad"


@pytest.fixture(scope="session")
def tritonserver_bin() -> Path:
    """The tritonserver wrapper, installed once per machine by hack/install-triton-host.sh (cached)."""
    return find_tritonserver()


@pytest.fixture(scope="session")
def good_server(tritonserver_bin: Path) -> Iterator[TritonServer]:
    """One poll-mode server on tests/models/good for the whole session: ready means every good model loaded."""
    with TritonServer(GOOD, model_control_mode="poll", executable=tritonserver_bin) as server:
        yield server


@pytest.fixture
def explicit_server(tritonserver_bin: Path) -> Iterator[TritonServer]:
    """A fresh explicit-mode server over good and bad with nothing loaded (live, about 0.1 s to start)."""
    with TritonServer([GOOD, BAD], model_control_mode="explicit", executable=tritonserver_bin) as server:
        yield server


@pytest.fixture(scope="session")
def prometheus_bin() -> Path:
    """Debian's prometheus (hack/install-prometheus.sh). Missing, the Prometheus tests fail in CI (`make test`
    installs it first) and are skipped elsewhere."""
    try:
        return find_prometheus()
    except PrometheusServerError as exc:
        missing(str(exc))
