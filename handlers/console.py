"""`atlas console`: a terminal stand-in for the Slack channel, like Hubot's shell adapter.

What you type goes to the real listeners (`/atlas …` to the command listener, reactions
to the reaction listener, a button's number to the action listener) with the app's real
Services, configured as `atlas serve` would be. Only the channel is the terminal: what
Atlas posts, edits, reacts and says only to you is printed here.
"""

from __future__ import annotations

import itertools
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from slack_bolt import BoltContext

from bot.config import Settings
from bot.ops import housekeeping
from bot.redaction import redact
from bot.report.chat import Blocks
from bot.report.terminal import mrkdwn, render
from bot.services import Services
from bot.words import count
from handlers import actions, commands, reactions

BOT = "atlas"
HELP = """Type what you would in the channel:
  /atlas snapshot before migration 0042     /atlas list   /atlas drill   /atlas help
  approve as carol    (or  :white_check_mark: @carol)   react on the newest request
  reject as dave      (or  :x: @dave)
  1, 2, …             press a button of the newest message that has buttons
  /tick               run the daily housekeeping now (reminders, retention, expiry)
  /quit               leave (Ctrl-D too)"""


@dataclass
class Posted:
    """A message the console printed, kept to react on and press."""

    ts: str  # unique across sessions, as Slack's are: requests are found by it
    number: int  # what the terminal shows: #1, #2, … in this session
    channel: str
    text: str
    blocks: Blocks
    thread_ts: str | None
    buttons: list[dict[str, Any]] = field(default_factory=list)


class ConsoleChat:
    """The `Chat` of the console: messages are printed, and kept to react on and press."""

    configured = True

    def __init__(self, out: TextIO, approvers: dict[str, list[str]] | None = None) -> None:
        self.out = out
        self.messages: dict[str, Posted] = {}
        self.groups = approvers or {}
        self.prompt = ""  # shown again after output that arrives while someone types
        self._ts = itertools.count(1)
        # Slack's form, seconds.serial: a later session's #1 is never an earlier one's
        self._session = f"{time.time_ns() // 1000}"
        self._lock = threading.Lock()

    def say(self, line: str) -> None:
        with self._lock:
            if self.prompt:
                self.out.write("\r\x1b[K")  # the prompt's line: this goes above it
            self.out.write(redact(line) + "\n")  # as the Slack client redacts what it posts
            if self.prompt:
                self.out.write(self.prompt)
            self.out.flush()

    def _show(self, posted: Posted, how: str) -> None:
        lines, _ = render(posted.text, posted.blocks)
        where = (
            f"in thread #{self.number(posted.thread_ts)}"
            if posted.thread_ts
            else f"#{posted.number}"
        )
        head = f"{BOT} [{where}{how}] "
        self.say(head + (lines[0] if lines else ""))
        for line in lines[1:]:
            self.say(" " * len(head) + line)

    def post(
        self, channel: str, text: str, blocks: Blocks, thread_ts: str | None = None
    ) -> tuple[str, str] | None:
        number = next(self._ts)
        ts = f"{self._session}.{number:06d}"
        buttons = [
            e
            for b in blocks
            if b.get("type") == "actions"
            for e in b.get("elements") or []
            if e.get("type") == "button"
        ]
        posted = Posted(ts, number, channel, text, blocks, thread_ts, buttons)
        self.messages[ts] = posted
        self._show(posted, "")
        return channel, ts

    def update(self, channel: str, ts: str, text: str, blocks: Blocks) -> bool:
        posted = self.messages.get(ts)
        if posted is None:
            return False
        posted.text, posted.blocks = text, blocks
        self._show(posted, ", edited")
        return True

    def number(self, ts: str | None) -> str:
        """The #number the terminal showed for `ts` (a ts of another session: as it is)."""
        posted = self.messages.get(ts or "")
        return str(posted.number) if posted else str(ts)

    def react(self, channel: str, ts: str, emoji: str) -> None:
        self.say(f"{BOT} reacted :{emoji}: on #{self.number(ts)}")

    def tell(self, channel: str, user: str, text: str, thread_ts: str | None = None) -> None:
        self.say(f"(only @{user} can see this) {mrkdwn(text)}")

    def group_members(self, group: str) -> list[str] | None:
        return self.groups.get(group)

    def publish_home(self, user: str, view: dict[str, Any]) -> bool:
        return False  # a terminal has no Home tab: `/atlas status` says the same

    def open_view(self, trigger_id: str, view: dict[str, Any]) -> bool:
        return False  # no modals in a terminal: the caller says what to type instead

    def upload(self, channel: str, name: str, content: bytes, comment: str) -> bool:
        """A terminal shows no file: it says what Slack would get, and where to make it."""
        self.say(f"{BOT} {mrkdwn(comment)}")
        self.say(f"{BOT} [file {name}, {len(content):,} bytes: `atlas report -o {name}` writes it]")
        return True


REACTION = re.compile(r"^:(?P<emoji>[\w+-]+):\s*(?:@(?P<user>[\w.-]+))?$")
AS = re.compile(r"^(?P<verb>approve|reject)\s+as\s+@?(?P<user>[\w.-]+)$", re.IGNORECASE)


class Console:
    """Reads what is typed and hands it to the listeners."""

    def __init__(self, services: Services, chat: ConsoleChat, user: str) -> None:
        self.services, self.chat, self.user = services, chat, user
        self.channel = services.settings.channel or "console"  # set by main
        self.context = BoltContext(
            {"services": services, "bot_user_id": BOT, "atlas_surface": "console"}
        )

    def handle(self, line: str) -> bool:
        """One line typed; False when the console should end."""
        line = line.strip()
        if not line:
            return True
        if line in ("/quit", "/exit"):
            return False
        if line == "/help":
            self.chat.say(HELP)
        elif line.startswith("/atlas"):
            self._command(line.removeprefix("/atlas").strip())
        elif line == "/tick":
            result = housekeeping.daily(self.services)
            self.chat.say(f"(housekeeping ran: {_summary(result)})")
        elif line.isdigit():
            self._press(int(line))
        elif m := AS.match(line):
            emoji = "approve" if m.group("verb").lower() == "approve" else "reject"
            self._react(self._emoji(emoji), m.group("user"))
        elif m := REACTION.match(line):
            self._react(m.group("emoji"), m.group("user") or self.user)
        else:
            self.chat.say("(not understood; /help lists what the console takes)")
        return True

    def _ephemeral(self, **kw: Any) -> None:
        if kw.get("text"):
            self.chat.say(f"(only @{self.user} can see this) {mrkdwn(str(kw['text']))}")

    def _command(self, text: str) -> None:
        command = {
            "command": "/atlas",
            "text": text,
            "user_id": self.user,
            "channel_id": self.channel,
        }
        commands.atlas(self._ephemeral, command, self._ephemeral, self.context)

    def _emoji(self, verb: str) -> str:
        st = self.services.settings
        return st.approve_emojis[0] if verb == "approve" else st.reject_emojis[0]

    def _react(self, emoji: str, user: str) -> None:
        target = self._newest(lambda p: "request `req-" in str(p.blocks))
        if target is None:
            self.chat.say("(no request to react on yet: try /atlas drill)")
            return
        self.chat.say(f"{user} reacted :{emoji}: on #{target.number}")
        event = {
            "user": user,
            "reaction": emoji,
            "item": {"type": "message", "channel": target.channel, "ts": target.ts},
        }
        reactions.reaction_added(event, self.context)

    def _press(self, number: int) -> None:
        target = self._newest(lambda p: bool(p.buttons))
        if target is None or not 1 <= number <= len(target.buttons):
            self.chat.say("(no such button)")
            return
        button = target.buttons[number - 1]
        self.chat.say(f"{self.user} pressed [{number}] on #{target.number}")
        body = {
            "user": {"id": self.user},
            "channel": {"id": target.channel},
            "actions": [{"action_id": button.get("action_id"), "value": button.get("value")}],
        }
        if button.get("action_id") == actions.DRILL_ACTION:
            actions.start_drill(self._ephemeral, body, self._ephemeral, self.context)

    def _newest(self, want: Any) -> Posted | None:
        for posted in reversed(list(self.chat.messages.values())):
            if want(posted):
                return posted
        return None


def _summary(result: dict[str, Any]) -> str:
    reminders = result.get("reminders") or []
    pruned = result.get("pruned") or []
    sent = len(reminders) if isinstance(reminders, list) else int(reminders or 0)
    return f"{count(sent, 'reminder')}, " + (
        f"{len(pruned) if isinstance(pruned, list) else pruned} pruned"
    )


def main(settings: Settings, user: str = "you", out: TextIO | None = None) -> int:
    """Run the console until /quit or end of input."""
    out = out or sys.stdout
    approvers: dict[str, list[str]] = {}
    if not settings.approvers:  # someone must be able to approve: two colleagues
        settings.approvers = ["carol", "dave"]
    settings.channel = settings.channel or "console"  # this terminal is the channel
    chat = ConsoleChat(out, approvers)
    services = Services(settings, chat=chat)
    services.reported.recover()
    console = Console(services, chat, user)
    chat.say(
        f"Atlas console: you are @{user} in #{console.channel}; approvers: "
        f"{', '.join('@' + a for a in settings.approvers)}. /help lists what it takes."
    )
    try:
        while True:
            chat.prompt = f"{user}> "
            try:
                line = input(chat.prompt)
            except EOFError:
                break
            finally:
                chat.prompt = ""
            if not console.handle(line):
                break
    except KeyboardInterrupt:
        chat.say("")
    finally:
        services.background.shutdown(wait=True)
    return 0
