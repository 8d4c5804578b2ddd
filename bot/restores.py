"""Restores into staging and restore drills, each proven against the snapshot's manifest.

Every path here checks its target against production first, by what the servers
report about themselves, not by comparing URL strings.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bot import manifest, pipeline
from bot.catalog import Catalog, now
from bot.config import DatabaseTarget, Settings
from bot.errors import AtlasError, Refused
from bot.pg import Conn, find_tool, first_line, redact
from bot.snapshots import Snapshots

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


def guard_not_production(production: Conn, target: Conn) -> None:
    """Refuse when `target` is the production database, however its URL is spelled."""
    try:
        prod = identity(production)
    except AtlasError as exc:
        raise Refused(
            f"Cannot prove the target is not production, because production is unreachable: {exc}",
            "restores are refused until Atlas can compare the two servers",
        ) from None
    if identity(target).same_database(prod):
        raise Refused(
            f"Refusing to restore into {target.describe()}: it is the production database "
            f"({prod.dbname} on the same server).",
            "restores go to staging only; check STAGING_DATABASE_URL",
        )


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
            row = self.catalog.get_snapshot(snap_id)
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
        return target, Conn.parse(target.staging_url)

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
        production = Conn.parse(target.url)
        try:
            guard_not_production(production, staging)
        except Refused as exc:
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
                "requested_by": requested_by,
                "approved_by": json.dumps(approved_by or []),
                "kept": 0,
            }
        )
        self.catalog.audit(requested_by, f"{kind}.started", drill_id, snapshot=snap["id"])
        say = phase or (lambda _msg: None)
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
                guard_not_production(production, dest)
            say(f"Fetching `{snap['id']}` and checking its checksum…")
            t = time.monotonic()
            pg_restore, _ = find_tool("pg_restore", _major(snap), self.settings.pg_bindir)
            with self._materialized(snap) as dump_file:
                timings["download_s"] = time.monotonic() - t
                say(f"Restoring into `{dest.describe()}`…")
                t = time.monotonic()
                self._pg_restore(pg_restore, dest, dump_file, clean=kind == "restore")
                timings["restore_s"] = time.monotonic() - t
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
            if created and not keep:
                self.drop_database(staging, scratch)
        return self.catalog.get_drill(drill_id)

    # -- steps -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _materialized(self, snap: dict[str, Any]):  # type: ignore[no-untyped-def]
        """The plain dump in a private temp file, checksums proven before it is used.

        pg_restore needs a seekable file for parallel jobs; the file is removed after.
        """
        work = self.settings.work_dir or Path(tempfile.gettempdir())
        fd, name = tempfile.mkstemp(prefix=f".atlas-{snap['id']}-", suffix=".dump", dir=work)
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as fh:
                try:
                    pipeline.read_artifact(
                        self.snapshots.storage,
                        snap["storage_key"],
                        fh.write,
                        expect_size=snap["size_bytes"],
                        expect_sha256=snap["sha256"],
                        expect_dump_sha256=snap["dump_sha256"],
                        identity=self.snapshots.identity_for(snap),
                    )
                except OSError as exc:
                    raise AtlasError(
                        f"Cannot write the dump to {work}: {exc.strerror}.",
                        "free space there or set ATLAS_WORK_DIR",
                    ) from None
            yield path
        finally:
            path.unlink(missing_ok=True)

    def _pg_restore(self, pg_restore: str, dest: Conn, dump_file: Path, *, clean: bool) -> None:
        argv = [
            pg_restore,
            "--no-owner",
            "--no-acl",
            "--exit-on-error",
            f"--jobs={self.settings.restore_jobs}",
        ]
        if clean:
            argv += ["--clean", "--if-exists"]
        argv += ["--dbname", dest.conninfo, str(dump_file)]
        proc = subprocess.run(argv, env=dest.env(), capture_output=True, text=True)
        if proc.returncode != 0:
            lines = [
                ln.removeprefix("pg_restore: ").strip()
                for ln in redact(proc.stderr, dest.secrets).splitlines()
                if ln.strip()
            ]
            raise AtlasError(
                "pg_restore stopped on an error: "
                + ("; ".join(lines[-3:]) or f"exit {proc.returncode}"),
                "a restore that succeeds with errors is a failed restore",
            )

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

    def drop_database(self, server: Conn, name: str | None) -> None:
        if not name:
            return
        try:
            with server.connect(autocommit=True) as c:
                c.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
        except (psycopg.Error, AtlasError) as exc:
            log.error("could not drop scratch database %s: %s", name, exc)

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


def _major(snap: dict[str, Any]) -> int:
    try:
        return int(str(snap.get("pg_dump_version") or "0").split(".")[0])
    except ValueError:
        return 0
