"""A job's one message: posted once, updated at most every few seconds, and the final
update posted afresh when the edit fails."""

from __future__ import annotations

from bot.report.chat import Blocks, Message, NoChat


class Recorder:
    """A Chat that records what it was asked to do."""

    configured = True

    def __init__(self, update_ok: bool = True) -> None:
        self.calls: list[tuple[str, str]] = []
        self.update_ok = update_ok

    def post(self, channel: str, text: str, blocks: Blocks, thread_ts: str | None = None):
        self.calls.append(("post", text))
        return channel, f"ts-{len(self.calls)}"

    def update(self, channel: str, ts: str, text: str, blocks: Blocks) -> bool:
        self.calls.append(("update", text))
        return self.update_ok

    def react(self, channel: str, ts: str, emoji: str) -> None: ...
    def tell(self, channel: str, user: str, text: str, thread_ts: str | None = None) -> None: ...
    def group_members(self, group: str) -> list[str] | None:
        return []


def test_progress_is_throttled_and_the_final_update_always_goes() -> None:
    chat = Recorder()
    msg = Message(chat, "C1")
    msg.post("started", [])
    for i in range(10):
        msg.update(f"progress {i}", [])
    msg.update("done", [], final=True)
    assert chat.calls == [("post", "started"), ("update", "done")]
    assert msg.ts == "ts-1"


def test_a_failed_final_edit_is_posted_as_a_new_message() -> None:
    chat = Recorder(update_ok=False)
    msg = Message(chat, "C1")
    msg.post("started", [])
    msg.update("done", [], final=True)
    assert chat.calls == [("post", "started"), ("update", "done"), ("post", "done")]


def test_without_a_channel_or_a_workspace_nothing_happens() -> None:
    chat = Recorder()
    Message(chat, None).post("nowhere", [])
    assert chat.calls == []
    msg = Message(NoChat(), "C1")
    msg.post("x", [])
    assert msg.ts is None
