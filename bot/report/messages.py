"""Slack message rendering: pure functions from records to mrkdwn text and Block Kit."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from bot.records import (
    Copy,
    CopyState,
    DrillStatus,
    JobRecord,
    Kind,
    Request,
    RequestStatus,
    Restore,
    Snapshot,
    SnapshotStatus,
)
from bot.tags import render
from bot.words import count, human_seconds

Blocks = list[dict[str, Any]]

HELP = """\
*Atlas* keeps this team's PostgreSQL backups safe.
• `/atlas snapshot [db:NAME] [tag:KEY=VALUE] [note]`: take a snapshot now (e.g. `/atlas snapshot tag:migration=0042 before migration 0042`); `/atlas snapshot --all [note]`: every database, one message when done
• `/atlas list`: recent snapshots, newest first
• `/atlas verify ID`: re-read a stored snapshot and check it end to end
• `/atlas restore ID [db:NAME] [table:SCHEMA.TABLE …]`: ask to restore a snapshot (or only those tables) into staging (approved by reactions)
• `/atlas drill [ID] [db:NAME]`: ask for a restore drill into a new scratch database (default: the newest good snapshot of the first database, or of NAME)
• `/atlas undo [db:NAME]`: ask to swap back the staging the last refresh replaced (approved by reactions)
• `/atlas drills`: past drills and restores with their verdicts and timings
• `/atlas status`: the backup checklist with live facts (schedule, last snapshot, last drill, retention, encryption)
• `/atlas keep ID` / `/atlas unkeep ID`: pin a snapshot so retention never deletes it, or release it
• `/atlas report [since:DATE] [until:DATE] [db:NAME] [format:html|json|csv]`: the auditors' report (default: the last year, HTML) posted here as a file
• `/atlas help`: this message
From a terminal: `atlas snapshot --note "…" [--tag KEY=VALUE]`, `atlas list`, `atlas show ID`, `atlas verify ID`, `atlas fetch ID -o FILE`, `atlas restore ID [--table SCHEMA.TABLE]`, `atlas restore --undo`, `atlas drill [--db NAME]`, `atlas drills`, `atlas status`, `atlas prune --dry-run`, `atlas keep ID`, `atlas unkeep ID`, `atlas rescan [--from NAME]`, `atlas copy`, `atlas keygen -o FILE`, `atlas audit`, `atlas report -o FILE`, `atlas doctor`, `atlas console`, `atlas demo`, `atlas serve`, `atlas catalog migrate --to URL` (`atlas --help` explains each)."""

# What only a terminal does, and why: asked for in Slack, the answer says where to go.
TERMINAL_ONLY = {
    "show": "`atlas show ID` prints a snapshot's whole record",
    "fetch": "`atlas fetch ID -o FILE` writes a file, on a host that holds the storage credentials",
    "prune": "`atlas prune --dry-run` shows what retention deletes; housekeeping prunes daily",
    "rescan": "`atlas rescan` rebuilds the catalog from storage",
    "doctor": "`atlas doctor` checks the configuration where Atlas runs",
    "audit": "`atlas audit` prints who did what",
    "keygen": "`atlas keygen -o FILE` makes a key file, which never passes through Slack",
}


def terminal_only(sub: str) -> str:
    return f"`/atlas {sub}` runs from a terminal, not Slack: {TERMINAL_ONLY[sub]}."


# Slack's documented limits (Block Kit reference, chat.postMessage): a message over
# them is refused outright, so every message Atlas sends goes through `fit`.
MAX_TEXT = 40_000  # a message's top-level text
MAX_BLOCKS = 50
MAX_SECTION = 3_000  # section text, and any text object
MAX_FIELD = 2_000  # each of a section's fields
MAX_FIELDS = 10
MAX_CONTEXT_ELEMENTS = 10
MAX_HEADER = 150
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2_000


def truncate(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, ending in "…", without splitting an
    escape (`&lt;`), a mention or link (`<@U1>`), or leaving a code block open."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 4]  # room for "…" and a closing fence
    amp, semi = cut.rfind("&"), cut.rfind(";")
    if amp > semi and amp >= len(cut) - 6:
        cut = cut[:amp]
    if cut.rfind("<") > cut.rfind(">"):
        cut = cut[: cut.rfind("<")]
    out = cut + "…"
    if out.count("```") % 2:
        out += "```"
    return out


def fit(text: str, blocks: Blocks) -> tuple[str, Blocks]:
    """The message cut down to what Slack accepts; long content keeps its start."""
    blocks = [_fit_block(b) for b in blocks]
    if len(blocks) > MAX_BLOCKS:
        dropped = len(blocks) - (MAX_BLOCKS - 1)
        blocks = [*blocks[: MAX_BLOCKS - 1], _context(f"… {dropped} more blocks not shown")]
    return truncate(text, MAX_TEXT), blocks


def _fit_text_object(obj: dict[str, Any], limit: int) -> dict[str, Any]:
    if isinstance(obj, dict) and isinstance(obj.get("text"), str):
        return {**obj, "text": truncate(obj["text"], limit)}
    return obj


def _fit_block(block: dict[str, Any]) -> dict[str, Any]:
    kind = block.get("type")
    out = dict(block)
    if kind == "section":
        if "text" in out:
            out["text"] = _fit_text_object(out["text"], MAX_SECTION)
        if "fields" in out:
            out["fields"] = [_fit_text_object(f, MAX_FIELD) for f in out["fields"][:MAX_FIELDS]]
    elif kind == "header" and "text" in out:
        out["text"] = _fit_text_object(out["text"], MAX_HEADER)
    elif kind == "context":
        out["elements"] = [
            _fit_text_object(e, MAX_SECTION) for e in out.get("elements", [])[:MAX_CONTEXT_ELEMENTS]
        ]
    elif kind == "actions":
        out["elements"] = [_fit_button(e) for e in out.get("elements", [])]
    return out


def _fit_button(element: dict[str, Any]) -> dict[str, Any]:
    if element.get("type") != "button":
        return element
    out = dict(element)
    out["text"] = _fit_text_object(out.get("text", {}), MAX_BUTTON_TEXT)
    if isinstance(out.get("value"), str):
        out["value"] = out["value"][:MAX_BUTTON_VALUE]
    return out


def escape(text: str) -> str:
    """Neutralise Slack markup in user text: `<!channel>` and `<@U1>` become inert."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_DECIDED_BY = re.compile(r"((?:rejected|approved|withdrawn) by )&lt;@([A-Za-z0-9_]+)&gt;$")


def _reason(text: str) -> str:
    """A request's reason, as user text; but the rejecting person Atlas itself named
    (`rejected by <@U1>`) stays a mention, which the console shows as @name."""
    return _DECIDED_BY.sub(r"\1<@\2>", escape(text))


def human_bytes(n: float | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def _utc(iso: Any) -> str:
    """'2026-11-24T17:32:08.123+00:00' -> '2026-11-24 17:32' (catalog times are UTC)."""
    return str(iso or "")[:16].replace("T", " ")


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def _who(user: str | None) -> str:
    user = user or "someone"
    return f"<@{user}>" if user.startswith(("U", "W")) and user.isalnum() else escape(user)


def _note(snap: Snapshot) -> str:
    note = (snap.note or "").strip()
    return (f"\n>{escape(note)}" if note else "") + (f"\n{_tags(snap)}" if snap.tags else "")


def _tags(snap: Snapshot) -> str:
    """`app=abc123` `migration=0042`: each tag in code, so no part of it is markup."""
    return " ".join(f"`{escape(t)}`" for t in render(snap.tags).split())


def snapshot_started(snap: Snapshot) -> tuple[str, Blocks]:
    text = f":hourglass_flowing_sand: Snapshot `{snap.id}` of *{escape(snap.database)}* started"
    return text, [_section(f"{text} for {_who(snap.requested_by)}.{_note(snap)}")]


def snapshot_progress(snap: Snapshot, raw: int, stored: int, elapsed: float) -> tuple[str, Blocks]:
    rate = raw / elapsed if elapsed > 0 else 0
    text, blocks = snapshot_started(snap)
    blocks.append(
        _context(
            f"dumped {human_bytes(raw)} · stored {human_bytes(stored)} · "
            f"{human_bytes(rate)}/s · {human_seconds(elapsed)} elapsed"
        )
    )
    return text, blocks


def snapshot_done(snap: Snapshot, copies: list[Copy] | None = None) -> tuple[str, Blocks]:
    text = f":white_check_mark: Snapshot `{snap.id}` of *{escape(snap.database)}* is stored and verified"
    if copies:
        text += f", {escape(copies_summary(copies))}"
    facts = [
        f"*Database:* {escape(snap.dbname or snap.database)} ({escape(snap.environment)}, PostgreSQL {snap.server_version or '?'})",
        f"*Size:* {human_bytes(snap.size_bytes)} (dump {human_bytes(snap.raw_size_bytes)})",
        f"*Duration:* {human_seconds(snap.duration_s)}",
        f"*Checksum:* sha256 `{(snap.sha256 or '')[:12]}`",
        f"*Stored at:* `{escape(snap.location or '')}`",
        f"*Asked by:* {_who(snap.requested_by)}",
    ]
    if snap.provider_snapshot:
        facts.append(f"*Provider snapshot:* `{escape(snap.provider_snapshot)}` (started)")
    return text, [_section(f"{text}.{_note(snap)}"), _section("\n".join(facts))]


def snapshot_failed(snap: Snapshot, error: str) -> tuple[str, Blocks]:
    text = f":x: Snapshot `{snap.id}` of *{escape(snap.database)}* failed"
    return text, [
        _section(f"{text}: {escape(error)}{_note(snap)}"),
        _context(
            f"Asked by {_who(snap.requested_by)} · nothing was kept, so nothing can be mistaken for a good backup"
        ),
    ]


def snapshot_interrupted(snap: Snapshot) -> tuple[str, Blocks]:
    text = (
        f":warning: Snapshot `{snap.id}` of *{escape(snap.database)}* was interrupted: "
        "Atlas stopped while it ran. Nothing was kept; take a new one with `/atlas snapshot`."
    )
    return text, [_section(text)]


def snapshot_damaged(snap: Snapshot, found_by: str, good: Snapshot | None) -> tuple[str, Blocks]:
    text = (
        f":rotating_light: Snapshot `{snap.id}` of *{escape(snap.database)}* is damaged "
        f"(found by {escape(found_by)}) and can never be restored"
    )
    then = (
        f"The newest good snapshot is `{good.id}` ({_utc(good.started_at)} UTC)."
        if good
        else "There is no good snapshot of it left: take one with `/atlas snapshot` now."
    )
    return text, [
        _section(f"{text}: {escape(snap.error or '')}"),
        _context(f"It is marked corrupt, so drills and retention stop counting on it. {then}"),
    ]


def snapshot_line(snap: Snapshot) -> str:
    icon = {
        SnapshotStatus.OK: ":white_check_mark:",
        SnapshotStatus.RUNNING: ":hourglass_flowing_sand:",
    }.get(snap.status, ":x:")
    size = human_bytes(snap.size_bytes) if snap.size_bytes else "—"
    note = f" — {escape(snap.note[:80])}" if snap.note else ""
    pin = " · :pushpin: kept" if snap.pinned else ""
    tags = f" · {_tags(snap)}" if snap.tags else ""
    return (
        f"{icon} `{snap.id}` {escape(snap.database)} {snap.status} · {size} · "
        f"{_utc(snap.started_at or '')} UTC{pin}{tags}{note}"
    )


def snapshot_list(rows: list[Snapshot]) -> str:
    if not rows:
        return "No snapshots yet. Take one with `/atlas snapshot before <change>`."
    return "*Recent snapshots* (newest first)\n" + "\n".join(snapshot_line(r) for r in rows)


def pinned(snap: Snapshot) -> str:
    if snap.pinned:
        return f":pushpin: Snapshot `{snap.id}` is kept until `/atlas unkeep {snap.id}`."
    return f"Snapshot `{snap.id}` is back under the retention policy."


def verified(snap: Snapshot) -> str:
    return (
        f":white_check_mark: Snapshot `{snap.id}` verified: {human_bytes(snap.size_bytes)}, "
        f"sha256 `{(snap.sha256 or '')[:12]}` matches and the archive reads to its end."
    )


def error(message: str) -> str:
    return truncate(f":x: {escape(message)}", MAX_SECTION)


# -- restore and drill requests -----------------------------------------------------------

KIND_WORDS = {
    Kind.RESTORE: "Restore into staging",
    Kind.DRILL: "Restore drill",
    Kind.UNDO: "Undo of a staging refresh",
}


def _users(ids: list[str]) -> str:
    return ", ".join(f"<@{u}>" for u in ids) if ids else "nobody yet"


def request_message(
    req: Request,
    snap: Snapshot | None,
    *,
    approve_emoji: str,
    reject_emoji: str,
    target: str,
) -> tuple[str, Blocks]:
    what = KIND_WORDS[req.kind]
    head = {
        RequestStatus.PENDING: f":raised_hand: {what} requested",
        RequestStatus.APPROVED: f":rocket: {what} approved, starting",
        RequestStatus.RUNNING: f":gear: {what} running",
        RequestStatus.DONE: f":checkered_flag: {what} finished",
        RequestStatus.FAILED: f":x: {what} failed",
        RequestStatus.REJECTED: f":no_entry: {what} rejected",
        RequestStatus.EXPIRED: f":hourglass: {what} expired",
    }.get(req.status, f"{what}: {req.status}")
    if snap is None:  # an undo: req.snapshot_id names the refresh undone
        text = f"{head}: `{req.snapshot_id}` of *{escape(req.database)}*"
        what_lines = [f"*Brings back:* the staging that `{req.snapshot_id}` replaced"]
    else:
        text = f"{head}: snapshot `{snap.id}` of *{escape(snap.database)}*"
        what_lines = [
            f"*Snapshot:* `{snap.id}` ({human_bytes(snap.size_bytes)}, taken "
            f"{_utc(snap.started_at)} UTC)"
        ]
        if req.tables:
            what_lines.append(
                "*Tables:* " + ", ".join(f"`{escape(t)}`" for t in req.tables) + " only"
            )
    lines = [
        *what_lines,
        f"*Into:* `{escape(target)}`",
        f"*Asked by:* <@{req.requested_by}>"
        + (f", because: {escape(req.note)}" if req.note else ""),
        f"*Approvals:* {len(req.approved_by)} of {req.required} ({_users(req.approved_by)})",
        f"*Approvers:* {_users(req.approvers)}",
    ]
    if req.status == RequestStatus.PENDING:
        lines.append(
            f"React :{approve_emoji}: to approve or :{reject_emoji}: to reject. "
            f"Expires {_utc(req.expires_at)} UTC."
        )
    elif req.reason:
        lines.append(f"*Why:* {_reason(req.reason)}")
    return text, [_section(text), _section("\n".join(lines)), _context(f"request `{req.id}`")]


def drill_report(drill: JobRecord, previous: JobRecord | None) -> tuple[str, Blocks]:
    """The verdict people read at a glance: checks table, restore time, trend."""
    if isinstance(drill, Restore) and drill.undo_of:
        return undo_report(drill)
    ok = drill.status == DrillStatus.PASSED
    what = KIND_WORDS[drill.kind]
    text = (
        f"{':white_check_mark:' if ok else ':x:'} {what} `{drill.id}` "
        f"{'passed' if ok else 'FAILED'}: snapshot `{drill.snapshot_id}` of *{escape(drill.database)}*"
    )
    if drill.tables:
        text += " (only " + ", ".join(f"`{escape(t)}`" for t in drill.tables) + ")"
    total = drill.total_s
    trend = ""
    if ok and previous and previous.total_s and total:  # a failure restored nothing to time
        delta = total - previous.total_s
        trend = f" ({'+' if delta >= 0 else '−'}{human_seconds(abs(delta))} vs {human_seconds(previous.total_s)} on {str(previous.started_at)[:10]})"
    lines = [
        f"*Time to restore:* {human_seconds(total)}{trend}"
        if ok
        else f"*Failed after:* {human_seconds(total)}",
        f"checked before restoring {human_seconds(drill.download_s)} · restore {human_seconds(drill.restore_s)} · verify {human_seconds(drill.verify_s)}",
        f"*Target:* `{escape(drill.target or '')}`" + _scratch_words(drill),
    ]
    problems = drill.problems
    manifest_bad = [p for p in problems if not p.startswith(("check ", "warning: "))]
    table = [
        f"{'✅' if not manifest_bad and not drill.error else '❌'} "
        "manifest (tables, row counts, sequences, extensions)"
    ]
    table += [f"{'✅' if c.passed else '❌'} {c.name}: {c.detail}" for c in drill.checks]
    blocks = [
        _section(text),
        _section("\n".join(lines)),
        _section("```" + "\n".join(escape(t) for t in table) + "```"),
    ]
    if drill.error:
        blocks.append(_section(f"*Error:* {escape(drill.error)}"))
    if problems:
        blocks.append(
            _section("*Problems:*\n" + "\n".join(f"• {escape(p)}" for p in problems[:20]))
        )
    return text, blocks


def undo_report(job: Restore) -> tuple[str, Blocks]:
    ok = job.status == DrillStatus.PASSED
    text = (
        f"{':leftwards_arrow_with_hook:' if ok else ':x:'} Undo `{job.id}` of *{escape(job.database)}* "
        f"{'done' if ok else 'FAILED'}: the staging `{job.undo_of}` replaced is back"
        + ("" if ok else " (not swapped)")
    )
    lines = [f"*Target:* `{escape(job.target or '')}`" + _swap_words(job)]
    if job.error:
        lines.append(f"*Error:* {escape(job.error)}")
    lines += [f"• {escape(p)}" for p in job.problems[:20]]
    return text, [_section(text), _section("\n".join(lines))]


def _swap_words(job: Restore) -> str:
    """What a refresh's (or undo's) swap did, and what it keeps."""
    if job.tables and job.status == DrillStatus.PASSED:
        return " (those tables replaced, in one transaction; the rest untouched)"
    if not job.swapped:
        return " (staging not touched)" if job.status != DrillStatus.RUNNING else ""
    kept = (
        f"; the staging it replaced is kept as `{job.kept_db}` for undo"
        if job.kept_db and job.kept_dropped is False
        else ""
    )
    return f" (swapped in, {human_seconds(job.swap_s)}{kept})"


def _scratch_words(job: JobRecord) -> str:
    """What became of a drill's scratch database, or of a refresh's swap."""
    if isinstance(job, Restore):
        return _swap_words(job)
    if job.kept:
        return " (kept)"
    return " (scratch database dropped)" if job.scratch_db and job.scratch_dropped else ""


def drill_line(d: JobRecord) -> str:
    icon = {DrillStatus.PASSED: ":white_check_mark:", DrillStatus.RUNNING: ":gear:"}.get(
        d.status, ":x:"
    )
    return (
        f"{icon} `{d.id}` {d.kind} of {escape(d.database)} from `{d.snapshot_id}` · "
        f"{d.status} · {human_seconds(d.total_s)} · {_utc(d.started_at)} UTC"
    )


def drill_list(rows: list[JobRecord]) -> str:
    if not rows:
        return "No drills yet. Start one with `/atlas drill`."
    return "*Recent drills and restores* (newest first)\n" + "\n".join(drill_line(r) for r in rows)


DRILL_ACTION = "atlas_request_drill"


def with_drill_button(text: str, database: str) -> Blocks:
    """A reminder with a button that opens the same approval flow as `/atlas drill`."""
    return [
        _section(text),
        {
            "type": "actions",
            "elements": [
                {
                    "type": "button",
                    "action_id": DRILL_ACTION,
                    "text": {"type": "plain_text", "text": "Start a restore drill"},
                    "value": database,
                    "style": "primary",
                }
            ],
        },
    ]


def _took(snap: Snapshot) -> str:
    return f"{human_bytes(snap.size_bytes)} in {human_seconds(snap.duration_s)}"


def fleet_summary(
    ok: list[tuple[str, Snapshot]],
    failed: list[tuple[str, str]],
    gone: list[str],
    problems: list[str],
    title: str = "Scheduled snapshot",
    shown: int = 20,
    skipped: list[str] | None = None,
    copies: str = "",
) -> str:
    """One message for a run over the fleet: each failure named (the first `shown`), the
    successes counted (they are listed in the thread), and how far their copies got
    (`fleet_copies`). One database reads as before. A database the run had to skip is a
    failure of the run, named with why."""
    total = len(ok) + len(failed)
    lines = []
    skipped = skipped or []
    problems = [*skipped, *problems]
    if total == 1 and not gone and not problems:
        if ok:
            name, snap = ok[0]
            also = f", {copies}" if copies else ""
            return f":white_check_mark: {title} `{snap.id}` of {escape(name)}: {_took(snap)}{also}"
        name, error = failed[0]
        return f"<!here> :rotating_light: *{title} of {escape(name)} FAILED*: {escape(error)}"
    if failed or problems:
        what = "; ".join(
            part
            for part in (
                f"{len(failed)} of {total} FAILED" if failed else "",
                f"{count(len(skipped), 'database')} skipped" if skipped else "",
                "a server could not be listed" if len(problems) > len(skipped) else "",
            )
            if part
        )
        lines.append(f"<!here> :rotating_light: *{title}s: {what}*")
        for name, error in failed[:shown]:
            lines.append(f"• *{escape(name)}*: {escape(error[:300])}")
        if len(failed) > shown:
            lines.append(f"• …and {len(failed) - shown} more (`atlas list` shows each)")
        for problem in problems:
            lines.append(f"• {escape(problem[:300])}")
        if ok:
            lines.append(f"{len(ok)} succeeded (listed in the thread)")
    else:
        size = sum(s.size_bytes or 0 for _, s in ok)
        lines.append(
            f":white_check_mark: {title}s: all {total} ok, "
            f"{human_bytes(size)} in all (listed in the thread)"
        )
    if copies:
        lines.append(f"Copies: {copies}")
    if gone:
        lines.append(
            f":warning: No longer on their server (snapshots kept under retention): "
            f"{', '.join(escape(g) for g in gone)}"
        )
    return "\n".join(lines)


def fleet_successes(ok: list[tuple[str, Snapshot]], per_message: int = 40) -> list[str]:
    """The successes of a run, for its thread: a line each, a few dozen per message."""
    lines = [f"`{s.id}` {escape(name)}: {_took(s)}" for name, s in ok]
    return ["\n".join(lines[i : i + per_message]) for i in range(0, len(lines), per_message)]


def copies_summary(copies: Iterable[Copy]) -> str:
    """'copied to 2 of 2', or which copies still wait: for messages and the CLI."""
    rows = list(copies)
    good = [c for c in rows if c.state == CopyState.OK]
    text = f"copied to {len(good)} of {len(rows)}"
    waiting = [c for c in rows if c.state != CopyState.OK]
    if waiting:
        text += " (" + "; ".join(_waits(c) for c in waiting) + ")"
    return text


def fleet_copies(copies: Iterable[Copy]) -> str:
    """A run's copies in one line: 'copied to 2 of 2' for one snapshot; for many, how many
    of them were made, and what each destination still owes."""
    rows = list(copies)
    if len({c.snapshot_id for c in rows}) <= 1:
        return copies_summary(rows) if rows else ""
    good = sum(c.state == CopyState.OK for c in rows)
    owed: dict[str, int] = {}
    for c in rows:
        if c.state != CopyState.OK:
            owed[c.destination] = owed.get(c.destination, 0) + 1
    text = f"{good} of {len(rows)} made"
    if owed:
        text += (
            " (" + "; ".join(f"{escape(d)}: {n} pending, retried" for d, n in owed.items()) + ")"
        )
    return text


def _waits(c: Copy) -> str:
    if c.state in (CopyState.PENDING, CopyState.COPYING):
        return f"{c.destination} pending, retried" + (f": {c.error}" if c.error else "")
    return f"{c.destination} {c.state}" + (f": {c.error}" if c.error else "")
