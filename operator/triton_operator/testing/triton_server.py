"""A real Triton Inference Server process on loopback, for tests and benchmarks.

The ``triton`` tier runs Triton for real instead of mocking its HTTP API: the operator depends on Triton's exact
behaviour (readiness with strict model loading, the explicit-mode load API with JSON config overrides, the load
error texts, the metric names it scrapes). There is no Docker and no NGC here, so the server is the one the
``nvidia-pytriton`` wheel bundles, installed by ``hack/install-triton-host.sh`` behind a ``tritonserver`` wrapper
that takes the same arguments as NVIDIA's image.

Usage::

    with TritonServer("tests/models/good") as server:
        client = tritonclient.http.InferenceServerClient(server.http_address)
        ...

Each server binds 127.0.0.1 only, on free ports, so parallel test sessions never collide and nothing is exposed
beyond the machine. ``stop()`` (and leaving the ``with`` block) takes the whole process group down, including the
python-backend stub processes, so no orphans survive a test; the server also dies with its parent process.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal, Self

from triton_operator.devcluster.processes import free_ports
from triton_operator.testing.lifecycle import ManagedServer, die_with_parent

__all__ = [
    "DEFAULT_PYTRITON_VERSION",
    "TritonServer",
    "TritonServerError",
    "find_tritonserver",
    "free_ports",
]

#: The nvidia-pytriton release whose bundled tritonserver (2.51) the triton tier runs.
DEFAULT_PYTRITON_VERSION = "0.7.0"

StrPath = str | os.PathLike[str]
ControlMode = Literal["none", "poll", "explicit"]
WaitFor = Literal["ready", "live"]

_REPO_ROOT = Path(__file__).resolve().parents[3]
_INSTALL_SCRIPT = _REPO_ROOT / "hack" / "install-triton-host.sh"
# Flags whose values this class chooses; a caller passing them in extra_args gets an error, not a silent clash.
_OWNED_FLAGS = (
    "--http-port",
    "--grpc-port",
    "--metrics-port",
    "--http-address",
    "--grpc-address",
    "--metrics-address",
    "--model-repository",
    "--model-store",
    "--model-control-mode",
    "--load-model",
)


class TritonServerError(RuntimeError):
    """Triton could not be found, failed to start, or did not become ready; the message carries its log tail."""


def _cache_dir() -> Path:
    return Path(os.environ.get("TRITON_OPERATOR_CACHE", Path.home() / ".cache" / "triton-operator"))


def find_tritonserver(*, install: bool = True, version: str = DEFAULT_PYTRITON_VERSION) -> Path:
    """The ``tritonserver`` wrapper to run, installing it on first use.

    Order: ``$TRITONSERVER`` (an explicit choice always wins); ``hack/install-triton-host.sh`` when this is a source
    checkout and ``install`` is true (idempotent, about 0.3 s once cached, about 15 s the first time); the cached
    wrapper; a ``tritonserver`` on PATH (NVIDIA's image puts one there).
    """
    explicit = os.environ.get("TRITONSERVER")
    if explicit:
        path = Path(explicit)
        if not os.access(path, os.X_OK):
            raise TritonServerError(f"$TRITONSERVER={explicit} is not an executable file")
        return path
    if install and _INSTALL_SCRIPT.is_file():
        env = {**os.environ, "PYTRITON_VERSION": version}
        done = subprocess.run(["bash", str(_INSTALL_SCRIPT)], env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise TritonServerError(f"{_INSTALL_SCRIPT} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
        return Path(done.stdout.strip().splitlines()[-1])
    cached = _cache_dir() / "triton-host" / version / "bin" / "tritonserver"
    if os.access(cached, os.X_OK):
        return cached
    on_path = shutil.which("tritonserver")
    if on_path:
        return Path(on_path)
    raise TritonServerError(
        "no tritonserver: run hack/install-triton-host.sh, or set $TRITONSERVER to a tritonserver executable"
    )


def _descendants(root: int) -> list[int]:
    """Pids of every live descendant of ``root`` (python-backend stubs are children of tritonserver)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        ppid = int(raw[raw.rindex(")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


class TritonServer(ManagedServer):
    """One tritonserver process on 127.0.0.1 with its own free ports, started and stopped by this object.

    ``model_repository`` is one path or several (Triton accepts ``--model-repository`` repeatedly). With
    ``model_control_mode="explicit"`` nothing loads unless named in ``load_models`` or loaded later through the
    model-repository API. ``extra_args`` are passed last and may override the defaults below, but not the flags
    this class owns (ports, addresses, repositories, control mode, load-model).

    Defaults chosen for tests (``extra_args`` may repeat a flag to override it: Triton keeps the last value):
    ``--exit-timeout-secs=5``, because Triton's shutdown waits that long for in-flight requests and for open HTTP
    client connections (close clients, or every stop takes the full timeout); in poll mode
    ``--repository-poll-secs=1``, because Triton notices SIGTERM only between polls (the default 15 s poll made
    every stop take up to 15 s), and tests see repository edits quickly.

    ``wait_for`` picks the health endpoint that means "started": ``ready`` (every model that should load has; the
    default) or ``live`` (the default in explicit mode without ``load_models``). Triton's behaviour with a model
    that cannot load decides which to use: in none/poll mode Triton exits at startup (``--exit-on-error``), which
    :meth:`start` reports with the log; in explicit mode the server stays live but unready until that model loads
    successfully, even after it is unloaded.
    """

    def __init__(
        self,
        model_repository: StrPath | Sequence[StrPath],
        *,
        extra_args: Sequence[str] = (),
        http_port: int | None = None,
        grpc_port: int | None = None,
        metrics_port: int | None = None,
        model_control_mode: ControlMode = "poll",
        load_models: Sequence[str] = (),
        wait_for: WaitFor | None = None,
        startup_timeout: float = 120.0,
        stop_timeout: float = 15.0,
        executable: StrPath | None = None,
        env: Mapping[str, str] | None = None,
        log_path: StrPath | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        repos = [model_repository] if isinstance(model_repository, str | os.PathLike) else list(model_repository)
        if not repos:
            raise ValueError("TritonServer needs at least one model repository")
        self.model_repositories: list[Path] = [Path(r).resolve() for r in repos]
        for repo in self.model_repositories:
            if not repo.is_dir():
                raise ValueError(f"model repository {repo} is not a directory")
        for arg in extra_args:
            flag = arg.split("=", 1)[0]
            if flag in _OWNED_FLAGS:
                raise ValueError(f"{flag} is set by TritonServer; use its constructor arguments instead")
        if load_models and model_control_mode != "explicit":
            raise ValueError("load_models needs model_control_mode='explicit' (Triton ignores --load-model otherwise)")
        if not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"{host} is not a loopback address: a test server must not be reachable from elsewhere")
        #: every endpoint binds here only (a loopback address: 127.0.0.2 and 127.0.0.3 let two servers share a
        #: port number, as pods do)
        self.host = host
        self.extra_args: tuple[str, ...] = tuple(extra_args)
        self.model_control_mode: ControlMode = model_control_mode
        self.load_models: tuple[str, ...] = tuple(load_models)
        if wait_for is None:
            wait_for = "live" if model_control_mode == "explicit" and not load_models else "ready"
        self.wait_for: WaitFor = wait_for
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self._requested_ports = (http_port, grpc_port, metrics_port)
        self.http_port, self.grpc_port, self.metrics_port = 0, 0, 0
        self._executable = Path(executable) if executable is not None else None
        self._env = dict(env) if env is not None else {}
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None
        self.log_path: Path | None = Path(log_path) if log_path is not None else None
        self._proc: subprocess.Popen[bytes] | None = None
        self._attempt_offset = 0
        #: seconds from spawning the process to the health endpoint answering 200 (the last attempt's)
        self.startup_seconds: float | None = None

    # -- addresses -------------------------------------------------------------------------------------------

    @property
    def http_address(self) -> str:
        """``host:port`` of the HTTP endpoint, the form ``tritonclient.http.InferenceServerClient`` takes."""
        return f"{self.host}:{self.http_port}"

    @property
    def grpc_address(self) -> str:
        """``host:port`` of the gRPC endpoint, the form ``tritonclient.grpc.InferenceServerClient`` takes."""
        return f"{self.host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        """Base URL of the HTTP/REST (KServe v2) API, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://{self.http_address}"

    @property
    def metrics_url(self) -> str:
        """The Prometheus endpoint, e.g. ``http://127.0.0.1:PORT/metrics``."""
        return f"http://{self.host}:{self.metrics_port}/metrics"

    @property
    def pid(self) -> int:
        """The tritonserver process id (the wrapper execs it, so this is Triton itself)."""
        if self._proc is None:
            raise TritonServerError("the server is not running")
        return self._proc.pid

    @property
    def running(self) -> bool:
        """True while the process has not exited."""
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle -------------------------------------------------------------------------------------------

    def argv(self) -> list[str]:
        """The full command line, for logs and for reproducing a failure by hand."""
        exe = str(self._executable) if self._executable else "tritonserver"
        args = [exe]
        args += [f"--model-repository={repo}" for repo in self.model_repositories]
        args += [f"--model-control-mode={self.model_control_mode}"]
        args += [f"--load-model={name}" for name in self.load_models]
        args += [
            f"--http-address={self.host}",
            f"--grpc-address={self.host}",
            f"--metrics-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-port={self.metrics_port}",
            "--exit-timeout-secs=5",
        ]
        if self.model_control_mode == "poll":
            args.append("--repository-poll-secs=1")
        args += self.extra_args
        return args

    def start(self, *, attempts: int = 3) -> Self:
        """Start Triton and wait until it is ready (or live); retries on fresh ports if a chosen port was taken."""
        if self.running:
            raise TritonServerError("already started")
        if self._executable is None:
            self._executable = find_tritonserver()
        if self.log_path is None:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="tritonserver-")
            self.log_path = Path(self._tmpdir.name) / "tritonserver.log"
        chosen_all = all(p is not None for p in self._requested_ports)
        last_error: TritonServerError | None = None
        for _ in range(1 if chosen_all else attempts):
            fresh = iter(free_ports(3))
            self.http_port, self.grpc_port, self.metrics_port = (
                p if p is not None else next(fresh) for p in self._requested_ports
            )
            try:
                self._spawn_and_wait()
            except TritonServerError as exc:
                self.stop()
                last_error = exc
                # Triton 2.51 says: failed to start HTTP service: Unavailable - Socket '127.0.0.1:N' already in use
                if "already in use" not in str(exc):
                    raise
                continue
            return self
        assert last_error is not None
        raise last_error

    def _spawn_and_wait(self) -> None:
        assert self.log_path is not None
        # (PYTHONDONTWRITEBYTECODE would not help: the python-backend stub's embedded interpreter ignores the
        # environment, so model.py leaves a __pycache__ beside it; .gitignore and the image build skip those.)
        env = {**os.environ, **self._env}
        argv = self.argv()
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            log.write(f"\n$ {' '.join(argv)}\n".encode())
            log.flush()
            self._attempt_offset = log.tell()
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                # Its own process group: stop() signals Triton and its python-backend stubs together.
                start_new_session=True,
                preexec_fn=die_with_parent,  # noqa: PLW1509 - only prctl; safe enough before exec
            )
        deadline = started + self.startup_timeout
        path = "/v2/health/ready" if self.wait_for == "ready" else "/v2/health/live"
        while True:
            code = self._proc.poll()
            if code is not None:
                raise TritonServerError(
                    f"tritonserver exited with {code} before it was {self.wait_for}:\n{self._attempt_log()}"
                )
            if self._get_status(path) == 200:
                self.startup_seconds = time.monotonic() - started
                return
            if time.monotonic() > deadline:
                raise TritonServerError(
                    f"tritonserver was not {self.wait_for} after {self.startup_timeout:.0f} s:\n{self._attempt_log()}"
                )
            time.sleep(0.05)

    def _attempt_log(self, lines: int = 40) -> str:
        """The tail of what this start attempt logged (earlier attempts' port clashes must not count again)."""
        assert self.log_path is not None
        with self.log_path.open("rb") as log:
            log.seek(self._attempt_offset)
            text = log.read().decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def _get_status(self, path: str) -> int | None:
        try:
            with urllib.request.urlopen(self.http_url + path, timeout=2) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except (OSError, ValueError):
            return None

    def is_ready(self) -> bool:
        """``GET /v2/health/ready`` answers 200 (with strict readiness: every model that should load has)."""
        return self._get_status("/v2/health/ready") == 200

    def is_live(self) -> bool:
        """``GET /v2/health/live`` answers 200."""
        return self._get_status("/v2/health/live") == 200

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until ready; for use after loading models in explicit mode."""
        deadline = time.monotonic() + timeout
        while not self.is_ready():
            if not self.running:
                raise TritonServerError(f"tritonserver exited:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise TritonServerError(f"tritonserver not ready after {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.05)

    def stop(self) -> int | None:
        """Stop Triton and every process it started; returns its exit code (None if it was never started).

        Like the kubelet, SIGTERM goes to Triton alone: it unloads its models, which ends their stub processes and
        removes their shared-memory regions. If it has not exited after ``stop_timeout``, its whole process group
        is SIGKILLed; stubs still alive a few seconds after Triton (a stub outlives a killed server until its
        parent check notices) are SIGKILLed by pid.
        """
        proc = self._proc
        if proc is None:
            return None
        stubs = _descendants(proc.pid) if proc.poll() is None else []
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        deadline = time.monotonic() + 5
        while (left := [p for p in stubs if not _is_gone(p)]) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pid in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        self._proc = None
        return proc.returncode

    def process_ids(self) -> list[int]:
        """Triton and its live descendants (one python-backend stub per model instance, plus transient ones)."""
        if not self.running:
            return []
        return [self.pid, *_descendants(self.pid)]

    def rss_bytes(self, *, include_children: bool = True) -> int:
        """Resident memory of Triton, plus by default its stubs: what a pod's memory limit would have to cover."""
        if not self.running:
            return 0
        pids = self.process_ids() if include_children else [self.pid]
        return sum(_rss_bytes(pid) for pid in pids)

    def log_text(self) -> str:
        """Everything Triton printed so far (stdout and stderr)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")

    def log_tail(self, lines: int = 60) -> str:
        """The last ``lines`` lines of the log, for error messages."""
        return "\n".join(self.log_text().splitlines()[-lines:])

    def metrics_text(self, timeout: float = 5.0) -> str:
        """The current Prometheus exposition from the metrics port."""
        with urllib.request.urlopen(self.metrics_url, timeout=timeout) as resp:
            return str(resp.read().decode())

    def __repr__(self) -> str:
        state = f"pid={self._proc.pid}" if self._proc is not None else "stopped"
        return f"TritonServer({[str(r) for r in self.model_repositories]}, http={self.http_address}, {state})"


def _is_gone(pid: int) -> bool:
    """True if ``pid`` no longer runs (no such process, or a zombie waiting for a parent that is not us)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return raw[raw.rindex(")") + 2 :].split()[0] in ("Z", "X")
