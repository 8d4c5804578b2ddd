"""`atlas restore`, `drill` and `drills`: restores into staging and scratch databases."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from bot.errors import AtlasError
from bot.records import DrillStatus, Kind
from bot.report import messages
from bot.words import human_seconds

# Each command imports what it needs when it runs: `atlas --help` loads click and little
# else, and `atlas list` never loads libpq, zstd or the restore code.
if TYPE_CHECKING:
    pass

from bot.cli.app import (
    drill_json,
    err,
    fail,
    local_time,
    main,
    open_services,
    operator_name,
    print_json,
    print_table,
)


def _restore_command(
    kind: Kind, snapshot_id: str | None, yes: bool, as_json: bool, database: str | None = None
) -> None:
    try:
        services = open_services(fleet=True)
        services.fleets.aim(database)  # an unknown name is refused with the known ones
        snap = services.restores.pick_snapshot(snapshot_id, database)
        if database is not None and snap.database != database:
            raise AtlasError(
                f"Snapshot {snap.id} is of {snap.database}, not {database}.",
                f"name a snapshot of {database}, or leave out --db",
            )
        _, staging = services.restores.staging_for(snap, kind)
        where = (
            f"a new scratch database on {staging.describe().rsplit('/', 1)[0]}"
            if kind == Kind.DRILL
            else f"{staging.describe()} (its current content is replaced)"
        )
        if not yes:
            if not sys.stdin.isatty():
                raise AtlasError(f"Refusing to {kind} without confirmation.", "pass --yes")
            click.confirm(f"{kind.title()} snapshot {snap.id} into {where}?", abort=True)
        try:
            drill = services.restores.run(
                kind=kind,
                snap_id=snap.id,
                requested_by=operator_name(),
                approved_by=["cli --yes" if yes else "cli confirm"],
                waiting=lambda text: err().print(text, highlight=False, markup=False),
            )
        except AtlasError as exc:  # it had begun: the channel hears of it, as of any job
            from bot.report.chat import Message

            Message(services.chat, services.settings.channel).post(
                messages.error(f"{kind.title()} of {snap.id} from the CLI failed: {exc}"), []
            )
            raise
        services.jobs.announce(drill, services.settings.channel)
    except AtlasError as exc:
        fail(exc, as_json, {"snapshot_id": snapshot_id})
        return
    if as_json:
        print_json(drill_json(drill))
    else:
        click.echo(
            f"{drill.id}: {drill.kind} of {drill.database} from {drill.snapshot_id}: "
            f"{drill.status} in {human_seconds(drill.total_s)}"
        )
        for c in drill.checks:
            click.echo(f"  {'ok  ' if c.passed else 'FAIL'} {c.name}: {c.detail}")
        for p in drill.problems:  # warnings are recorded among them, marked as such
            click.echo(f"  {p}" if p.startswith("warning: ") else f"  problem: {p}")
        if drill.error:
            click.echo(f"  error: {drill.error}")
    if drill.status != DrillStatus.PASSED:
        sys.exit(1)


DB_HELP = "The database (its name from `atlas list`; `server.name` in a fleet)."


@main.command()
@click.argument("snapshot_id")
@click.option("--db", "database", default=None, help=DB_HELP + " With `latest`: its newest.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True)
def restore(snapshot_id: str, database: str | None, yes: bool, as_json: bool) -> None:
    """Restore a snapshot into staging (STAGING_DATABASE_URL), then verify it."""
    _restore_command(Kind.RESTORE, snapshot_id, yes, as_json, database)


@main.command()
@click.argument("snapshot_id", required=False)
@click.option("--db", "database", default=None, help=DB_HELP + " Default: the first.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True)
def drill(snapshot_id: str | None, database: str | None, yes: bool, as_json: bool) -> None:
    """Restore drill: restore into a new scratch database, verify, report, drop."""
    _restore_command(Kind.DRILL, snapshot_id, yes, as_json, database)


@main.command()
@click.option("--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def drills(limit: int, as_json: bool) -> None:
    """Past drills and restores with their verdicts and timings."""
    try:
        rows = open_services().catalog.list_jobs(limit=limit)
    except AtlasError as exc:
        fail(exc, as_json)
        return
    if as_json:
        print_json([drill_json(r) for r in rows])
        return

    print_table(
        [
            [
                ("id", r.id),
                ("kind", str(r.kind)),
                ("database", r.database),
                ("snapshot", r.snapshot_id),
                ("verdict", str(r.status)),
                ("restore time", human_seconds(r.total_s)),
                ("started (UTC)", local_time(r.started_at)),
            ]
            for r in rows
        ]
    )
