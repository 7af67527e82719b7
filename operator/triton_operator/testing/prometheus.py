"""A real Prometheus server on loopback, for the tests of ``metricsSource: Prometheus``.

The operator's Prometheus source depends on what Prometheus really does with Triton's exposition (counters
without ``_total``, target labels, staleness, its API's error answers), so the triton tier scrapes a real
Triton with the ``prometheus`` binary of Debian's package (``hack/install-prometheus.sh``), not a fake API.

Usage::

    target = (f"{triton.host}:{triton.metrics_port}", {"namespace": "ns", "pod": "triton-0"})
    with PrometheusServer([target]) as prometheus:
        prometheus.wait_for_scrape()
        measured = asyncio.run(query_prometheus(prometheus.url, "ns", ["triton-0"]))

Each server binds 127.0.0.1 on a free port, keeps its data in a temporary directory removed on stop, scrapes every
target every ``scrape_interval`` seconds (1 s by default, so tests wait for a scrape, never for minutes), and dies
with the process that started it. Ready in about 0.1 s, it first scrapes about 5 s later (Prometheus 2.42's scrape
manager applies target changes every 5 s, with no flag to shorten that): start one per test module, not per test.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

from triton_operator.devcluster.processes import free_ports, log_tail
from triton_operator.testing.lifecycle import ManagedServer, die_with_parent

__all__ = ["PrometheusServer", "PrometheusServerError", "Target", "find_prometheus"]

#: A scrape target: ``host:port`` (the path is /metrics) and the labels Prometheus attaches to its series.
Target = tuple[str, Mapping[str, str]]

INSTALL_HINT = "run hack/install-prometheus.sh (Debian's prometheus package), or set $PROMETHEUS to a binary"


class PrometheusServerError(RuntimeError):
    """Prometheus could not be found, did not start, or did not scrape in time; the message says why."""


def find_prometheus() -> Path:
    """The ``prometheus`` binary: ``$PROMETHEUS`` if set, else the one on PATH."""
    explicit = os.environ.get("PROMETHEUS")
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise PrometheusServerError(f"$PROMETHEUS={explicit} is not an executable file: {INSTALL_HINT}")
        return Path(explicit)
    found = shutil.which("prometheus")
    if found is None:
        raise PrometheusServerError(f"no prometheus on PATH: {INSTALL_HINT}")
    return Path(found)


def _duration(seconds: float) -> str:
    """A Prometheus config duration (whole milliseconds: the config takes no fractions)."""
    return f"{max(1, round(seconds * 1000))}ms"


def _value(vector: Sequence[Mapping[str, Any]], address: str, labels: Mapping[str, str]) -> float:
    """The value of the series of target ``address`` with ``labels`` in an instant vector; 0 when it has none."""
    for element in vector:
        metric = element["metric"]
        if metric.get("instance") == address and all(metric.get(k) == v for k, v in labels.items()):
            return float(element["value"][1])
    return 0.0


def file_sd_scrape(job: str, targets_file: str | os.PathLike[str]) -> dict[str, Any]:
    """A scrape config whose targets (with their labels) are read from a file Prometheus watches, so a test can
    add the replicas an autoscaler creates. (Debian's Prometheus is built without Kubernetes service discovery;
    the file stands in for it: the test writes what a PodMonitor would discover.)"""
    return {"job_name": job, "file_sd_configs": [{"files": [str(targets_file)], "refresh_interval": "1s"}]}


class PrometheusServer(ManagedServer):
    """One prometheus process on 127.0.0.1, scraping ``targets`` (each with its own labels, e.g. the
    ``namespace`` and ``pod`` a PodMonitor would attach) and any further ``scrape_configs`` (such as
    :func:`file_sd_scrape`), started and stopped by this object.

    ``extra_args`` go last on the command line (e.g. ``--query.max-samples=1`` to make every query fail).
    """

    def __init__(
        self,
        targets: Sequence[Target] = (),
        *,
        scrape_configs: Sequence[Mapping[str, Any]] = (),
        scrape_interval: float = 1.0,
        extra_args: Sequence[str] = (),
        startup_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        executable: str | os.PathLike[str] | None = None,
    ) -> None:
        self.targets: list[tuple[str, dict[str, str]]] = [(address, dict(labels)) for address, labels in targets]
        self.scrape_configs = [dict(config) for config in scrape_configs]
        self.scrape_interval = scrape_interval
        self.extra_args = tuple(extra_args)
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._executable = Path(executable) if executable is not None else None
        self.port = 0
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the web UI and HTTP API, e.g. ``http://127.0.0.1:PORT``: what ``query_prometheus`` takes."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def log_path(self) -> Path:
        if self._tmpdir is None:
            raise PrometheusServerError("the server was never started")
        return Path(self._tmpdir.name) / "prometheus.log"

    def config(self) -> dict[str, Any]:
        """The prometheus.yml written at start (as data: JSON is YAML). One static config per target, so that
        each target gets its own labels even when two share an address."""
        interval = _duration(self.scrape_interval)
        static = [
            {
                "job_name": "triton",
                "static_configs": [{"targets": [address], "labels": labels} for address, labels in self.targets],
            }
        ]
        return {
            "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
            "scrape_configs": (static if self.targets else []) + self.scrape_configs,
        }

    def argv(self) -> list[str]:
        """The full command line, for logs and for reproducing a failure by hand."""
        assert self._tmpdir is not None
        work = Path(self._tmpdir.name)
        return [
            str(self._executable or "prometheus"),
            f"--config.file={work / 'prometheus.yml'}",
            f"--storage.tsdb.path={work / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            *self.extra_args,
        ]

    def start(self, *, attempts: int = 3) -> Self:
        """Start Prometheus and wait for ``/-/ready``; retries on a fresh port if the chosen one was taken."""
        if self.running:
            raise PrometheusServerError("already started")
        if self._executable is None:
            self._executable = find_prometheus()
        self._tmpdir = tempfile.TemporaryDirectory(prefix="prometheus-")
        Path(self._tmpdir.name, "prometheus.yml").write_text(json.dumps(self.config(), indent=2))
        for attempt in range(attempts):
            self.port = free_ports(1)[0]
            try:
                self._spawn_and_wait()
                return self
            except PrometheusServerError as exc:
                self._kill()
                if "address already in use" not in str(exc) or attempt == attempts - 1:
                    self.stop()
                    raise
        raise AssertionError("unreachable")

    def _spawn_and_wait(self) -> None:
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,  # noqa: PLW1509 - only prctl; safe enough before exec
            )
        deadline = time.monotonic() + self.startup_timeout
        while self._status("/-/ready") != 200:
            if self._proc.poll() is not None:
                raise PrometheusServerError(f"prometheus exited with {self._proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise PrometheusServerError(
                    f"prometheus not ready after {self.startup_timeout:g} s:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def _status(self, path: str) -> int | None:
        try:
            with urllib.request.urlopen(self.url + path, timeout=2) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except (OSError, ValueError):
            return None

    def _kill(self) -> int | None:
        """SIGTERM (Prometheus flushes and exits), SIGKILL after ``stop_timeout``; the exit code."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait(timeout=10)

    def stop(self) -> int | None:
        """Stop Prometheus and remove its data and log; returns its exit code (None if it was not running)."""
        code = self._kill()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None
        return code

    def log_tail(self, lines: int = 40) -> str:
        """The end of Prometheus's log, for error messages."""
        return log_tail(self.log_path, lines)

    # -- queries, for tests ------------------------------------------------------------------------------------

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The result of an instant query (a vector's elements), through the HTTP API; raises on an error."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                answer = json.load(response)
        except urllib.error.HTTPError as exc:
            raise PrometheusServerError(f"query {promql!r}: HTTP {exc.code}: {exc.read().decode()}") from exc
        return list(answer["data"]["result"])

    def wait_for_scrape(self, min_samples: int = 1, *, after: float | None = None, timeout: float = 30.0) -> None:
        """Block until every target has been scraped successfully at least ``min_samples`` times, the last of them
        started after ``after`` (Unix seconds; e.g. ``time.time()`` once a test's load has ended, so the next
        query sees what the target said since). Raises with the targets' state if that takes over ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            # `up` gets one sample per scrape, 1 when it succeeded. timestamp() of a selector (of nothing else: that
            # is the evaluation time) is when the last scrape started; times `up`, 0 if that scrape failed.
            counts = self.query("sum_over_time(up[1h])")
            lasts = self.query("timestamp(up) * up")
            waiting = [
                (address, labels)
                for address, labels in self.targets
                if _value(counts, address, labels) < min_samples or _value(lasts, address, labels) <= (after or 0)
            ]
            if not waiting:
                return
            if time.monotonic() > deadline:
                raise PrometheusServerError(
                    f"targets {waiting} not scraped {min_samples} times (the last after {after}) within {timeout:g} s;"
                    f" /api/v1/targets: {self._targets()}"
                )
            time.sleep(self.scrape_interval / 4)

    def _targets(self) -> str:
        try:
            with urllib.request.urlopen(f"{self.url}/api/v1/targets", timeout=5) as response:
                active = json.load(response)["data"]["activeTargets"]
        except (OSError, ValueError, KeyError) as exc:
            return f"(unavailable: {exc})"
        return "; ".join(f"{t['scrapeUrl']} {t['health']} {t.get('lastError', '')}".strip() for t in active)

    def __repr__(self) -> str:
        state = f"pid={self._proc.pid}" if self._proc is not None else "stopped"
        return f"PrometheusServer({self.url}, {len(self.targets)} targets, {state})"
