"""A small TCP proxy on 127.0.0.1 that can cut the network the way a real one fails.

Tests point a client (boto3, libpq) at the proxy instead of the server, then:
- `cut_after(n)`: pass `n` more bytes upstream, then reset every open connection (a
  link that drops mid-transfer);
- `refuse()`: reset every connection and every new one at once (the network is down);
- `restore()`: pass everything again;
- `throttle(bytes_per_s)`: a slow link, so that a job lasts long enough to be met
  mid-way however fast the machine is.
The server behind it keeps running and keeps its state (a restarted moto would forget
its open uploads).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Iterator

from tests.support import pick_free_port

__all__ = ["TcpProxy", "tcp_proxy"]


def _reset(sock: socket.socket) -> None:
    """Close with RST, as a dropped link looks to the peer. The shutdown comes first: a
    pipe thread blocked in `recv` on the socket keeps it open past a bare `close` (the peer
    would never hear, and a catalog session would keep its locks), and wakes it."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


class TcpProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = pick_free_port()
        self._lock = threading.Lock()
        self._budget: int | None = None  # bytes still allowed upstream; None: unlimited
        self._refusing = False
        self._rate: float | None = None  # bytes per second each way; None: as fast as it goes
        self._conns: list[socket.socket] = []
        self._half_closed: set[frozenset[int]] = set()  # pairs one of whose directions ended
        self.bytes_up = 0
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- control ---------------------------------------------------------------------------

    def cut_after(self, n: int) -> None:
        with self._lock:
            self._budget = n

    def throttle(self, bytes_per_s: float | None) -> None:
        with self._lock:
            self._rate = bytes_per_s

    def refuse(self) -> None:
        with self._lock:
            self._refusing = True
            conns, self._conns = self._conns, []
        for c in conns:
            _reset(c)

    def restore(self) -> None:
        with self._lock:
            self._refusing = False
            self._budget = None

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        self.refuse()

    # -- plumbing --------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                refusing = self._refusing
            if refusing:
                _reset(client)
                continue
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                _reset(client)
                continue
            server.settimeout(None)
            with self._lock:
                self._conns += [client, server]
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        """Copy one direction. A peer that closes is passed on as a half-close after the
        bytes already sent (a server that ends its reply with a close must not lose its
        last bytes); a cut, a refusal or a failure resets both sides."""
        try:
            while data := src.recv(65536):
                if upstream:
                    with self._lock:
                        if self._refusing:
                            break
                        if self._budget is not None:
                            if self._budget <= 0:
                                break
                            data = data[: self._budget]
                            self._budget -= len(data)
                        self.bytes_up += len(data)
                dst.sendall(data)
                if self._rate:
                    time.sleep(len(data) / self._rate)
                if upstream and self._budget is not None and self._budget <= 0:
                    break
            else:
                dst.shutdown(socket.SHUT_WR)
                self._ended(src, dst)
                return
        except OSError:
            pass
        self.refuse_one(src, dst)

    def _ended(self, src: socket.socket, dst: socket.socket) -> None:
        """One direction ended cleanly; the second to end closes the pair."""
        pair = frozenset((id(src), id(dst)))  # a closed socket's fileno is -1
        with self._lock:
            if pair not in self._half_closed:
                self._half_closed.add(pair)
                return
            self._half_closed.discard(pair)
            for s in (src, dst):
                with contextlib.suppress(ValueError):
                    self._conns.remove(s)
        for s in (src, dst):
            s.close()

    def refuse_one(self, *socks: socket.socket) -> None:
        for s in socks:
            _reset(s)
            with self._lock, contextlib.suppress(ValueError):
                self._conns.remove(s)


@contextlib.contextmanager
def tcp_proxy(upstream_port: int) -> Iterator[TcpProxy]:
    proxy = TcpProxy(upstream_port)
    try:
        yield proxy
    finally:
        proxy.close()
