"""A de-duplicating work queue with per-key backoff, in the spirit of client-go's workqueue.

Events for one InferenceService (its own, its Deployment's, each pod's) arrive in bursts; the queue folds them
into one reconcile, never runs one key twice at once, and spaces out retries of a failing key so an error never
becomes a hot loop.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

BASE_DELAY_SECONDS = 0.5
MAX_DELAY_SECONDS = 60.0


class WorkQueue(Generic[K]):
    """Keys waiting to be reconciled."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[K] = asyncio.Queue()
        self._pending: set[K] = set()
        self._active: set[K] = set()
        self._dirty: set[K] = set()
        self._failures: Counter[K] = Counter()
        self._timers: dict[K, asyncio.TimerHandle] = {}

    def add(self, key: K) -> None:
        """Ask for a reconcile; a key already waiting is not queued twice, one running is re-run after."""
        if key in self._active:
            self._dirty.add(key)
        elif key not in self._pending:
            self._pending.add(key)
            self._queue.put_nowait(key)

    def add_after(self, key: K, delay: float) -> None:
        """Ask for a reconcile later (retries, periodic checks). One timer per key, the earliest asked for: a key
        reconciled often does not pile up timers, each of which would reconcile it again."""
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        timer = self._timers.get(key)
        if timer is not None and not timer.cancelled() and timer.when() <= due:
            return
        if timer is not None:
            timer.cancel()
        self._timers[key] = loop.call_at(due, self._fire, key)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key)

    async def get(self) -> K:
        """The next key; the caller must call ``done`` when finished with it."""
        key = await self._queue.get()
        self._pending.discard(key)
        self._active.add(key)
        return key

    def done(self, key: K) -> None:
        """Finished with a key; if it changed meanwhile, queue it again."""
        self._active.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    def retry_delay(self, key: K) -> float:
        """Exponential backoff for a key that failed: 0.5 s, 1 s, 2 s, ... at most 60 s."""
        self._failures[key] += 1
        return float(min(BASE_DELAY_SECONDS * 2 ** (self._failures[key] - 1), MAX_DELAY_SECONDS))

    def forget(self, key: K) -> None:
        """A key succeeded: its next failure starts the backoff afresh."""
        self._failures.pop(key, None)

    def __len__(self) -> int:
        return len(self._pending) + len(self._active)
