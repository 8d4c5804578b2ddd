"""Background jobs inside `atlas serve` (APScheduler)."""

from __future__ import annotations

import logging

from apscheduler.schedulers.background import BackgroundScheduler

from bot.services import Services

log = logging.getLogger(__name__)


def start(services: Services) -> BackgroundScheduler:
    """Expire approval requests on time, so their messages say so without waiting for a click."""
    sched = BackgroundScheduler(timezone="UTC")
    sched.add_job(
        services.flow.expire_due,
        "interval",
        seconds=30,
        id="expire-requests",
        max_instances=1,
        coalesce=True,
    )
    sched.start()
    return sched
