"""What the CLI and Slack share to make a report: the window from the words people type,
the format from a file name, and the rendering. Pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.errors import AtlasError
from bot.proof import page, tabular
from bot.proof.gather import Scope
from bot.proof.records import Report

FORMATS = ("html", "json", "csv")
DEFAULT_DAYS = 365


def moment(text: str, flag: str, end_of_day: bool = False) -> datetime:
    """`2026-06-30` (the start of that day in UTC, or its end for --until) or an ISO time."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise AtlasError(
            f"{flag} {text!r} is not a date",
            "give YYYY-MM-DD or an ISO time such as 2026-06-30T12:00",
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if end_of_day and len(text.strip()) == 10:
        value += timedelta(days=1)
    return value


def scope(since: str | None, until: str | None, database: str | None, now: datetime) -> Scope:
    """The window asked for: by default the year up to now."""
    end = moment(until, "--until", end_of_day=True) if until else now
    start = moment(since, "--since") if since else end - timedelta(days=DEFAULT_DAYS)
    return Scope(start, end, database)


def format_of(output: str, fmt: str | None) -> str:
    """The format asked for, or the one the file's name ends in; HTML otherwise."""
    if fmt:
        wanted = fmt.lower()
        if wanted not in FORMATS:
            raise AtlasError(f"unknown report format {fmt!r}", f"use one of {', '.join(FORMATS)}")
        return wanted
    suffix = output.rsplit(".", 1)[-1].lower() if "." in output else ""
    return suffix if suffix in FORMATS else "html"


def render(report: Report, fmt: str) -> bytes:
    if fmt == "json":
        return tabular.to_json(report).encode()
    if fmt == "csv":
        return tabular.to_csv(report).encode()
    return page.render(report).encode()
