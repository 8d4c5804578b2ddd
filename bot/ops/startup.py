"""What `atlas serve` does as it starts, before it answers anyone: close out what the
last run left, and say in the channel what `atlas doctor` finds broken."""

from __future__ import annotations

import logging

from bot.errors import AtlasError
from bot.services import Services

log = logging.getLogger(__name__)


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


def close_out(services: Services) -> None:
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
