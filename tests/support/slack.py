"""Slack doubles: a local fake Web API server and signed inbound-request helpers."""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import hashlib
import hmac
import itertools
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
import yaml
from slack_sdk import WebClient

from tests.support import pick_free_port

__all__ = [
    "BOT_ID",
    "BOT_USER_ID",
    "TEAM_ID",
    "FakeSlackApi",
    "SlackCall",
    "block_actions_payload",
    "post_event",
    "post_interaction",
    "post_slash_command",
    "reaction_event",
    "sign",
    "slack_api",
    "slash_command_payload",
]

BOT_USER_ID = "UBOT"
BOT_ID = "BBOT"
TEAM_ID = "T1"
APP_ID = "A1"

#: A recorded call: {"method", "params", "headers", "http_path", "response"}.
SlackCall = dict[str, Any]

# Params Slack clients send as JSON strings inside form bodies.
_JSON_PARAMS = frozenset({"blocks", "attachments", "files", "view", "metadata", "payload"})


@dataclass
class _Failure:
    status: int
    error: str
    retry_after: int


# --------------------------------------------------------------------------------------------
# Fake Web API
# --------------------------------------------------------------------------------------------


def manifest_scopes() -> list[str]:
    """The bot scopes manifest.yml asks for."""
    manifest = yaml.safe_load((Path(__file__).resolve().parents[2] / "manifest.yml").read_text())
    return list(manifest["oauth_config"]["scopes"]["bot"])


class FakeSlackApi:
    """Local HTTP imitation of Slack's Web API for ``WebClient(base_url=fake.url)``.

    Every request is recorded (thread-safe) as a :data:`SlackCall`. Also serves
    ``response_url`` posts (``fake.response_url``; recorded as method ``"response_url"``)
    and ``files_upload_v2`` uploads (recorded as method ``"file.upload"``).
    """

    def __init__(
        self,
        *,
        usergroups: Mapping[str, list[str]] | None = None,
        users: Mapping[str, Mapping[str, Any]] | None = None,
        channels: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        #: usergroup id -> member user ids (``usergroups.users.list``); unknown -> no_such_subteam
        self.usergroups: dict[str, list[str]] = {k: list(v) for k, v in (usergroups or {}).items()}
        #: user id -> overrides merged into the ``users.info`` ``user`` object
        self.users: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (users or {}).items()}
        #: channel id -> overrides merged into the ``conversations.info`` ``channel`` object
        self.channels: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (channels or {}).items()}
        #: file id -> raw bytes uploaded through ``files_upload_v2``
        self.uploads: dict[str, bytes] = {}
        #: what ``apps.connections.open`` hands out (a FakeSocketMode's url); None refuses
        self.socket_mode_url: str | None = None
        #: the bot token's scopes, as ``auth.test`` reports them: those manifest.yml
        #: declares, as an app installed from it gets
        self.scopes: list[str] = manifest_scopes()
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._calls: list[SlackCall] = []
        self._archive: list[str] = []
        self._failures: dict[str, deque[_Failure]] = {}
        self._delays: dict[str, float] = {}
        self._messages: dict[tuple[str, str], dict[str, Any]] = {}
        self._ts_counter = itertools.count(1)
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeSlackApi:
        """Bind 127.0.0.1:<free port> and serve in a daemon thread."""
        handler = _make_handler(self)
        for attempt in range(5):
            try:
                server = ThreadingHTTPServer(("127.0.0.1", pick_free_port()), handler)
                break
            except OSError:
                if attempt == 4:
                    raise
        server.daemon_threads = True
        server.block_on_close = False  # delayed handlers must not block stop()
        self._server = server
        self.port = int(server.server_address[1])
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Shut the server down (releases any delayed requests)."""
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeSlackApi:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses ---------------------------------------------------------------------------

    @property
    def base(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """WebClient ``base_url``: ``http://127.0.0.1:PORT/api/`` (trailing slash included)."""
        return f"{self.base}/api/"

    @property
    def response_url(self) -> str:
        """A ``response_url`` for slash commands / interactions served by this fake."""
        return f"{self.base}/response_url/{uuid.uuid4().hex[:8]}"

    def client(self, token: str = "xoxb-test-token", **kwargs: Any) -> WebClient:
        """A real ``slack_sdk.WebClient`` pointed at this fake."""
        return WebClient(token=token, base_url=self.url, **kwargs)

    # -- behaviour control -------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        error: str | None = None,
        *,
        status: int | None = None,
        times: int = 1,
        retry_after: int = 1,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail.

        ``fail_next(m)`` / ``fail_next(m, "ratelimited")`` -> HTTP 429 + Retry-After;
        ``fail_next(m, "channel_not_found")`` -> HTTP 200 ``{"ok": false, "error": ...}``;
        ``fail_next(m, status=500)`` -> HTTP 500 ``{"ok": false, "error": "fatal_error"}``.
        """
        if error is None:
            error = "ratelimited" if status is None else "fatal_error"
        if status is None:
            status = 429 if error == "ratelimited" else 200
        with self._lock:
            queue = self._failures.setdefault(method, deque())
            for _ in range(times):
                queue.append(_Failure(status=status, error=error, retry_after=retry_after))

    def delay(self, method: str, seconds: float) -> None:
        """Sleep ``seconds`` before answering every ``method`` call (0 removes the delay)."""
        with self._lock:
            if seconds > 0:
                self._delays[method] = seconds
            else:
                self._delays.pop(method, None)

    def set_usergroup(self, group_id: str, user_ids: list[str]) -> None:
        """Set members of a usergroup for ``usergroups.users.list``."""
        with self._lock:
            self.usergroups[group_id] = list(user_ids)

    # -- inspection --------------------------------------------------------------------------

    def calls(self, method: str | None = None) -> list[SlackCall]:
        """Recorded calls (copy), optionally only those for ``method``."""
        with self._lock:
            return [c for c in self._calls if method is None or c["method"] == method]

    def wait_for(
        self,
        predicate_or_method: str | Callable[[SlackCall], bool],
        timeout: float = 10.0,
    ) -> SlackCall:
        """Block until a matching call was recorded and answered; return the first match
        (its ``response`` is set: the fake records a call before it answers it).

        ``predicate_or_method`` is a method name (``"chat.postMessage"``) or a callable
        taking a :data:`SlackCall`. Raises ``AssertionError`` on timeout.
        """
        if isinstance(predicate_or_method, str):
            name = predicate_or_method

            def match(call: SlackCall) -> bool:
                return bool(call["method"] == name)
        else:
            match = predicate_or_method
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for call in self._calls:
                    if call["response"] is not None and match(call):
                        return call
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [c["method"] for c in self._calls]
                    raise AssertionError(
                        f"no matching Slack call within {timeout}s; seen methods: {seen}"
                    )
                self._cond.wait(min(remaining, 0.1))

    def clear(self) -> None:
        """Forget recorded calls (``all_text()`` still covers them)."""
        with self._lock:
            self._calls.clear()

    def reset(self) -> None:
        """Forget calls, pending failures and delays."""
        with self._lock:
            self._calls.clear()
            self._failures.clear()
            self._delays.clear()

    def all_text(self) -> str:
        """Everything ever sent to this fake (JSON-dumped params + uploads), for leak checks."""
        with self._lock:
            return "\n".join(self._archive)

    def message(self, channel: str, ts: str) -> dict[str, Any] | None:
        """Latest state (``text``/``blocks``/...) of a message posted then maybe updated."""
        with self._lock:
            msg = self._messages.get((channel, ts))
            return dict(msg) if msg is not None else None

    def messages(self) -> list[dict[str, Any]]:
        """Every message still in a channel, each in its latest state."""
        with self._lock:
            return [dict(m, channel=c) for (c, _), m in self._messages.items()]

    # -- internals ---------------------------------------------------------------------------

    def _next_ts(self) -> str:
        with self._lock:
            n = next(self._ts_counter)
        return f"1700000000.{n * 100:06d}"

    def _answer(self, call: SlackCall, payload: dict[str, Any]) -> None:
        """Attach the answer to a recorded call, waking `wait_for`."""
        with self._cond:
            call["response"] = payload
            self._cond.notify_all()

    def _record(
        self, method: str, params: dict[str, Any], headers: dict[str, str], path: str
    ) -> tuple[SlackCall, _Failure | None, float]:
        call: SlackCall = {
            "method": method,
            "params": params,
            "headers": headers,
            "http_path": path,
            "response": None,
        }
        with self._cond:
            self._calls.append(call)
            self._archive.append(f"{method} {json.dumps(params, default=str, sort_keys=True)}")
            queue = self._failures.get(method)
            failure = queue.popleft() if queue else None
            delay = self._delays.get(method, 0.0)
            self._cond.notify_all()
        return call, failure, delay

    def _respond(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Build a plausible successful response for ``method``."""
        channel = str(params.get("channel") or params.get("channel_id") or "C1")
        if method == "auth.test":
            return {
                "ok": True,
                "url": "https://atlas-test.slack.com/",
                "team": "T",
                "user": "atlas",
                "team_id": TEAM_ID,
                "user_id": BOT_USER_ID,
                "bot_id": BOT_ID,
                "is_enterprise_install": False,
            }
        if method == "chat.postMessage":
            ts = self._next_ts()
            message = {
                "type": "message",
                "user": BOT_USER_ID,
                "bot_id": BOT_ID,
                "ts": ts,
                "text": params.get("text", ""),
            }
            for key in ("blocks", "attachments", "thread_ts", "metadata"):
                if key in params:
                    message[key] = params[key]
            with self._lock:
                self._messages[(channel, ts)] = dict(message)
            return {"ok": True, "channel": channel, "ts": ts, "message": message}
        if method == "chat.update":
            ts = str(params.get("ts", ""))
            with self._lock:
                msg = self._messages.setdefault((channel, ts), {"type": "message", "ts": ts})
                for key in ("text", "blocks", "attachments", "metadata"):
                    if key in params:
                        msg[key] = params[key]
                message = dict(msg)
            return {
                "ok": True,
                "channel": channel,
                "ts": ts,
                "text": params.get("text", ""),
                "message": message,
            }
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": self._next_ts()}
        if method == "chat.delete":
            with self._lock:
                self._messages.pop((channel, str(params.get("ts", ""))), None)
            return {"ok": True, "channel": channel, "ts": params.get("ts")}
        if method == "chat.getPermalink":
            ts = str(params.get("message_ts", ""))
            return {
                "ok": True,
                "channel": channel,
                "permalink": f"https://atlas-test.slack.com/archives/{channel}/p"
                + ts.replace(".", ""),
            }
        if method == "usergroups.users.list":
            group = str(params.get("usergroup", ""))
            with self._lock:
                members = self.usergroups.get(group)
            if members is None:
                return {"ok": False, "error": "no_such_subteam"}
            return {"ok": True, "users": list(members)}
        if method == "usergroups.list":
            with self._lock:
                groups = [
                    {"id": gid, "handle": gid.lower(), "users": list(u), "user_count": len(u)}
                    for gid, u in self.usergroups.items()
                ]
            return {"ok": True, "usergroups": groups}
        if method == "users.info":
            uid = str(params.get("user", "U1"))
            user: dict[str, Any] = {
                "id": uid,
                "team_id": TEAM_ID,
                "name": uid.lower(),
                "real_name": f"User {uid}",
                "is_bot": uid == BOT_USER_ID,
                "is_admin": False,
                "deleted": False,
                "tz": "UTC",
                "profile": {
                    "real_name": f"User {uid}",
                    "display_name": uid.lower(),
                    "email": f"{uid.lower()}@example.com",
                },
            }
            with self._lock:
                user.update(self.users.get(uid, {}))
            return {"ok": True, "user": user}
        if method == "conversations.info":
            cid = channel
            chan: dict[str, Any] = {
                "id": cid,
                "name": f"chan-{cid.lower()}",
                "is_channel": cid.startswith("C"),
                "is_private": cid.startswith("G"),
                "is_im": cid.startswith("D"),
                "is_member": True,
                "is_archived": False,
            }
            with self._lock:
                chan.update(self.channels.get(cid, {}))
            return {"ok": True, "channel": chan}
        if method == "conversations.open":
            users = str(params.get("users", "U1"))
            return {"ok": True, "channel": {"id": "D" + users.split(",")[0].lstrip("UW")}}
        if method == "files.getUploadURLExternal":
            file_id = "F" + uuid.uuid4().hex[:10].upper()
            return {"ok": True, "upload_url": f"{self.base}/upload/{file_id}", "file_id": file_id}
        if method == "files.completeUploadExternal":
            files = params.get("files") or []
            out = [
                {"id": f.get("id"), "title": f.get("title"), "name": f.get("title")}
                for f in files
                if isinstance(f, dict)
            ]
            return {"ok": True, "files": out}
        if method == "apps.connections.open":
            if self.socket_mode_url is None:
                return {"ok": False, "error": "not_allowed_token_type"}
            return {"ok": True, "url": self.socket_mode_url}
        if method in ("views.open", "views.publish", "views.update", "views.push"):
            return {"ok": True, "view": {"id": "V" + uuid.uuid4().hex[:8].upper()}}
        return {"ok": True}


_MESSAGE_METHODS = frozenset(
    {"chat.postMessage", "chat.update", "chat.postEphemeral", "response_url"}
)


def _limit_error(method: str, params: dict[str, Any]) -> str | None:
    """Slack's documented limits (Block Kit reference, chat.postMessage): the error code
    Slack answers for a message that breaks one, or None."""
    if method not in _MESSAGE_METHODS:
        return None
    if len(str(params.get("text") or "")) > 40_000:
        return "msg_too_long"
    blocks = params.get("blocks") or []
    if not isinstance(blocks, list):
        return None
    if len(blocks) > 50:
        return "invalid_blocks"

    def too_long(obj: Any, limit: int) -> bool:
        return isinstance(obj, dict) and len(str(obj.get("text") or "")) > limit

    for block in blocks:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "section" and (
            too_long(block.get("text"), 3000)
            or len(block.get("fields") or []) > 10
            or any(too_long(f, 2000) for f in block.get("fields") or [])
        ):
            return "invalid_blocks"
        if kind == "header" and too_long(block.get("text"), 150):
            return "invalid_blocks"
        if kind == "context" and (
            len(block.get("elements") or []) > 10
            or any(too_long(e, 3000) for e in block.get("elements") or [])
        ):
            return "invalid_blocks"
        if kind == "actions":
            for e in block.get("elements") or []:
                if too_long(e.get("text"), 75) or len(str(e.get("value") or "")) > 2000:
                    return "invalid_blocks"
    return None


def _decode_json_params(params: dict[str, Any]) -> dict[str, Any]:
    for key in _JSON_PARAMS:
        value = params.get(key)
        if isinstance(value, str) and value[:1] in ("[", "{"):
            with contextlib.suppress(ValueError):
                params[key] = json.loads(value)
    return params


def _parse_body(content_type: str, body: bytes) -> dict[str, Any]:
    ctype = content_type.split(";", 1)[0].strip().lower()
    if not body:
        return {}
    if ctype == "application/json":
        data = json.loads(body.decode("utf-8"))
        return data if isinstance(data, dict) else {"_json": data}
    if ctype == "multipart/form-data":
        raw = f"Content-Type: {content_type}\r\n\r\n".encode() + body
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
        out: dict[str, Any] = {}
        for part in msg.iter_parts():  # type: ignore[attr-defined]
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True) or b""
            out[str(name)] = payload.decode("utf-8", errors="replace")
        return out
    # x-www-form-urlencoded (also the fallback)
    return dict(parse_qsl(body.decode("utf-8", errors="replace"), keep_blank_values=True))


def _make_handler(fake: FakeSlackApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _send(self, status: int, payload: dict[str, Any], extra: dict[str, str]) -> None:
            data = json.dumps(payload).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for key, value in extra.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def _handle(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            headers = {k: v for k, v in self.headers.items()}
            path = parts.path

            if path.startswith("/upload/"):
                file_id = path.rsplit("/", 1)[-1]
                with fake._lock:
                    fake.uploads[file_id] = body
                params = {"file_id": file_id, "size": len(body)}
                call, _, _ = fake._record("file.upload", params, headers, path)
                with fake._lock:
                    fake._archive.append(body.decode("utf-8", errors="replace"))
                fake._answer(call, {"ok": True})
                self._send(200, {"ok": True}, {})
                return

            params: dict[str, Any] = dict(parse_qsl(parts.query, keep_blank_values=True))
            try:
                params.update(_parse_body(self.headers.get("Content-Type", ""), body))
            except ValueError:
                params["_raw_body"] = body.decode("utf-8", errors="replace")
            _decode_json_params(params)

            if path.startswith("/response_url"):
                method = "response_url"
            elif path.startswith("/api/"):
                method = path[len("/api/") :]
            else:
                method = path.lstrip("/")

            call, failure, delay = fake._record(method, params, headers, path)
            if delay:
                fake._stopping.wait(delay)
            refused = _limit_error(method, params)
            if refused is not None:  # as Slack does: the whole message is refused
                payload = {"ok": False, "error": refused}
                fake._answer(call, payload)
                self._send(200, payload, {})
                return
            if failure is not None:
                payload = {"ok": False, "error": failure.error}
                extra = {"Retry-After": str(failure.retry_after)} if failure.status == 429 else {}
                fake._answer(call, payload)
                self._send(failure.status, payload, extra)
                return
            payload = {"ok": True} if method == "response_url" else fake._respond(method, params)
            fake._answer(call, payload)
            extra = {}
            if method == "auth.test":  # as Slack does: the token's scopes in a header
                extra["x-oauth-scopes"] = ",".join(fake.scopes)
            self._send(200, payload, extra)

        def do_POST(self) -> None:
            self._handle()

        def do_GET(self) -> None:
            self._handle()

    return Handler


@pytest.fixture
def slack_api() -> Iterator[FakeSlackApi]:
    """A started :class:`FakeSlackApi` (stopped after the test)."""
    fake = FakeSlackApi().start()
    try:
        yield fake
    finally:
        fake.stop()


# --------------------------------------------------------------------------------------------
# Signed inbound requests (Slack -> our app)
# --------------------------------------------------------------------------------------------


def sign(signing_secret: str, body: bytes | str, timestamp: int | None = None) -> dict[str, str]:
    """Slack v0 signature headers for ``body`` (same algorithm as ``SignatureVerifier``)."""
    ts = str(int(time.time()) if timestamp is None else int(timestamp))
    raw = body.encode("utf-8") if isinstance(body, str) else body
    base = b"v0:" + ts.encode("ascii") + b":" + raw
    digest = hmac.new(signing_secret.encode("utf-8"), base, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


def _post(
    url: str,
    body: bytes,
    content_type: str,
    secret: str,
    *,
    bad_signature: bool,
    timestamp: int | None,
    headers_extra: Mapping[str, str] | None,
    timeout: float,
) -> tuple[int, str]:
    headers = {"Content-Type": content_type}
    headers.update(sign(secret + "-wrong" if bad_signature else secret, body, timestamp))
    headers.update(headers_extra or {})
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status), resp.read().decode("utf-8", errors="replace")
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode("utf-8", errors="replace")


def slash_command_payload(
    *,
    text: str,
    user_id: str = "U1",
    channel_id: str = "C1",
    command: str = "/atlas",
    trigger_id: str | None = None,
    response_url: str | None = None,
    user_name: str | None = None,
    team_id: str = TEAM_ID,
) -> dict[str, str]:
    """The fields Slack sends for a slash command (a form over HTTP, JSON in Socket Mode)."""
    return {
        "token": "verification-token-unused",
        "team_id": team_id,
        "team_domain": "atlas-test",
        "channel_id": channel_id,
        "channel_name": f"chan-{channel_id.lower()}",
        "user_id": user_id,
        "user_name": user_name or user_id.lower(),
        "command": command,
        "text": text,
        "api_app_id": APP_ID,
        "is_enterprise_install": "false",
        "response_url": response_url or "http://127.0.0.1:9/response_url/unused",
        "trigger_id": trigger_id or f"{int(time.time())}.{uuid.uuid4().hex[:12]}",
    }


def post_slash_command(
    base_url: str,
    secret: str,
    *,
    text: str,
    user_id: str = "U1",
    channel_id: str = "C1",
    command: str = "/atlas",
    trigger_id: str | None = None,
    response_url: str | None = None,
    user_name: str | None = None,
    team_id: str = TEAM_ID,
    headers_extra: Mapping[str, str] | None = None,
    bad_signature: bool = False,
    timestamp: int | None = None,
    path: str = "/slack/events",
    timeout: float = 10.0,
) -> tuple[int, str]:
    """POST a signed, form-encoded slash command to ``base_url + path``; return (status, body).

    Pass ``response_url=slack_api.response_url`` so ``respond()`` lands in the fake;
    the default points at a closed local port (fails fast, never reaches the internet).
    """
    form = slash_command_payload(
        text=text,
        user_id=user_id,
        channel_id=channel_id,
        command=command,
        trigger_id=trigger_id,
        response_url=response_url,
        user_name=user_name,
        team_id=team_id,
    )
    body = urlencode(form).encode("utf-8")
    return _post(
        base_url.rstrip("/") + path,
        body,
        "application/x-www-form-urlencoded",
        secret,
        bad_signature=bad_signature,
        timestamp=timestamp,
        headers_extra=headers_extra,
        timeout=timeout,
    )


def post_event(
    base_url: str,
    secret: str,
    event: Mapping[str, Any],
    *,
    event_id: str | None = None,
    retry_num: int | None = None,
    retry_reason: str = "http_timeout",
    team_id: str = TEAM_ID,
    api_app_id: str = APP_ID,
    headers_extra: Mapping[str, str] | None = None,
    bad_signature: bool = False,
    timestamp: int | None = None,
    path: str = "/slack/events",
    timeout: float = 10.0,
) -> tuple[int, str]:
    """POST a signed Events API ``event_callback`` envelope; return (status, body).

    With ``retry_num`` the ``X-Slack-Retry-Num``/``X-Slack-Retry-Reason`` headers are sent
    (reuse the same ``event_id`` to imitate Slack's redelivery).
    """
    envelope = {
        "token": "verification-token-unused",
        "team_id": team_id,
        "api_app_id": api_app_id,
        "event": dict(event),
        "type": "event_callback",
        "event_id": event_id or "Ev" + uuid.uuid4().hex[:10].upper(),
        "event_time": int(time.time()),
        "authorizations": [
            {
                "enterprise_id": None,
                "team_id": team_id,
                "user_id": BOT_USER_ID,
                "is_bot": True,
                "is_enterprise_install": False,
            }
        ],
        "is_ext_shared_channel": False,
    }
    extra: dict[str, str] = {}
    if retry_num is not None:
        extra["X-Slack-Retry-Num"] = str(retry_num)
        extra["X-Slack-Retry-Reason"] = retry_reason
    extra.update(headers_extra or {})
    return _post(
        base_url.rstrip("/") + path,
        json.dumps(envelope).encode("utf-8"),
        "application/json",
        secret,
        bad_signature=bad_signature,
        timestamp=timestamp,
        headers_extra=extra,
        timeout=timeout,
    )


def post_interaction(
    base_url: str,
    secret: str,
    payload: Mapping[str, Any],
    *,
    headers_extra: Mapping[str, str] | None = None,
    bad_signature: bool = False,
    timestamp: int | None = None,
    path: str = "/slack/events",
    timeout: float = 10.0,
) -> tuple[int, str]:
    """POST a signed interactivity request (form field ``payload=<json>``)."""
    body = urlencode({"payload": json.dumps(dict(payload))}).encode("utf-8")
    return _post(
        base_url.rstrip("/") + path,
        body,
        "application/x-www-form-urlencoded",
        secret,
        bad_signature=bad_signature,
        timestamp=timestamp,
        headers_extra=headers_extra,
        timeout=timeout,
    )


def block_actions_payload(
    action_id: str,
    value: str | None = None,
    *,
    user_id: str = "U1",
    channel_id: str = "C1",
    message_ts: str = "1700000000.000100",
    block_id: str = "b1",
    response_url: str | None = None,
    team_id: str = TEAM_ID,
) -> dict[str, Any]:
    """A ``block_actions`` payload for a button click (use with :func:`post_interaction`)."""
    action: dict[str, Any] = {
        "type": "button",
        "action_id": action_id,
        "block_id": block_id,
        "text": {"type": "plain_text", "text": action_id},
        "action_ts": f"{time.time():.6f}",
    }
    if value is not None:
        action["value"] = value
    return {
        "type": "block_actions",
        "team": {"id": team_id, "domain": "atlas-test"},
        "user": {"id": user_id, "username": user_id.lower(), "team_id": team_id},
        "api_app_id": APP_ID,
        "token": "verification-token-unused",
        "container": {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel_id,
            "is_ephemeral": False,
        },
        "trigger_id": f"{int(time.time())}.{uuid.uuid4().hex[:12]}",
        "channel": {"id": channel_id, "name": f"chan-{channel_id.lower()}"},
        "message": {"type": "message", "ts": message_ts, "user": BOT_USER_ID, "text": ""},
        "response_url": response_url or "http://127.0.0.1:9/response_url/unused",
        "actions": [action],
    }


def reaction_event(
    kind: str,
    user: str,
    reaction: str,
    channel: str,
    ts: str,
    item_user: str = BOT_USER_ID,
) -> dict[str, Any]:
    """A ``reaction_added``/``reaction_removed`` event (``kind``: "added"/"removed" or full)."""
    event_type = kind if kind.startswith("reaction_") else f"reaction_{kind}"
    if event_type not in ("reaction_added", "reaction_removed"):
        raise ValueError(f"unknown reaction event kind: {kind!r}")
    return {
        "type": event_type,
        "user": user,
        "reaction": reaction,
        "item_user": item_user,
        "item": {"type": "message", "channel": channel, "ts": ts},
        "event_ts": f"{time.time():.6f}",
    }
