"""A restore job, start to finish: pick the snapshot, guard against production, restore
by the chosen strategy, verify against the manifest and the app-flow checks, record."""

from __future__ import annotations

import contextlib
import logging
import secrets
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

from bot.backup.layout import fresh
from bot.backup.lookup import Snapshots
from bot.backup.read import Reader
from bot.catalog import Catalog
from bot.config import DatabaseTarget, Settings
from bot.errors import AtlasError, Damaged, Interrupted, Refused
from bot.pg import Conn, find_tool
from bot.records import (
    CheckResult,
    Drill,
    DrillStatus,
    JobRecord,
    Kind,
    Restore,
    RestoreFields,
    Snapshot,
    SnapshotKind,
    SnapshotStatus,
    now,
)
from bot.redaction import redact
from bot.restore import checks, hold, partial, plan, refresh, strategies, swap
from bot.restore.databases import create_database, drop_database
from bot.restore.guard import ServerIdentity, guard_not_catalog, guard_not_production
from bot.restore.scratch import Scratch, ScratchCreation, scratch_name
from bot.restore.source import CheckedArtifact, Source
from bot.restore.tables import TableName, known_tables, parse_tables, partition_check
from bot.restore.undo import Undo
from bot.restore.waits import LockWatch
from bot.store import CHUNK, LazyStorage
from bot.words import count

Phase = Callable[[str], None]
log = logging.getLogger(__name__)


class Timings(TypedDict, total=False):
    """A job's phases in seconds (rounded to ms), as its record keeps them."""

    download_s: float
    restore_s: float
    verify_s: float


@dataclass
class RestoreJob:
    """One restore job as its steps share it: what is restored where, and how it went."""

    kind: Kind
    snap: Snapshot
    target: DatabaseTarget
    staging: Conn  # the staging database, or (a drill) the server its scratch is made on
    production: Conn
    known: ServerIdentity  # production's identity, read by the guard
    how: plan.Plan
    artifact: CheckedArtifact | None  # checked whole on a thread, when the plan says so
    drill_id: str
    scratch: str  # a drill's scratch database, or the one a refresh builds beside staging
    requested_by: str
    started: float = field(default_factory=time.monotonic)
    timings: Timings = field(default_factory=lambda: Timings())
    first_byte: list[float] = field(default_factory=list)  # when pg_restore got its first
    creating: ScratchCreation | None = None
    keep: bool = False
    swapped: bool = False  # a refresh's new database is staging now
    tables: tuple[TableName, ...] = ()  # `--table`: only these (a refresh: in place)

    @property
    def in_place(self) -> bool:
        """Tables restored into staging itself, in one transaction: nothing to swap."""
        return self.kind == Kind.RESTORE and bool(self.tables)

    @property
    def dest(self) -> Conn:
        """Where pg_restore writes: the scratch database, or the refresh's new one."""
        return self.staging.with_dbname(self.scratch)


class Restores:
    """Drills and staging refreshes: the snapshot picked, the target guarded, the restore
    run by the planned strategy, verified and recorded."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        store: LazyStorage,
        snapshots: Snapshots,
        reader: Reader,
        scratch: Scratch,
    ) -> None:
        self.settings, self.catalog, self.store = settings, catalog, store
        self.snapshots, self.reader, self.scratch = snapshots, reader, scratch
        self.undo = Undo(settings, catalog)

    def pick_snapshot(self, ref: str | None, database: str | None = None) -> Snapshot:
        """The named snapshot, or the newest good one of the database."""
        if ref:
            snap = self.snapshots.get(ref, database)
            if snap.kind == SnapshotKind.GLOBALS:
                raise AtlasError(
                    f"Snapshot {snap.id} holds a server's roles and tablespaces, not a database.",
                    f"write its SQL with `atlas fetch {snap.id} -o globals.sql` and apply it with "
                    "psql; every drill of that server's databases checks it applies",
                )
            if snap.status != SnapshotStatus.OK:
                raise AtlasError(
                    f"Snapshot {snap.id} is {snap.status}; only good snapshots can be restored.",
                    snap.error or None,
                )
            return snap
        if self.snapshots.copy is not None:  # `--from NAME`: the newest good copy there
            return self.pick_snapshot("latest", database)
        target = self.settings.target(database)
        rows = self.catalog.list_snapshots(
            limit=1, database=target.name, status=SnapshotStatus.OK, environment=target.environment
        )
        if not rows:
            raise AtlasError(
                f"There is no good snapshot of {target.name} to restore.",
                "take one first: atlas snapshot, or /atlas snapshot in Slack",
            )
        return rows[0]

    def check_tables(self, snap: Snapshot, names: Iterable[str]) -> tuple[str, ...]:
        """`names` as SCHEMA.TABLE, each one the snapshot holds (else an AtlasError)."""
        tables = parse_tables(names)
        known_tables(snap.id, snap.manifest, tables)
        return tuple(str(t) for t in tables)

    def staging_for(self, snap: Snapshot, kind: Kind = Kind.RESTORE) -> tuple[DatabaseTarget, Conn]:
        """The target and where a `kind` job of `snap` goes: the staging database for a
        refresh; for a drill of a fleet's database, its staging server (the scratch
        database is made there; a database of its name need not exist)."""
        target = self.settings.target(snap.database)
        if target.staging_problem:
            raise Refused(target.staging_problem)
        if not target.staging_url:
            raise AtlasError(
                f"No staging database is configured for {target.name}.",
                "set STAGING_DATABASE_URL (or staging_url in ATLAS_CONFIG)",
            )
        staging = Conn.parse(target.staging_url, target.staging_setting)
        server = self.settings.servers.get(target.server or "")
        if kind == Kind.DRILL and server is not None:
            from bot.fleet.discover import staging_server_conn

            staging = staging_server_conn(server) or staging
        return target, staging

    def work_dir(self) -> Path:
        return self.settings.work_dir or Path(tempfile.gettempdir())

    def run(
        self,
        *,
        kind: Kind,
        snap_id: str | None,
        requested_by: str,
        approved_by: list[str] | None = None,
        request_id: str | None = None,
        phase: Phase | None = None,
        waiting: Phase | None = None,
        tables: Iterable[str] = (),
    ) -> JobRecord:
        """Restore a snapshot (a staging refresh, or a drill into a new scratch database),
        verify it, record the outcome and return its record. With `tables`, only those:
        a drill proves them alone; a refresh replaces them in staging, all or nothing.

        A failed verification is a failed drill, recorded and returned (not raised);
        refusals and errors before the record exists are raised.
        """
        job = self._prepare(Kind(kind), snap_id, requested_by, parse_tables(tables))
        with contextlib.ExitStack() as held:
            try:
                if job.kind == Kind.RESTORE:  # one refresh or undo of a staging at a time
                    ttl = self.settings.stale_after_s
                    held.enter_context(hold.staging_held(self.catalog, job.target.name, ttl))
                self._record_start(job, request_id, approved_by)
            except BaseException:
                if job.artifact is not None:
                    job.artifact.close()
                raise
            self._run_recorded(job, phase or (lambda _msg: None), waiting)
        return self.catalog.get_job(job.drill_id)

    def _run_recorded(self, job: RestoreJob, say: Phase, waiting: Phase | None) -> None:
        """From the record on: whatever stops the job, the record says so."""
        try:
            self._restore(job, say, waiting or say)
            outcome = self._verify(job, say)
            if job.kind == Kind.RESTORE and not job.in_place and outcome["status"] == "passed":
                self._swap(job, say, waiting or say, outcome)
            self._record_verdict(job, outcome)
        except BaseException as exc:
            self._record_failure(job, exc)
        finally:
            self._clean_up(job)

    def _prepare(
        self,
        kind: Kind,
        snap_id: str | None,
        requested_by: str,
        tables: tuple[TableName, ...],
    ) -> RestoreJob:
        """Pick the snapshot and the strategy, start checking the artifact, and refuse a
        target that is production (or the catalog) before anything is recorded."""
        snap = self.pick_snapshot(snap_id)
        known_tables(snap.id, snap.manifest, tables)
        target, staging = self.staging_for(snap, kind)
        production = Conn.parse(target.url, target.url_setting)
        self.store.open_soon()  # an S3 client is built while the target is checked and made
        tools = strategies.StrategyTools(self.reader, self.store, self.work_dir())
        how = plan.choose(snap, self.settings, tools, tables, into_staging=kind == Kind.RESTORE)
        log.info(
            "%s of %s: %s, %s",
            kind,
            snap.id,
            type(how.strategy).__name__,
            "whole artifact checked first" if how.check_whole_first else "checked as it is read",
        )
        # the whole artifact is checked on a thread while the target is checked and prepared
        artifact = (
            CheckedArtifact(self.store.get(), snap, self.work_dir())
            if how.check_whole_first
            else None
        )
        try:
            known = guard_not_production(production, staging)
            if kind == Kind.RESTORE:
                guard_not_catalog(self.settings.state, staging)
        except BaseException as exc:
            if artifact is not None:
                artifact.close()
            if isinstance(exc, Refused):
                self.catalog.audit(requested_by, f"{kind}.refused", snap.id, error=str(exc))
            raise
        drill_id = new_job_id(kind)
        return RestoreJob(
            kind, snap, target, staging, production, known, how, artifact, drill_id,
            _built_in(kind, drill_id, staging, tables), requested_by, tables=tables,
        )  # fmt: skip

    def _record_start(
        self, job: RestoreJob, request_id: str | None, approved_by: list[str] | None
    ) -> None:
        """Record the job as running, drawing its id (and so its database's name) again
        while another job has it: two jobs of one second share a suffix once in 65,536
        pairs, which a fleet's drills meet."""

        def record(job_id: str) -> JobRecord:
            job.drill_id, job.scratch = job_id, _built_in(job.kind, job_id, job.staging, job.tables)
            return self._record_of(job, request_id, approved_by)

        def begin(made: JobRecord) -> JobRecord:
            self.catalog.add_job(made)
            return made

        fresh(begin, record, lambda: new_job_id(job.kind))
        job.started = time.monotonic()
        self.catalog.audit(
            job.requested_by, f"{job.kind}.started", job.drill_id, snapshot=job.snap.id
        )

    def _record_of(
        self, job: RestoreJob, request_id: str | None, approved_by: list[str] | None
    ) -> JobRecord:
        shared = RestoreFields(
            request_id=request_id,
            snapshot_id=job.snap.id,
            database=job.target.name,
            # a refresh ends in staging, whatever it is built in first (`new_db`)
            target=(job.staging if job.kind == Kind.RESTORE else job.dest).describe(),
            requested_by=job.requested_by,
            approved_by=approved_by or [],
            tables=[str(t) for t in job.tables],
            from_copy=self.snapshots.copy,
        )
        if job.kind == Kind.DRILL:
            return Drill(id=job.drill_id, scratch_db=job.scratch, scratch_dropped=False, **shared)
        if job.in_place:
            return Restore(id=job.drill_id, **shared)
        return Restore(id=job.drill_id, new_db=job.scratch, new_db_dropped=False, **shared)

    def _restore(self, job: RestoreJob, say: Phase, waiting: Phase) -> None:
        """Stream the checked artifact into pg_restore by the planned strategy, the
        scratch database made meanwhile (a drill), waiting a bounded time for locks."""
        snap, artifact, dest = job.snap, job.artifact, job.dest
        say(f"Fetching `{snap.id}` and checking its checksum…")
        known, production, staging, name = job.known, job.production, job.staging, job.scratch
        # made on a thread while the artifact's head is read and checked
        job.creating = (
            None
            if job.in_place  # staging itself, checked by _prepare's guard
            else ScratchCreation(
                (lambda: create_database(staging, name))
                if job.kind == Kind.DRILL
                else (lambda: refresh.create_beside(staging, name)),
                lambda: guard_not_production(production, dest, known=known),
            )
        )
        pg_restore, _ = find_tool(
            "pg_restore", _major(snap.pg_dump_version), self.settings.pg_bindir
        )
        began = time.monotonic()

        def chunks() -> Iterable[bytes]:
            """Called once pg_restore is started and waiting for its input."""
            if artifact is None:
                return self.store.get().read(snap.storage_key or "")
            fh = artifact.wait()
            return iter(lambda: fh.read(CHUNK), b"")

        def restoring() -> None:
            """pg_restore gets its first byte: all it will execute is verified."""
            job.first_byte.append(time.monotonic())
            checked = artifact.seconds if artifact else job.first_byte[0] - began
            job.timings["download_s"] = round(checked, 3)
            say(f"Restoring into `{dest.describe()}`…")

        toc = (snap.toc_bytes or 0, snap.toc_sha256 or "") if job.how.hold_toc else None
        wait = self.settings.lock_wait_s
        creating = job.creating
        with LockWatch(dest, waiting, wait):
            job.how.strategy.restore(
                strategies.RestoreInput(
                    snap=snap,
                    dest=dest,
                    pg_restore=pg_restore,
                    source=Source(chunks, restoring, toc),
                    ready=creating.wait if creating else lambda: None,
                    lock_wait_s=wait,
                )
            )
        restored = time.monotonic() - (job.first_byte[0] if job.first_byte else began)
        job.timings["restore_s"] = round(restored, 3)
        if artifact is not None:
            artifact.close()

    def _verify(self, job: RestoreJob, say: Phase) -> RestoreFields:
        """Compare with the manifest, run the app-flow checks (and the server's roles, for
        a fleet's database); returns the verdict and what it rests on."""
        if job.tables:
            return self._verify_tables(job, say)
        say("Verifying against the snapshot's manifest and running the app-flow checks…")
        t = time.monotonic()
        problems = checks.manifest_problems(job.snap, job.dest)
        warnings: list[str] = []
        results = checks.run_checks(
            job.dest, [*self.settings.checks, *job.target.checks], self.settings.check_timeout_s
        )
        if job.target.server:
            found, warnings = self._check_globals(job.target, job.dest)
            problems += found
        job.timings["verify_s"] = round(time.monotonic() - t, 3)
        problems += [f"check {c.name!r} failed: {c.detail}" for c in results if not c.passed]
        outcome = RestoreFields(
            status=DrillStatus.PASSED if not problems else DrillStatus.FAILED,
            checks=results,
            problems=problems + [f"warning: {w}" for w in warnings],
            download_s=job.timings.get("download_s"),
            restore_s=job.timings.get("restore_s"),
            verify_s=job.timings.get("verify_s"),
        )
        if job.kind == Kind.RESTORE and problems:
            outcome["error"] = (
                f"Staging {job.staging.describe()} was not touched: the restored copy failed "
                "verification and is dropped."
            )
        return outcome

    def _verify_tables(self, job: RestoreJob, say: Phase) -> RestoreFields:
        """`--table`: a drill's tables compared with the manifest in its scratch database;
        a refresh's were, before its transaction committed. The foreign keys between a
        restored table and another are named, with what became of them."""
        t = time.monotonic()
        how = job.how.strategy
        assert isinstance(how, partial.TablesAlone | partial.TablesIntoStaging)
        chosen = how.selection
        assert chosen is not None
        results: list[CheckResult] = []
        if isinstance(how, partial.TablesIntoStaging):
            problems: list[str] = []
            results, notes = partial.link_results(job.dest, chosen, how.inward)
            owned, lost = partial.privilege_results(job.dest, job.tables, how.held)
            results, notes = results + owned, notes + lost
        else:
            say("Verifying the tables against the snapshot's manifest…")
            problems = checks.table_problems(job.snap, job.dest, chosen)
            notes = [
                f"foreign key {link} not checked: it links a table restored with one that is not"
                for link in chosen.links
            ]
        proved = partition_check(chosen, job.tables, problems)
        results += [proved] if proved else []
        notes += [f"{what} left out: it needs a table not restored" for what in chosen.left_out]
        notes.append("app-flow checks not run: they need the whole database")
        job.timings["verify_s"] = round(time.monotonic() - t, 3)
        return RestoreFields(
            status=DrillStatus.PASSED if not problems else DrillStatus.FAILED,
            checks=results,
            problems=problems + [f"warning: {n}" for n in notes],
            download_s=job.timings.get("download_s"),
            restore_s=job.timings.get("restore_s"),
            verify_s=job.timings.get("verify_s"),
        )

    def _swap(self, job: RestoreJob, say: Phase, waiting: Phase, outcome: RestoreFields) -> None:
        """A refresh that passed: its new database swapped in as staging (`waiting` hears
        which sessions hold staging meanwhile), what staging was kept for undo (and what
        earlier refreshes kept, dropped)."""
        staging = job.staging.describe()
        verified: RestoreFields = {**outcome}
        verified.pop("status")  # running until the swap is done
        self.catalog.update_job(job.drill_id, job.kind, **verified)  # kept if the swap fails
        say(f"Verified. Swapping it in as {staging}…")

        def before(kept: str | None) -> None:
            self.catalog.update_refresh(job.drill_id, kept_db=kept)

        done = refresh.swap_in(
            job.staging, job.scratch, job.drill_id, refresh.policy(self.settings, waiting), before
        )
        job.swapped = True
        self.catalog.update_refresh(
            job.drill_id,
            swapped=True,
            swap_s=round(done.seconds, 3),
            kept_dropped=False if done.kept else None,
        )
        refresh.retire_kept(self.catalog, self.settings, job.target.name, done.kept)
        notes = [f"session ended for the swap: {e}" for e in done.ended] + done.warnings
        outcome["problems"] = [*outcome.get("problems", []), *(f"warning: {n}" for n in notes)]

    def _record_verdict(self, job: RestoreJob, outcome: RestoreFields) -> None:
        verdict = outcome["status"]
        job.keep = job.kind == Kind.DRILL and self.settings.drill_keep
        outcome["finished_at"] = now()
        outcome["total_s"] = round(time.monotonic() - job.started, 3)
        if job.kind == Kind.DRILL:
            self.catalog.update_drill(job.drill_id, kept=job.keep, **outcome)
        else:
            self.catalog.update_job(job.drill_id, job.kind, **outcome)
        found = outcome.get("problems", [])
        self.catalog.audit(
            "atlas",
            f"{job.kind}.{verdict}",
            job.drill_id,
            problems=[p for p in found if not p.startswith("warning: ")],
            warnings=[p.removeprefix("warning: ") for p in found if p.startswith("warning: ")],
        )

    def _record_failure(self, job: RestoreJob, exc: BaseException) -> None:
        """Record what stopped the job, in words that say what state staging is in; an
        interruption is raised as one, anything not an Exception raised again."""
        kind, staging = job.kind, job.staging
        error: BaseException = exc
        damage = exc if isinstance(exc, Damaged) else None
        if damage is None and isinstance(exc, AtlasError):  # a read that failed: gone?
            damage = self.reader.missing(job.snap)
        if damage is not None:
            error = self.reader.mark_damaged(
                job.snap, damage, job.requested_by, found_by=job.drill_id
            )
        message = redact(str(error), [*job.production.secrets, *staging.secrets])
        stopped = isinstance(exc, KeyboardInterrupt)
        if stopped:
            message = "Interrupted by the operator (Ctrl-C)"
            message += "; its scratch database is dropped." if kind == Kind.DRILL else ""
        if kind == Kind.RESTORE:  # say what state staging is in, whatever happened
            message = message.rstrip(".") + _staging_state(job)
        status = DrillStatus.INTERRUPTED if stopped else DrillStatus.FAILED
        self.catalog.update_job(
            job.drill_id,
            kind,
            status=status,
            finished_at=now(),
            error=message,
            total_s=round(time.monotonic() - job.started, 3),
            **job.timings,
        )
        if kind == Kind.RESTORE and not job.swapped:
            self.catalog.update_refresh(job.drill_id, kept_db=None)  # nothing was kept
        self.catalog.audit("atlas", f"{kind}.{status}", job.drill_id, error=message)
        if stopped:
            raise Interrupted(f"{kind.title()} {job.drill_id}: {message}") from None
        if not isinstance(exc, Exception):
            raise exc

    def _clean_up(self, job: RestoreJob) -> None:
        """Close the artifact and drop the database restored into, unless it is to be kept
        (a drill's, with ATLAS_DRILL_KEEP) or is staging now (a refresh's, swapped in)."""
        if job.artifact is not None:
            job.artifact.close()
        creating = job.creating
        if creating is None:
            return
        with contextlib.suppress(BaseException):
            creating.wait()  # a restore that failed first: the database may be made
        if not creating.created or job.keep or job.swapped:
            return
        if job.kind == Kind.DRILL:
            self.scratch.drop(job.drill_id, job.staging, job.scratch, in_report=True)
        elif drop_database(job.staging, job.scratch) is None:
            self.catalog.update_refresh(job.drill_id, new_db_dropped=True)

    def _check_globals(self, target: DatabaseTarget, dest: Conn) -> tuple[list[str], list[str]]:
        """(problems, warnings) of the server's newest globals snapshot applied on the
        staging server in a transaction that is rolled back."""
        from bot.backup.layout import globals_name
        from bot.fleet.globals import apply_rolled_back, check_text

        rows = self.catalog.list_snapshots(
            limit=1,
            database=globals_name(target.server or ""),
            status=SnapshotStatus.OK,
            environment=target.environment,
        )
        if not rows:
            return [], [f"no roles snapshot of server {target.server} yet to check"]
        data = bytearray()
        try:
            self.reader.read(rows[0], data.extend)
            text = check_text(bytes(data))
        except AtlasError as exc:
            if isinstance(exc, Damaged):  # that snapshot, not the database's, is damaged
                exc = self.reader.mark_damaged(rows[0], exc, "atlas", found_by="drill")
            return [f"the roles snapshot `{rows[0].id}` cannot be read: {exc}"], []
        applied = apply_rolled_back(dest, text)
        problems, warnings = [], []
        if applied.error:
            problems.append(
                f"the roles of server {target.server} (`{rows[0].id}`) do not apply on "
                f"staging: {applied.error}"
            )
        if applied.unchecked:
            warnings.append(f"roles of server {target.server} not checked: {applied.unchecked}")
        if applied.not_permitted:
            shown = "; ".join(applied.not_permitted[:3])
            warnings.append(
                f"{count(len(applied.not_permitted), 'role statement')} the staging role may "
                f"not run (it is no superuser), skipped: {shown}"
            )
        if applied.existing:
            shown = ", ".join(applied.existing[:10])
            more = f" and {len(applied.existing) - 10} more" if len(applied.existing) > 10 else ""
            warnings.append(f"roles already on staging (their CREATE skipped): {shown}{more}")
        if applied.skipped:
            warnings.append(
                f"{count(applied.skipped, 'tablespace statement')} not tried (no transaction "
                "can hold them)"
            )
        return problems, warnings

    def previous_passed(self, drill: JobRecord) -> JobRecord | None:
        for row in self.catalog.list_jobs(limit=50, kind=drill.kind, database=drill.database):
            if (
                row.id != drill.id
                and row.status == DrillStatus.PASSED
                and (row.started_at or "") < (drill.started_at or "")
            ):
                return row
        return None


def _staging_state(job: RestoreJob) -> str:
    """How a refresh that stopped left staging: swapped, its tables replaced, or as it was."""
    staging = job.staging.describe()
    if job.swapped:
        return f": the swap had happened, staging {staging} holds the snapshot."
    how, tables = job.how.strategy, ", ".join(str(t) for t in job.tables)
    if isinstance(how, partial.TablesIntoStaging) and how.committed:
        return f": its transaction had committed, {tables} in staging {staging} are the snapshot's."
    if isinstance(how, partial.TablesIntoStaging) and how.ending:
        return (
            f": it was stopped as its transaction was committing, so {tables} in staging "
            f"{staging} may already be the snapshot's; look before you rely on them."
        )
    return f": staging {staging} was not touched."


def _major(version: str | None) -> int:
    try:
        return int(str(version or "0").split(".")[0])
    except ValueError:
        return 0


def new_job_id(kind: Kind) -> str:
    """d- (drill) or r- (refresh), the local time and a random suffix: sorts by time."""
    return f"{kind[0]}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def _built_in(kind: Kind, job_id: str, staging: Conn, tables: tuple[TableName, ...]) -> str:
    """The database the job restores into: a drill's scratch, a refresh's new database
    beside staging, or (`--table` into staging) staging itself, in one transaction."""
    if kind == Kind.DRILL:
        return scratch_name(job_id)
    return staging.address()[2] if tables else swap.building_name(job_id)
