"""The autoscaler's input, from either source of ``spec.autoscaling.metricsSource``: thin, async, bounded.

Both sources give one :class:`MetricsRound`: a :class:`~triton_operator.policy.autoscaling.ReplicaSample` per
replica that could be measured, and for every other replica a one-line reason. A replica that cannot be measured
is never an exception and never a made-up sample: the policy holds when it lacks data, but it would scale on a
guess. A sample sums, over all of a replica's models and versions, Triton's counters
``nv_inference_queue_duration_us``, ``nv_inference_request_success``, ``nv_inference_compute_infer_duration_us``,
``nv_inference_exec_count`` and its gauge ``nv_inference_pending_request_count``.

``Pods`` (:func:`scrape_pods`): the operator GETs each ready pod's ``http://<pod IP>:8002/metrics`` itself, all
at once with a bound on concurrency and time. Triton writes its counters without the ``_total`` suffix
(``# TYPE nv_inference_request_success counter`` then ``nv_inference_request_success{model=..} 4``);
prometheus_client's parser renames such samples to ``..._total`` and strips ``_total`` from family names, so
:func:`samples_from_text` accepts both spellings. A Triton with no model loaded writes none of these families:
that replica gets the reason "metric missing", not zeros.

``Prometheus`` (:func:`query_prometheus`): instant queries over Prometheus's HTTP API, one per metric,
``sum by (pod) (<metric>{namespace="<ns>", pod=~"<pod1>|<pod2>"})``, all evaluated at the same instant. This needs
Triton's series to carry ``namespace`` and ``pod`` labels of the pod they were scraped from, which is what the
Prometheus Operator's PodMonitor and ServiceMonitor (and so kube-prometheus) attach; a hand-written scrape config
must relabel ``__meta_kubernetes_namespace`` and ``__meta_kubernetes_pod_name`` to them. The sum also runs over
every other label, so a pod scraped by two jobs (a PodMonitor and a ServiceMonitor) would count twice. A sixth
query, ``timestamp()`` of one counter, tells when Prometheus last scraped each pod: the sample's ``at`` is that
moment on the operator's monotonic clock (rates then follow Prometheus's scrapes, not the operator's polls), and a
pod last scraped more than :data:`STALE_AFTER` seconds ago is a problem (Prometheus answers with a target's last
value for 5 minutes when nothing marked it stale, as after a restart or through remote-write stores). The
namespace and pod names go into the query as escaped string literals and escaped regexes, so no name can change
the query.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import os
import re
import time
from collections.abc import AsyncIterator, Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from triton_operator.adapters.triton import host_port
from triton_operator.policy.autoscaling import ReplicaSample

T = TypeVar("T")

__all__ = [
    "DEFAULT_METRICS_PORT",
    "METRICS",
    "STALE_AFTER",
    "MetricsError",
    "MetricsRound",
    "promql",
    "query_prometheus",
    "samples_from_text",
    "samples_from_vectors",
    "scrape_pods",
    "vector_by_pod",
]

#: Triton's default ``--metrics-port``.
DEFAULT_METRICS_PORT = 8002
#: Each :class:`ReplicaSample` field and the Triton metric it sums.
METRICS: Mapping[str, str] = {
    "queue_us": "nv_inference_queue_duration_us",
    "success": "nv_inference_request_success",
    "compute_us": "nv_inference_compute_infer_duration_us",
    "executions": "nv_inference_exec_count",
    "pending": "nv_inference_pending_request_count",
}
#: Seconds after which a pod's newest sample in Prometheus no longer counts as its current state.
STALE_AFTER = 120.0
#: The key of the scrape-time query in :func:`samples_from_vectors`'s input.
SCRAPED_AT = "timestamp"
_SCRAPE_CLOCK = METRICS["success"]  # every series of one scrape has the same timestamp; any counter will do


class MetricsError(Exception):
    """One replica's metrics (or the whole Prometheus answer) cannot be used; ``str()`` says where and why."""


@dataclass
class MetricsRound:
    """One round of measurement: samples of the replicas that could be measured, reasons for the others."""

    samples: list[ReplicaSample] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)


# -- shared: values to a sample, bounded requests ---------------------------------------------------------------


def _checked(metric: str, value: float) -> float:
    """``value`` if a counter or gauge of Triton could have it; NaN, infinite or negative is a broken source."""
    if math.isnan(value):
        raise MetricsError(f"{metric} is NaN")
    if math.isinf(value) or value < 0:
        raise MetricsError(f"{metric} is {value:g}, not a count")
    return value


def _sample(pod: str, at: float, totals: Mapping[str, float]) -> ReplicaSample:
    """The sample from per-metric totals; every metric must be there (a partial sample would skew the deltas)."""
    missing = [metric for metric in METRICS.values() if metric not in totals]
    if missing:
        raise MetricsError(f"metric missing: {', '.join(missing)}")
    return ReplicaSample(pod=pod, at=at, **{name: _checked(m, totals[m]) for name, m in METRICS.items()})


def _one_line(body: bytes, limit: int = 200) -> str:
    """The start of a response body on one line, for an error message."""
    text = " ".join(body.decode("utf-8", errors="replace").split())
    return text if len(text) <= limit else text[:limit] + "..."


def _http_error(response: aiohttp.ClientResponse, body: bytes) -> str:
    detail = _one_line(body)
    return f"HTTP {response.status} {response.reason or ''}".rstrip() + (f": {detail}" if detail else "")


async def _bounded(where: str, timeout: float, request: Awaitable[T]) -> T:
    """Await ``request`` for at most ``timeout`` seconds; every network failure becomes a :class:`MetricsError`
    that starts with ``where``."""
    try:
        async with asyncio.timeout(timeout):
            return await request
    except TimeoutError as exc:
        raise MetricsError(f"{where}: no answer within {timeout:g} s") from exc
    except aiohttp.ClientConnectorError as exc:
        # asyncio words a refusal "Connect call failed ('10.0.0.7', 8002)"; the errno says what happened.
        reason = os.strerror(exc.os_error.errno) if exc.os_error.errno else str(exc.os_error)
        raise MetricsError(f"{where}: cannot connect: {reason}") from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise MetricsError(f"{where}: {type(exc).__name__}: {exc or 'connection lost'}") from exc


def _round(pods: Sequence[str], results: Sequence[ReplicaSample | BaseException]) -> MetricsRound:
    """Samples and reasons, in input order. An unexpected exception is a reason too: a round must not fail."""
    measured = MetricsRound()
    for pod, result in zip(pods, results, strict=True):
        if isinstance(result, ReplicaSample):
            measured.samples.append(result)
        elif isinstance(result, MetricsError):
            measured.problems[pod] = str(result)
        else:
            measured.problems[pod] = f"{type(result).__name__}: {result}"
    return measured


# -- metricsSource: Pods -----------------------------------------------------------------------------------------


_PREFIXES = tuple(sorted(METRICS.values()))
_COMMENT_PREFIXES = tuple(f"# {kind} {name}" for kind in ("HELP", "TYPE") for name in _PREFIXES)


def _wanted_lines(text: str) -> str:
    """Only the lines of the five families (and their HELP/TYPE lines): Triton also exports GPU, CPU, cache and
    per-model latency families, and the parser's cost grows with every line; a fleet is scraped every 2 s."""
    return "".join(
        line for line in text.splitlines(keepends=True) if line.startswith(_PREFIXES) or line.startswith(_COMMENT_PREFIXES)
    )


def samples_from_text(pod: str, text: str, at: float) -> ReplicaSample:
    """``pod``'s sample from Triton's Prometheus exposition ``text``, read at ``at`` (time.monotonic()).

    Sums every label set (model, version) of each metric; a counter may be written with or without ``_total``.
    Raises :class:`MetricsError` for text that does not parse, a missing metric, or a NaN, infinite or negative
    value of any model.
    """
    totals: dict[str, float] = {}
    wanted = set(METRICS.values())
    try:
        # Without one line of the five families the whole text is parsed, so that garbage says it is garbage.
        families = list(text_string_to_metric_families(_wanted_lines(text) or text))
    except Exception as exc:  # the parser's errors on untrusted text are not all ValueErrors
        raise MetricsError(f"unparsable metrics text: {exc or type(exc).__name__}") from exc
    for family in families:
        metric = family.name.removesuffix("_total")  # an untyped `x_total` keeps the suffix in its family name
        if metric not in wanted:
            continue
        for sample in family.samples:
            if sample.name in (metric, f"{metric}_total"):  # not _created or another series of the family
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
                value = _checked(f"{metric}{{{labels}}}", float(sample.value))
                totals[metric] = totals.get(metric, 0.0) + value
    return _sample(pod, at, totals)


async def _scrape(session: aiohttp.ClientSession, pod: str, url: str, timeout: float) -> ReplicaSample:
    async def fetch() -> tuple[aiohttp.ClientResponse, bytes]:
        async with session.get(url, headers={"Accept": "text/plain"}) as response:
            return response, await response.read()

    response, body = await _bounded(f"GET {url}", timeout, fetch())
    at = time.monotonic()
    if response.status != 200:
        raise MetricsError(f"GET {url}: {_http_error(response, body)}")
    try:
        return samples_from_text(pod, body.decode("utf-8", errors="replace"), at)
    except MetricsError as exc:
        raise MetricsError(f"GET {url}: {exc}") from exc


def http_session() -> aiohttp.ClientSession:
    """A session for many rounds (the autoscaler keeps one for its life: a session per round is a connector, its
    DNS cache and its pool built and torn down for every service every interval). Connections are not kept
    alive between requests: an idle keep-alive connection to a pod would delay Triton's shutdown by up to its
    --exit-timeout-secs."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))


@contextlib.asynccontextmanager
async def _using(session: aiohttp.ClientSession | None) -> AsyncIterator[aiohttp.ClientSession]:
    """The caller's session, or one for this round only."""
    if session is not None:
        yield session
        return
    async with http_session() as own:
        yield own


async def scrape_pods(
    targets: Sequence[tuple[str, str]],
    *,
    port: int = DEFAULT_METRICS_PORT,
    timeout: float = 2.0,
    concurrency: int = 16,
    session: aiohttp.ClientSession | None = None,
) -> MetricsRound:
    """Scrape Triton's metrics from each ``(pod name, pod IP)`` in ``targets``: at most ``concurrency`` at once,
    each bounded by ``timeout`` seconds, so hung pods cost one ``timeout`` per ``concurrency`` of them, not one
    each. Never raises for a pod: refused, timed out, an HTTP error, unparsable text or a missing metric is its
    reason in ``problems``. ``session``: a long-lived one from :func:`http_session` (else one for this round)."""
    limit = asyncio.Semaphore(max(1, concurrency))
    async with _using(session) as http:

        async def one(pod: str, host: str) -> ReplicaSample:
            async with limit:
                return await _scrape(http, pod, f"http://{host_port(host, port)}/metrics", timeout)

        results = await asyncio.gather(*(one(pod, host) for pod, host in targets), return_exceptions=True)
    return _round([pod for pod, _ in targets], results)


# -- metricsSource: Prometheus -----------------------------------------------------------------------------------


def _string(value: str) -> str:
    """A PromQL double-quoted string literal holding exactly ``value`` (PromQL takes Go's escapes, which include
    JSON's; non-ASCII stays as it is, since JSON's surrogate pairs are not valid Go escapes)."""
    return json.dumps(value, ensure_ascii=False)


#: What RE2 (Prometheus's regex syntax) gives a meaning outside brackets; a backslash makes each one literal.
_REGEX_SPECIAL = re.compile(r"[\\.+*?()|\[\]{}^$]")


def _selector(namespace: str, pods: Sequence[str]) -> str:
    """``{namespace="..", pod=~"a|b"}``: each pod name a literal alternative (Prometheus anchors the regex at both
    ends), so ``web.1`` matches no ``webx1`` and no name can add alternatives."""
    alternatives = "|".join(_REGEX_SPECIAL.sub(r"\\\g<0>", pod) for pod in pods)
    return f"{{namespace={_string(namespace)}, pod=~{_string(alternatives)}}}"


def promql(namespace: str, pods: Sequence[str]) -> dict[str, str]:
    """The instant queries of one round, by metric name, plus :data:`SCRAPED_AT` (when each pod was scraped)."""
    selector = _selector(namespace, pods)
    queries = {metric: f"sum by (pod) ({metric}{selector})" for metric in METRICS.values()}
    queries[SCRAPED_AT] = f"max by (pod) (timestamp({_SCRAPE_CLOCK}{selector}))"
    return queries


def vector_by_pod(data: Any) -> dict[str, float]:
    """The ``data`` of a Prometheus instant-query answer (an instant vector), as value by ``pod`` label.

    Values stay as Prometheus wrote them ("NaN" included); :func:`samples_from_vectors` judges them.
    """
    if not isinstance(data, Mapping) or data.get("resultType") != "vector" or not isinstance(data.get("result"), list):
        raise MetricsError(f"not an instant vector: {_one_line(json.dumps(data).encode())}")
    values: dict[str, float] = {}
    for item in data["result"]:
        try:
            pod, value = item["metric"]["pod"], float(item["value"][1])
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise MetricsError(f"unreadable vector element: {_one_line(json.dumps(item).encode())}") from exc
        values[str(pod)] = value
    return values


def samples_from_vectors(
    namespace: str,
    pods: Sequence[str],
    vectors: Mapping[str, Mapping[str, float]],
    *,
    evaluated_at: float,
    monotonic: float,
) -> MetricsRound:
    """One round from the answers to :func:`promql`'s queries (``vectors``: query key -> value by pod), evaluated at
    ``evaluated_at`` (Unix seconds) when the operator's monotonic clock read ``monotonic``.

    A pod absent from every answer was not scraped (or lacks the labels); one absent from some answers, with a
    NaN or negative value, or scraped more than :data:`STALE_AFTER` seconds before the evaluation, is a problem.
    """
    results: list[ReplicaSample | BaseException] = []
    for pod in pods:
        totals = {metric: values[pod] for metric, values in vectors.items() if pod in values}
        if not totals:
            results.append(
                MetricsError(
                    f"Prometheus has no Triton metrics for pod {pod} in namespace {namespace} "
                    "(not scraped, or its series lack the namespace/pod labels)"
                )
            )
            continue
        try:
            scraped = totals.pop(SCRAPED_AT, math.nan)
            sample = _sample(pod, monotonic, totals)
            age = evaluated_at - _checked(f"timestamp({_SCRAPE_CLOCK})", scraped)
            if age > STALE_AFTER:
                raise MetricsError(f"stale: Prometheus last scraped it {age:.0f} s before the query")
            # Clocks differ between machines; a sample "from the future" is taken as scraped at the query.
            results.append(dataclasses.replace(sample, at=monotonic - max(0.0, age)))
        except MetricsError as exc:
            results.append(MetricsError(f"in Prometheus: {exc}"))
    return _round(pods, results)


async def _instant(
    session: aiohttp.ClientSession, endpoint: str, what: str, form: Mapping[str, str]
) -> dict[str, float]:
    """One instant query. When Prometheus refuses it, its own words (``errorType: error``), whatever HTTP status
    they came with (400 bad_data, 422 execution, 503 timeout)."""
    async with session.post(endpoint, data=dict(form)) as response:
        body = await response.read()
    try:
        answer = json.loads(body)
    except ValueError:
        answer = None
    if isinstance(answer, dict) and answer.get("status") == "error":
        reason = answer.get("error") or "no reason given"
        raise MetricsError(f"{what}: {answer.get('errorType') or 'error'}: {reason}")
    if response.status != 200:
        raise MetricsError(f"{what}: {_http_error(response, body)}")
    if not isinstance(answer, dict) or answer.get("status") != "success":
        raise MetricsError(f"{what}: not a Prometheus API answer: {_one_line(body)}")
    try:
        return vector_by_pod(answer.get("data"))
    except MetricsError as exc:
        raise MetricsError(f"{what}: {exc}") from exc


async def query_prometheus(
    url: str,
    namespace: str,
    pods: Sequence[str],
    *,
    timeout: float = 5.0,
    session: aiohttp.ClientSession | None = None,
) -> MetricsRound:
    """The ``pods`` of ``namespace`` as Prometheus at ``url`` (e.g. ``http://prometheus-operated.monitoring:9090``)
    last scraped them; the queries run at once, each bounded by ``timeout`` seconds. Never raises: Prometheus
    down, an HTTP error or a query error gives every pod the same reason; a pod missing, NaN or stale gives that
    pod its own. ``session``: as for :func:`scrape_pods`."""
    if not pods:
        return MetricsRound()
    where = f"Prometheus at {url}"
    endpoint = url.rstrip("/") + "/api/v1/query"
    queries = promql(namespace, pods)
    evaluated_at, monotonic = time.time(), time.monotonic()
    # One evaluation time for all queries, so that each sees the same scrapes; Prometheus's own timeout ends its
    # work when ours ends.
    form = {"time": f"{evaluated_at:.3f}", "timeout": f"{timeout:g}"}
    try:
        async with _using(session) as http:

            def ask(key: str, query: str) -> Awaitable[dict[str, float]]:
                request = _instant(http, endpoint, f"{where}: the query for {key}", form | {"query": query})
                return _bounded(where, timeout, request)

            answers = await asyncio.gather(*(ask(k, q) for k, q in queries.items()), return_exceptions=True)
        failed = next((answer for answer in answers if isinstance(answer, BaseException)), None)
        if failed is not None:
            raise failed
    except Exception as exc:  # one reason for every pod; never an exception out of a round
        reason = str(exc) if isinstance(exc, MetricsError) else f"{where}: {type(exc).__name__}: {exc}"
        return MetricsRound(problems=dict.fromkeys(pods, reason))
    vectors = {key: answer for key, answer in zip(queries, answers, strict=True) if isinstance(answer, dict)}
    return samples_from_vectors(namespace, pods, vectors, evaluated_at=evaluated_at, monotonic=monotonic)
