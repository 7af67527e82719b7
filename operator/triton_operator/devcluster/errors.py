"""The one exception type of the local cluster, so callers (the CLI, test fixtures) can catch exactly it."""

from __future__ import annotations


class ClusterError(RuntimeError):
    """The local cluster could not be started, reached or stopped; the message says what and why."""
