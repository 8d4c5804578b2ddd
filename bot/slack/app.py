"""The Bolt app: Atlas's listeners on a client whose token Slack accepted."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from slack_bolt import App

from bot.errors import AtlasError
from bot.services import Services
from bot.slack.client import SlackChat

log = logging.getLogger(__name__)

Register = Callable[[App, Services], None]
LISTENERS = "atlas.slack_listeners"  # the entry-point group Slack listeners plug into


def installed_listeners() -> list[Register]:
    """The listener sets installed for this app (pyproject's `atlas.slack_listeners`):
    the Slack layer plugs into bot/ without bot/ importing it."""
    from importlib.metadata import entry_points

    return [ep.load() for ep in entry_points(group=LISTENERS)]


# Listeners wait on Slack's Web API (a reaction's reply, a message's edit). Bolt's default
# of 5 threads let five reactions on a slow day hold every thread, and every command then
# went unanswered past Slack's 3 s; threads that mostly wait cost little.
LISTENER_THREADS = 48


def build_app(services: Services, register: Register | None = None) -> App:
    """A Bolt app with Atlas's listeners (`register`, or the installed ones)."""
    settings = services.settings
    chat = services.chat
    if settings.slack_signing_secret is None or not isinstance(chat, SlackChat):
        raise AtlasError(
            "The Slack bot needs SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET.",
            "create the app from manifest.yml and copy both from its settings page",
        )
    check_slack(chat.client)
    logging.getLogger("slack_bolt.App").addFilter(_TokenNotice())
    app = App(
        client=chat.client,
        signing_secret=settings.slack_signing_secret.get_secret_value(),
        process_before_response=False,
        listener_executor=ThreadPoolExecutor(LISTENER_THREADS, thread_name_prefix="listener"),
        token_verification_enabled=False,  # check_slack did it, with a clear error
    )
    app.error(_one_line)  # a listener that failed is one log line, never a traceback
    registers = [register] if register is not None else installed_listeners()
    if not registers:
        raise AtlasError("No Slack listeners are installed.", "reinstall Atlas: pip install -e .")
    for add in registers:
        add(app, services)
    return app


def _one_line(error: Exception, body: dict[str, Any], response: Any = None) -> None:
    """What a listener could not handle: a signed request with a shape Slack does not
    send (a field of another type), or a fault of ours, in one line with what it was; a
    400, as the gate answers a body it cannot read (Slack would retry a 500)."""
    from bot.slack.http import one_line_error

    if response is not None and getattr(response, "status", None) == 500:
        response.status = 400
    what = body.get("type") or body.get("command") or "request"
    if isinstance(body.get("event"), dict):
        what = body["event"].get("type") or what
    log.warning("a Slack %s could not be handled: %s", what, one_line_error(error))
    log.debug("what could not be handled", exc_info=error)  # -v: the whole traceback


class _TokenNotice(logging.Filter):
    """Bolt warns that SLACK_BOT_TOKEN goes unused when it is given a client: it is used,
    by that client."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`token` will be unused" not in record.getMessage()


class _Quiet(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return False


def check_slack(client: Any) -> dict[str, Any]:
    """`auth.test` before serving: an invalid token or an unreachable Slack is one clear
    error at start, not a traceback, and not a bot that silently never answers."""
    from slack_sdk.errors import SlackApiError

    sdk_log = logging.getLogger("slack_sdk.web.base_client")
    quiet = _Quiet()
    sdk_log.addFilter(quiet)  # its retries would each log the same failure
    try:
        return dict(client.auth_test().data)
    except SlackApiError as exc:
        code = exc.response.get("error") if exc.response is not None else None
        raise AtlasError(
            f"Slack refused SLACK_BOT_TOKEN ({code or exc}).",
            "copy the Bot User OAuth Token (xoxb-…) from the app's OAuth & Permissions page, "
            "and reinstall the app if it was revoked",
        ) from None
    except (OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise AtlasError(
            f"Cannot reach Slack at {client.base_url}: {reason}.",
            "check the network, the proxy (HTTPS_PROXY) and SLACK_API_URL; "
            "Atlas exits so that its supervisor restarts it",
        ) from None
    finally:
        sdk_log.removeFilter(quiet)
