"""Where Atlas says things: a chat it posts to (Slack, or nowhere), behind one small
interface, so that nothing outside `bot/slack/` talks to Slack itself.

A `Chat` never raises: a backup must not fail because the chat is slow or down. What a
call could not do, it reports as None/False, for the callers that must know (a reminder
that did not reach the channel is tried again).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Protocol

Blocks = list[dict[str, Any]]


class Chat(Protocol):
    """Where messages go: Slack, the console, or nowhere."""

    configured: bool  # a workspace is set up at all

    def post(
        self, channel: str, text: str, blocks: Blocks, thread_ts: str | None = None
    ) -> tuple[str, str] | None:
        """Post a message; (channel id, ts) of the message, or None when it failed."""
        ...

    def update(self, channel: str, ts: str, text: str, blocks: Blocks) -> bool: ...

    def react(self, channel: str, ts: str, emoji: str) -> None: ...

    def tell(self, channel: str, user: str, text: str, thread_ts: str | None = None) -> None:
        """A message only `user` sees (or, failing that, in the thread)."""
        ...

    def group_members(self, group: str) -> list[str] | None:
        """Members of a user group, or None when they cannot be read now."""
        ...

    def upload(self, channel: str, name: str, content: bytes, comment: str) -> bool:
        """Share a file in the channel with a message; False when it did not get there."""
        ...

    def publish_home(self, user: str, view: dict[str, Any]) -> bool:
        """Show `view` on the user's App Home tab."""
        ...

    def open_view(self, trigger_id: str, view: dict[str, Any]) -> bool:
        """Open a modal for the person whose click or command gave `trigger_id`."""
        ...


class NoChat:
    """No workspace configured: everything is a quiet no-op."""

    configured = False

    def post(
        self, channel: str, text: str, blocks: Blocks, thread_ts: str | None = None
    ) -> tuple[str, str] | None:
        return None

    def update(self, channel: str, ts: str, text: str, blocks: Blocks) -> bool:
        return False

    def react(self, channel: str, ts: str, emoji: str) -> None:
        return None

    def tell(self, channel: str, user: str, text: str, thread_ts: str | None = None) -> None:
        return None

    def group_members(self, group: str) -> list[str] | None:
        return []

    def upload(self, channel: str, name: str, content: bytes, comment: str) -> bool:
        return False

    def publish_home(self, user: str, view: dict[str, Any]) -> bool:
        return False

    def open_view(self, trigger_id: str, view: dict[str, Any]) -> bool:
        return False


class Message:
    """One channel message that a job posts once and then keeps updating (progress at
    most every few seconds). The final update falls back to a fresh message if the
    edit fails."""

    def __init__(self, chat: Chat, channel: str | None, thread_ts: str | None = None) -> None:
        self.chat, self.channel, self.thread_ts = chat, channel, thread_ts
        self.ts: str | None = None
        self._lock = threading.Lock()
        self._last = 0.0

    @classmethod
    def existing(cls, chat: Chat, channel: str | None, ts: str | None) -> Message:
        """A message posted earlier (by this process or one before it)."""
        msg = cls(chat, channel)
        msg.ts = ts
        return msg

    def post(self, text: str, blocks: Blocks) -> None:
        with self._lock:
            if self.channel:
                posted = self.chat.post(self.channel, text, blocks, self.thread_ts)
                if posted:
                    self.channel, self.ts = posted
            self._last = time.monotonic()

    def update(self, text: str, blocks: Blocks, *, final: bool = False, every: float = 3.0) -> None:
        with self._lock:
            if not final and time.monotonic() - self._last < every:
                return
            self._last = time.monotonic()
            if self.ts and self.channel and self.chat.update(self.channel, self.ts, text, blocks):
                return
        if final:
            self.post(text, blocks)
