"""Why a Triton container exited, in Triton's own words, from the tail of its log.

When a model fails to load at startup Triton exits ("failed to load all models"), and the reason sits in the
log far above its last lines (a wide configuration table follows it), out of reach of the kubelet's
termination message. The operator reads the previous container's log and keeps only the lines that explain.
"""

from __future__ import annotations

import re

_LOAD_FAILED = re.compile(r"failed to load '(?P<model>[^']+)' version (?P<version>\d+): (?P<reason>.*)")
_FATAL = re.compile(r"^error: (?P<reason>.+)$", re.MULTILINE)
MAX_REASON = 300


def _first_line(text: str) -> str:
    """Triton logs messages as quoted strings with escaped newlines; the first line is the useful part."""
    return text.split("\\n", 1)[0].split("\n", 1)[0].rstrip('"').strip()[:MAX_REASON]


def explain_triton_exit(log: str) -> str | None:
    """The models that failed to load (with Triton's reason) and Triton's fatal error; None if the log holds
    neither (then the caller keeps what the kubelet reported)."""
    failures: dict[str, str] = {}
    for line in log.splitlines():
        match = _LOAD_FAILED.search(line)
        if match:
            failures[match["model"]] = (
                f"model '{match['model']}' version {match['version']} failed to load: {_first_line(match['reason'])}"
            )
    fatal = _FATAL.search(log)
    exited = f"Triton exited: {_first_line(fatal['reason'])}" if fatal else None
    if failures:
        return "; ".join(failures.values()) + (f" ({exited})" if exited else "")
    return exited
