"""What every test server shares: ``with Server(...) as server:`` starts it and stops it, and a server dropped
while running is stopped rather than left behind until the interpreter exits."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self


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
