"""Test helpers that run real components (no mocks): importable by the test tiers and by benchmarks.

Kept inside the package, not under tests/, so benchmarks and ad-hoc scripts can use the same helpers; nothing in
the operator itself imports this package.
"""

from triton_operator.testing.prometheus import (
    PrometheusServer,
    PrometheusServerError,
    file_sd_scrape,
    find_prometheus,
)
from triton_operator.testing.triton_server import (
    DEFAULT_PYTRITON_VERSION,
    TritonServer,
    TritonServerError,
    find_tritonserver,
    free_ports,
)

__all__ = [
    "DEFAULT_PYTRITON_VERSION",
    "PrometheusServer",
    "PrometheusServerError",
    "TritonServer",
    "TritonServerError",
    "file_sd_scrape",
    "find_prometheus",
    "find_tritonserver",
    "free_ports",
]
