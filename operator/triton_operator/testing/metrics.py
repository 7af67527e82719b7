"""Reading a process's Prometheus metrics the way the tests and benchmarks need them: each sample name summed over
its labels (``triton_operator_api_writes_total`` over every verb and kind), parsed by prometheus-client."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

#: No proxy: the endpoints are on this machine or its pods.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def scrape_sums(url: str, timeout: float = 5.0) -> dict[str, float] | None:
    """Each sample name's values summed over labels; None while the endpoint does not answer."""
    try:
        with _DIRECT.open(url, timeout=timeout) as response:
            text = response.read().decode()
    except OSError:
        return None
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            sums[sample.name] = sums.get(sample.name, 0.0) + sample.value
    return sums
