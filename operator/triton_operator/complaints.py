"""A problem that persists across retries is logged when it starts or changes, not at every retry: an API server
that stays away for a minute is one line, not sixty."""

from __future__ import annotations

import logging


class Complaint:
    """The last problem said; ``say`` logs a warning only when the message differs from it."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._said = ""

    def say(self, message: str) -> None:
        if message != self._said:
            self._logger.warning("%s", message)
            self._said = message

    def clear(self) -> None:
        """The problem is over: the next one is said again, even if it is the same."""
        self._said = ""
