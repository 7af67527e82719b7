"""Triton's model-repository API, thin and async: one replica (pod) at a time, over ``tritonclient.http.aio``.

The operator asks many pods on one event loop, so the client is async (aiohttp underneath) and every call has a
bound: a replica that does not answer costs at most ``timeout`` seconds, never a stuck reconcile. Loads get their
own, longer bound (``load_timeout``) because Triton answers a load request only once the model has loaded, which
takes minutes for large GPU models. A load cut off by its timeout goes on inside Triton; the next observation
sees it LOADING.

Errors keep Triton's words, prefixed with the replica's address and what was asked, and raise as
:class:`TritonRequestFailed` (Triton answered with an error) or :class:`TritonUnreachable` (no answer).
:func:`observe` never raises for either: an unreachable replica becomes ``ReplicaModels(reachable=False)``.

Clients are always closed (``async with``): Triton's shutdown waits up to --exit-timeout-secs for open
keep-alive connections, so a leaked client slows every pod termination.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Iterable, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

import aiohttp
import tritonclient.http.aio as triton_http
from tritonclient.utils import InferenceServerException

from triton_operator.policy.models import Action, Load, ModelEntry, ReplicaModels, Unload

T = TypeVar("T")

DEFAULT_HTTP_PORT = 8000
#: Seconds for one ordinary request (index, readiness, config, unload): a healthy Triton answers in milliseconds.
DEFAULT_TIMEOUT = 5.0
#: Seconds Triton may take to answer a load request, which returns only when the model has loaded (or failed).
DEFAULT_LOAD_TIMEOUT = 900.0
#: Concurrent replicas :func:`observe_all` asks at once.
DEFAULT_CONCURRENCY = 16

# Triton's answer both to an unknown model name and to a config it cannot parse or validate.
_POLL_FAILED = "failed to poll from model repository"

__all__ = [
    "DEFAULT_HTTP_PORT",
    "DEFAULT_LOAD_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "TritonError",
    "TritonReplica",
    "TritonRequestFailed",
    "TritonUnreachable",
    "observe",
    "observe_all",
]


class TritonError(Exception):
    """A request to one Triton replica did not succeed; ``str()`` says where, what was asked and why."""


class TritonUnreachable(TritonError):
    """No answer: connection refused or reset, or no reply within the timeout."""


class TritonRequestFailed(TritonError):
    """Triton answered with an error. ``status`` is its HTTP status ("400", "404", "500"); ``triton_message``
    is Triton's own text, unchanged."""

    def __init__(self, message: str, status: str | None, triton_message: str) -> None:
        super().__init__(message)
        self.status = status
        self.triton_message = triton_message


def host_port(host: str, port: int) -> str:
    """``host:port``, with an IPv6 pod IP bracketed."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def _text(value: Any) -> str | None:
    """Triton leaves out or empties fields it has nothing for; both become None."""
    return str(value) if value not in (None, "") else None


class TritonReplica:
    """One Triton server's HTTP endpoint, used as ``async with TritonReplica(host) as replica: ...``.

    The aiohttp session is made on entry (it needs the running event loop) and closed on exit.
    """

    def __init__(
        self,
        host: str,
        port: int = DEFAULT_HTTP_PORT,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        load_timeout: float = DEFAULT_LOAD_TIMEOUT,
    ) -> None:
        self.address = host_port(host, port)
        self.timeout = timeout
        self.load_timeout = load_timeout
        self._client: Any = None

    async def __aenter__(self) -> Self:
        # aiohttp's own total timeout is only a backstop: each call is bounded by asyncio.timeout below.
        self._client = triton_http.InferenceServerClient(
            self.address, conn_limit=4, conn_timeout=max(self.timeout, self.load_timeout) + 5.0
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connections (idempotent)."""
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def _call(self, what: str, request: Awaitable[T], timeout: float) -> T:
        """Run one request with its bound, turning every failure into a :class:`TritonError` that says which
        replica, what was asked, and Triton's or the network's own words."""
        try:
            async with asyncio.timeout(timeout):
                return await request
        except InferenceServerException as exc:
            text = str(exc.message() or "").strip()
            status = str(exc.status()) if exc.status() is not None else None
            shown = f"[{status}] {text}" if status else text
            raise TritonRequestFailed(f"Triton at {self.address}: {what}: {shown}", status, text) from exc
        except TimeoutError as exc:
            raise TritonUnreachable(f"Triton at {self.address} did not answer {what} within {timeout:g} s") from exc
        except aiohttp.ClientConnectorError as exc:
            reason = (exc.os_error.strerror or str(exc.os_error)) if exc.os_error else str(exc)
            raise TritonUnreachable(f"cannot connect to Triton at {self.address}: {reason}") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise TritonUnreachable(
                f"Triton at {self.address}: {what}: {type(exc).__name__}: {exc or 'connection lost'}"
            ) from exc
        except ValueError as exc:  # an answer that is not the JSON Triton sends
            raise TritonRequestFailed(
                f"Triton at {self.address}: {what}: unreadable answer: {exc}", None, str(exc)
            ) from exc

    def _session(self) -> Any:
        if self._client is None:
            raise RuntimeError("TritonReplica is used outside `async with`")
        return self._client

    async def server_live(self) -> bool:
        """``/v2/health/live``: the process serves requests."""
        return bool(await self._call("the liveness check", self._session().is_server_live(), self.timeout))

    async def server_ready(self) -> bool:
        """``/v2/health/ready``: in explicit mode also false after any model failed to load, until it loads."""
        return bool(await self._call("the readiness check", self._session().is_server_ready(), self.timeout))

    async def model_ready(self, name: str, version: str = "") -> bool:
        """``/v2/models/<name>[/versions/<v>]/ready``."""
        request = self._session().is_model_ready(name, version)
        return bool(await self._call(f"readiness of model '{name}'", request, self.timeout))

    async def index(self) -> tuple[ModelEntry, ...]:
        """The repository index: every model in the repository (one row per version Triton has tried), with
        Triton's state and, for a failed load, its reason."""
        rows = await self._call("the repository index", self._session().get_model_repository_index(), self.timeout)
        if not isinstance(rows, list):
            raise TritonRequestFailed(f"Triton at {self.address}: the repository index is not a list", None, "")
        return tuple(
            ModelEntry(
                name=str(row.get("name", "")),
                version=_text(row.get("version")),
                state=_text(row.get("state")),
                reason=_text(row.get("reason")),
            )
            for row in rows
            if isinstance(row, Mapping) and row.get("name")
        )

    async def config(self, name: str) -> dict[str, Any]:
        """The model's effective config as Triton runs it (complete: what :func:`merge_config` needs). A model
        that is not loaded gives 404 ``Request for unknown model: ...``."""
        config = await self._call(f"the config of model '{name}'", self._session().get_model_config(name), self.timeout)
        if not isinstance(config, dict):
            raise TritonRequestFailed(f"Triton at {self.address}: the config of '{name}' is not an object", None, "")
        return config

    async def load(self, name: str, config: Mapping[str, Any] | str | None = None) -> None:
        """Load or reload ``name``; returns once Triton has loaded it, raises with Triton's reason if it failed.

        ``config`` replaces the model's whole config (build it with ``policy.models.merge_config``). Triton
        answers both an unknown name and an unusable config with "failed to poll from model repository"; the
        index tells which, so the error says it.
        """
        body = json.dumps(config, sort_keys=True) if isinstance(config, Mapping) else config
        try:
            await self._call(
                f"loading model '{name}'", self._session().load_model(name, config=body), self.load_timeout
            )
        except TritonRequestFailed as exc:
            if _POLL_FAILED not in exc.triton_message:
                raise
            raise TritonRequestFailed(
                f"{exc}: {await self._why_poll_failed(name, body is not None)}", exc.status, exc.triton_message
            ) from exc

    async def _why_poll_failed(self, name: str, with_config: bool) -> str:
        try:
            known = any(entry.name == name for entry in await self.index())
        except TritonError:
            known = True  # cannot tell; say what is possible
        if not known:
            return f"the model repository has no model named '{name}'"
        if with_config:
            return (
                "the model is in the repository, so Triton could not use the config sent with the load request "
                "(e.g. a preferred batch size above max_batch_size); Triton's log names the field"
            )
        return "the model's config.pbtxt in the repository is invalid; Triton's log names the field"

    async def unload(self, name: str) -> None:
        """Ask Triton to unload ``name``. It answers at once and unloads in the background (the index shows
        UNLOADING, then UNAVAILABLE "unloaded"); unloading a model that is not loaded is not an error."""
        await self._call(f"unloading model '{name}'", self._session().unload_model(name), self.timeout)

    async def perform(self, action: Action) -> None:
        """Carry out one planned action (``policy.models.plan_actions``)."""
        if isinstance(action, Load):
            await self.load(action.name, action.config)
        elif isinstance(action, Unload):
            await self.unload(action.name)
        else:  # pragma: no cover - Action is a closed union
            raise TypeError(f"not an action: {action!r}")


async def observe(
    pod: str,
    host: str,
    *,
    port: int = DEFAULT_HTTP_PORT,
    timeout: float = DEFAULT_TIMEOUT,
    load_errors: Mapping[str, str] | None = None,
) -> ReplicaModels:
    """One replica's models, or why it could not say. Never raises for a replica that refuses, hangs, drops the
    connection or answers garbage: that is ``reachable=False`` with the reason in ``error``.

    ``load_errors`` (the caller's record of failed loads on this pod) is passed through for the reducer.
    """
    errors = dict(load_errors or {})
    try:
        async with TritonReplica(host, port, timeout=timeout) as replica:
            entries = await replica.index()
    except TritonError as exc:
        return ReplicaModels(pod, reachable=False, error=str(exc), load_errors=errors)
    except Exception as exc:  # observing must not take the reconcile down with it
        return ReplicaModels(
            pod,
            reachable=False,
            error=f"asking Triton at {host_port(host, port)}: {type(exc).__name__}: {exc}",
            load_errors=errors,
        )
    return ReplicaModels(pod, reachable=True, error=None, entries=entries, load_errors=errors)


async def observe_all(
    targets: Iterable[tuple[str, str]],
    *,
    port: int = DEFAULT_HTTP_PORT,
    timeout: float = DEFAULT_TIMEOUT,
    concurrency: int = DEFAULT_CONCURRENCY,
    load_errors: Mapping[str, Mapping[str, str]] | None = None,
) -> list[ReplicaModels]:
    """:func:`observe` for many ``(pod, host)`` pairs at once (at most ``concurrency`` in flight), in input order.
    A fleet's observation takes about one ``timeout`` at worst, however many replicas hang."""
    limit = asyncio.Semaphore(max(1, concurrency))
    errors = load_errors or {}

    async def one(pod: str, host: str) -> ReplicaModels:
        async with limit:
            return await observe(pod, host, port=port, timeout=timeout, load_errors=errors.get(pod))

    return list(await asyncio.gather(*(one(pod, host) for pod, host in targets)))
