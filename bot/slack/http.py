"""Atlas's HTTP endpoint: POST /slack/events, GET /healthz and GET /metrics, served by
waitress with bounds an attacker on the network cannot push past.

- A body over `MAX_BODY` is refused (413) from its Content-Length, before it is read,
  and a chunked one as soon as it passes the bound: Slack's own requests are a few KiB.
- A request must arrive whole within `REQUEST_DEADLINE_S`, and an idle connection is
  closed after `IDLE_S`: slow clients cannot hold the connection slots. waitress reads
  requests on its event loop and hands only whole ones to its threads, so health keeps
  answering while slow connections are open (up to `CONNECTIONS`).
- A Slack request's signature is checked before anything parses its body, and a signed
  body that is not what Slack sends is a 400: never a 500 with a traceback in the log.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from bot.errors import AtlasError
from bot.services import Services
from bot.version import version

log = logging.getLogger(__name__)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

MAX_BODY = 1 << 20  # bytes
REQUEST_DEADLINE_S = 10  # from a request's first byte to its last
IDLE_S = 30  # a kept-alive connection with no request
CONNECTIONS = 1000  # open at once; more wait in the listen queue
THREADS = 8


def malformed(body: bytes, content_type: str) -> str | None:
    """Why a signed body is not one Slack sends, or None. Pure: Bolt gets only bodies
    whose shape it can read (a JSON object, or a form whose `payload` is one)."""
    kind = content_type.split(";", 1)[0].strip().lower()
    try:
        text = body.decode("utf-8")
        if kind == "application/json":
            return None if isinstance(json.loads(text), dict) else "a JSON body that is no object"
        if kind != "application/x-www-form-urlencoded":
            return f"a body of type {kind or 'none'!r}"
        form = parse_qs(text, strict_parsing=False, max_num_fields=1000)
        if "payload" in form and not isinstance(json.loads(form["payload"][0]), dict):
            return "a payload that is no JSON object"
    except (UnicodeDecodeError, ValueError, RecursionError):  # nested past Python's depth
        return "a body that does not parse"
    return None


def signed(body: bytes, stamp: str, signature: str, secret: bytes, now: float) -> bool:
    """Slack's v0 signature over the raw bytes, from the last five minutes. Pure; the
    bytes need not be text (slack_sdk's verifier would raise on those)."""
    # a stamp of thousands of digits would make int() raise; a signature not in ASCII
    # would make compare_digest raise: either is only a bad signature
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12 and signature.isascii()):
        return False
    if abs(now - int(stamp)) > 300:
        return False
    base = b"v0:" + stamp.encode() + b":" + body
    expected = "v0=" + hmac.new(secret, base, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature)


def one_line_error(exc: BaseException) -> str:
    """An exception in one short line for the log: its type and first line, no traceback."""
    first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _answer(start_response: Callable[..., Any], status: str, text: str) -> list[bytes]:
    data = text.encode()
    start_response(status, [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]


def slack_gate(bolt: WSGIApp, signing_secret: str) -> WSGIApp:
    """What stands before Bolt: method, size, signature, then shape."""
    secret = signing_secret.encode()

    def gate(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        peer = environ.get("REMOTE_ADDR", "?")
        if environ.get("REQUEST_METHOD") != "POST":
            return _answer(start_response, "405 Method Not Allowed", "POST only")
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            return _answer(start_response, "400 Bad Request", "bad Content-Length")
        if length > MAX_BODY:
            log.warning("refused a %d-byte request from %s: over %d", length, peer, MAX_BODY)
            return _answer(start_response, "413 Payload Too Large", "too large")
        body = environ["wsgi.input"].read(length)
        stamp = str(environ.get("HTTP_X_SLACK_REQUEST_TIMESTAMP", ""))
        signature = str(environ.get("HTTP_X_SLACK_SIGNATURE", ""))
        if not signed(body, stamp, signature, secret, time.time()):
            log.warning("refused a Slack request from %s: its signature is not valid", peer)
            return _answer(start_response, "401 Unauthorized", "invalid request")
        problem = malformed(body, str(environ.get("CONTENT_TYPE", "")))
        if problem is not None:
            log.warning("refused a signed Slack request from %s: %s", peer, problem)
            return _answer(start_response, "400 Bad Request", "malformed request")
        environ["wsgi.input"] = io.BytesIO(body)
        try:
            return bolt(environ, start_response)
        except Exception as exc:  # a signed shape Bolt could not read (a field's type)
            log.warning("refused a signed Slack request from %s: %s", peer, one_line_error(exc))
            return _answer(start_response, "400 Bad Request", "malformed request")

    return gate


def _metrics(services: Services, start_response: Callable[..., Any]) -> list[bytes]:
    from bot.ops import metrics

    try:
        data, kind = metrics.render(services)
        status = "200 OK"
    except Exception as exc:  # a scrape must answer, not raise
        data, kind = f"metrics failed: {exc}\n".encode(), "text/plain"
        status = "503 Service Unavailable"
    start_response(status, [("Content-Type", kind), ("Content-Length", str(len(data)))])
    return [data]


def _health(services: Services, start_response: Callable[..., Any]) -> list[bytes]:
    body: dict[str, object]
    try:
        services.catalog.ping()
        status, body = "200 OK", {"ok": True, "version": version()}
    except Exception as exc:  # health must answer, not raise
        status, body = "503 Service Unavailable", {"ok": False, "error": str(exc)}
    data = json.dumps(body).encode()
    start_response(
        status, [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
    )
    return [data]


def wsgi(app: Any, services: Services) -> WSGIApp:
    """POST /slack/events for Slack (when `app`, a Bolt app, is given), GET /healthz for
    load balancers and Docker, GET /metrics for Prometheus."""
    slack: WSGIApp | None = None
    secret = services.settings.slack_signing_secret
    if app is not None and secret is not None:
        from slack_bolt.adapter.wsgi import SlackRequestHandler

        slack = slack_gate(
            SlackRequestHandler(app, path="/slack/events"), secret.get_secret_value()
        )

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO")
        if path == "/metrics":
            return _metrics(services, start_response)
        if path == "/healthz":
            return _health(services, start_response)
        if slack is None or path != "/slack/events":
            return _answer(start_response, "404 Not Found", "not found")
        return slack(environ, start_response)

    return application


def make_server(application: WSGIApp, host: str, port: int) -> Any:
    """waitress, bounded as the module says."""
    from waitress.adjustments import Adjustments
    from waitress.channel import HTTPChannel
    from waitress.server import TcpWSGIServer
    from waitress.task import ThreadedTaskDispatcher

    class Channel(HTTPChannel):  # type: ignore[misc]  # waitress is untyped
        """A waitress connection that knows when its request began, for the deadline."""

        started = 0.0  # when the request being received began to arrive

        def received(self, data: bytes) -> bool:
            if self.request is None and data:
                self.started = time.time()
            return bool(super().received(data))

    class Server(TcpWSGIServer):  # type: ignore[misc]
        """waitress, closing requests that take longer than the deadline to arrive."""

        channel_class = Channel

        def maintenance(self, now: float) -> None:
            super().maintenance(now)
            for channel in list(self.active_channels.values()):
                late = channel.request is not None and now - channel.started > REQUEST_DEADLINE_S
                if late and not channel.requests:
                    channel.will_close = True

    adj = Adjustments(
        host=host,
        port=port,
        threads=THREADS,
        ident="atlas",
        max_request_body_size=MAX_BODY,
        channel_timeout=IDLE_S,
        cleanup_interval=1,
        connection_limit=CONNECTIONS,
        asyncore_use_poll=True,  # select() stops at descriptor 1024
    )
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(THREADS)
    try:
        return Server(application, map={}, dispatcher=dispatcher, adj=adj)
    except OSError as exc:  # the port is taken, or not this user's to take
        dispatcher.shutdown()
        raise AtlasError(
            f"Cannot listen on {host}:{port}: {exc.strerror or exc}.",
            "stop what holds the port or pick another with --port or PORT",
        ) from None
