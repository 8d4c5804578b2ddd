"""A running Atlas Bolt app on a local port, wired to the fake Slack Web API."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import handlers
from bot.services import Services
from bot.slack.app import build_app
from bot.slack.client import make_client
from bot.slack.http import make_server, wsgi
from tests.support import pick_free_port
from tests.support.helpers import services_for, settings_for
from tests.support.slack import FakeSlackApi, post_event, post_slash_command, reaction_event

SECRET = "test-signing-secret"
TOKEN = "xoxb-secret-bot-token-123"


@dataclass
class Bot:
    url: str
    services: Services
    slack: FakeSlackApi

    def command(self, text: str, **kw) -> tuple[int, str]:
        kw.setdefault("response_url", self.slack.response_url)
        return post_slash_command(self.url, SECRET, text=text, **kw)

    def wait_final(self, timeout: float = 30) -> dict:
        return self.slack.wait_for(
            lambda c: (
                c["method"] in ("chat.update", "chat.postMessage")
                and (
                    ":white_check_mark:" in str(c["params"].get("text"))
                    or ":x:" in str(c["params"].get("text"))
                )
            ),
            timeout=timeout,
        )

    def react(
        self, user: str, emoji: str, ts: str, *, added: bool = True, channel: str = "C1", **kw: Any
    ):
        event = reaction_event("added" if added else "removed", user, emoji, channel, ts)
        return post_event(self.url, SECRET, event, **kw)


def _serve(server: Any) -> None:
    """waitress's loop; a test closing the server under it ends it with EBADF, which is
    the end of the test, not an error in the bot."""
    try:
        server.run()
    except OSError:
        sock = getattr(server, "socket", None)  # None once closed
        if sock is not None and sock.fileno() != -1:
            raise


def start_bot(pg_url: str, tmp_path, slack: FakeSlackApi, **env: str) -> tuple[Bot, object]:
    settings = settings_for(
        pg_url,
        tmp_path,
        SLACK_BOT_TOKEN=TOKEN,
        SLACK_SIGNING_SECRET=SECRET,
        SLACK_API_URL=slack.url,
        ATLAS_CHANNEL="CATLAS",
        **env,
    )
    services = services_for(settings, make_client(settings, timeout=2))
    app = build_app(services, handlers.register)
    port = pick_free_port()
    server = make_server(wsgi(app, services), "127.0.0.1", port)
    threading.Thread(target=_serve, args=(server,), daemon=True).start()
    return Bot(f"http://127.0.0.1:{port}", services, slack), server
