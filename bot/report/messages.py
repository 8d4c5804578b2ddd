"""Slack message rendering: pure functions from plain values to text and Block Kit."""

from __future__ import annotations

import json
from typing import Any

HELP = """\
*Atlas* keeps this team's PostgreSQL backups safe.
• `/atlas snapshot [note]`: take a snapshot now (e.g. `/atlas snapshot before migration 0042`)
• `/atlas list`: recent snapshots, newest first
• `/atlas verify ID`: re-read a stored snapshot and check it end to end
• `/atlas restore ID`: ask to restore a snapshot into staging (approved by reactions)
• `/atlas drill [ID]`: ask for a restore drill into a new scratch database (default: newest good snapshot)
• `/atlas drills`: past drills and restores with their verdicts and timings
• `/atlas status`: the backup checklist with live facts (schedule, last snapshot, last drill, retention, encryption)
• `/atlas keep ID` / `/atlas unkeep ID`: pin a snapshot so retention never deletes it, or release it
• `/atlas help`: this message
From a terminal: `atlas snapshot --note "…"`, `atlas list`, `atlas verify ID`, `atlas fetch ID -o FILE`, `atlas restore ID`, `atlas drill`, `atlas drills`, `atlas status`, `atlas prune --dry-run`, `atlas keep ID`, `atlas audit`."""


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


def fit(text: str, blocks: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
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


def human_bytes(n: float | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def human_seconds(s: float | None) -> str:
    if s is None:
        return "?"
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(s), 60)
    return f"{m} min {sec} s" if m < 60 else f"{m // 60} h {m % 60} min"


def _utc(iso: Any) -> str:
    """'2026-11-24T17:32:08.123+00:00' -> '2026-11-24 17:32' (catalog times are UTC)."""
    return str(iso or "")[:16].replace("T", " ")


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": text}]}


def _who(row: dict[str, Any]) -> str:
    user = row.get("requested_by") or "someone"
    return f"<@{user}>" if user.startswith(("U", "W")) and user.isalnum() else escape(user)


def _note(row: dict[str, Any]) -> str:
    note = (row.get("note") or "").strip()
    return f"\n>{escape(note)}" if note else ""


def snapshot_started(row: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    text = f":hourglass_flowing_sand: Snapshot `{row['id']}` of *{escape(row['database'])}* started"
    return text, [_section(f"{text} for {_who(row)}.{_note(row)}")]


def snapshot_progress(
    row: dict[str, Any], raw: int, stored: int, elapsed: float
) -> tuple[str, list[dict[str, Any]]]:
    rate = raw / elapsed if elapsed > 0 else 0
    text, blocks = snapshot_started(row)
    blocks.append(
        _context(
            f"dumped {human_bytes(raw)} · stored {human_bytes(stored)} · "
            f"{human_bytes(rate)}/s · {human_seconds(elapsed)} elapsed"
        )
    )
    return text, blocks


def snapshot_done(row: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    text = f":white_check_mark: Snapshot `{row['id']}` of *{escape(row['database'])}* is stored and verified"
    facts = [
        f"*Database:* {escape(row.get('dbname') or row['database'])} ({escape(row['environment'])}, PostgreSQL {row.get('server_version') or '?'})",
        f"*Size:* {human_bytes(row.get('size_bytes'))} (dump {human_bytes(row.get('raw_size_bytes'))})",
        f"*Duration:* {human_seconds(row.get('duration_s'))}",
        f"*Checksum:* sha256 `{(row.get('sha256') or '')[:12]}`",
        f"*Stored at:* `{escape(row.get('location') or '')}`",
        f"*Asked by:* {_who(row)}",
    ]
    if row.get("provider_snapshot"):
        facts.append(f"*Provider snapshot:* `{escape(row['provider_snapshot'])}` (started)")
    return text, [_section(f"{text}.{_note(row)}"), _section("\n".join(facts))]


def snapshot_failed(row: dict[str, Any], error: str) -> tuple[str, list[dict[str, Any]]]:
    text = f":x: Snapshot `{row['id']}` of *{escape(row['database'])}* failed"
    return text, [
        _section(f"{text}: {escape(error)}{_note(row)}"),
        _context(
            f"Asked by {_who(row)} · nothing was kept, so nothing can be mistaken for a good backup"
        ),
    ]


def snapshot_interrupted(row: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    text = (
        f":warning: Snapshot `{row['id']}` of *{escape(row['database'])}* was interrupted: "
        "Atlas stopped while it ran. Nothing was kept; take a new one with `/atlas snapshot`."
    )
    return text, [_section(text)]


def snapshot_damaged(
    row: dict[str, Any], found_by: str, good: dict[str, Any] | None
) -> tuple[str, list[dict[str, Any]]]:
    text = (
        f":rotating_light: Snapshot `{row['id']}` of *{escape(row['database'])}* is damaged "
        f"(found by {escape(found_by)}) and can never be restored"
    )
    then = (
        f"The newest good snapshot is `{good['id']}` ({_utc(good.get('started_at'))} UTC)."
        if good
        else "There is no good snapshot of it left: take one with `/atlas snapshot` now."
    )
    return text, [
        _section(f"{text}: {escape(row.get('error') or '')}"),
        _context(f"It is marked corrupt, so drills and retention stop counting on it. {then}"),
    ]


def snapshot_line(row: dict[str, Any]) -> str:
    icon = {"ok": ":white_check_mark:", "running": ":hourglass_flowing_sand:"}.get(
        row["status"], ":x:"
    )
    size = human_bytes(row.get("size_bytes")) if row.get("size_bytes") else "—"
    note = f" — {escape(row['note'][:80])}" if row.get("note") else ""
    pin = " · :pushpin: kept" if row.get("pinned") else ""
    return (
        f"{icon} `{row['id']}` {escape(row['database'])} {row['status']} · {size} · "
        f"{_utc(row.get('started_at') or '')} UTC{pin}{note}"
    )


def snapshot_list(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "No snapshots yet. Take one with `/atlas snapshot before <change>`."
    return "*Recent snapshots* (newest first)\n" + "\n".join(snapshot_line(r) for r in rows)


def pinned(row: dict[str, Any]) -> str:
    if row.get("pinned"):
        return f":pushpin: Snapshot `{row['id']}` is kept until `/atlas unkeep {row['id']}`."
    return f"Snapshot `{row['id']}` is back under the retention policy."


def verified(row: dict[str, Any]) -> str:
    return (
        f":white_check_mark: Snapshot `{row['id']}` verified: {human_bytes(row.get('size_bytes'))}, "
        f"sha256 `{(row.get('sha256') or '')[:12]}` matches and the archive reads to its end."
    )


def error(message: str) -> str:
    return truncate(f":x: {escape(message)}", MAX_SECTION)


# -- restore and drill requests -----------------------------------------------------------

KIND_WORDS = {"restore": "Restore into staging", "drill": "Restore drill"}


def _users(ids: list[str]) -> str:
    return ", ".join(f"<@{u}>" for u in ids) if ids else "nobody yet"


def request_message(
    req: dict[str, Any],
    snap: dict[str, Any],
    *,
    approvers: list[str],
    approved_by: list[str],
    approve_emoji: str,
    reject_emoji: str,
    target: str,
) -> tuple[str, list[dict[str, Any]]]:
    what = KIND_WORDS[req["kind"]]
    status = req["status"]
    head = {
        "pending": f":raised_hand: {what} requested",
        "approved": f":rocket: {what} approved, starting",
        "running": f":gear: {what} running",
        "done": f":checkered_flag: {what} finished",
        "failed": f":x: {what} failed",
        "rejected": f":no_entry: {what} rejected",
        "expired": f":hourglass: {what} expired",
        "refused": f":no_entry: {what} refused",
    }.get(status, f"{what}: {status}")
    text = f"{head}: snapshot `{snap['id']}` of *{escape(snap['database'])}*"
    lines = [
        f"*Snapshot:* `{snap['id']}` ({human_bytes(snap.get('size_bytes'))}, taken {_utc(snap.get('started_at'))} UTC)",
        f"*Into:* `{escape(target)}`",
        f"*Asked by:* <@{req['requested_by']}>",
        f"*Approvals:* {len(approved_by)} of {req['required']} ({_users(approved_by)})",
        f"*Approvers:* {_users(approvers)}",
    ]
    if status == "pending":
        lines.append(
            f"React :{approve_emoji}: to approve or :{reject_emoji}: to reject. "
            f"Expires {_utc(req['expires_at'])} UTC."
        )
    elif req.get("reason"):
        lines.append(f"*Why:* {escape(req['reason'])}")
    return text, [_section(text), _section("\n".join(lines)), _context(f"request `{req['id']}`")]


def drill_report(
    drill: dict[str, Any], previous: dict[str, Any] | None
) -> tuple[str, list[dict[str, Any]]]:
    """The verdict people read at a glance: checks table, restore time, trend."""
    ok = drill["status"] == "passed"
    what = KIND_WORDS.get(drill["kind"], drill["kind"])
    text = (
        f"{':white_check_mark:' if ok else ':x:'} {what} `{drill['id']}` "
        f"{'passed' if ok else 'FAILED'}: snapshot `{drill['snapshot_id']}` of *{escape(drill['database'])}*"
    )
    total = drill.get("total_s")
    trend = ""
    if previous and previous.get("total_s") and total:
        delta = total - previous["total_s"]
        trend = f" ({'+' if delta >= 0 else '−'}{human_seconds(abs(delta))} vs {human_seconds(previous['total_s'])} on {str(previous['started_at'])[:10]})"
    lines = [
        f"*Time to restore:* {human_seconds(total)}{trend}",
        f"checked before restoring {human_seconds(drill.get('download_s'))} · restore {human_seconds(drill.get('restore_s'))} · verify {human_seconds(drill.get('verify_s'))}",
        f"*Target:* `{escape(drill.get('target') or '')}`"
        + (
            " (kept)"
            if drill.get("kept")
            else " (scratch database dropped)"
            if drill.get("scratch_db")
            else ""
        ),
    ]
    checks = json.loads(drill.get("checks") or "[]")
    rows = ["manifest (tables, row counts, sequences, extensions)"]
    problems = json.loads(drill.get("problems") or "[]")
    manifest_bad = [p for p in problems if not p.startswith(("check ", "warning: "))]
    table = [f"{'✅' if not manifest_bad and not drill.get('error') else '❌'} {rows[0]}"]
    table += [f"{'✅' if c['passed'] else '❌'} {c['name']}: {c['detail']}" for c in checks]
    blocks = [
        _section(text),
        _section("\n".join(lines)),
        _section("```" + "\n".join(escape(t) for t in table) + "```"),
    ]
    if drill.get("error"):
        blocks.append(_section(f"*Error:* {escape(drill['error'])}"))
    if problems:
        blocks.append(
            _section("*Problems:*\n" + "\n".join(f"• {escape(p)}" for p in problems[:20]))
        )
    return text, blocks


def drill_line(d: dict[str, Any]) -> str:
    icon = {"passed": ":white_check_mark:", "running": ":gear:"}.get(d["status"], ":x:")
    return (
        f"{icon} `{d['id']}` {d['kind']} of {escape(d['database'])} from `{d['snapshot_id']}` · "
        f"{d['status']} · {human_seconds(d.get('total_s'))} · {_utc(d.get('started_at'))} UTC"
    )


def drill_list(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "No drills yet. Start one with `/atlas drill`."
    return "*Recent drills and restores* (newest first)\n" + "\n".join(drill_line(r) for r in rows)


DRILL_ACTION = "atlas_request_drill"


def with_drill_button(text: str, database: str) -> list[dict[str, Any]]:
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
