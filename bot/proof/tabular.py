"""The report as JSON (`docs/report.schema.json`) and as CSV: one row per record, with a
`record` column saying which kind, so a spreadsheet filters it. Pure."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
from collections.abc import Iterator
from typing import Any

from bot.proof.records import DatabaseProof, Report

COLUMNS = [
    "record",  # policy | chain | database | snapshot | gap | job | check | quarter
    "database",
    "id",
    "kind",
    "at",
    "until",
    "status",
    "requested_by",
    "approved_by",
    "seconds",
    "target_s",
    "size_bytes",
    "count",
    "detail",
]
FORMULA = ("=", "+", "-", "@", "\t", "\r")  # what a spreadsheet would run as a formula


def to_json(report: Report) -> str:
    return json.dumps(dataclasses.asdict(report), indent=2, ensure_ascii=False)


def to_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows(report):
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return out.getvalue()


def _cell(value: Any) -> Any:
    """Text that a spreadsheet would take for a formula is quoted as text: a tag or an
    error message is data, never something to run when an auditor opens the file."""
    if isinstance(value, str) and value.startswith(FORMULA):
        return "'" + value
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else value


def rows(report: Report) -> Iterator[dict[str, Any]]:
    for name, value in dataclasses.asdict(report.policy).items():
        shown = ",".join(value) if isinstance(value, list) else value
        yield {"record": "policy", "id": name, "detail": shown}
    c = report.chain
    status = "intact" if c.intact else "broken"
    yield {
        "record": "chain",
        "id": c.head,
        "status": status,
        "count": c.entries,
        "detail": c.problem,
    }
    for db in report.databases:
        yield from database_rows(db, report.policy.rto_target_s)


def database_rows(db: DatabaseProof, target_s: int) -> Iterator[dict[str, Any]]:
    name = db.name
    yield {
        "record": "database",
        "database": name,
        "kind": db.schedule,
        "at": db.last_good_at,
        "seconds": db.rpo.seconds,
        "count": db.taken,
        "detail": f"expected={db.expected} good={db.good} failed={db.failed} "
        f"rpo_from={db.rpo.start} rpo_to={db.rpo.end}",
    }
    for s in db.snapshots:
        tags = ",".join(f"{k}={v}" for k, v in s.tags.items())
        yield {
            "record": "snapshot",
            "database": name,
            "id": s.id,
            "kind": s.source,
            "at": s.started_at,
            "status": s.status,
            "requested_by": s.requested_by,
            "seconds": s.duration_s,
            "size_bytes": s.size_bytes,
            "detail": s.error or tags,
        }
    for g in db.gaps:
        failed = ",".join(g.failed)
        yield {
            "record": "gap",
            "database": name,
            "at": g.start,
            "until": g.end,
            "count": g.missed,
            "detail": failed,
        }
    for j in db.jobs:
        yield {
            "record": "job",
            "database": name,
            "id": j.id,
            "kind": j.kind,
            "at": j.started_at,
            "status": j.status,
            "requested_by": j.requested_by,
            "approved_by": ",".join(j.approved_by),
            "seconds": j.total_s,
            "target_s": target_s,
            "count": j.rows.rows,
            "detail": "; ".join([*j.problems, *([j.error] if j.error else [])]),
        }
        for check in j.checks:
            status = "passed" if check.passed else "failed"
            yield {
                "record": "check",
                "database": name,
                "id": j.id,
                "kind": check.name,
                "status": status,
                "detail": check.detail,
            }
    for q in db.quarters:
        status = "passed" if q.passed else "none"
        yield {
            "record": "quarter",
            "database": name,
            "id": q.quarter,
            "status": status,
            "detail": q.job_id,
        }
