"""A bounded open-loop load generator for Triton: requests at a set rate, whatever the server's speed.

Open loop (arrivals do not wait for answers) is what makes queues grow under overload, as real traffic does; a
closed loop of N clients would slow down with the server and hide the overload from the autoscaler. The number of
requests in flight is bounded, so a stalled server costs at most ``max_in_flight`` sockets, never the machine.

Every request opens its own connection (KServe v2 JSON over HTTP/1.1 with ``Connection: close``): a Service
spreads connections, not requests, so a client that keeps connections alive stays on the replicas that existed
when it connected and never reaches the ones an autoscaler adds.

Runs in its own thread with its own event loop, so a synchronous test can change the rate while it runs.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import aiohttp

__all__ = ["LoadGenerator", "LoadStats"]


@dataclass
class LoadStats:
    """Counts since the generator started (read them with :meth:`LoadGenerator.stats`)."""

    sent: int = 0
    succeeded: int = 0
    failed: int = 0
    dropped: int = 0  # not sent: max_in_flight reached
    latencies: list[float] = field(default_factory=list)  # seconds, of succeeded requests
    last_error: str | None = None


class LoadGenerator:
    """``LoadGenerator(address, model).start(rate)``; ``set_rate(r)``; ``stop()`` returns the stats.

    ``address`` is ``host:port`` of Triton's HTTP endpoint (a Service's ClusterIP:8000 spreads the load over its
    pods, as kube-proxy does). Each request sends a 1x4 FP32 tensor as ``INPUT0`` (the test models' input).
    """

    BODY: ClassVar[dict[str, Any]] = {"inputs": [{"name": "INPUT0", "shape": [1, 4], "datatype": "FP32", "data": [1.0, 2.0, 3.0, 4.0]}]}

    def __init__(self, address: str, model: str, *, max_in_flight: int = 256, timeout: float = 30.0) -> None:
        self.address = address
        self.model = model
        self.max_in_flight = max_in_flight
        self.timeout = timeout
        self._rate = 0.0
        self._stats = LoadStats()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, rate: float) -> LoadGenerator:
        self._rate = rate
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="load", daemon=True)
        self._thread.start()
        return self

    def set_rate(self, rate: float) -> None:
        """Requests per second from now on (0 pauses)."""
        self._rate = rate

    def stats(self) -> LoadStats:
        with self._lock:
            return LoadStats(
                self._stats.sent,
                self._stats.succeeded,
                self._stats.failed,
                self._stats.dropped,
                list(self._stats.latencies),
                self._stats.last_error,
            )

    def stop(self) -> LoadStats:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout + 5)
        return self.stats()

    async def _run(self) -> None:
        connector = aiohttp.TCPConnector(force_close=True, limit=self.max_in_flight)
        client = aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout))
        in_flight: set[asyncio.Task[None]] = set()
        try:
            next_at = time.monotonic()
            while not self._stop.is_set():
                rate = self._rate
                if rate <= 0:
                    await asyncio.sleep(0.05)
                    next_at = time.monotonic()
                    continue
                next_at += 1.0 / rate
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
                if len(in_flight) >= self.max_in_flight:
                    with self._lock:
                        self._stats.dropped += 1
                    continue
                task = asyncio.create_task(self._one(client))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            await asyncio.gather(*in_flight, return_exceptions=True)
        finally:
            await client.close()

    async def _one(self, client: aiohttp.ClientSession) -> None:
        started = time.monotonic()
        with self._lock:
            self._stats.sent += 1
        try:
            url = f"http://{self.address}/v2/models/{self.model}/infer"
            async with client.post(url, json=self.BODY) as response:
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status}: {(await response.text())[:200]}")
                await response.read()
        except Exception as error:  # counted, never raised: the load goes on
            with self._lock:
                self._stats.failed += 1
                self._stats.last_error = f"{type(error).__name__}: {error}"
            return
        with self._lock:
            self._stats.succeeded += 1
            self._stats.latencies.append(time.monotonic() - started)
