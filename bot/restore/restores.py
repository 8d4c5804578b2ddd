"""Restores into staging and restore drills, each proven against the snapshot's manifest.

Every path here checks its target against production first, by what the servers
report about themselves, not by comparing URL strings.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import psycopg
from psycopg import sql

from bot.backup import manifest, pipeline
from bot.backup.pump import Pump
from bot.backup.snapshots import Snapshots
from bot.catalog import Catalog, now
from bot.config import DatabaseTarget, Settings
from bot.errors import AtlasError, Damaged, Refused
from bot.pg import Conn, find_tool, first_line, redact
from bot.store.storage import CHUNK, Storage

log = logging.getLogger(__name__)

PASSED = "passed"
FAILED = "failed"
Phase = Callable[[str], None]


@dataclass(frozen=True)
class Identity:
    """What a server says about itself: enough to tell two databases apart."""

    system_id: str | None  # pg_control_system(); needs superuser or a grant
    started: str  # pg_postmaster_start_time(): unique per running cluster in practice
    db_oid: int
    dbname: str

    def same_database(self, other: Identity) -> bool:
        if (self.dbname, self.db_oid) != (other.dbname, other.db_oid):
            return False
        if self.system_id and other.system_id:
            return self.system_id == other.system_id
        return self.started == other.started


def identity(conn: Conn) -> Identity:
    with conn.connect(autocommit=True) as c:
        row = c.execute(
            "SELECT current_database(), d.oid::bigint, pg_postmaster_start_time()::text "
            "FROM pg_database d WHERE d.datname = current_database()"
        ).fetchone()
        assert row is not None
        system_id = None
        with contextlib.suppress(psycopg.Error):
            sid = c.execute("SELECT system_identifier::text FROM pg_control_system()").fetchone()
            system_id = str(sid[0]) if sid else None
    return Identity(system_id, str(row[2]), int(row[1]), str(row[0]))


def guard_not_production(
    production: Conn, target: Conn, *, known: Identity | None = None
) -> Identity:
    """Refuse when `target` is the production database, however its URL is spelled.

    Returns production's identity, which a second check in the same job may pass as
    `known`.
    """
    prod = known
    if prod is None:
        try:
            prod = identity(production)
        except AtlasError as exc:
            raise Refused(
                "Cannot prove the target is not production, because production is "
                f"unreachable: {exc}",
                "restores are refused until Atlas can compare the two servers",
            ) from None
    if identity(target).same_database(prod):
        raise Refused(
            f"Refusing to restore into {target.describe()}: it is the production database "
            f"({prod.dbname} on the same server).",
            "restores go to staging only; check STAGING_DATABASE_URL",
        )
    return prod


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    detail: str
    seconds: float


def run_checks(conn: Conn, checks: list[Any], timeout_s: int) -> list[CheckResult]:
    """Each check runs read-only with a timeout and must return exactly true."""
    results = []
    with conn.connect(autocommit=False) as c:
        for check in checks:
            started = time.monotonic()
            try:
                with c.transaction():
                    c.execute("SET TRANSACTION READ ONLY")
                    c.execute(
                        sql.SQL("SET LOCAL statement_timeout = {}").format(
                            sql.Literal(f"{timeout_s}s")
                        )
                    )
                    row = c.execute(check.sql).fetchone()
                value = row[0] if row else None
                ok = value is True
                detail = "true" if ok else f"returned {value!r}, expected true"
            except psycopg.Error as exc:
                ok, detail = False, first_line(str(exc))
            results.append(CheckResult(check.name, ok, detail, time.monotonic() - started))
    return results


class Restores:
    def __init__(self, settings: Settings, catalog: Catalog, snapshots: Snapshots) -> None:
        self.settings, self.catalog, self.snapshots = settings, catalog, snapshots

    def pick_snapshot(self, snap_id: str | None, database: str | None = None) -> dict[str, Any]:
        """The named snapshot, or the newest good one of the database."""
        if snap_id:
            row = self.snapshots.get(snap_id, database)
            snap_id = row["id"]
            if row["status"] != "ok":
                raise AtlasError(
                    f"Snapshot {snap_id} is {row['status']}; only good snapshots can be restored.",
                    row.get("error") or None,
                )
            return row
        target = self.settings.target(database)
        rows = self.catalog.list_snapshots(
            limit=1, database=target.name, status="ok", environment=target.environment
        )
        if not rows:
            raise AtlasError(
                f"There is no good snapshot of {target.name} to restore.",
                "take one with `/atlas snapshot` first",
            )
        return rows[0]

    def staging_for(self, snap: dict[str, Any]) -> tuple[DatabaseTarget, Conn]:
        target = self.settings.target(snap["database"])
        if not target.staging_url:
            raise AtlasError(
                f"No staging database is configured for {target.name}.",
                "set STAGING_DATABASE_URL (or staging_url in ATLAS_CONFIG)",
            )
        return target, Conn.parse(target.staging_url, target.staging_setting)

    def run(
        self,
        *,
        kind: str,
        snap_id: str | None,
        requested_by: str,
        approved_by: list[str] | None = None,
        request_id: str | None = None,
        phase: Phase | None = None,
        drill_id: str | None = None,
    ) -> dict[str, Any]:
        """Restore a snapshot (kind 'restore': into staging; 'drill': into a new scratch
        database), verify it, record the outcome and return the drill row.

        A failed verification is a failed drill, recorded and returned (not raised);
        refusals and errors before the record exists are raised.
        """
        assert kind in ("restore", "drill")
        snap = self.pick_snapshot(snap_id)
        target, staging = self.staging_for(snap)
        production = Conn.parse(target.url, target.url_setting)
        # A drill of a snapshot that recorded its table of contents (all the SQL a
        # restore runs) streams straight from storage once that part is verified; the
        # rest of the artifact is verified before indexes are built and the drill can
        # pass. Otherwise (ATLAS_DRILL_VERIFY_FIRST, older snapshots) and for every staging
        # refresh, the whole artifact is checked before pg_restore starts, on a thread
        # while the target is checked and prepared.
        # ATLAS_RESTORE_SPOOL: the whole plain dump is decompressed (and checked) into the
        # work dir first, so that pg_restore --jobs loads table data in parallel too.
        spool = self.settings.restore_spool and self.settings.restore_jobs >= 2
        toc_first = (
            kind == "drill"
            and not spool
            and not self.settings.drill_verify_first
            and bool(snap.get("toc_bytes") and snap.get("toc_sha256"))
        )
        artifact = (
            None
            if toc_first or spool
            else _CheckedArtifact(self.snapshots.storage, snap, self._work_dir())
        )
        try:
            prod = guard_not_production(production, staging)
        except BaseException as exc:
            if artifact is not None:
                artifact.close()
            if isinstance(exc, Refused):
                self.catalog.audit(requested_by, f"{kind}.refused", snap["id"], error=str(exc))
            raise
        drill_id = drill_id or f"{kind[0]}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
        scratch = f"atlas_drill_{drill_id.replace('-', '_')}" if kind == "drill" else None
        self.catalog.add_drill(
            {
                "id": drill_id,
                "kind": kind,
                "request_id": request_id,
                "snapshot_id": snap["id"],
                "database": target.name,
                "target": staging.with_dbname(scratch).describe()
                if scratch
                else staging.describe(),
                "scratch_db": scratch,
                "scratch_dropped": 0 if scratch else None,
                "requested_by": requested_by,
                "approved_by": json.dumps(approved_by or []),
                "kept": 0,
            }
        )
        self.catalog.audit(requested_by, f"{kind}.started", drill_id, snapshot=snap["id"])
        say = phase or (lambda _msg: None)
        say(f"Fetching `{snap['id']}` and checking its checksum…")
        started = time.monotonic()
        timings: dict[str, float] = {}
        created = False
        keep = False
        try:
            dest = staging
            if scratch:
                self._create_db(staging, scratch)
                created = True
                dest = staging.with_dbname(scratch)
                guard_not_production(production, dest, known=prod)
            pg_restore, _ = find_tool("pg_restore", _major(snap), self.settings.pg_bindir)
            began = time.monotonic()
            first_byte: list[float] = []

            def source() -> Iterable[bytes]:
                """Called once pg_restore is started and waiting for its input."""
                if artifact is None:
                    return self.snapshots.storage.read(snap["storage_key"])
                fh = artifact.wait()
                return iter(lambda: fh.read(CHUNK), b"")

            def restoring() -> None:
                """pg_restore gets its first byte: all it will execute is verified."""
                first_byte.append(time.monotonic())
                timings["download_s"] = artifact.seconds if artifact else first_byte[0] - began
                say(f"Restoring into `{dest.describe()}`…")

            self._restore(
                pg_restore,
                dest,
                snap,
                _Input(
                    source,
                    restoring,
                    (snap["toc_bytes"], snap["toc_sha256"]) if toc_first else None,
                ),
                clean=kind == "restore",
            )
            timings["restore_s"] = time.monotonic() - (first_byte[0] if first_byte else began)
            if artifact is not None:
                artifact.close()
            say("Verifying against the snapshot's manifest and running the app-flow checks…")
            t = time.monotonic()
            problems, warnings = self._verify(snap, dest, kind)
            checks = run_checks(
                dest, [*self.settings.checks, *target.checks], self.settings.check_timeout_s
            )
            timings["verify_s"] = time.monotonic() - t
            problems += [f"check {c.name!r} failed: {c.detail}" for c in checks if not c.passed]
            verdict = PASSED if not problems else FAILED
            keep = bool(scratch and self.settings.drill_keep)
            self.catalog.update_drill(
                drill_id,
                status=verdict,
                finished_at=now(),
                total_s=round(time.monotonic() - started, 3),
                checks=json.dumps([c.__dict__ for c in checks]),
                problems=json.dumps(problems + [f"warning: {w}" for w in warnings]),
                kept=int(keep),
                **{k: round(v, 3) for k, v in timings.items()},
            )
            self.catalog.audit("atlas", f"{kind}.{verdict}", drill_id, problems=problems)
        except BaseException as exc:
            if isinstance(exc, Damaged):
                exc = self.snapshots.mark_damaged(snap, exc, requested_by, found_by=drill_id)
            message = redact(str(exc), [*production.secrets, *staging.secrets])
            if isinstance(exc, KeyboardInterrupt):
                message = "Interrupted by the operator."
            self.catalog.update_drill(
                drill_id,
                status=FAILED,
                finished_at=now(),
                error=message,
                total_s=round(time.monotonic() - started, 3),
                **{k: round(v, 3) for k, v in timings.items()},
            )
            self.catalog.audit("atlas", f"{kind}.failed", drill_id, error=message)
            if not isinstance(exc, Exception):
                raise
        finally:
            if artifact is not None:
                artifact.close()
            if created and not keep:
                self._drop_scratch(drill_id, staging, scratch, in_report=True)
        return self.catalog.get_drill(drill_id)

    def _drop_scratch(
        self, drill_id: str, server: Conn, name: str | None, *, in_report: bool = False
    ) -> bool:
        """Drop a drill's scratch database and record that it is gone; when it cannot be
        dropped now, record why (in the drill's report too, with `in_report`), so that
        housekeeping tries again."""
        error = self.drop_database(server, name)
        if error is None:
            self.catalog.update_drill(drill_id, scratch_dropped=1, cleanup_error=None)
            return True
        changes: dict[str, Any] = {"cleanup_error": error}
        if in_report:
            problems = json.loads(self.catalog.get_drill(drill_id).get("problems") or "[]")
            problems.append(
                f"warning: the scratch database {name} could not be dropped yet ({error}); "
                "housekeeping drops it later"
            )
            changes["problems"] = json.dumps(problems)
        self.catalog.update_drill(drill_id, **changes)
        return False

    def clean_up_scratch(self) -> list[str]:
        """Drop scratch databases that earlier drills left behind: a drop that failed (a
        session of another role was still connected), or a drill whose process died.
        Only databases this catalog created are touched."""
        dropped = []
        for drill in self.catalog.drills_to_clean():
            if drill["status"] == "running":
                self.catalog.update_drill(
                    drill["id"],
                    status=FAILED,
                    finished_at=now(),
                    error="Atlas stopped while this drill ran",
                )
                self.catalog.audit("atlas", f"{drill['kind']}.interrupted", drill["id"])
            try:
                target = self.settings.target(drill["database"])
                server = Conn.parse(target.staging_url or "", target.staging_setting)
            except AtlasError as exc:
                log.warning("cannot clean up %s: %s", drill["scratch_db"], exc)
                continue
            if self._drop_scratch(drill["id"], server, drill["scratch_db"]):
                self.catalog.audit(
                    "atlas", "drill.scratch_dropped", drill["id"], scratch_db=drill["scratch_db"]
                )
                dropped.append(drill["scratch_db"])
        return dropped

    # -- steps -------------------------------------------------------------------------

    def _work_dir(self) -> Path:
        return self.settings.work_dir or Path(tempfile.gettempdir())

    def _restore(
        self,
        pg_restore: str,
        dest: Conn,
        snap: dict[str, Any],
        artifact: _Input,
        *,
        clean: bool,
    ) -> None:
        """Decompress straight into pg_restore: no wait for a decompressed copy.

        A drill (empty database) loads schema and data from the stream, then builds
        indexes and constraints with --jobs. Those need only the archive's table of
        contents, so only the start of the stream is kept on disk, up to where
        `pg_restore --list` finished reading. A staging refresh (--clean) runs in one
        pg_restore, so that it drops the old objects in dependency order. With
        ATLAS_RESTORE_SPOOL, see `_spool_and_restore`.
        """
        base = [pg_restore, "--no-owner", "--no-acl", "--exit-on-error"]
        if clean:
            base += ["--clean", "--if-exists"]
        if self.settings.restore_spool and self.settings.restore_jobs >= 2:
            self._spool_and_restore(base, dest, snap, artifact)
            return
        if clean or self.settings.restore_jobs < 2:
            self._stream_into(base, dest, snap, artifact)
            return
        fd, name = self._work_file(snap, ".toc")
        toc = Path(name)
        try:
            with os.fdopen(fd, "wb") as fh:
                self._stream_into(
                    [*base, "--section=pre-data", "--section=data"],
                    dest,
                    snap,
                    artifact,
                    toc=(pg_restore, fh),
                )
            jobs = f"--jobs={self.settings.restore_jobs}"
            _restore_file([*base, "--section=post-data", jobs], dest, toc)
        finally:
            toc.unlink(missing_ok=True)

    def _work_file(self, snap: dict[str, Any], suffix: str) -> tuple[int, str]:
        try:
            return tempfile.mkstemp(
                prefix=f".atlas-{snap['id']}-", suffix=suffix, dir=self._work_dir()
            )
        except OSError as exc:
            raise AtlasError(
                f"Cannot write to {self._work_dir()}: {exc.strerror or exc}.",
                "check that the folder exists and is writable, or set ATLAS_WORK_DIR",
            ) from None

    def _spool_and_restore(
        self, base: list[str], dest: Conn, snap: dict[str, Any], artifact: _Input
    ) -> None:
        """Decompress the whole artifact into a private file in the work dir, checking every
        checksum, then restore it with `pg_restore --jobs N`: table data loads over N
        connections, at the cost of disk space for the plain dump."""
        work = self._work_dir()
        need = int(snap.get("raw_size_bytes") or 0)
        free = _free_bytes(work)
        if free is not None and need > free:
            raise AtlasError(
                f"ATLAS_RESTORE_SPOOL needs {need / 1e9:.1f} GB free in {work} for the plain "
                f"dump; {free / 1e9:.1f} GB are.",
                "free space there, point ATLAS_WORK_DIR at a larger disk, or unset "
                "ATLAS_RESTORE_SPOOL to stream instead",
            )
        fd, name = self._work_file(snap, ".dump")
        spooled = Path(name)
        try:
            with os.fdopen(fd, "wb") as fh:
                self.snapshots.read(snap, _writing_to(fh, work), source=artifact.source())
            artifact.restoring()
            _restore_file([*base, f"--jobs={self.settings.restore_jobs}"], dest, spooled)
        finally:
            spooled.unlink(missing_ok=True)

    def _stream_into(
        self,
        argv: list[str],
        dest: Conn,
        snap: dict[str, Any],
        artifact: _Input,
        *,
        toc: tuple[str, BinaryIO] | None = None,
    ) -> None:
        """Run pg_restore on the decompressed artifact fed through its stdin; raise on any
        checksum or pg_restore error. The artifact is opened once pg_restore has started
        (pg_restore runs nothing before it reads its input).

        With `toc` (pg_restore, file), the start of the stream is also written to the
        file until `pg_restore --list` has read the whole table of contents from it.
        """
        restore = pipeline.FeedProcess(
            [*argv, "--dbname", dest.conninfo], dest.env(), secrets=dest.secrets, name="pg-restore"
        )
        lister: pipeline.TocProbe | None = None
        copy: Pump | None = None
        if toc is not None:
            lister = pipeline.TocProbe(toc[0], dest.env())
            copy = Pump(_writing_to(toc[1], self._work_dir()), name="toc-copy")
        where = self.snapshots.storage.location(snap["storage_key"])
        held: bytearray | None = bytearray() if artifact.toc is not None else None
        fed = False
        stopped = False

        def consume(chunk: bytes) -> None:
            nonlocal lister, held, fed, stopped
            if stopped:
                return  # pg_restore gave up: the rest is only read to check its checksums
            if held is not None and artifact.toc is not None:
                held += chunk  # nothing reaches pg_restore before its SQL is verified
                if len(held) < artifact.toc[0]:
                    return
                _check_toc(held, artifact.toc, where)
                chunk, held = bytes(held), None
            if not fed:
                fed = True
                artifact.restoring()
            if restore.failed:
                # pg_restore exited on an error. Damaged data is one cause: read on to the
                # end, so that a checksum mismatch is named as what it is.
                stopped = True
                if lister is not None:
                    lister.kill()
                    lister = None
                return
            restore.feed(chunk)
            if lister is not None and copy is not None:
                copy.put(chunk)  # the file holds at least what the lister was given
                if lister.feed(chunk):
                    _finish_toc(lister, copy)
                    lister = None

        try:
            chunks = artifact.source()
            self.snapshots.read(snap, consume, source=chunks)
            if held is not None:
                raise Damaged(f"The archive {where} ends inside its table of contents.")
            if lister is not None and copy is not None:
                _finish_toc(lister, copy)  # a short archive: the file holds all of it
                lister = None
            code, stderr = restore.finish()
            if code != 0:
                raise _restore_failed(stderr, code)
        except BaseException:
            restore.kill()
            if lister is not None:
                lister.kill()
            if copy is not None:
                copy.close(raise_error=False)
            raise

    def _verify(self, snap: dict[str, Any], dest: Conn, kind: str) -> tuple[list[str], list[str]]:
        expected = json.loads(snap["manifest"])
        with dest.connect(autocommit=True) as c:
            actual = manifest.collect(c)
        problems = manifest.compare(expected, actual)
        if kind == "restore":  # staging may hold tables of its own that --clean leaves alone
            warnings = [p for p in problems if p.endswith("is unexpected")]
            return [p for p in problems if p not in warnings], warnings
        return problems, []

    def _create_db(self, server: Conn, name: str) -> None:
        with server.connect(autocommit=True) as c:
            try:
                c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            except psycopg.Error as exc:
                raise AtlasError(
                    f"Cannot create the scratch database {name} on {server.describe()}: "
                    f"{first_line(str(exc))}",
                    "the staging user needs CREATEDB",
                ) from None

    def drop_database(self, server: Conn, name: str | None) -> str | None:
        """Drop a scratch database; None when it is gone, else why it is not.

        A staging role without superuser cannot use `WITH (FORCE)` while a session it may
        not signal is connected: an autovacuum worker, which a fresh restore attracts, or
        another role's session. So: end the role's own leftover sessions (pg_restore
        workers), then a plain DROP, which asks autovacuum to leave and waits for it; FORCE
        only as the last resort, for roles allowed to use it.
        """
        if not name:
            return None
        drop = sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name))
        try:
            with server.connect(autocommit=True) as c:
                c.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid() AND usename = current_user",
                    [name],
                )
                try:
                    c.execute(drop)  # the server waits up to 5 s for autovacuum to leave
                    return None
                except psycopg.errors.ObjectInUse as exc:
                    error = first_line(str(exc))
                try:
                    c.execute(sql.SQL("{} WITH (FORCE)").format(drop))
                    return None
                except psycopg.Error as exc:
                    error = f"{error}; {first_line(str(exc))}"
        except (psycopg.Error, AtlasError) as exc:
            error = first_line(str(exc))
        log.error("could not drop scratch database %s: %s", name, error)
        return error

    def previous_passed(self, drill: dict[str, Any]) -> dict[str, Any] | None:
        for row in self.catalog.list_drills(
            limit=50, kind=drill["kind"], database=drill["database"]
        ):
            if (
                row["id"] != drill["id"]
                and row["status"] == PASSED
                and row["started_at"] < drill["started_at"]
            ):
                return row
        return None


def _writing_to(fh: BinaryIO, work: Path) -> Callable[[bytes], None]:
    """`fh.write`, with a full or failing work disk said in plain words."""

    def write(chunk: bytes) -> None:
        try:
            fh.write(chunk)
        except OSError as exc:
            raise AtlasError(
                f"Cannot write to {work}: {exc.strerror or exc}.",
                "free space there or set ATLAS_WORK_DIR",
            ) from None

    return write


def _restore_file(argv: list[str], dest: Conn, path: Path) -> None:
    """pg_restore ARGV of a file into `dest`; raise with its (redacted) words on failure."""
    proc = subprocess.run(
        [*argv, "--dbname", dest.conninfo, str(path)],
        env=dest.env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise _restore_failed(redact(proc.stderr, dest.secrets), proc.returncode)


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None  # a missing folder: creating the file says so clearly


def _major(snap: dict[str, Any]) -> int:
    try:
        return int(str(snap.get("pg_dump_version") or "0").split(".")[0])
    except ValueError:
        return 0


def _restore_failed(stderr: str, code: int) -> AtlasError:
    lines = [ln.removeprefix("pg_restore: ").strip() for ln in stderr.splitlines() if ln.strip()]
    return AtlasError(
        "pg_restore stopped on an error: " + ("; ".join(lines[-3:]) or f"exit {code}"),
        "a restore that succeeds with errors is a failed restore",
    )


def _finish_toc(lister: pipeline.TocProbe, copy: Pump) -> None:
    """The copy is complete once the lister read the whole table of contents."""
    copy.close()
    lister.verified()


def _check_toc(held: bytearray, toc: tuple[int, str], where: str) -> None:
    size, expected = toc
    if hashlib.sha256(memoryview(held)[:size]).hexdigest() != expected:
        raise Damaged(
            f"The table of contents of {where} does not match its checksum: the artifact "
            "was changed or damaged.",
            "nothing was restored from it",
        )


@dataclass(frozen=True)
class _Input:
    """How a restore reads its artifact: `source()` gives the stored bytes, `restoring()`
    is told when pg_restore gets its first byte, and `toc` (size, sha256) is the
    stream's start that must be verified before that."""

    source: Callable[[], Iterable[bytes]]
    restoring: Callable[[], None]
    toc: tuple[int, str] | None


class _CheckedArtifact:
    """Opens the stored artifact and proves its size and sha256 on a thread, while the
    target database is being prepared.

    A restore runs the SQL inside the archive, so a changed archive must not get the
    chance to run any: nothing reads it for a restore before `wait` returned. The
    restore then reads this same open file (a local artifact, or a private download
    from S3), and every checksum is checked again on the way.
    """

    def __init__(self, storage: Storage, snap: dict[str, Any], work_dir: Path) -> None:
        self._storage, self._snap, self._work = storage, snap, work_dir
        self._fh: BinaryIO | None = None
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._done = False
        self.seconds = 0.0
        self._t = threading.Thread(target=self._run, name="checksum", daemon=True)
        self._t.start()

    def _run(self) -> None:
        started = time.monotonic()
        try:
            fh = self._storage.open_copy(self._snap["storage_key"], self._work)
            self._fh = fh
            sha, size = hashlib.sha256(), 0
            while not self._stop.is_set() and (chunk := fh.read(CHUNK)):
                sha.update(chunk)
                size += len(chunk)
            self._check(size, sha.hexdigest())
            fh.seek(0)
        except BaseException as exc:
            self._error = exc
        finally:
            self.seconds = time.monotonic() - started
            with self._lock:
                self._done = True
                closing = self._stop.is_set()
            if closing:
                self._close_file()

    def _check(self, size: int, sha256: str) -> None:
        snap, where = self._snap, self._storage.location(self._snap["storage_key"])
        if self._stop.is_set():
            return
        if size != snap["size_bytes"]:
            raise Damaged(
                f"The stored artifact {where} is {size} bytes, "
                f"but {snap['size_bytes']} were written.",
                "nothing was restored from it",
            )
        if sha256 != snap["sha256"]:
            raise Damaged(
                f"Checksum mismatch for {where}: sha256 {sha256[:12]}…, "
                f"expected {snap['sha256'][:12]}…. The artifact was changed or damaged.",
                "nothing was restored from it",
            )

    def wait(self) -> BinaryIO:
        self._t.join()
        if isinstance(self._error, OSError):
            raise AtlasError(
                f"Cannot download the artifact to {self._work}: "
                f"{self._error.strerror or self._error}.",
                "free space there or set ATLAS_WORK_DIR",
            )
        if self._error is not None:
            raise self._error
        assert self._fh is not None
        return self._fh

    def close(self) -> None:
        """Release the file; a download still running closes it itself when done."""
        with self._lock:
            self._stop.set()
            done = self._done
        if done:
            self._close_file()

    def _close_file(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.close()
