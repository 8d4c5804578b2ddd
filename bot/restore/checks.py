"""What a restored database must show before a drill passes: the snapshot's manifest
(tables, exact row counts, sequences, extensions) and every app-flow check."""

from __future__ import annotations

import time

import psycopg
from psycopg import sql

from bot.backup import manifest
from bot.config import Check
from bot.pg import Conn, first_line
from bot.records import CheckResult, Snapshot
from bot.restore.tables import Selection


def run_checks(conn: Conn, checks: list[Check], timeout_s: int) -> list[CheckResult]:
    """Each check runs read-only with a timeout and must return exactly true."""
    results: list[CheckResult] = []
    if not checks:
        return results  # no session to open
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
                    row = c.execute(
                        check.sql
                    ).fetchone()  # the operator's SQL, from the config file
                value = row[0] if row else None
                ok = value is True
                detail = "true" if ok else f"returned {value!r}, expected true"
            except psycopg.Error as exc:
                ok, detail = False, first_line(str(exc))
            results.append(CheckResult(check.name, ok, detail, time.monotonic() - started))
    return results


def manifest_problems(snap: Snapshot, dest: Conn) -> list[str]:
    """What the restored database shows that differs from the snapshot's manifest."""
    with dest.connect(autocommit=True) as c:
        actual = manifest.collect(c)
    return manifest.compare(snap.manifest or {}, actual)


def table_problems(snap: Snapshot, dest: Conn, chosen: Selection) -> list[str]:
    """What a database restored with only `chosen`'s tables shows that differs from the
    snapshot's manifest for those tables and their sequences."""
    recorded = snap.manifest or {}
    parents = set(chosen.partitioned)  # no rows of their own: their partitions are counted
    names = {str(t) for t in chosen.tables} - parents
    seqs = set(chosen.sequences)
    expected = {
        "tables": {k: v for k, v in (recorded.get("tables") or {}).items() if k in names},
        "sequences": {k: v for k, v in (recorded.get("sequences") or {}).items() if k in seqs},
    }
    with dest.connect(autocommit=True) as c:
        actual = manifest.collect(c)
    actual["tables"] = {k: v for k, v in actual["tables"].items() if k in names}
    found = set(actual["tables"]) | set(actual.get("partitioned") or ())
    missing = [f"table {n} is missing" for n in sorted((names | parents) - found)]
    return missing + manifest.compare(expected, actual)
