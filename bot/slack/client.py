"""Posting job progress to Slack without letting Slack's hiccups break a backup."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from bot.config import Settings
from bot.redaction import redact, redact_value
from bot.report.messages import fit

if TYPE_CHECKING:  # slack_sdk is imported only when Slack is configured: CLI start-up stays fast
    from slack_sdk import WebClient

log = logging.getLogger(__name__)


def slack_errors() -> tuple[type[BaseException], ...]:
    """What a Slack Web API call raises when Slack says no, is slow, or is unreachable."""
    from slack_sdk.errors import SlackApiError

    return (SlackApiError, OSError, TimeoutError)


def make_client(settings: Settings, timeout: int = 10) -> WebClient | None:
    if settings.slack_bot_token is None:
        return None
    from slack_sdk import WebClient
    from slack_sdk.http_retry.builtin_handlers import (
        ConnectionErrorRetryHandler,
        RateLimitErrorRetryHandler,
    )

    kwargs: dict[str, Any] = {
        "token": settings.slack_bot_token.get_secret_value(),
        "timeout": timeout,
        "retry_handlers": [
            ConnectionErrorRetryHandler(max_retry_count=2),
            RateLimitErrorRetryHandler(max_retry_count=2),
        ],
    }
    if settings.slack_api_url:
        kwargs["base_url"] = settings.slack_api_url
    return WebClient(**kwargs)


class Message:
    """One channel message that a job posts once and then keeps updating.

    Every Slack error is logged and swallowed: a backup must not fail because Slack
    is slow. The final update falls back to a fresh message if the edit fails.
    """

    def __init__(
        self, client: WebClient | None, channel: str | None, thread_ts: str | None = None
    ) -> None:
        self.client, self.channel, self.thread_ts = client, channel, thread_ts
        self.ts: str | None = None
        self._lock = threading.Lock()
        self._last = 0.0

    def _call(self, method: str, **kw: Any) -> dict[str, Any] | None:
        if self.client is None or not self.channel:
            return None
        if "text" in kw:  # the one way out to the channel: redacted, within Slack's limits
            kw["text"], kw["blocks"] = fit(redact(kw["text"]), redact_value(kw.get("blocks", [])))
        try:
            resp = getattr(self.client, method)(channel=self.channel, **kw)
            return dict(resp.data) if isinstance(resp.data, dict) else None
        except slack_errors() as exc:
            log.warning("Slack %s failed: %s", method, exc)
            return None

    def post(self, text: str, blocks: list[dict[str, Any]]) -> None:
        with self._lock:
            kw: dict[str, Any] = {"text": text, "blocks": blocks}
            if self.thread_ts:
                kw["thread_ts"] = self.thread_ts
            data = self._call("chat_postMessage", **kw)
            if data:
                self.ts = data.get("ts")
                self.channel = data.get("channel", self.channel)
            self._last = time.monotonic()

    def update(
        self, text: str, blocks: list[dict[str, Any]], *, final: bool = False, every: float = 3.0
    ) -> None:
        with self._lock:
            if not final and time.monotonic() - self._last < every:
                return
            self._last = time.monotonic()
            if self.ts and self._call("chat_update", ts=self.ts, text=text, blocks=blocks):
                return
        if final:
            self.post(text, blocks)
