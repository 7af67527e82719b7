"""A minimal HTTPS/JSON client for the handful of calls ``up()`` makes (health checks, nodes, service
accounts).

Why not the ``kubernetes`` package: importing it costs about a second and its generated models know nothing
of status-only patches with extended resources; ``up()`` needs five verbs on three paths, with mutual TLS,
over one kept-alive connection.
"""

from __future__ import annotations

import http.client
import json
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class ApiError(RuntimeError):
    """A request that returned an unexpected HTTP status."""

    def __init__(self, method: str, path: str, status: int, body: str) -> None:
        super().__init__(f"{method} {path}: HTTP {status}: {body[:500]}")
        self.status = status


def tls_context(ca: Path | None, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    """A client TLS context trusting ``ca`` (verifying nothing when ``ca`` is None), presenting ``cert``."""
    if ca is None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert), str(key) if key is not None else None)
    return ctx


class HttpsJson:
    """One kept-alive HTTPS connection to ``base_url``, reopened transparently after errors."""

    def __init__(self, base_url: str, context: ssl.SSLContext, timeout: float = 5.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "https" or parts.hostname is None:
            raise ValueError(f"not an https URL: {base_url}")
        self._host = parts.hostname
        self._port = parts.port or 443
        self._context = context
        self._timeout = timeout
        self._conn: http.client.HTTPSConnection | None = None

    def close(self) -> None:
        """Close the connection (a later request opens a new one)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def raw(
        self, method: str, path: str, body: bytes | None = None, content_type: str = "application/json"
    ) -> tuple[int, bytes]:
        """Send one request; return (status, body). Connection errors propagate as OSError."""
        if self._conn is None:
            self._conn = http.client.HTTPSConnection(
                self._host, self._port, context=self._context, timeout=self._timeout
            )
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        try:
            self._conn.request(method, path, body=body, headers=headers)
            resp = self._conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException) as exc:
            self.close()
            raise OSError(f"{method} {path}: {exc}") from exc
        if resp.getheader("Connection", "").lower() == "close":
            self.close()
        return resp.status, data

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        content_type: str = "application/json",
        ok: tuple[int, ...] = (200, 201),
    ) -> Any:
        """Send JSON, expect a status in ``ok``, return the decoded JSON body."""
        payload = None if body is None else json.dumps(body).encode()
        status, data = self.raw(method, path, payload, content_type)
        if status not in ok:
            raise ApiError(method, path, status, data.decode(errors="replace"))
        return json.loads(data) if data else None

    def get_or_none(self, path: str) -> Any:
        """GET ``path``; None when it does not exist (404)."""
        status, data = self.raw("GET", path)
        if status == 404:
            return None
        if status != 200:
            raise ApiError("GET", path, status, data.decode(errors="replace"))
        return json.loads(data)

    def healthy(self, path: str) -> bool:
        """True when ``path`` (a /healthz or /readyz endpoint) answers 200; False on any error."""
        try:
            status, _ = self.raw("GET", path)
        except OSError:
            return False
        return status == 200
