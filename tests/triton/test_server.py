"""TritonServer itself: loopback-only binding, readiness, measured startup and memory, clean stop, clear errors."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.triton.conftest import GOOD
from triton_operator.testing import TritonServer, TritonServerError

LOOPBACK_HEX = ("0100007F", "0000000000000000FFFF00000100007F")  # 127.0.0.1 in /proc/net/tcp and tcp6
TCP_LISTEN = "0A"


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp*) with a socket listening on ``port``."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].rsplit(":", 1)
            if int(port_hex, 16) == port and fields[3] == TCP_LISTEN:
                found.add(address)
    return found


def test_ready_on_loopback_only(good_server: TritonServer) -> None:
    assert good_server.is_ready()
    assert good_server.is_live()
    for port in (good_server.http_port, good_server.grpc_port, good_server.metrics_port):
        addresses = listening_addresses(port)
        assert addresses, f"nothing listens on {port}"
        assert addresses <= set(LOOPBACK_HEX), f"port {port} listens beyond loopback: {addresses}"


def test_startup_time_and_memory(good_server: TritonServer, record_property: Callable[[str, object], None]) -> None:
    """The numbers the design tracks: seconds to ready with two python models, resident memory with stubs."""
    assert good_server.startup_seconds is not None
    rss_mib = good_server.rss_bytes() / 2**20
    server_mib = good_server.rss_bytes(include_children=False) / 2**20
    record_property("startup_seconds", round(good_server.startup_seconds, 2))
    record_property("rss_mib_total", round(rss_mib))
    record_property("rss_mib_tritonserver", round(server_mib))
    print(f"ready in {good_server.startup_seconds:.2f} s; RSS {rss_mib:.0f} MiB ({server_mib:.0f} MiB tritonserver)")
    # Generous bounds (2 shared cores, other work running): about 2 s and 110 MiB when measured.
    assert good_server.startup_seconds < 60
    assert 10 < server_mib < rss_mib < 1024


def test_stop_leaves_no_process_and_frees_ports(tritonserver_bin: Path) -> None:
    server = TritonServer(GOOD, executable=tritonserver_bin).start()
    pids = server.process_ids()
    ports = (server.http_port, server.grpc_port, server.metrics_port)
    assert len(pids) >= 3, "tritonserver and one stub per model instance"
    code = server.stop()
    assert code == 0, server.log_tail()
    alive = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
    assert not alive, f"processes survived stop(): {alive}"
    for port in ports:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
    assert server.stop() is None  # idempotent


def test_port_taken_is_a_clear_error(tritonserver_bin: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        server = TritonServer(
            GOOD,
            http_port=port,
            model_control_mode="explicit",
            extra_args=["--exit-timeout-secs=1"],
            executable=tritonserver_bin,
        )
        with pytest.raises(TritonServerError, match="already in use"):
            server.start()
    assert not server.running


def test_model_that_cannot_load_stops_startup_in_poll_mode(tritonserver_bin: Path) -> None:
    """With `--model-control-mode=none|poll`, Triton exits at startup when a model fails (--exit-on-error defaults
    to true): in a pod that is a crash loop whose log, not an API, carries the model's error."""
    server = TritonServer(GOOD.parent / "bad", executable=tritonserver_bin)
    with pytest.raises(TritonServerError, match="failed to load all models") as info:
        server.start()
    assert "broken model: initialize() raises on purpose" in str(info.value)
    assert not server.running


def test_flags_the_class_owns_are_rejected() -> None:
    with pytest.raises(ValueError, match="--http-port"):
        TritonServer(GOOD, extra_args=["--http-port=8000"])
    with pytest.raises(ValueError, match="explicit"):
        TritonServer(GOOD, load_models=["identity"])
    with pytest.raises(ValueError, match="not a directory"):
        TritonServer(GOOD / "nonexistent")


def test_urls(good_server: TritonServer) -> None:
    assert good_server.http_url == f"http://127.0.0.1:{good_server.http_port}"
    assert good_server.grpc_address == f"127.0.0.1:{good_server.grpc_port}"
    assert good_server.metrics_url == f"http://127.0.0.1:{good_server.metrics_port}/metrics"
    assert "nv_inference_request_success" in good_server.metrics_text()
