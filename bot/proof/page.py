"""The report as one HTML page: styles and charts inline, no script, nothing fetched, so
it opens offline, prints, and can be attached to an audit as it is. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from html import escape

from bot.proof import charts
from bot.proof.build import at
from bot.proof.records import DatabaseProof, JobLine, Report
from bot.report.messages import human_bytes
from bot.words import count, human_seconds

STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#111827;max-width:70rem}
h1{font-size:1.6rem}h2{margin-top:2.2rem;border-bottom:1px solid #d1d5db}
table{border-collapse:collapse;margin:.6rem 0}td,th{border:1px solid #d1d5db;padding:.25rem .5rem;
text-align:left;vertical-align:top;font-size:.9rem}th{background:#f3f4f6}
.ok{color:#047857}.bad{color:#b91c1c;font-weight:600}.muted{color:#6b7280}
code{font-size:.85rem}.charts svg{margin:.4rem 1rem .4rem 0;border:1px solid #e5e7eb}
"""


def span(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds >= 2 * 86400:
        return count(round(seconds / 86400, 1), "day")
    return human_seconds(seconds)


def mark(good: bool | None, yes: str = "yes", no: str = "no") -> str:
    """A verdict in words and colour (an emoji needs a font that a printer or a headless
    browser may not have)."""
    if good is None:
        return "<span class='muted'>—</span>"
    # the words are text (a status comes from the catalog): escaped like everything else
    return (
        f"<span class='ok'>{escape(yes)}</span>"
        if good
        else f"<span class='bad'>{escape(no)}</span>"
    )


def table(head: Iterable[str], rows: Iterable[Iterable[str]]) -> str:
    """Cells are HTML already: each caller escapes what it puts in."""
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def render(report: Report) -> str:
    title = f"Atlas backup report {report.since[:10]} to {report.until[:10]}"
    parts = [
        f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>",
        f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>",
        f"<p class='muted'>Made {escape(report.generated_at)} from Atlas's catalog. "
        f"Audit chain head <code>{escape(report.chain.head or 'none')}</code>.</p>",
        summary(report),
        policy(report),
        *(database(db, report.policy.rto_target_s) for db in report.databases),
        chain(report),
        "</body></html>",
    ]
    return "\n".join(parts)


def summary(report: Report) -> str:
    rows = []
    for db in report.databases:
        # a refresh of the whole database is a restore proven as a drill is (README)
        last = next(
            (j for j in reversed(db.jobs) if j.kind in ("drill", "restore") and not j.tables),
            None,
        )
        proven = sum(q.passed for q in db.quarters)
        expected = "no schedule" if db.expected is None else str(db.expected)
        rows.append(
            [
                f"<a href='#db-{escape(db.name)}'>{escape(db.name)}</a>",
                escape(db.last_good_at or "never"),
                f"{db.good} of {expected}",
                mark(not db.gaps, "none", count(len(db.gaps), "gap")),
                escape(span(db.rpo.seconds)),
                _verdict(last),
                mark(
                    proven == len(db.quarters),
                    f"{proven} of {len(db.quarters)}",
                    f"{proven} of {len(db.quarters)}",
                ),
            ]
        )
    head = [
        "Database",
        "Last good snapshot",
        "Good snapshots / expected",
        "Gaps",
        "Achieved RPO",
        "Last drill or refresh",
        "Quarters with a passed drill",
    ]
    return "<h2>Summary</h2>" + table(head, rows)


def _verdict(job: JobLine | None) -> str:
    if job is None:
        return "<span class='bad'>no drill</span>"
    when = escape((job.started_at or "")[:10])
    return (
        f"{mark(job.status == 'passed', 'passed', job.status)} {when}, {escape(span(job.total_s))}"
    )


def policy(report: Report) -> str:
    p = report.policy
    gfs = f"; {p.keep_daily} daily, {p.keep_weekly} weekly, {p.keep_monthly} monthly"
    rows = [
        [
            "Snapshot schedule",
            escape(f"{p.schedule or 'none (snapshots on demand)'} ({p.timezone})"),
        ],
        ["Retention", escape(count(p.retention_days, "day") + gfs)],
        ["Encryption", escape("age, every artifact" if p.encryption == "age" else "none by Atlas")],
        ["Stored in", f"<code>{escape(p.storage)}</code>"],
        ["Copies", escape(", ".join(p.copies) or "none configured")],
        [
            "Approvers",
            escape(f"{', '.join(p.approvers) or 'anyone allowed'}; {p.required_approvals} needed"),
        ],
        ["Drill interval", escape(p.drill_every)],
        ["Target RTO", escape(span(p.rto_target_s))],
    ]
    return "<h2>Policy in force</h2>" + table(["Setting", "Value"], rows)


def database(db: DatabaseProof, target_s: int) -> str:
    anchor = escape(db.name)
    parts = [f"<h2 id='db-{anchor}'>{anchor}</h2>", _facts(db), _charts(db, target_s)]
    gaps = [
        [escape(g.start), escape(g.end), str(g.missed), escape(", ".join(g.failed) or "—")]
        for g in db.gaps
    ]
    parts.append(
        "<h3>Gaps</h3>"
        + (table(["From", "To", "Missed", "Failed attempts"], gaps) if gaps else "<p>none</p>")
    )
    quarters = [[escape(q.quarter), mark(q.passed), escape(q.job_id or "—")] for q in db.quarters]
    parts.append("<h3>Quarters</h3>" + table(["Quarter", "Passed drill", "Drill"], quarters))
    parts.append(
        "<h3>Drills and refreshes</h3>"
        + (jobs(db.jobs) if db.jobs else "<p class='bad'>none in this window</p>")
    )
    parts.append(snapshots(db))
    return "\n".join(parts)


def _facts(db: DatabaseProof) -> str:
    expected = "no schedule" if db.expected is None else f"{db.expected} expected ({db.schedule})"
    rpo = db.rpo
    window = f", {rpo.start} to {rpo.end}" if rpo.start else ""
    return (
        f"<p>{count(db.taken, 'snapshot')} taken, {db.good} good, {db.failed} not; "
        f"{escape(expected)}. "
        f"Achieved RPO {escape(span(rpo.seconds))}{escape(window)}.</p>"
    )


def _charts(db: DatabaseProof, target_s: int) -> str:
    rto = [
        charts.Point(at(j.started_at), j.total_s, bad=j.status != "passed" or j.within_rto is False)
        for j in db.jobs
        if j.started_at and j.total_s is not None and j.kind != "undo"
    ]
    good = [s for s in db.snapshots if s.status in ("ok", "deleted")]
    sizes = [(at(s.started_at), s.size_bytes) for s in good if s.size_bytes is not None]
    scale, unit = (1e6, "MB") if max((b for _, b in sizes), default=0) >= 1e6 else (1e3, "KB")
    size = [charts.Point(when, b / scale) for when, b in sizes]
    took = [charts.Point(at(s.started_at), s.duration_s) for s in good if s.duration_s is not None]
    return (
        "<div class='charts'>"
        + charts.chart("Restore time (RTO) against the target", "s", rto, float(target_s))
        + charts.chart("Snapshot size", unit, size)
        + charts.chart("Snapshot duration", "s", took)
        + "</div>"
    )


def jobs(lines: list[JobLine]) -> str:
    rows = []
    for j in lines:
        checks = "<br>".join(
            f"{mark(c.passed)} {escape(c.name)}: {escape(c.detail)}" for c in j.checks
        )
        rows.append(
            [
                f"{escape(j.kind)} <code>{escape(j.id)}</code><br>{escape((j.started_at or '')[:19])}",
                f"<code>{escape(j.snapshot_id)}</code>"
                + (f"<br>{escape(', '.join(j.tables))}" if j.tables else ""),
                escape(j.requested_by or "—")
                + "<br>approved: "
                + escape(", ".join(j.approved_by) or "—"),
                mark(j.status == "passed", "passed", j.status)
                + (f"<br>{escape(j.error)}" if j.error else ""),
                f"{escape(span(j.total_s))} {mark(j.within_rto, 'within', 'over')}",
                _rows(j),
                checks or "—",
            ]
        )
    head = ["Job", "Snapshot", "Requested / approved", "Result", "Restore time", "Rows", "Checks"]
    return table(head, rows)


def _rows(j: JobLine) -> str:
    r = j.rows
    recorded = f"{count(r.rows, 'row')} in {count(r.tables, 'table')}"
    if not r.verified:
        return escape(recorded) + "<br><span class='muted'>not compared</span>"
    if r.differences:
        return (
            escape(recorded)
            + "<br><span class='bad'>"
            + "<br>".join(escape(d) for d in r.differences)
            + "</span>"
        )
    return escape(recorded) + "<br><span class='ok'>all match</span>"


def snapshots(db: DatabaseProof) -> str:
    rows = [
        [
            f"<code>{escape(s.id)}</code>",
            escape(s.started_at[:19]),
            mark(s.status in ("ok", "deleted"), s.status, s.status),
            escape(s.source or "—"),
            escape(s.requested_by or "—"),
            escape(human_bytes(s.size_bytes)),
            escape(span(s.duration_s)),
            escape(", ".join(f"{k}={v}" for k, v in s.tags.items()) or (s.error or "")),
        ]
        for s in db.snapshots
    ]
    head = ["Snapshot", "Started", "Status", "Source", "By", "Size", "Took", "Tags / error"]
    return (
        f"<details><summary>{count(len(rows), 'snapshot')}</summary>{table(head, rows)}</details>"
    )


def chain(report: Report) -> str:
    c = report.chain
    state = "intact" if c.intact else f"BROKEN: {c.problem}"
    return (
        "<h2>Tamper evidence</h2>"
        f"<p>The audit log is hash-chained: {count(c.entries, 'entry', 'entries')} checked, {escape(state)}. "
        f"Its head when this report was made: <code>{escape(c.head or 'none')}</code>. "
        f"<code>atlas audit --verify --head {escape(c.head or 'HEAD')}</code> proves later that "
        "nothing up to this report has changed.</p>"
    )
