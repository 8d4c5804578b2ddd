"""`atlas`: the same operations as the Slack bot, for terminals and deploy pipelines."""

from __future__ import annotations

import gc
import getpass
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bot import records
from bot.errors import AtlasError, Interrupted
from bot.records import DrillStatus, Kind
from bot.redaction import install_logging, redact_value
from bot.report import messages
from bot.version import PACKAGE
from bot.words import count, human_seconds

# Each command imports what it needs when it runs: `atlas --help` loads click and little
# else, and `atlas list` never loads libpq, zstd or the restore code.
if TYPE_CHECKING:
    from bot.backup.take import DumpProgress
    from bot.records import Drill, Snapshot
    from bot.services import Services

_stderr: Any = None


def err() -> Any:
    """rich's console on stderr, made on first use (`--json` runs never import rich). The
    real Console, not a proxy: rich's progress bar uses it as a context manager."""
    global _stderr
    if _stderr is None:
        from rich.console import Console

        _stderr = Console(stderr=True, soft_wrap=True)
    return _stderr


def escape(text: str) -> str:
    """Text shown as is by rich, whatever brackets it holds."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def _when(iso: str | None) -> str:
    """'2026-11-24T17:32:08.123+00:00' -> '2026-11-24 17:32:08' (catalog times are UTC)."""
    return (iso or "")[:19].replace("T", " ")


def _out() -> Any:
    """Tables at full width when piped, so ids are never cut."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=250)


def snapshot_json(snap: Snapshot) -> dict[str, Any]:
    """A snapshot as `--json` prints it: the public fields, and the manifest when there is
    one (as it always was)."""
    out = records.public(snap)
    if snap.manifest:
        out["manifest"] = snap.manifest
    return out


def drill_json(drill: Drill) -> dict[str, Any]:
    return records.public(drill)


def _services(fleet: bool = False) -> Services:
    """Services for one command. Snapshots left `running` by a process that died (an OOM
    kill, a cancelled CI job) are closed out first, so no command shows them as running.
    With `fleet`, the configured servers are listed so their databases are known."""
    from bot.config import load_settings
    from bot.services import Services

    services = Services.from_settings(load_settings())
    services.reported.recover()
    if fleet and services.settings.servers:
        services.fleets.listed()
    return services


def _json(value: Any, indent: int | None = None) -> None:
    """One JSON document on stdout, with every string redacted on its way out."""
    click.echo(json.dumps(redact_value(value), indent=indent))


def _fail(exc: AtlasError, as_json: bool, extra: dict[str, Any] | None = None) -> None:
    if as_json:
        _json({"status": "failed", "error": str(exc), **(extra or {})})
    else:
        # One line, what is wrong and then what to do: the same words as in Slack and JSON.
        err().print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
    sys.exit(1)


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM (a cancelled CI job) cleans up like Ctrl-C: nothing half-written stays."""
    raise KeyboardInterrupt


def _interrupted(exc: KeyboardInterrupt, as_json: bool) -> None:
    """Ctrl-C or SIGTERM: one line saying what state things were left in (the job says,
    when one was running), and the shell's exit status for an interrupt."""
    what = exc.message if isinstance(exc, Interrupted) else "Interrupted (Ctrl-C)."
    if as_json:
        _json({"status": "interrupted", "error": what})
    else:
        err().print(f"[bold red]error:[/] {escape(what)}", highlight=False)
    sys.exit(130)


def _reader_left() -> None:
    """`atlas show ID | head -1`: the reader has what it wanted. Exit as a Unix tool killed
    by SIGPIPE does (status 141), without a word, and without Python's complaint at exit
    about the stdout it can no longer flush."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(128 + signal.SIGPIPE)


def _operator() -> str:
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


class _Group(click.Group):
    """Every command fails the same way: one clear, redacted line (or one JSON object with
    --json) and exit 1, never a traceback, whatever went wrong."""

    def invoke(self, ctx: click.Context) -> Any:
        as_json = "--json" in sys.argv[1:]
        try:
            try:
                return super().invoke(ctx)
            finally:
                sys.stdout.flush()  # a reader that left early is met here, not at exit
        except BrokenPipeError:
            _reader_left()
        except AtlasError as exc:
            _fail(exc, as_json)
        except KeyboardInterrupt as exc:
            _interrupted(exc, as_json)
        except click.Abort:  # "no" at a confirmation, or Ctrl-C there: click says "Aborted!"
            _fail(AtlasError("Cancelled: nothing was done."), as_json)
        except (click.exceptions.Exit, click.ClickException):
            raise
        except Exception as exc:
            logging.getLogger("atlas").debug("unexpected error", exc_info=True)
            _fail(
                AtlasError(
                    f"Unexpected error: {type(exc).__name__}: {exc}",
                    "run with -v to log the details, and report it",
                ),
                as_json,
            )


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log what Atlas does to stderr.")
@click.version_option(package_name=PACKAGE, prog_name="atlas")
def main(verbose: bool) -> None:
    """Atlas: PostgreSQL backups that are proven to restore. It takes snapshots, stores
    them in a folder or S3, verifies them, restores them into scratch databases (drills)
    and staging (refreshes) after approval in Slack, prunes them by policy, and reminds the
    team when a drill is due.

    Configuration comes from the environment (DATABASE_URL, STAGING_DATABASE_URL,
    ATLAS_STORAGE, ATLAS_STATE, ...; see README). New here? `atlas demo` shows it all on a
    throwaway server, and `atlas doctor` checks your settings. Every command exits non-zero
    on failure.
    """
    # What the imports created lives as long as the process: keeping it out of the
    # cyclic GC makes collections, and interpreter exit, measurably cheaper.
    gc.freeze()
    signal.signal(signal.SIGTERM, _terminate)
    # A command's own output says what went wrong, in one line: without -v the log adds
    # only errors (`serve`, a daemon whose log is its output, keeps its warnings)
    install_logging(logging.DEBUG if verbose else logging.ERROR)
    if verbose:  # the libraries' own chatter stays at INFO
        for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "slack_sdk", "slack_bolt"):
            logging.getLogger(noisy).setLevel(logging.INFO)


@main.command()
@click.option("--note", default="", help="Why this snapshot exists, e.g. 'deploy abc123'.")
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
    note: str, database: str | None, as_json: bool, provider: bool, everything: bool
) -> None:
    """Dump, compress, store and verify a snapshot now; print its id."""
    if everything:
        if database or provider:
            _fail(AtlasError("--all takes no --db or --provider."), as_json)
        _snapshot_all(note, as_json)
        return
    try:
        services = _services(fleet=database is not None)
        show_bar = not as_json and sys.stderr.isatty()
        with _progress_bar(show_bar) as on_progress:
            row = services.reported.take(
                requested_by=_operator(),
                note=note,
                database=database,
                source="cli",
                progress=on_progress,
                provider=provider,
            )
    except AtlasError as exc:
        _fail(exc, as_json)
        return
    if as_json:
        _json(snapshot_json(row))
    else:
        err().print(
            f"[green]ok[/] {messages.human_bytes(row.size_bytes)} in "
            f"{human_seconds(row.duration_s)}, sha256 {(row.sha256 or '')[:12]}, "
            f"{escape(row.location or '')}",
            highlight=False,
        )
        click.echo(row.id)


def _snapshot_all(note: str, as_json: bool) -> None:
    """`snapshot --all`: one line per database, the gone and the unlistable named; exit 1
    when any database failed or a server could not be listed."""
    try:
        services = _services()
        fleet, outcomes = services.fleets.snapshot(requested_by=_operator(), note=note)
    except AtlasError as exc:
        _fail(exc, as_json)
        return
    failed = [o for o in outcomes if o.error]
    bad = bool(failed or fleet.problems or fleet.skipped)  # a skipped database fails the run
    if as_json:
        _json(
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
@click.option("--limit", default=20, show_default=True)
@click.option("--db", "database", default=None)
@click.option("--json", "as_json", is_flag=True)
def list_(limit: int, database: str | None, as_json: bool) -> None:
    """Recent snapshots, newest first."""
    try:
        services = _services()
        rows = services.snapshots.recent(limit=limit, database=database)
        if not rows and database:
            _known_database(services, database)
    except AtlasError as exc:
        _fail(exc, as_json)
        return
    if as_json:
        _json([snapshot_json(r) for r in rows])
        return
    if not rows:  # said on stderr: stdout stays what a script reads
        where = f" of {database}" if database else ""
        err().print(
            f"No snapshots{where} yet. Take one: atlas snapshot"
            + (f" --db {database}" if database else ""),
            highlight=False,
            markup=False,
        )
        return

    envs = {r.environment for r in rows}
    _print_table(
        [
            [
                ("id", r.id),
                ("database", r.database),
                *([("env", r.environment)] if len(envs) > 1 else []),
                ("status", f"{r.status}, kept" if r.pinned else str(r.status)),
                ("size", messages.human_bytes(r.size_bytes) if r.size_bytes else ""),
                ("started (UTC)", _when(r.started_at)),
            ]
            for r in rows
        ],
        notes=[escape((r.note or "")[:40]) for r in rows],
    )


def _known_database(services: Services, database: str) -> None:
    """A --db that names no configured database and nothing in the catalog is a typo."""
    if database in services.settings.databases or services.catalog.snapshot_counts(database):
        return
    known = ", ".join(sorted(services.settings.databases)) or "none"
    raise AtlasError(
        f"No database {database!r} is configured, and the catalog holds none of that name.",
        f"configured: {known}",
    )


def _print_table(rows: list[list[tuple[str, str]]], notes: list[str] | None = None) -> None:
    """A table whose ids and times are never cut (they are copied whole); the notes take
    what width is left."""
    from rich import box
    from rich.table import Table

    if not rows:
        return
    from rich.measure import Measurement

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for i, (name, _) in enumerate(rows[0]):
        width = max(len(name), *(len(r[i][1]) for r in rows))
        table.add_column(name, no_wrap=True, min_width=width)
    if notes is not None:
        table.add_column("note", overflow="ellipsis", no_wrap=True, max_width=40)
    for i, row in enumerate(rows):
        table.add_row(*(value for _, value in row), *([notes[i]] if notes is not None else []))
    out = _out()
    needed = Measurement.get(out, out.options.update(max_width=10_000), table).minimum
    if out.width < needed:  # a narrow terminal wraps long lines rather than cut a value
        from rich.console import Console

        out = Console(width=needed)
    out.print(table)


@main.command()
@click.argument("snapshot_id")
@click.option("--json", "as_json", is_flag=True)
def show(snapshot_id: str, as_json: bool) -> None:
    """Everything the catalog knows about one snapshot."""
    try:
        row = _services().snapshots.get(snapshot_id)
    except AtlasError as exc:
        _fail(exc, as_json)
        return
    if as_json:
        _json(snapshot_json(row))
        return
    doc = snapshot_json(row)
    manifest = doc.pop("manifest", None) or {}
    width = max(len(k) for k in doc)
    for key, value in doc.items():
        if value is None or value == "":
            continue
        if key == "pinned":
            value = "yes (retention never deletes it)" if value else "no"
        click.echo(f"{key:<{width}}  {redact_value(str(value))}")
    tables = manifest.get("tables") or {}
    if manifest:
        click.echo(
            f"{'manifest':<{width}}  {count(len(tables), 'table')}, "
            f"{count(sum(tables.values()), 'row')}, "
            f"{count(len(manifest.get('sequences') or {}), 'sequence')}, "
            f"extensions: {', '.join(sorted(manifest.get('extensions') or {})) or 'none'}"
        )


@main.command()
@click.argument("snapshot_id")
@click.option("--json", "as_json", is_flag=True)
def verify(snapshot_id: str, as_json: bool) -> None:
    """Re-read a stored snapshot: size, checksums, and the archive read through to its end."""
    try:
        done = _services().reader.verify(snapshot_id, actor=_operator())
    except AtlasError as exc:
        _fail(exc, as_json, {"id": snapshot_id})
        return
    if as_json:
        _json({**snapshot_json(done.snapshot), "verify_s": round(done.seconds, 3)})
    else:
        snap = done.snapshot
        click.echo(f"ok {snap.id}: {snap.size_bytes} bytes, sha256 {snap.sha256}")


@main.command()
@click.argument("snapshot_id")
@click.option("-o", "--output", required=True, help="File to write, or - for stdout.")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def fetch(snapshot_id: str, output: str, force: bool) -> None:
    """Write the plain pg_dump custom-format file, ready for the runbook's pg_restore."""
    if output == "-" and sys.stdout.isatty():
        _fail(
            AtlasError(
                "Refusing to write a binary dump to the terminal.",
                f"redirect it (atlas fetch {snapshot_id} -o - > app.dump), or pass -o FILE",
            ),
            False,
        )
        return
    try:
        row = _services().reader.fetch(snapshot_id, output, force=force)
    except AtlasError as exc:
        _fail(exc, False)
        return
    if output != "-":
        err().print(
            f"wrote {output} ({messages.human_bytes(row.raw_size_bytes)}, checksums ok). "
            f'Restore: pg_restore --clean --if-exists --no-owner --no-acl --dbname "$STAGING_DATABASE_URL" {output}',
            highlight=False,
            markup=False,
        )


def _restore_command(
    kind: Kind, snapshot_id: str | None, yes: bool, as_json: bool, database: str | None = None
) -> None:
    try:
        services = _services(fleet=True)
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
                requested_by=_operator(),
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
        _fail(exc, as_json, {"snapshot_id": snapshot_id})
        return
    if as_json:
        _json(drill_json(drill))
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
        rows = _services().catalog.list_drills(limit=limit)
    except AtlasError as exc:
        _fail(exc, as_json)
        return
    if as_json:
        _json([drill_json(r) for r in rows])
        return

    _print_table(
        [
            [
                ("id", r.id),
                ("kind", str(r.kind)),
                ("database", r.database),
                ("snapshot", r.snapshot_id),
                ("verdict", str(r.status)),
                ("restore time", human_seconds(r.total_s)),
                ("started (UTC)", _when(r.started_at)),
            ]
            for r in rows
        ]
    )


@main.command()
@click.option("--dry-run", is_flag=True, help="Show what would be deleted; delete nothing.")
@click.option("--json", "as_json", is_flag=True)
def prune(dry_run: bool, as_json: bool) -> None:
    """Apply the retention policy (ATLAS_RETENTION_DAYS and keep-daily/weekly/monthly)."""
    from bot.ops import housekeeping

    try:
        decisions = housekeeping.prune(_services(), dry_run=dry_run, actor=_operator())
    except AtlasError as exc:
        _fail(exc, as_json)
        return
    if as_json:
        _json({"dry_run": dry_run, "decisions": [d.__dict__ for d in decisions]})
        return
    verb = "would delete" if dry_run else "deleted"
    for d in decisions:
        click.echo(f"{'keep  ' if d.keep else verb:<12} {d.snapshot_id}  {d.reason}")
    pruned = sum(not d.keep for d in decisions)
    click.echo(f"{len(decisions) - pruned} kept, {pruned} {verb}")


@main.command()
@click.option("--dry-run", is_flag=True, help="Show what would be registered; change nothing.")
@click.option("--json", "as_json", is_flag=True)
def rescan(dry_run: bool, as_json: bool) -> None:
    """Rebuild the catalog from ATLAS_STORAGE: register every snapshot whose sidecar and
    artifact are there but that the catalog does not know (e.g. after losing ATLAS_STATE).
    Exits 1 when a sidecar had to be skipped."""
    try:
        results = _services(fleet=True).rescanner.rescan(_operator(), dry_run=dry_run)
    except AtlasError as exc:
        _fail(exc, as_json)
        return
    skipped = [r for r in results if r.outcome == "skipped"]
    if as_json:
        _json({"dry_run": dry_run, "results": [r.to_json() for r in results]})
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
        row = _services().snapshots.pin(snapshot_id, pinned, actor=_operator())
    except AtlasError as exc:
        _fail(exc, False)
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


@main.command()
@click.option("--json", "as_json", is_flag=True)
@click.option("--no-provider", is_flag=True, help="Skip the provider (RDS) check.")
def status(as_json: bool, no_provider: bool) -> None:
    """The backup checklist with live facts; exits 1 when anything is ❌ (gate deploys on it)."""
    from bot.ops import status as st
    from bot.ops.findings import FAIL, ICONS

    try:
        lines = st.evaluate(st.gather(_services(), check_provider=not no_provider, surface="cli"))
    except AtlasError as exc:
        _fail(exc, as_json)
        return
    worst = st.worst(lines)
    if as_json:
        _json({"status": worst, "checks": [line.__dict__ for line in lines]})
    else:
        for line in lines:
            click.echo(f"{ICONS[line.level]} {line.title}: {line.detail.replace('`', '')}")
    if worst == FAIL:
        sys.exit(1)


@main.command()
@click.option("-o", "--output", required=True, help="Key file to create (mode 0600).")
def keygen(output: str) -> None:
    """Create an age key for encryption at rest; point ATLAS_ENCRYPTION_KEY_FILE at it."""
    from bot import files
    from bot.store.crypto import generate_identity

    secret, recipient = generate_identity()
    text = f"# created by atlas keygen\n# public key: {recipient}\n{secret}\n"
    try:
        files.write_new(Path(output), text.encode())
    except FileExistsError:
        _fail(AtlasError(f"{output} already exists; Atlas never overwrites a key."), False)
        return
    except OSError as exc:
        _fail(AtlasError(f"Cannot write {output}: {exc.strerror or exc}."), False)
        return
    err().print(
        f"wrote {output}; public key {recipient}. Keep a copy of this file somewhere safe: "
        "without it encrypted snapshots cannot be restored.",
        highlight=False,
        markup=False,
    )


@main.command()
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def audit(limit: int, as_json: bool) -> None:
    """The append-only record of what Atlas did and who asked."""
    try:
        rows = _services().catalog.audit_log(limit=limit)
    except AtlasError as exc:
        _fail(exc, as_json)
        return
    if as_json:  # detail as the JSON text it always was
        _json([{**records.public(r), "detail": _detail(r.detail)} for r in rows])
        return
    for r in rows:
        click.echo(f"{r.at}  {r.actor:<24} {r.action:<24} {r.subject}  {_detail(r.detail)}")


def _detail(detail: dict[str, Any]) -> str:
    return json.dumps(detail, default=str, sort_keys=True)


@main.command()
@click.option(
    "--http", "force_http", is_flag=True, help="Serve HTTP even if SLACK_APP_TOKEN is set."
)
@click.option("--host", default="0.0.0.0", show_default=True)  # noqa: S104 - a server
@click.option("--port", default=None, type=int, help="HTTP port (default: $PORT or 3000).")
def serve(force_http: bool, host: str, port: int | None) -> None:
    """Run the Slack bot: Socket Mode when SLACK_APP_TOKEN is set, else HTTP."""
    from bot.config import load_settings
    from bot.slack.app import run

    root = logging.getLogger()
    root.setLevel(min(root.level, logging.WARNING))
    try:
        run(load_settings(), force_http=force_http, host=host, port=port)
    except AtlasError as exc:
        _fail(exc, False)


@main.command()
@click.option(
    "--keep",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the artifacts and catalog in this folder to look at afterwards.",
)
def demo(keep: Path | None) -> None:
    """Try Atlas with nothing set up: a throwaway PostgreSQL, a snapshot, a verified
    restore drill and the checklist, in under a minute. Needs the PostgreSQL server
    binaries (initdb, pg_ctl); stops everything it started when it ends."""
    from bot.demo.walkthrough import run

    def say(line: str) -> None:
        click.echo(line, err=True)

    try:
        code = run(keep, say)
    except AtlasError as exc:
        _fail(exc, False)
        return
    except KeyboardInterrupt:
        say("Interrupted: the demo's server is stopped and its folders are removed.")
        sys.exit(130)
    sys.exit(code)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--no-slack", is_flag=True, help="Skip the Slack checks.")
def doctor(as_json: bool, no_slack: bool) -> None:
    """Check the configuration before relying on it: databases reachable and readable,
    tools new enough, staging privileges, storage and catalog writable, keys, schedule,
    Slack. Exits 1 on any ❌."""
    from bot.ops import doctor as dr
    from bot.ops import findings

    try:
        checks = dr.run_all(_services(), slack=not no_slack)
    except AtlasError as exc:  # the configuration itself: a finding like the others
        checks = [findings.fail("configuration", str(exc))]
    if as_json:
        _json(dr.to_json(checks))
    else:
        click.echo(dr.render(checks))
    if dr.worst(checks) == findings.FAIL:
        sys.exit(1)


@main.command()
@click.option("--as", "user", default="you", show_default=True, help="Who you are in the channel.")
def console(user: str) -> None:
    """The Slack flow in this terminal, without a workspace: `/atlas …`, reactions from
    other people (`approve as carol`), buttons, reminders (`/tick`). Uses your
    configuration, like `atlas serve` does."""
    from importlib.metadata import entry_points

    from bot.config import load_settings

    found = [ep for ep in entry_points(group="atlas.console")]
    if not found:
        _fail(
            AtlasError("The console is not installed.", "reinstall Atlas: pip install -e ."), False
        )
        return
    sys.exit(found[0].load()(load_settings(), user=user))


@main.group()
def catalog() -> None:
    """Where Atlas records its work (ATLAS_STATE)."""


@catalog.command("migrate")
@click.option(
    "--to",
    "url",
    required=True,
    metavar="URL",
    help="postgresql://USER@HOST/DBNAME of a new, empty catalog (keep its password in "
    "~/.pgpass or PGPASSWORD).",
)
@click.option("--json", "as_json", is_flag=True)
def catalog_migrate(url: str, as_json: bool) -> None:
    """Move the SQLite catalog (ATLAS_STATE) into PostgreSQL, for replicas to share.
    Stop `atlas serve` first; afterwards set ATLAS_STATE to the URL."""
    from bot.catalog import is_url, open_catalog
    from bot.catalog.copy import copy_catalog
    from bot.catalog.postgres import PostgresCatalog
    from bot.catalog.sqlite import SqliteCatalog
    from bot.config import load_settings
    from bot.owners import REPLICA_LEASE
    from bot.redaction import redact
    from bot.restore.guard import refuse_catalog_among_targets, refuse_catalog_in_a_fleet

    settings = load_settings()
    if not is_url(url):
        raise AtlasError(
            f"--to {redact(url)!r} is not a PostgreSQL URL.",
            "write it as postgresql://USER@HOST:5432/DBNAME",
        )
    if is_url(settings.state):
        raise AtlasError(
            "ATLAS_STATE already names a PostgreSQL catalog; there is nothing to migrate.",
            "point ATLAS_STATE at the SQLite file to move",
        )
    if not Path(settings.state).is_file():
        raise AtlasError(
            f"No catalog file at {settings.state} (ATLAS_STATE).",
            "point ATLAS_STATE at the SQLite file `atlas serve` has used",
        )
    source = open_catalog(Path(settings.state))
    live = source.live_leases(REPLICA_LEASE)
    if live:
        raise AtlasError(
            f"`atlas serve` is running on this catalog ({live[0].removeprefix(REPLICA_LEASE)}"
            "): what it records during the copy would stay behind in the old one.",
            "stop it, run this again, then start it with ATLAS_STATE set to the new URL",
        )
    settings.state = url.strip()
    refuse_catalog_among_targets(settings)
    refuse_catalog_in_a_fleet(settings, settings.state)
    target = open_catalog(settings.state)
    assert isinstance(source, SqliteCatalog) and isinstance(target, PostgresCatalog)
    copied = copy_catalog(source, target)
    target.audit(_operator(), "catalog.migrated", "catalog", rows=copied.rows)
    if as_json:
        _json({"to": target.describe(), "rows": copied.rows})
        return
    err().print(
        f"Copied {count(sum(copied.rows.values()), 'row')} to {escape(target.describe())}: "
        + ", ".join(f"{n} {t}" for t, n in copied.rows.items() if n)
    )
    err().print("Now set ATLAS_STATE to that URL for every `atlas` process.")


if __name__ == "__main__":
    main()
