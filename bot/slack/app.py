"""Build the Bolt app from config and serve it over Socket Mode or HTTP."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from slack_bolt import App

from bot.config import Settings
from bot.errors import AtlasError
from bot.services import Services
from bot.slack.client import SlackChat
from bot.slack.http import make_server, wsgi

log = logging.getLogger(__name__)

Register = Callable[[App, Services], None]
LISTENERS = "atlas.slack_listeners"  # the entry-point group Slack listeners plug into


def installed_listeners() -> list[Register]:
    """The listener sets installed for this app (pyproject's `atlas.slack_listeners`):
    the Slack layer plugs into bot/ without bot/ importing it."""
    from importlib.metadata import entry_points

    return [ep.load() for ep in entry_points(group=LISTENERS)]


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
        token_verification_enabled=False,  # check_slack did it, with a clear error
    )
    registers = [register] if register is not None else installed_listeners()
    if not registers:
        raise AtlasError("No Slack listeners are installed.", "reinstall Atlas: pip install -e .")
    for add in registers:
        add(app, services)
    return app


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


def startup_checks(services: Services) -> None:
    """`atlas doctor` at every start: what is broken is said in the channel at once, not
    found during the first drill."""
    from bot.ops import doctor
    from bot.ops.findings import FAIL, OK
    from bot.report.chat import Message

    checks = doctor.run_all(services)
    failed = [c for c in checks if c.status == FAIL]
    for check in checks:
        log.log(
            logging.WARNING if check.status != OK else logging.INFO,
            "doctor: %s: %s",
            check.name,
            check.detail,
        )
    if failed:
        text = (
            ":rotating_light: Atlas started with problems to fix (`atlas doctor` shows them all):\n"
            + "\n".join(f"❌ *{c.name}*: {c.detail}" for c in failed)
        )
        Message(services.chat, services.settings.channel).post(text, [])


def _close_out(services: Services) -> None:
    """What the last run left: its snapshots, jobs and scratch databases. A fleet's
    databases are listed first, so the jobs of its databases are known by name; what
    cannot be closed out now is logged and tried again by the leader's recovery, never a
    reason not to serve (backups must go on)."""
    if services.settings.servers:
        services.fleets.listed()
    for step in (services.reported.recover, services.jobs.resume):
        try:
            step()
        except AtlasError as exc:
            log.error("at start, %s could not finish: %s", step.__name__, exc)


def run(
    settings: Settings, *, host: str, force_http: bool = False, port: int | None = None
) -> None:
    from bot.ops import scheduler
    from bot.restore.guard import refuse_catalog_among_targets

    refuse_catalog_among_targets(settings)
    services = Services.from_settings(settings)
    headless = settings.slack_bot_token is None and settings.slack_signing_secret is None
    if headless:  # the schedule, housekeeping, /healthz and /metrics; no chat
        log.warning(
            "Slack is not configured (SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET): serving the "
            "schedule, /healthz and /metrics only"
        )
        force_http = True
    app = None if headless else build_app(services)
    _close_out(services)
    threading.Thread(target=startup_checks, args=(services,), name="doctor", daemon=True).start()
    sched = scheduler.start(services)
    port = port or settings.http_port
    socket_mode = settings.slack_app_token is not None and not force_http
    server = make_server(wsgi(None if socket_mode else app, services), host, port)
    if socket_mode and app is not None:
        from slack_bolt.adapter.socket_mode import SocketModeHandler
        from slack_sdk.errors import SlackApiError

        assert settings.slack_app_token is not None
        threading.Thread(target=server.run, name="healthz", daemon=True).start()
        log.info("Atlas: Socket Mode, /healthz on %s:%s", host, port)
        try:
            SocketModeHandler(app, settings.slack_app_token.get_secret_value()).start()  # type: ignore[no-untyped-call]
        except SlackApiError as exc:
            code = exc.response.get("error") if exc.response is not None else None
            raise AtlasError(
                f"Slack refused SLACK_APP_TOKEN ({code or exc}).",
                "create an app-level token (xapp-…) with connections:write under Basic "
                "Information, or unset it to serve HTTP",
            ) from None
    else:
        log.info("Atlas: HTTP on %s:%s (POST /slack/events, GET /healthz)", host, port)
        try:
            server.run()
        finally:
            sched.shutdown()
            services.shutdown()
