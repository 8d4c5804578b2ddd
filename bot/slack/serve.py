"""`atlas serve`: the Bolt app over Socket Mode or HTTP, with `/healthz`, `/metrics` and
the schedule; without Slack, the schedule and the endpoints alone."""

from __future__ import annotations

import logging
import threading

from bot.config import Settings
from bot.errors import AtlasError
from bot.ops.startup import close_out, startup_checks
from bot.services import Services
from bot.slack.app import build_app
from bot.slack.http import make_server, wsgi

log = logging.getLogger(__name__)


def run(
    settings: Settings, *, host: str, force_http: bool = False, port: int | None = None
) -> None:
    """`atlas serve`: the checks that must pass first, then the scheduler, `/healthz`
    and (with Slack settings) the Bolt app, until SIGTERM."""
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
    close_out(services)
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
