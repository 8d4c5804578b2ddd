"""`atlas restore`, `drill` and `drills`: restores into staging and scratch databases."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from bot.errors import AtlasError
from bot.records import DrillStatus, JobRecord, Kind, Restore
from bot.report import messages
from bot.words import human_seconds

# Each command imports what it needs when it runs: `atlas --help` loads click and little
# else, and `atlas list` never loads libpq, zstd or the restore code.
if TYPE_CHECKING:
    pass

from bot.cli.app import (
    FROM_HELP,
    LIMIT,
    by_tags,
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
    kind: Kind,
    snapshot_id: str | None,
    yes: bool,
    as_json: bool,
    database: str | None = None,
    tables: tuple[str, ...] = (),
    tag_items: tuple[str, ...] = (),
    source: str | None = None,
) -> None:
    try:
        services = open_services(fleet=True, source=source)
        services.fleets.aim(database)  # an unknown name is refused with the known ones
        snapshot_id = by_tags(services, snapshot_id, tag_items, database)
        snap = services.restores.pick_snapshot(snapshot_id, database)
        services.scratch.clean_up()  # what a killed drill or refresh left on staging
        if database is not None and snap.database != database:
            raise AtlasError(
                f"Snapshot {snap.id} is of {snap.database}, not {database}.",
                f"name a snapshot of {database}, or leave out --db",
            )
        if tables:  # a mistyped table is refused before anything is asked or announced
            tables = services.restores.check_tables(snap, tables)
        _, staging = services.restores.staging_for(snap, kind)
        where = (
            f"a new scratch database on {staging.describe().rsplit('/', 1)[0]}"
            if kind == Kind.DRILL
            else f"{staging.describe()} ("
            + (
                "those tables are replaced, all at once"
                if tables
                else "its current content is replaced"
            )
            + ")"
        )
        what = f"table{'s' if len(tables) > 1 else ''} {', '.join(tables)} of " if tables else ""
        if not yes:
            if not sys.stdin.isatty():
                raise AtlasError(f"Refusing to {kind} without confirmation.", "pass --yes")
            click.confirm(f"{kind.title()} {what}snapshot {snap.id} into {where}?", abort=True)
        try:
            drill = services.restores.run(
                kind=kind,
                snap_id=snap.id,
                requested_by=operator_name(),
                approved_by=["cli --yes" if yes else "cli confirm"],
                waiting=lambda text: err().print(text, highlight=False, markup=False),
                tables=tables,
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
    _print_result(drill, as_json)


def _undo_command(database: str | None, yes: bool, as_json: bool) -> None:
    """Swap back the staging the newest refresh (or undo) of the database kept."""
    try:
        services = open_services(fleet=True)
        services.fleets.aim(database)
        services.scratch.clean_up()  # a killed refresh first: it may have kept something
        kept = services.restores.undo.kept(database)
        if not yes:
            if not sys.stdin.isatty():
                raise AtlasError("Refusing to undo without confirmation.", "pass --yes")
            click.confirm(
                f"Swap {kept.kept_db} (staging before {kept.id}) back in as {kept.target}? "
                "Staging as it is now is kept in turn",
                abort=True,
            )
        job = services.restores.undo.run(
            database=kept.database,
            requested_by=operator_name(),
            approved_by=["cli --yes" if yes else "cli confirm"],
            say=lambda text: err().print(text, highlight=False, markup=False),
            undoes=kept.id,  # what the prompt named
        )
        services.jobs.announce(job, services.settings.channel)
    except AtlasError as exc:
        fail(exc, as_json, {"undo": True, "database": database})
        return
    _print_result(job, as_json)


def _print_result(drill: JobRecord, as_json: bool) -> None:
    """The job's verdict, checks and problems; exit 1 unless it passed."""
    if as_json:
        print_json(drill_json(drill))
    else:
        what = (
            f"undo of {drill.undo_of} on {drill.database}"
            if isinstance(drill, Restore) and drill.undo_of
            else f"{drill.kind} of {drill.database} from {drill.snapshot_id}"
        )
        click.echo(f"{drill.id}: {what}: {drill.status} in {human_seconds(drill.total_s)}")
        if isinstance(drill, Restore) and drill.swapped:
            kept = f"; kept {drill.kept_db} for --undo" if drill.kept_dropped is False else ""
            click.echo(f"  swapped in as {drill.target} in {human_seconds(drill.swap_s)}{kept}")
        for c in drill.checks:
            click.echo(f"  {'ok  ' if c.passed else 'FAIL'} {c.name}: {c.detail}")
        for p in drill.problems:  # warnings are recorded among them, marked as such
            click.echo(f"  {p}" if p.startswith("warning: ") else f"  problem: {p}")
        if drill.error:
            click.echo(f"  error: {drill.error}")
    if drill.status != DrillStatus.PASSED:
        sys.exit(1)


DB_HELP = "The database (its name from `atlas list`; `server.name` in a fleet)."
TAG_PICK = "The newest good snapshot tagged KEY=VALUE (repeat: all of them), instead of an id."
TABLE_HELP = "Only this table (repeat for more), with its indexes, constraints and sequences."


@main.command()
@click.argument("snapshot_id", required=False)
@click.option("--db", "database", default=None, help=DB_HELP + " With `latest`: its newest.")
@click.option(
    "--undo", is_flag=True, help="Swap back the staging the last refresh replaced (and kept)."
)
@click.option("--table", "tables", multiple=True, metavar="SCHEMA.TABLE", help=TABLE_HELP)
@click.option("--tag", "tag_items", multiple=True, metavar="KEY=VALUE", help=TAG_PICK)
@click.option("--from", "source", default=None, metavar="NAME", help=FROM_HELP)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True)
def restore(
    snapshot_id: str | None,
    database: str | None,
    undo: bool,
    tables: tuple[str, ...],
    tag_items: tuple[str, ...],
    source: str | None,
    yes: bool,
    as_json: bool,
) -> None:
    """Refresh staging (STAGING_DATABASE_URL) from a snapshot: restored into a new database
    beside it, verified, then swapped in; staging as it was is kept for --undo. With
    --table, only those tables are replaced in staging, in one transaction."""
    if undo and (tables or tag_items or source):
        fail(
            AtlasError(
                "--undo takes no --table, --tag or --from.", "atlas restore --undo [--db NAME]"
            ),
            as_json,
        )
    elif undo and snapshot_id:
        fail(
            AtlasError("--undo takes no snapshot id.", "atlas restore --undo [--db NAME]"), as_json
        )
    elif undo:
        _undo_command(database, yes, as_json)
    elif not snapshot_id and not tag_items:
        fail(
            AtlasError(
                "atlas restore needs a snapshot id.",
                "name one (or `latest`), pass --tag KEY=VALUE, or pass --undo",
            ),
            as_json,
        )
    else:
        _restore_command(
            Kind.RESTORE, snapshot_id, yes, as_json, database, tables, tag_items, source
        )


@main.command()
@click.argument("snapshot_id", required=False)
@click.option("--db", "database", default=None, help=DB_HELP + " Default: the first.")
@click.option("--table", "tables", multiple=True, metavar="SCHEMA.TABLE", help=TABLE_HELP)
@click.option("--tag", "tag_items", multiple=True, metavar="KEY=VALUE", help=TAG_PICK)
@click.option("--from", "source", default=None, metavar="NAME", help=FROM_HELP)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--json", "as_json", is_flag=True)
def drill(
    snapshot_id: str | None,
    database: str | None,
    tables: tuple[str, ...],
    tag_items: tuple[str, ...],
    source: str | None,
    yes: bool,
    as_json: bool,
) -> None:
    """Restore drill: restore into a new scratch database, verify, report, drop. With
    --table, only those tables (and what they need) are restored and checked; with
    --from, the snapshot is read from that copy (each copy should be drilled too)."""
    _restore_command(Kind.DRILL, snapshot_id, yes, as_json, database, tables, tag_items, source)


@main.command()
@click.option("--limit", default=20, show_default=True, type=LIMIT)
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
