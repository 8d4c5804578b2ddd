"""Slack's end of Socket Mode: a local WebSocket server the app connects to.

`apps.connections.open` (on the fake Web API) hands out this server's ``ws://`` URL; the
server greets each connection with ``hello`` as Slack does, sends envelopes (a slash
command, an event) and records what the app sends back: the acks.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.server import Server, ServerConnection, serve

from tests.support import pick_free_port
from tests.support.slack import APP_ID


class FakeSocketMode:
    def __init__(self) -> None:
        self.port = pick_free_port()
        self.received: list[dict[str, Any]] = []
        self.connections = 0
        self._live: list[ServerConnection] = []
        self._cond = threading.Condition()
        self._server: Server | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/link/?ticket={uuid.uuid4().hex}"

    def start(self) -> FakeSocketMode:
        self._server = serve(self._handle, "127.0.0.1", self.port)
        threading.Thread(target=self._server.serve_forever, name="socket-mode", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()

    def _handle(self, ws: ServerConnection) -> None:
        ws.send(
            json.dumps(
                {
                    "type": "hello",
                    "num_connections": 1,
                    "debug_info": {"host": "fake", "approximate_connection_time": 3600},
                    "connection_info": {"app_id": APP_ID},
                }
            )
        )
        with self._cond:
            self.connections += 1
            self._live.append(ws)
            self._cond.notify_all()
        try:
            for message in ws:
                with self._cond:
                    self.received.append(json.loads(message))
                    self._cond.notify_all()
        except ConnectionClosed:
            pass
        finally:
            with self._cond:
                self._live.remove(ws)

    def wait_connected(self, timeout: float = 20.0, count: int = 1) -> None:
        """Until `count` connections are open (several replicas each open one)."""
        self._wait(lambda: len(self._live) >= count, timeout, "the app never connected")

    def send(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        accepts_response_payload: bool,
        to: int = -1,
    ) -> str:
        """Deliver one envelope on a live connection (the newest, or the `to`th open);
        returns its envelope_id."""
        envelope_id = str(uuid.uuid4())
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "accepts_response_payload": accepts_response_payload,
            "payload": payload,
        }
        with self._cond:
            ws = self._live[to]
        ws.send(json.dumps(envelope))
        return envelope_id

    def wait_for_ack(self, envelope_id: str, timeout: float = 10.0) -> dict[str, Any]:
        found: list[dict[str, Any]] = []

        def acked() -> bool:
            found[:] = [m for m in self.received if m.get("envelope_id") == envelope_id]
            return bool(found)

        self._wait(acked, timeout, f"no ack for envelope {envelope_id}")
        return found[0]

    def _wait(self, ready: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not ready():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{what} within {timeout}s; received {self.received}")
                self._cond.wait(remaining)


@pytest.fixture
def socket_mode() -> Iterator[FakeSocketMode]:
    server = FakeSocketMode().start()
    try:
        yield server
    finally:
        server.stop()
