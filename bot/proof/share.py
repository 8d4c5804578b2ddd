"""`/atlas report`: the report made and posted in the channel as a file, with a short
summary in the message."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.catalog.base import Catalog
from bot.config import Settings
from bot.errors import AtlasError
from bot.proof import gather, make
from bot.proof.records import Report
from bot.report.chat import Chat
from bot.report.messages import escape
from bot.words import count

SHOWN = 10  # databases named in the message; the file has them all


def summary(report: Report) -> str:
    """A few lines a channel reads: per database, gaps, RPO and proven quarters."""
    lines = [f":page_facing_up: *Backup report* {report.since[:10]} to {report.until[:10]}"]
    for db in report.databases[:SHOWN]:
        proven = sum(q.passed for q in db.quarters)
        icon = ":white_check_mark:" if not db.gaps and proven == len(db.quarters) else ":x:"
        lines.append(
            f"{icon} `{escape(db.name)}`: {count(len(db.gaps), 'gap')}, "
            f"{proven} of {count(len(db.quarters), 'quarter')} with a passed drill, "
            f"{count(db.good, 'good snapshot')}"
        )
    if len(report.databases) > SHOWN:
        lines.append(f"…and {len(report.databases) - SHOWN} more in the file")
    if not report.databases:
        lines.append("No snapshots or drills in this window.")
    chain = "intact" if report.chain.intact else "BROKEN"
    lines.append(f"Audit chain {chain}, head `{report.chain.head or 'none'}`")
    return "\n".join(lines)


def asked(words: str) -> tuple[gather.Scope, str]:
    """The window and format `words` ask for; a mistyped one is refused now, before any
    work, so the person who typed it hears at once."""
    options = parse(words)
    now = datetime.now(UTC)
    window = make.scope(options.get("since"), options.get("until"), options.get("db"), now)
    return window, make.format_of("", options.get("format"))


def share(catalog: Catalog, st: Settings, chat: Chat, channel: str, words: str) -> str:
    """Make the report `words` ask for and post it in `channel`; the summary, or why not."""
    window, kind = asked(words)
    report = gather.report(catalog, st, window)
    name = f"atlas-report-{report.since[:10]}-{report.until[:10]}.{kind}"
    text = summary(report)
    if not chat.upload(channel, name, make.render(report, kind), text):
        raise AtlasError(
            "the report could not be posted as a file here",
            "invite the bot to this channel and check the app has files:write (`atlas doctor`); "
            "`atlas report -o FILE` writes it from a terminal",
        )
    return text


def parse(words: str) -> dict[str, str]:
    """`since:DATE until:DATE db:NAME format:KIND`; any other word is refused."""
    options: dict[str, str] = {}
    for word in words.split():
        key, sep, value = word.partition(":")
        if not sep or key not in ("since", "until", "db", "format") or not value:
            raise AtlasError(
                f"`/atlas report` does not take {word!r}",
                "give since:YYYY-MM-DD until:YYYY-MM-DD db:NAME format:html|json|csv",
            )
        options[key] = value
    return options
