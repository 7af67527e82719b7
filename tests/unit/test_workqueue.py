"""The work queue folds bursts, never runs a key twice at once, and backs off failing keys."""

from __future__ import annotations

import asyncio

import pytest

from triton_operator.workqueue import MAX_DELAY_SECONDS, WorkQueue


def test_duplicate_adds_fold_into_one() -> None:
    async def scenario() -> list[str]:
        queue: WorkQueue[str] = WorkQueue()
        for key in ["a", "b", "a", "a", "b"]:
            queue.add(key)
        got = [await queue.get(), await queue.get()]
        assert len(queue) == 2  # both active
        return got

    assert asyncio.run(scenario()) == ["a", "b"]


def test_a_key_changed_while_active_runs_again_after_done() -> None:
    async def scenario() -> None:
        queue: WorkQueue[str] = WorkQueue()
        queue.add("a")
        key = await queue.get()
        queue.add("a")  # an event during the reconcile
        assert queue._queue.empty()  # not handed to a second worker
        queue.done(key)
        assert await asyncio.wait_for(queue.get(), 1) == "a"

    asyncio.run(scenario())


@pytest.mark.parametrize(("failures", "delay"), [(1, 0.5), (2, 1.0), (3, 2.0), (30, MAX_DELAY_SECONDS)])
def test_backoff_grows_and_is_capped(failures: int, delay: float) -> None:
    queue: WorkQueue[str] = WorkQueue()
    delays = [queue.retry_delay("a") for _ in range(failures)]
    assert delays[-1] == delay
    queue.forget("a")
    assert queue.retry_delay("a") == 0.5


def test_add_after_keeps_one_timer_per_key_the_earliest() -> None:
    """A key reconciled often asks for a resync each time; the timers must not pile up, or each would reconcile
    it again and the resyncs would multiply."""

    async def scenario() -> list[str]:
        queue: WorkQueue[str] = WorkQueue()
        for delay in (0.3, 0.05, 0.2, 0.1):
            queue.add_after("a", delay)
        assert len(queue._timers) == 1
        got = [await asyncio.wait_for(queue.get(), 1)]
        queue.done("a")
        await asyncio.sleep(0.4)  # the later timers were dropped: nothing more arrives
        assert queue._queue.empty()
        return got

    assert asyncio.run(scenario()) == ["a"]
