"""`atlas snapshot`, `list`, `show`, `verify`, `fetch`, `keep`, `unkeep`, `prune` and
`rescan`: the snapshots."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from bot.errors import AtlasError
from bot.redaction import redact_value
from bot.report import messages
from bot.tags import render
from bot.words import count, human_seconds

# Each command imports what it needs when it runs: `atlas --help` loads click and little
# else, and `atlas list` never loads libpq, zstd or the restore code.
if TYPE_CHECKING:
    from bot.backup.take import DumpProgress
    from bot.records import Copy, Snapshot
    from bot.services import Services

from bot.cli.app import (
    FROM_HELP,
    LIMIT,
    TAG_HELP,
    by_tags,
    err,
    escape,
    fail,
    local_time,
    main,
    open_services,
    operator_name,
    print_json,
    print_table,
    snapshot_json,
)


@main.command()
@click.option("--note", default="", help="Why this snapshot exists, e.g. 'deploy abc123'.")
@click.option(
    "--tag",
    "tag_items",
    multiple=True,
    metavar="KEY=VALUE",
    help="A version it is taken at, e.g. app=abc123 (repeat for more; adds to "
    "ATLAS_SNAPSHOT_TAGS).",
)
@click.option("--db", "database", default=None, help="Database name from ATLAS_CONFIG.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--provider", is_flag=True, help="Also start an RDS snapshot (ATLAS_RDS_INSTANCE).")
@click.option(
    "--all",
    "everything",
    is_flag=True,
    help="Every database: configured, and all that ATLAS_DATABASES / [servers] select.",
)
def snapshot(
    note: str,
    tag_items: tuple[str, ...],
    database: str | None,
    as_json: bool,
    provider: bool,
    everything: bool,
) -> None:
    """Dump, compress, store and verify a snapshot now; print its id."""
    from bot.tags import parse

    try:
        tags = parse(tag_items)
    except AtlasError as exc:
        fail(exc, as_json)
        return
    if everything:
        if database or provider:
            fail(AtlasError("--all takes no --db or --provider."), as_json)
        _snapshot_all(note, tags, as_json)
        return
    try:
        services = open_services(fleet=database is not None)
        show_bar = not as_json and sys.stderr.isatty()
        with _progress_bar(show_bar) as on_progress:
            row = services.reported.take(
                requested_by=operator_name(),
                note=note,
                database=database,
                source="cli",
                progress=on_progress,
                provider=provider,
                tags=tags,
            )
    except AtlasError as exc:
        fail(exc, as_json)
        return
    copies = _copies(services, row.id)
    if as_json:
        print_json(snapshot_json(row, copies))
    else:
        err().print(
            f"[green]ok[/] {messages.human_bytes(row.size_bytes)} in "
            f"{human_seconds(row.duration_s)}, sha256 {(row.sha256 or '')[:12]}, "
            f"{escape(row.location or '')}",
            highlight=False,
        )
        if copies is not None:
            err().print(messages.copies_summary(copies), highlight=False, markup=False)
        click.echo(row.id)


def _copies(services: Services, snapshot_id: str) -> list[Copy] | None:
    """A snapshot's copies, when ATLAS_COPIES names destinations or it has some."""
    found = services.catalog.copies_of(snapshot_id)
    return found if found or services.settings.copies else None


def _snapshot_all(note: str, tags: dict[str, str], as_json: bool) -> None:
    """`snapshot --all`: one line per database, the gone and the unlistable named; exit 1
    when any database failed or a server could not be listed."""
    try:
        services = open_services()
        fleet, outcomes = services.fleets.snapshot(
            requested_by=operator_name(), note=note, tags=tags
        )
    except AtlasError as exc:
        fail(exc, as_json)
        return
    failed = [o for o in outcomes if o.error]
    bad = bool(failed or fleet.problems or fleet.skipped)  # a skipped database fails the run
    if as_json:
        print_json(
            {
                "status": "failed" if bad else "ok",
                "snapshots": [snapshot_json(o.snapshot) for o in outcomes if o.snapshot],
                "failed": [{"database": o.database, "error": o.error} for o in failed],
                "gone": fleet.gone,
                "skipped": fleet.skipped,
                "problems": fleet.problems,
            }
        )
    else:
        console = err()
        for o in outcomes:
            if o.snapshot:
                s = o.snapshot
                console.print(
                    f"[green]ok[/]     {escape(o.database)}: {escape(s.id)} "
                    f"{messages.human_bytes(s.size_bytes)} in {human_seconds(s.duration_s)}",
                    highlight=False,
                )
            else:
                console.print(
                    f"[bold red]FAILED[/] {escape(o.database)}: {escape(o.error or '')}",
                    highlight=False,
                )
        for name in fleet.gone:
            console.print(
                f"[yellow]gone[/]   {escape(name)}: no longer on its server; its snapshots "
                "are kept under retention",
                highlight=False,
            )
        for line in [*fleet.skipped, *fleet.problems]:
            console.print(f"[bold red]error:[/] {escape(line)}", highlight=False)
        skipped = f"; {count(len(fleet.skipped), 'database')} skipped" if fleet.skipped else ""
        console.print(
            f"{len(outcomes) - len(failed)} of {count(len(outcomes), 'snapshot')} ok "
            f"(each database, and each server's roles){skipped}",
            highlight=False,
        )
        for o in outcomes:
            if o.snapshot:
                click.echo(o.snapshot.id)
    if bad:
        sys.exit(1)


class _progress_bar:
    """A rich progress bar on a TTY; a no-op callback elsewhere (CI logs stay clean)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None

    def __enter__(self) -> Callable[[DumpProgress], None]:
        if not self.enabled:
            return lambda p: None
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.bar = Progress(
            TextColumn("dumping"),
            BarColumn(),
            DownloadColumn(),
            TextColumn("stored {task.fields[stored]}"),
            TimeElapsedColumn(),
            console=err(),
            transient=True,
        )
        self.bar.start()
        task = self.bar.add_task("dump", total=None, stored="0 B")

        def update(p: DumpProgress) -> None:
            assert self.bar is not None
            self.bar.update(
                task, completed=p.raw_bytes, stored=messages.human_bytes(p.stored_bytes)
            )

        return update

    def __exit__(self, *exc: object) -> None:
        if self.bar:
            self.bar.stop()


@main.command("list")
@click.option("--limit", default=20, show_default=True, type=LIMIT)
@click.option("--db", "database", default=None)
@click.option(
    "--tag", "tag_items", multiple=True, metavar="KEY=VALUE", help="Only those tagged so."
)
@click.option("--json", "as_json", is_flag=True)
def list_(limit: int, database: str | None, tag_items: tuple[str, ...], as_json: bool) -> None:
    """Recent snapshots, newest first."""
    from bot.tags import parse

    try:
        wanted = parse(tag_items)
        services = open_services()
        rows = services.snapshots.recent(limit=limit, database=database, tags=wanted)
        if not rows and database:
            _known_database(services, database)
    except AtlasError as exc:
        fail(exc, as_json)
        return
    copies: dict[str, list[Copy]] = {}
    for c in services.catalog.copies_of(*(r.id for r in rows)):
        copies.setdefault(c.snapshot_id, []).append(c)
    if as_json:
        has = bool(copies or services.settings.copies)
        print_json([snapshot_json(r, copies.get(r.id, []) if has else None) for r in rows])
        return
    if not rows:  # said on stderr: stdout stays what a script reads
        where = f" of {database}" if database else ""
        if tag_items:
            where += f" tagged {' '.join(tag_items)}"
        err().print(
            f"No snapshots{where} yet. Take one: atlas snapshot"
            + (f" --db {database}" if database else ""),
            highlight=False,
            markup=False,
        )
        return

    envs = {r.environment for r in rows}
    print_table(
        [
            [
                ("id", r.id),
                ("database", r.database),
                *([("env", r.environment)] if len(envs) > 1 else []),
                ("status", f"{r.status}, kept" if r.pinned else str(r.status)),
                ("size", messages.human_bytes(r.size_bytes) if r.size_bytes else ""),
                ("started (UTC)", local_time(r.started_at)),
                *([("tags", render(r.tags))] if any(x.tags for x in rows) else []),
                *([("copies", _copy_mark(r, copies.get(r.id, [])))] if copies else []),
            ]
            for r in rows
        ],
        notes=[escape((r.note or "")[:40]) for r in rows],
    )


def _copy_mark(snap: Snapshot, copies: list[Copy]) -> str:
    """'2/2', or '1/2 incomplete' for a good snapshot whose copies are not all made."""
    from bot.records import CopyState

    if not copies:
        return ""
    good = sum(c.state == CopyState.OK for c in copies)
    mark = f"{good}/{len(copies)}"
    return mark if good == len(copies) or snap.status != "ok" else f"{mark} incomplete"


def _known_database(services: Services, database: str) -> None:
    """A --db that names no configured database and nothing in the catalog is a typo."""
    if database in services.settings.databases or services.catalog.snapshot_counts(database):
        return
    known = ", ".join(sorted(services.settings.databases)) or "none"
    raise AtlasError(
        f"No database {database!r} is configured, and the catalog holds none of that name.",
        f"configured: {known}",
    )


@main.command()
@click.argument("snapshot_id")
@click.option("--json", "as_json", is_flag=True)
def show(snapshot_id: str, as_json: bool) -> None:
    """Everything the catalog knows about one snapshot."""
    try:
        services = open_services()
        row = services.snapshots.get(snapshot_id)
    except AtlasError as exc:
        fail(exc, as_json)
        return
    copies = _copies(services, row.id)
    if as_json:
        print_json(snapshot_json(row, copies))
        return
    doc = snapshot_json(row)
    manifest = doc.pop("manifest", None) or {}
    width = max(len(k) for k in doc)
    for key, value in doc.items():
        if value is None or value == "":
            continue
        if key == "pinned":
            value = "yes (retention never deletes it)" if value else "no"
        if key == "tags":
            value = render(value)
        click.echo(f"{key:<{width}}  {redact_value(str(value))}")
    tables = manifest.get("tables") or {}
    if manifest:
        click.echo(
            f"{'manifest':<{width}}  {count(len(tables), 'table')}, "
            f"{count(sum(tables.values()), 'row')}, "
            f"{count(len(manifest.get('sequences') or {}), 'sequence')}, "
            f"extensions: {', '.join(sorted(manifest.get('extensions') or {})) or 'none'}"
        )
    for c in copies or []:
        where = c.location or c.destination
        err_text = f" ({c.error})" if c.error and c.state != "ok" else ""
        click.echo(f"{'copy ' + c.destination:<{width}}  {c.state}, {where}{err_text}")


@main.command()
@click.argument("snapshot_id")
@click.option("--from", "source", default=None, metavar="NAME", help=FROM_HELP)
@click.option("--json", "as_json", is_flag=True)
def verify(snapshot_id: str, source: str | None, as_json: bool) -> None:
    """Re-read a stored snapshot: size, checksums, and the archive read through to its end.
    With --from, its copy in that destination, read where it lies."""
    try:
        done = open_services(source=source).reader.verify(snapshot_id, actor=operator_name())
    except AtlasError as exc:
        fail(exc, as_json, {"id": snapshot_id})
        return
    if as_json:
        print_json({**snapshot_json(done.snapshot), "verify_s": round(done.seconds, 3)})
    else:
        snap = done.snapshot
        where = f" (the copy in {source})" if source else ""
        click.echo(f"ok {snap.id}{where}: {snap.size_bytes} bytes, sha256 {snap.sha256}")


@main.command()
@click.argument("snapshot_id", required=False)
@click.option("-o", "--output", required=True, help="File to write, or - for stdout.")
@click.option("--db", "database", default=None, help="The database the snapshot must be of.")
@click.option("--tag", "tag_items", multiple=True, metavar="KEY=VALUE", help=TAG_HELP)
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
@click.option("--from", "source", default=None, metavar="NAME", help=FROM_HELP)
@click.option(
    "--table",
    "tables",
    multiple=True,
    metavar="SCHEMA.TABLE",
    help="Only this table (repeat for more), with what it needs to restore into an empty database.",
)
def fetch(
    snapshot_id: str | None,
    output: str,
    database: str | None,
    tag_items: tuple[str, ...],
    force: bool,
    source: str | None,
    tables: tuple[str, ...],
) -> None:
    """Write the plain pg_dump custom-format file, ready for the runbook's pg_restore
    (with --table, a custom-format file of just those tables)."""
    if output == "-" and sys.stdout.isatty():
        fail(
            AtlasError(
                "Refusing to write a binary dump to the terminal.",
                f"redirect it (atlas fetch {snapshot_id or 'ID'} -o - > app.dump), or pass -o FILE",
            ),
            False,
        )
        return
    try:
        cut = None
        services = open_services(source=source)
        if tables:
            from bot.restore.partial import cutter

            cut = cutter(tables, services.store.get)
        ref = by_tags(services, snapshot_id, tag_items, database)
        if not ref:
            raise AtlasError("atlas fetch needs a snapshot id.", "name one, or pass --tag")
        row = services.reader.fetch(ref, output, force=force, cut=cut, database=database)
    except AtlasError as exc:
        fail(exc, False)
        return
    if output != "-" and tables:
        err().print(
            f"wrote {output}: {', '.join(tables)} from {row.id} (checksums ok). Restore into "
            f'an empty database: pg_restore --no-owner --no-acl --dbname "$URL" {output}',
            highlight=False,
            markup=False,
        )
    elif output != "-":
        err().print(
            f"wrote {output} ({messages.human_bytes(row.raw_size_bytes)}, checksums ok). "
            f'Restore: pg_restore --clean --if-exists --no-owner --no-acl --dbname "$STAGING_DATABASE_URL" {output}',
            highlight=False,
            markup=False,
        )


@main.command()
@click.option("--dry-run", is_flag=True, help="Show what would be deleted; delete nothing.")
@click.option("--json", "as_json", is_flag=True)
def prune(dry_run: bool, as_json: bool) -> None:
    """Apply the retention policy (ATLAS_RETENTION_DAYS and keep-daily/weekly/monthly)."""
    from bot.ops import housekeeping

    try:
        decisions, copies = housekeeping.prune_all(
            open_services(), dry_run=dry_run, actor=operator_name()
        )
    except AtlasError as exc:
        fail(exc, as_json)
        return
    if as_json:
        doc: dict[str, Any] = {"dry_run": dry_run, "decisions": [d.__dict__ for d in decisions]}
        if copies:
            doc["copies"] = {n: [d.__dict__ for d in ds] for n, ds in copies.items()}
        print_json(doc)
        return
    verb = "would delete" if dry_run else "deleted"
    for place, ds in [("ATLAS_STORAGE", decisions), *((f"copy {n}", d) for n, d in copies.items())]:
        if copies:
            click.echo(f"{place}:")
        for d in ds:
            click.echo(f"{'keep  ' if d.keep else verb:<12} {d.snapshot_id}  {d.reason}")
        pruned = sum(not d.keep for d in ds)
        click.echo(f"{len(ds) - pruned} kept, {pruned} {verb}")


@main.command()
@click.option("--dry-run", is_flag=True, help="Show what would be registered; change nothing.")
@click.option(
    "--from",
    "source",
    default=None,
    metavar="NAME",
    help="Rescan this destination of ATLAS_COPIES.",
)
@click.option("--json", "as_json", is_flag=True)
def rescan(dry_run: bool, source: str | None, as_json: bool) -> None:
    """Rebuild the catalog from ATLAS_STORAGE: register every snapshot whose sidecar and
    artifact are there but that the catalog does not know (e.g. after losing ATLAS_STATE).
    With --from, from a copy alone (snapshots ATLAS_STORAGE lacks are read --from it).
    Exits 1 when a sidecar had to be skipped."""
    try:
        services = open_services(fleet=True, source=source)
        results = services.rescanner.rescan(operator_name(), dry_run=dry_run)
    except AtlasError as exc:
        fail(exc, as_json)
        return
    skipped = [r for r in results if r.outcome == "skipped"]
    if as_json:
        print_json({"dry_run": dry_run, "results": [r.to_json() for r in results]})
    else:
        verb = "would import" if dry_run else "imported"
        for r in results:
            label = verb if r.outcome == "imported" else r.outcome
            reason = f"  {r.reason}" if r.reason else ""
            click.echo(f"{label:<13} {r.id}{reason}")
        imported = sum(r.outcome == "imported" for r in results)
        known = sum(r.outcome == "known" for r in results)
        other = sorted({r.key.rsplit("/", 1)[0] for r in results if r.outcome == "other"})
        click.echo(f"{imported} {verb}, {known} already known, {len(skipped)} skipped")
        if other:
            click.echo(
                f"Not configured here, left alone: {', '.join(other)} "
                "(add them to ATLAS_CONFIG to adopt their snapshots)"
            )
    if skipped:
        sys.exit(1)


def _pin(snapshot_id: str, pinned: bool) -> None:
    try:
        row = open_services().snapshots.pin(snapshot_id, pinned, actor=operator_name())
    except AtlasError as exc:
        fail(exc, False)
        return
    state = "kept until `atlas unkeep`" if pinned else "back under the retention policy"
    click.echo(f"{row.id} is {state}")


@main.command()
@click.argument("snapshot_id")
def keep(snapshot_id: str) -> None:
    """Pin a snapshot so retention never deletes it (e.g. the one before a big migration)."""
    _pin(snapshot_id, True)


@main.command()
@click.argument("snapshot_id")
def unkeep(snapshot_id: str) -> None:
    """Release a pinned snapshot back to the retention policy."""
    _pin(snapshot_id, False)
