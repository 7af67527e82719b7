"""``python -m triton_operator.testing REPO [triton args...]``: run a loopback Triton by hand and measure it.

The same :class:`TritonServer` the tests use, so a failing test's server can be reproduced and inspected
interactively; it prints the numbers the design tracks (time to ready, resident memory with stubs).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections.abc import Sequence
from types import FrameType
from typing import cast

from triton_operator.testing.triton_server import ControlMode, TritonServer


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m triton_operator.testing REPO [triton args...]``: start, report, wait for Ctrl-C.

    Prints the time to ready and the resident memory (Triton plus stubs), the numbers the design tracks.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(main.__doc__)
        return 0 if args else 2
    mode: ControlMode = "poll"
    for arg in args[1:]:
        if arg.startswith("--model-control-mode="):
            value = arg.split("=", 1)[1]
            if value not in ("none", "poll", "explicit"):
                print(f"unknown --model-control-mode {value!r}", file=sys.stderr)
                return 2
            mode = cast(ControlMode, value)
    extra = [a for a in args[1:] if not a.startswith("--model-control-mode=")]
    # SIGTERM (kill, a CI timeout) must stop Triton as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    with TritonServer(args[0], extra_args=extra, model_control_mode=mode) as server:
        time.sleep(1.0)  # let transient auto-complete stubs exit before measuring
        print(
            f"{server.wait_for} in {server.startup_seconds:.2f} s; RSS {server.rss_bytes() / 2**20:.0f} MiB "
            f"(tritonserver {server.rss_bytes(include_children=False) / 2**20:.0f} MiB, "
            f"{len(server.process_ids()) - 1} stub processes)\n"
            f"http {server.http_url}  grpc {server.grpc_address}  metrics {server.metrics_url}\n"
            f"log {server.log_path}",
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            while server.running:
                time.sleep(0.5)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
