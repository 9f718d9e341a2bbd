"""The fault proxy behind the Celery driver (SPEC HB-5): relays, cuts and stalls, on real sockets."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator

import pytest

from conformance.backends.faultproxy import FaultProxy

#: generous: each wait ends as soon as the bytes arrive; only a broken proxy waits this long
BUDGET = 30.0
#: how long a stalled connection is watched for bytes it must not deliver
WINDOW = 0.5


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(4096):
            self.request.sendall(data)


@pytest.fixture
def echo_proxy() -> Iterator[FaultProxy]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proxy = FaultProxy("127.0.0.1", server.server_address[1])
    try:
        yield proxy
    finally:
        proxy.close()
        server.shutdown()
        server.server_close()


def _roundtrip(port: int, payload: bytes = b"ping") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=BUDGET) as sock:
        sock.sendall(payload)
        return sock.recv(4096)


def test_relays_in_pass_mode(echo_proxy: FaultProxy) -> None:
    assert _roundtrip(echo_proxy.port) == b"ping"


def test_cut_closes_open_connections_and_refuses_new_ones_until_healed(echo_proxy: FaultProxy) -> None:
    sock = socket.create_connection(("127.0.0.1", echo_proxy.port), timeout=BUDGET)
    sock.sendall(b"a")
    assert sock.recv(16) == b"a"
    with echo_proxy.fault("cut"):
        assert sock.recv(16) == b""  # the relayed connection was closed
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", echo_proxy.port), timeout=BUDGET)
    sock.close()
    assert _roundtrip(echo_proxy.port) == b"ping"  # the same port works again


def test_stall_accepts_but_moves_no_bytes_then_delivers_after_heal(echo_proxy: FaultProxy) -> None:
    sock = socket.create_connection(("127.0.0.1", echo_proxy.port), timeout=BUDGET)
    echo_proxy.set_mode("stall")
    late = socket.create_connection(("127.0.0.1", echo_proxy.port), timeout=BUDGET)  # the kernel accepts
    sock.sendall(b"held")
    sock.settimeout(WINDOW)
    with pytest.raises(TimeoutError):
        sock.recv(16)
    echo_proxy.set_mode("pass")
    sock.settimeout(BUDGET)
    assert sock.recv(16) == b"held"  # nothing was lost, only delayed
    late.sendall(b"x")
    late.settimeout(BUDGET)
    assert late.recv(16) == b"x"
    sock.close()
    late.close()


def test_unknown_mode_is_refused(echo_proxy: FaultProxy) -> None:
    with pytest.raises(ValueError, match="expected one of"):
        echo_proxy.set_mode("flaky")
