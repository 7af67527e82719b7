"""Starting, recognising and stopping the cluster's long-lived processes.

The processes must outlive the Python process that starts them (``triton-operator dev up`` exits right
after), so each runs in its own session (its own process group, no controlling terminal: Ctrl-C in the shell
that ran ``dev up`` does not reach it) with output in a log file. ``down()`` may run in another process, so
what it needs to find them again is plain data (:class:`ProcessRecord`) stored in state.json. A bare pid
could have been reused by an unrelated process after a reboot or a crash, so a record also carries the
process's start time from /proc and is only ever signalled when both match.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ProcessRecord:
    """Enough about a started process to find it again from another Python process."""

    name: str
    pid: int
    #: /proc/<pid>/stat field 22 (ticks after boot): tells this process from a later one with the same pid
    start_ticks: int
    log: str
    argv: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable form for state.json."""
        data = asdict(self)
        data["argv"] = list(self.argv)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProcessRecord:
        """The inverse of :meth:`to_json`."""
        return cls(
            name=str(data["name"]),
            pid=int(data["pid"]),
            start_ticks=int(data["start_ticks"]),
            log=str(data["log"]),
            argv=tuple(str(a) for a in data["argv"]),
        )


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start ticks) of ``pid`` from /proc, or None if there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) is in parentheses and may itself contain spaces or parentheses.
    fields = raw[raw.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def start_ticks_of(pid: int) -> int:
    """The start time of a live process, used to recognise it later."""
    stat = _proc_stat(pid)
    if stat is None:
        raise ProcessLookupError(pid)
    return stat[1]


def is_alive(record: ProcessRecord) -> bool:
    """True if the recorded process still runs (a zombie waiting to be reaped counts as dead)."""
    stat = _proc_stat(record.pid)
    return stat is not None and stat[0] not in ("Z", "X") and stat[1] == record.start_ticks


def start_process(
    name: str,
    argv: Sequence[str],
    log_path: Path,
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], ProcessRecord]:
    """Start ``argv`` detached (own session), stdout and stderr appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=dict(env) if env is not None else None,
            start_new_session=True,
            close_fds=True,
        )
    try:
        ticks = start_ticks_of(proc.pid)
    except ProcessLookupError:  # died (and was reaped) already; is_alive() will say so
        ticks = -1
    return proc, ProcessRecord(name, proc.pid, ticks, str(log_path), tuple(argv))


def _reap(pid: int, popens: Mapping[int, subprocess.Popen[bytes]]) -> None:
    """Collect the exit status of our own children so they do not linger as zombies."""
    proc = popens.get(pid)
    if proc is not None:
        proc.poll()
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _signal_group(record: ProcessRecord, sig: signal.Signals) -> None:
    # start_new_session=True made the process the leader of a group whose id is its pid; signalling the group
    # also reaches anything it forked.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(record.pid, sig)


def stop_processes(
    records: Iterable[ProcessRecord],
    *,
    grace_seconds: float = 3.0,
    popens: Mapping[int, subprocess.Popen[bytes]] | None = None,
) -> list[ProcessRecord]:
    """SIGTERM the process groups of the live ``records``, SIGKILL what is left after ``grace_seconds``.

    Returns the records that are still alive at the end (empty unless something could not be killed).
    """
    popens = popens or {}
    records = list(records)
    for record in records:  # already dead (killed by another process) but not yet reaped by us, its parent
        _reap(record.pid, popens)
    live = [r for r in records if is_alive(r)]
    for record in live:
        _signal_group(record, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    killed = False
    while live:
        for record in live:
            _reap(record.pid, popens)
        live = [r for r in live if is_alive(r)]
        if not live:
            break
        if time.monotonic() > deadline:
            if killed:
                break
            for record in live:
                _signal_group(record, signal.SIGKILL)
            killed = True
            deadline = time.monotonic() + 5.0
        time.sleep(0.05)
    return live


def log_tail(path: Path | str, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file, for error messages."""
    try:
        with Path(path).open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read().decode(errors="replace")
    except OSError as exc:
        return f"(no log: {exc})"
    return "\n".join(data.splitlines()[-lines:])


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 right now.

    All sockets are held open until every port is chosen, so the ports are distinct; another process can still
    take one before our component binds it, which the caller handles by retrying with new ports.
    """
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()
