"""What every test server shares: ``with Server(...) as server:`` starts it and stops it, a server dropped while
running is stopped rather than left behind until the interpreter exits, and its process dies with the test run."""

from __future__ import annotations

import contextlib
import ctypes
import signal
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self

PR_SET_PDEATHSIG = 1  # prctl(2)


class ManagedServer(ABC):
    """A process started by :meth:`start` and stopped by :meth:`stop`, usable as a context manager."""

    @property
    @abstractmethod
    def running(self) -> bool: ...

    @abstractmethod
    def start(self) -> Self: ...

    @abstractmethod
    def stop(self) -> int | None: ...

    def __enter__(self) -> Self:
        return self.start() if not self.running else self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            if self.running:
                self.stop()


def die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask the kernel to SIGKILL the child when the Python process that started it dies (even by SIGKILL).

    Without this, a test runner killed by a timeout would leave Triton and its stubs running, holding ports and
    shared memory. The setting survives the wrapper's ``exec`` of tritonserver.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
