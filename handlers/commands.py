"""`/atlas` and its subcommands: one named function per subcommand, found in a table.

Each subcommand parses its text, calls bot/, and returns the immediate reply (Slack wants
an answer within 3 seconds); work that takes longer runs through `services.later`, which
answers through `respond` when done.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt import BoltContext

from bot.errors import AtlasError
from bot.policy import access
from bot.records import Kind
from bot.redaction import redact
from bot.report import messages
from bot.services import Services
from bot.tags import parse
from handlers.reply import Reply


@dataclass(frozen=True)
class Call:
    """One `/atlas …` as a subcommand sees it."""

    services: Services
    user: str
    args: str  # the text after the subcommand
    channel: str | None
    respond: Reply
    trigger_id: str | None = None  # opens a modal


SNAPSHOT_OPTIONS = ("--all", "--provider")
QUOTE_LIMIT = 40


def _quoted(word: str) -> str:
    """A word the user typed, quoted back in the reply (which no Slack client call
    redacts): redacted first (a secret pasted by mistake, in any case), then cut short."""
    shown = redact(word)
    return shown if len(shown) <= QUOTE_LIMIT else shown[: QUOTE_LIMIT - 1] + "…"


def snapshot(call: Call) -> str:
    note, tags = _tagged(call.args)
    options, note = _leading_options(note)
    if "--all" in options:
        if "--provider" in options:
            raise AtlasError(
                "--provider takes one database, --all every one: nothing was started.",
                "/atlas snapshot --all [note], or /atlas snapshot --provider [db:NAME]",
            )
        return _snapshot_all(call, note, tags)
    provider = "--provider" in options
    words, database = _aim(call.services, note)
    call.services.reported.start(
        requested_by=call.user,
        note=words or "",
        channel=call.channel,
        database=database,
        provider=provider,
        tags=tags,
    )
    return ":hourglass_flowing_sand: Snapshot starting; progress follows in the channel."


def _leading_options(text: str) -> tuple[list[str], str]:
    """(the `--words` a snapshot's text starts with, the note after them); one it does not
    know is refused (a mistyped `--dry-run` was kept as the note of a snapshot nobody
    meant to take)."""
    options, rest = [], text.strip()
    while rest.startswith("--"):
        word, *after = rest.split(None, 1)
        rest = after[0] if after else ""
        if word not in SNAPSHOT_OPTIONS:
            raise AtlasError(
                f"Unknown option `{_quoted(word)}`: nothing was started.",
                "/atlas snapshot takes --all or --provider, then the note",
            )
        options.append(word)
    return options, rest


def _snapshot_all(call: Call, note: str, tags: dict[str, str]) -> str:
    """Every database, as a scheduled run does: one message in the channel when done."""
    from bot.ops import housekeeping

    services = call.services
    services.background.later(
        lambda: housekeeping.fleet_snapshot(
            services,
            requested_by=call.user,
            source="slack",
            note=note,
            channel=call.channel,
            tags=tags,
        ),
        lambda _done: None,  # the run's own message is the answer
        lambda exc: call.respond(text=messages.error(str(exc))),
    )
    return ":hourglass_flowing_sand: Snapshotting every database; one message follows when done."


def list_snapshots(call: Call) -> str:
    return messages.snapshot_list(call.services.snapshots.recent(limit=10))


def verify(call: Call) -> str:
    if not call.args:
        return usage("verify")
    snap = call.services.snapshots.get(call.args)  # an unknown id is answered now
    call.services.background.later(
        lambda: call.services.reader.verify(snap.id, actor=call.user),
        lambda done: call.respond(text=messages.verified(done.snapshot)),
        lambda exc: call.respond(
            text=messages.error(f"Snapshot {snap.id} failed verification: {exc}")
        ),
    )
    return f":mag: Verifying `{snap.id}`…"


def _aim(services: Services, text: str) -> tuple[str | None, str | None]:
    """(the rest, database) of `[…] [db:NAME]`, the database made known: the rest is a
    snapshot id, or a snapshot's note."""
    words = text.split()
    database = next((w[3:] for w in words if w.startswith("db:")), None)
    ref = " ".join(w for w in words if not w.startswith(("db:", "table:"))) or None
    services.fleets.aim(database)
    return ref, database


def _tagged(text: str) -> tuple[str, dict[str, str]]:
    """(the rest, the tags) of a text with `tag:KEY=VALUE` words; a bad tag is refused."""
    words = text.split()
    tags = parse((w.removeprefix("tag:") for w in words if w.startswith("tag:")), "tag")
    return " ".join(w for w in words if not w.startswith("tag:")), tags


def _tables(text: str) -> tuple[str, ...]:
    """The `table:SCHEMA.TABLE` words."""
    return tuple(w.removeprefix("table:") for w in text.split() if w.startswith("table:"))


def _ask(kind: Kind, call: Call) -> str:
    """Post a request for approval; what it names is checked now (an unknown snapshot,
    nothing kept to undo), so the reply says so at once."""
    text, wanted = _tagged(call.args)
    ref, database = _aim(call.services, text)
    tables = _tables(text)
    if kind == Kind.UNDO:
        if ref or tables or wanted:
            return f"`/atlas undo` takes only `db:NAME`.\n{messages.HELP}"
        kept = call.services.restores.undo.kept(database)
        snap_id, database, subject = None, kept.database, kept.id
    else:
        ref = call.services.snapshots.named(ref, wanted, database, "`tag:KEY=VALUE`")
        snap = call.services.restores.pick_snapshot(ref, database)
        tables = call.services.restores.check_tables(snap, tables)  # a typo answered at once
        snap_id, database, subject = snap.id, snap.database, snap.id
    call.services.background.later(
        lambda: call.services.ask.request(
            kind=kind,
            snap_id=snap_id,
            requested_by=call.user,
            channel=call.channel,
            database=database,
            tables=tables,
        ),
        lambda _req: None,  # the request message itself is the answer
        lambda exc: call.respond(text=messages.error(str(exc))),
    )
    return f":raised_hand: Asking for approval to {kind} `{subject}`…"


def restore(call: Call) -> str:
    """`/atlas restore ID …` asks at once; without an id, the restore modal opens."""
    if call.args:
        return _ask(Kind.RESTORE, call)
    from handlers.modal import open_restore

    if call.trigger_id and open_restore(call.services, call.trigger_id, call.channel):
        return ":clipboard: Choose a snapshot in the form."
    return usage("restore")


def drill(call: Call) -> str:
    return _ask(Kind.DRILL, call)


def undo(call: Call) -> str:
    """`/atlas undo [db:NAME]`: ask to swap back the staging the last refresh replaced."""
    return _ask(Kind.UNDO, call)


def keep(call: Call) -> str:
    if not call.args:
        return usage("keep")
    return messages.pinned(call.services.snapshots.pin(call.args, True, actor=call.user))


def unkeep(call: Call) -> str:
    if not call.args:
        return usage("unkeep")
    return messages.pinned(call.services.snapshots.pin(call.args, False, actor=call.user))


def status(call: Call) -> str:
    from bot.ops import status as checklist

    call.services.background.later(
        lambda: checklist.render(checklist.evaluate(checklist.gather(call.services))),
        lambda text: call.respond(text=text),
        lambda exc: call.respond(text=messages.error(str(exc))),
    )
    return ":mag: Checking…"


def report(call: Call) -> str:
    """`/atlas report [since:DATE] [until:DATE] [db:NAME] [format:KIND]`: made in the
    background and posted here as a file; a mistyped option is answered at once."""
    from bot.proof import share

    share.asked(call.args)
    services = call.services
    channel = call.channel or services.settings.channel or ""
    services.background.later(
        lambda: share.share(services.catalog, services.settings, services.chat, channel, call.args),
        lambda _text: None,  # the file and its message are the answer
        lambda exc: call.respond(text=messages.error(str(exc))),
    )
    return ":hourglass_flowing_sand: Making the report; it follows here as a file."


def drills(call: Call) -> str:
    return messages.drill_list(call.services.catalog.list_jobs(limit=10))


SUBCOMMANDS: dict[str, Callable[[Call], str]] = {
    "snapshot": snapshot,
    "list": list_snapshots,
    "verify": verify,
    "restore": restore,
    "drill": drill,
    "drills": drills,
    "undo": undo,
    "status": status,
    "keep": keep,
    "unkeep": unkeep,
    "report": report,
}


def usage(sub: str) -> str:
    return f"`/atlas {sub}` needs a snapshot id.\n{messages.HELP}"


def atlas(ack: Reply, command: dict[str, Any], respond: Reply, context: BoltContext) -> None:
    """The `/atlas` listener: help for everyone, the rest for the allow-list."""
    services: Services = context["services"]
    user = command.get("user_id", "")
    typed, _, rest = (command.get("text") or "").strip().partition(" ")
    sub = typed.lower() or "help"
    if sub == "help":
        ack(text=messages.HELP)
        return
    if not access.may_run(user, services.settings.allowed_users):
        ack(text=access.refusal(user))
        return
    run = SUBCOMMANDS.get(sub)
    if run is None and sub in messages.TERMINAL_ONLY:
        ack(text=messages.terminal_only(sub))
        return
    if run is None:
        ack(text=f"Unknown command `{messages.escape(_quoted(typed))}`.\n{messages.HELP}")
        return
    try:
        call = Call(
            services,
            user,
            rest.strip(),
            command.get("channel_id"),
            respond,
            command.get("trigger_id"),
        )
        ack(text=run(call))
    except AtlasError as exc:
        ack(text=messages.error(str(exc)))
