"""The two metric sources of spec.autoscaling.metricsSource against real components: the Pods source scraping a
real Triton, the Prometheus source querying a real Prometheus that scrapes that Triton, and both facing endpoints
that fail in every way a fleet's can (real sockets and a real local HTTP server, no mocks).

One Triton (the session's good_server, both models loaded) and one Prometheus (module scope, scraping it every
second as three labelled targets) serve every test; the Prometheus needs about 5 s before its first scrape
(its scrape manager syncs targets every 5 s), paid once.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client import REGISTRY, generate_latest

from tests.triton.helpers import infer_concurrently, metric_samples
from triton_operator.adapters.metrics import METRICS, MetricsRound, query_prometheus, scrape_pods
from triton_operator.policy.autoscaling import ReplicaSample
from triton_operator.testing import PrometheusServer, TritonServer

NAMESPACE = "serving"
#: The pods the module's Prometheus sees: two in NAMESPACE (one with a dot, as a DNS-subdomain pod name may have)
#: and a namesake of the first in another namespace, which no query for NAMESPACE may count.
PODS = ("triton-0", "triton-1.canary")
OTHER_NAMESPACE = "elsewhere"


def counters(sample: ReplicaSample) -> dict[str, float]:
    return {name: getattr(sample, name) for name in METRICS}


def scrape(server: TritonServer, pods: tuple[str, ...] = ("triton-0",), timeout: float = 2.0) -> MetricsRound:
    """scrape_pods over ``pods``, all of them the given Triton (its metrics port on 127.0.0.1)."""
    return asyncio.run(scrape_pods([(pod, server.host) for pod in pods], port=server.metrics_port, timeout=timeout))


def one_sample(server: TritonServer) -> ReplicaSample:
    measured = scrape(server)
    assert measured.problems == {}
    (sample,) = measured.samples
    return sample


# -- Pods ----------------------------------------------------------------------------------------------------------


def test_counters_grow_and_give_queue_latency_under_overlapping_load(good_server: TritonServer) -> None:
    """48 requests at once on `sleeper` (one instance, 20 ms per batch of at most 8) queue behind each other: the
    scraped sums grow by exactly the requests sent, by at least 6 batches, and delta queue_us / delta success (the
    autoscaler's signal) is well above zero. The pending gauge is read while they wait."""
    before = one_sample(good_server)
    pending: list[float] = []
    load = threading.Thread(target=infer_concurrently, args=(good_server, "sleeper", 48))
    load.start()
    while load.is_alive():
        pending += [s.pending for s in scrape(good_server).samples]
    load.join()
    after = one_sample(good_server)

    assert after.at > before.at
    assert after.success - before.success == 48
    assert after.executions - before.executions >= 6
    assert after.compute_us - before.compute_us >= 6 * 20_000
    queue_ms = (after.queue_us - before.queue_us) / (after.success - before.success) / 1000
    assert queue_ms > 5, f"mean queue time {queue_ms:.1f} ms for 48 overlapping 20 ms requests"
    assert max(pending, default=0) > 0, f"pending never above 0 in {len(pending)} scrapes during the load"
    assert after.pending == 0


def test_a_sample_sums_the_models_as_triton_reports_them(good_server: TritonServer) -> None:
    """Both models served: each of the five numbers is Triton's identity value plus its sleeper value, read from
    the same text by the tier's own hand parser (not prometheus_client)."""
    infer_concurrently(good_server, "identity", 8)
    infer_concurrently(good_server, "sleeper", 8)
    text_before = good_server.metrics_text()
    sample = one_sample(good_server)
    text_after = good_server.metrics_text()

    for name, metric in METRICS.items():
        per_model = metric_samples(text_before, metric)
        assert per_model == metric_samples(text_after, metric), f"{metric} moved: no load may run meanwhile"
        assert set(per_model) == {"identity", "sleeper"}
        if name != "pending":
            assert all(value > 0 for value in per_model.values()), (metric, per_model)
        assert getattr(sample, name) == sum(per_model.values()), (metric, per_model)


class Canned(BaseHTTPRequestHandler):
    """Answers every request with the status and body its server holds in ``canned``."""

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))  # a POST's form, read so the close is clean
        status, body = self.server.canned  # type: ignore[attr-defined]
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@pytest.fixture(scope="module")
def bad_pods(good_server: TritonServer) -> Iterator[dict[str, str]]:
    """Pod name -> IP of pods that fail each in its own way, on Triton's metrics port number (one port serves a
    whole fleet, as in a cluster) on other loopback addresses: HTTP servers answering garbage, a 500, another
    program's metrics, Triton's text with a NaN; a port nobody listens on; a socket that accepts and never
    answers."""
    port = good_server.metrics_port
    nan_text = re.sub(
        r'^(nv_inference_queue_duration_us\{model="identity",version="1"\}) .*$',
        r"\1 NaN",
        good_server.metrics_text(),
        flags=re.MULTILINE,
    )
    canned = {
        "garbage": ("127.0.0.2", 200, b"<html><body>Welcome to nginx!</body></html>"),
        "broken": ("127.0.0.3", 500, b"internal error: metrics registry unavailable"),
        "other-app": ("127.0.0.4", 200, generate_latest(REGISTRY)),  # this process's own real metrics
        "nan": ("127.0.0.5", 200, nan_text.encode()),
    }
    servers = []
    for ip, status, body in canned.values():
        server = ThreadingHTTPServer((ip, port), Canned)
        server.canned = (status, body)  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    hung = socket.create_server(("127.0.0.6", port))  # the kernel completes connections; nothing reads them
    try:
        yield {**{pod: ip for pod, (ip, _, _) in canned.items()}, "refused": "127.0.0.7", "hung": "127.0.0.6"}
    finally:
        hung.close()
        for server in servers:
            server.shutdown()
            server.server_close()


def test_every_failing_pod_gets_its_reason_and_no_sample(good_server: TritonServer, bad_pods: dict[str, str]) -> None:
    """One round over a healthy pod and six broken ones: the healthy one's sample, one line of reason for each
    other, and the round takes one timeout (they are scraped at once), not one per hung pod."""
    targets = [("healthy", good_server.host), *bad_pods.items()]
    started = time.monotonic()
    measured = asyncio.run(scrape_pods(targets, port=good_server.metrics_port, timeout=1.0))
    elapsed = time.monotonic() - started

    assert [s.pod for s in measured.samples] == ["healthy"]
    url = {pod: f"http://{ip}:{good_server.metrics_port}/metrics" for pod, ip in bad_pods.items()}
    missing = ", ".join(METRICS.values())
    assert measured.problems == {
        "garbage": f"GET {url['garbage']}: unparsable metrics text: invalid metric name:<html><body>Welcome to nginx!"
        "</body></html>",
        "broken": f"GET {url['broken']}: HTTP 500 Internal Server Error: internal error: metrics registry unavailable",
        "other-app": f"GET {url['other-app']}: metric missing: {missing}",
        "nan": f'GET {url["nan"]}: nv_inference_queue_duration_us{{model="identity",version="1"}} is NaN',
        "refused": f"GET {url['refused']}: cannot connect: Connection refused",
        "hung": f"GET {url['hung']}: no answer within 1 s",
    }
    assert elapsed < 2.5, f"a round with one hung pod took {elapsed:.1f} s"


# -- Prometheus ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def prometheus(good_server: TritonServer, prometheus_bin: Path) -> Iterator[PrometheusServer]:
    """A real Prometheus scraping the session's Triton every second as the labelled targets a PodMonitor makes:
    PODS in NAMESPACE, and triton-0 again in OTHER_NAMESPACE."""
    address = f"{good_server.host}:{good_server.metrics_port}"
    targets = [(address, {"namespace": NAMESPACE, "pod": pod}) for pod in PODS]
    targets.append((address, {"namespace": OTHER_NAMESPACE, "pod": PODS[0]}))
    with PrometheusServer(targets, scrape_interval=1.0, executable=prometheus_bin) as server:
        server.wait_for_scrape()
        yield server


def test_prometheus_gives_the_direct_scrape_values_one_scrape_later(
    good_server: TritonServer, prometheus: PrometheusServer
) -> None:
    """After load on both models, the next scrape (within about one interval) makes Prometheus's sums equal the
    operator's own scrape for each pod, the namesake in another namespace not counted; a pod Prometheus never
    scraped is a problem. Each sample's ``at`` is its scrape's time, after the load ended."""
    infer_concurrently(good_server, "sleeper", 16)
    infer_concurrently(good_server, "identity", 4)
    loaded_wall, loaded = time.time(), time.monotonic()
    direct = one_sample(good_server)
    prometheus.wait_for_scrape(after=loaded_wall, timeout=5)
    waited = time.monotonic() - loaded

    measured = asyncio.run(query_prometheus(prometheus.url, NAMESPACE, [*PODS, "triton-9"]))
    assert [s.pod for s in measured.samples] == list(PODS)
    for sample in measured.samples:
        assert counters(sample) == counters(direct), sample.pod
        assert loaded - 0.05 < sample.at <= time.monotonic()
    assert measured.problems == {
        "triton-9": "Prometheus has no Triton metrics for pod triton-9 in namespace serving (not scraped, or its "
        "series lack the namespace/pod labels)"
    }
    assert waited < 2.5, f"Prometheus took {waited:.1f} s to scrape after the load (interval 1 s)"


@pytest.mark.parametrize(
    "namespace",
    [
        pytest.param('serving"} or vector(1) or {namespace="', id="closing the string"),
        pytest.param('serving\\"}', id="a backslash before the quote"),
        pytest.param("serving\n", id="a newline"),
    ],
)
def test_a_namespace_cannot_change_the_query(prometheus: PrometheusServer, namespace: str) -> None:
    """Each of these, pasted into the query unescaped, breaks it or adds series; escaped, Prometheus compares it
    as a label value, finds nothing, and says so per pod."""
    measured = asyncio.run(query_prometheus(prometheus.url, namespace, [PODS[0]]))
    assert measured.samples == []
    assert measured.problems == {
        PODS[0]: f"Prometheus has no Triton metrics for pod {PODS[0]} in namespace {namespace} (not scraped, or its "
        "series lack the namespace/pod labels)"
    }


def test_pod_names_are_literal_in_the_regex(prometheus: PrometheusServer) -> None:
    """Regex syntax in pod names (a broken group, a wildcard, an alternation, a backslash) matches only a pod of
    that exact name, and does not stop the real pod beside it from being measured."""
    odd = ["(triton", ".*", "triton-0|x", "triton\\-0", "triton-1xcanary"]
    measured = asyncio.run(query_prometheus(prometheus.url, NAMESPACE, [*odd, PODS[0]]))
    assert [s.pod for s in measured.samples] == [PODS[0]]
    assert sorted(measured.problems) == sorted(odd)
    assert all(reason.startswith("Prometheus has no Triton metrics for pod") for reason in measured.problems.values())


def test_prometheus_failures_give_every_pod_the_reason(
    good_server: TritonServer, bad_pods: dict[str, str], prometheus_bin: Path
) -> None:
    """Prometheus down, something else at its URL (a 500, a web page), and a real Prometheus refusing the query
    (its query timeout set to 0): every pod gets the one reason, with Prometheus's own words, and no sample."""
    port = good_server.metrics_port
    with PrometheusServer([], extra_args=["--query.timeout=0s"], executable=prometheus_bin) as refusing:
        cases = {
            f"http://{bad_pods['refused']}:{port}": "cannot connect: Connection refused",
            f"http://{bad_pods['broken']}:{port}/": "HTTP 500 Internal Server Error: internal error: metrics "
            "registry unavailable",
            f"http://{bad_pods['garbage']}:{port}": "not a Prometheus API answer: <html><body>Welcome to nginx!"
            "</body></html>",
            refusing.url: ": timeout: query timed out in ",  # "query queue" or "query execution"
        }
        for url, reason in cases.items():
            measured = asyncio.run(query_prometheus(url, NAMESPACE, list(PODS), timeout=2.0))
            assert measured.samples == [], url
            assert set(measured.problems) == set(PODS), url
            problem = measured.problems[PODS[0]]
            assert problem == measured.problems[PODS[1]]
            assert problem.startswith(f"Prometheus at {url}: "), problem
            assert reason in problem, problem


def test_no_pods_asks_nothing() -> None:
    assert asyncio.run(query_prometheus("http://127.0.0.1:1", NAMESPACE, [])) == MetricsRound()
