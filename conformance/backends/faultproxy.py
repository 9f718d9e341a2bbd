"""A TCP proxy on loopback that can make the service behind it fail for a moment (SPEC HB-5).

An executor's backend is usually a network service (a broker, a queue, an API). Put this proxy between
the executor and the service and the suite can inject the two outages a network really produces:

* ``cut``: every relayed connection is closed and new ones are refused (nothing listens), as when the
  service restarts or a load balancer drops it;
* ``stall``: connections are accepted and kept, but not one byte moves in either direction, as behind a
  half-dead peer or a black-holed route -- the fault that turns a missing client timeout into a hang.

``heal`` (the end of either) listens again and relays normally. Nothing on the service's side is lost:
whoever talks to the service directly (a worker) is unaffected. The proxy is a thread of the process
that owns it; ``fault()`` is the context manager a ``BackendDriver.transient_error()`` wraps.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from collections.abc import Iterator

MODES = ("pass", "cut", "stall")


class FaultProxy:
    """Relays 127.0.0.1:``port`` to ``target``; ``set_mode`` switches between pass, cut and stall."""

    def __init__(self, target_host: str, target_port: int, port: int = 0):
        self.target = (target_host, target_port)
        self.mode = "pass"
        self._lock = threading.Lock()
        self._selector = selectors.DefaultSelector()
        self._pairs: dict[socket.socket, socket.socket] = {}  # each end -> its peer
        self._listener: socket.socket | None = None
        self.port = port
        self._listen()
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._stopped = False
        self._flowing = threading.Event()
        self._flowing.set()
        self._thread = threading.Thread(target=self._serve, name=f"fault-proxy-{self.port}", daemon=True)
        self._thread.start()

    # -- control ------------------------------------------------------------------------------------
    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def set_mode(self, mode: str) -> None:
        """Switch now; returns once the switch took effect (cut: connections closed, port refusing)."""
        if mode not in MODES:
            raise ValueError(f"fault proxy mode {mode!r}: expected one of {MODES}")
        with self._lock:
            if mode == self.mode:
                return
            if mode == "cut":
                self._close_listener()
                for sock in list(self._pairs):
                    self._drop(sock)
            elif self.mode == "cut":
                self._listen()
            self.mode = mode
            if mode == "stall":
                self._flowing.clear()
            else:
                self._flowing.set()
        self._wake()

    @contextlib.contextmanager
    def fault(self, mode: str) -> Iterator[None]:
        """``mode`` while the context is open, ``pass`` after it (also when the body raised)."""
        self.set_mode(mode)
        try:
            yield
        finally:
            self.set_mode("pass")

    def close(self) -> None:
        with self._lock:
            self._stopped = True
            self._close_listener()
            for sock in list(self._pairs):
                self._drop(sock)
            self._flowing.set()
        self._wake()
        self._thread.join(timeout=5)
        for sock in (self._wake_r, self._wake_w):
            sock.close()

    # -- the relay ----------------------------------------------------------------------------------
    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))  # the same port again after a cut: clients reconnect there
        listener.listen(128)
        listener.setblocking(False)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._selector.register(listener, selectors.EVENT_READ, "accept")

    def _close_listener(self) -> None:
        if self._listener is not None:
            self._selector.unregister(self._listener)
            self._listener.close()
            self._listener = None

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _drop(self, sock: socket.socket) -> None:
        peer = self._pairs.pop(sock, None)
        for end in (sock, peer):
            if end is None:
                continue
            self._pairs.pop(end, None)
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(end)
            end.close()

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            client, _ = self._listener.accept()
        except OSError:
            return
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()  # the service itself is down: the client sees its connection end
            return
        for end, peer in ((client, upstream), (upstream, client)):
            end.setblocking(False)
            self._pairs[end] = peer
            self._selector.register(end, selectors.EVENT_READ, "relay")

    def _relay(self, sock: socket.socket) -> None:
        peer = self._pairs.get(sock)
        if peer is None:
            return
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(sock)
            return
        try:
            peer.setblocking(True)
            peer.sendall(data)
            peer.setblocking(False)
        except OSError:
            self._drop(sock)

    def _serve(self) -> None:
        while True:
            self._flowing.wait()  # cleared during a stall: bytes wait in kernel buffers, clients in the backlog
            events = self._selector.select(timeout=None)
            with self._lock:
                if self._stopped:
                    return
                for key, _ in events:
                    if key.data == "wake":
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(4096)
                    elif self.mode == "stall":
                        break
                    elif key.data == "accept" and self._listener is not None:
                        self._accept()
                    elif key.data == "relay":
                        self._relay(key.fileobj)  # type: ignore[arg-type]
