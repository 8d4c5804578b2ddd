"""`atlas`: the group every command belongs to, and what the commands share (their
Services, how they fail, print JSON and name the operator)."""

from __future__ import annotations

import errno
import gc
import getpass
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any, cast

import click

from bot import records
from bot.errors import AtlasError, Interrupted
from bot.redaction import RedactedStream, install_logging, redact, redact_value
from bot.version import PACKAGE

# Each command imports what it needs when it runs: `atlas --help` loads click and little
# else, and `atlas list` never loads libpq, zstd or the restore code.
if TYPE_CHECKING:
    from bot.records import Copy, JobRecord, Snapshot
    from bot.services import Services


_stderr: Any = None


# how many rows a listing shows: 0, a negative number or one past SQLite's integers is a
# typo, refused by click in one line (it showed everything, nothing, or a crash)
LIMIT = click.IntRange(1, 1_000_000)


def err() -> Any:
    """rich's console on stderr, made on first use (`--json` runs never import rich). The
    real Console, not a proxy: rich's progress bar uses it as a context manager."""
    global _stderr
    if _stderr is None:
        from rich.console import Console

        _stderr = Console(file=_redacted(lambda: sys.stderr), soft_wrap=True)
    return _stderr


def escape(text: str) -> str:
    """Text shown as is by rich, whatever brackets it holds."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def local_time(iso: str | None) -> str:
    """'2026-11-24T17:32:08.123+00:00' -> '2026-11-24 17:32:08' (catalog times are UTC)."""
    return (iso or "")[:19].replace("T", " ")


def out_console() -> Any:
    """Tables at full width when piped, so ids are never cut."""
    from rich.console import Console

    stdout = _redacted(lambda: sys.stdout)
    return Console(file=stdout) if sys.stdout.isatty() else Console(file=stdout, width=250)


def _redacted(stream: Callable[[], IO[str]]) -> IO[str]:
    """What the CLI prints for people, through `redact` on its way out, as --json is."""
    return cast(IO[str], RedactedStream(stream))


def snapshot_json(snap: Snapshot, copies: list[Copy] | None = None) -> dict[str, Any]:
    """A snapshot as `--json` prints it: the public fields, the manifest when there is
    one (as it always was), and its copies when ATLAS_COPIES has any."""
    out = records.public(snap)
    if snap.manifest:
        out["manifest"] = snap.manifest
    if copies is not None:
        out["copies"] = [records.public(c) for c in copies]
    return out


def drill_json(job: JobRecord) -> dict[str, Any]:
    """A drill's or refresh's record as `--json` prints it, saying which it is."""
    return {"id": job.id, "kind": str(job.kind), **records.public(job)}


def open_services(fleet: bool = False, source: str | None = None) -> Services:
    """Services for one command. Snapshots left `running` by a process that died (an OOM
    kill, a cancelled CI job) are closed out first, so no command shows them as running.
    With `fleet`, the configured servers are listed so their databases are known; with
    `source`, snapshots are read from that destination of ATLAS_COPIES (`--from`)."""
    from bot.config import load_settings
    from bot.services import Services

    services = Services.from_settings(load_settings(), source)
    services.reported.recover()
    if fleet and services.settings.servers:
        services.fleets.listed()
    return services


TAG_HELP = "KEY=VALUE, e.g. migration=0042 (repeat for more)."
FROM_HELP = "Read the snapshot from this destination of ATLAS_COPIES, not ATLAS_STORAGE."


def by_tags(
    services: Services, snapshot_id: str | None, tag_items: tuple[str, ...], database: str | None
) -> str | None:
    """The snapshot a command names: its id, or with --tag the newest good one carrying
    those tags."""
    from bot import tags

    return services.snapshots.named(snapshot_id, tags.parse(tag_items), database)


def print_json(value: Any, indent: int | None = None) -> None:
    """One JSON document on stdout, with every string redacted on its way out."""
    click.echo(json.dumps(redact_value(value), indent=indent))


FULL = "free space where it goes, or send it elsewhere, then run the command again"


def fail(exc: AtlasError, as_json: bool, extra: dict[str, Any] | None = None) -> None:
    if as_json:
        try:
            print_json({"status": "failed", "error": str(exc), **(extra or {})})
        except OSError:  # stdout itself failed: the error goes where a person sees it
            err().print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
    else:
        # One line, what is wrong and then what to do: the same words as in Slack and JSON.
        err().print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
    sys.exit(1)


def _terminate(signum: int, frame: object) -> None:
    """SIGTERM (a cancelled CI job) cleans up like Ctrl-C: nothing half-written stays."""
    raise KeyboardInterrupt


def _interrupted(exc: KeyboardInterrupt, as_json: bool) -> None:
    """Ctrl-C or SIGTERM: one line saying what state things were left in (the job says,
    when one was running), and the shell's exit status for an interrupt."""
    what = exc.message if isinstance(exc, Interrupted) else "Interrupted (Ctrl-C)."
    if as_json:
        print_json({"status": "interrupted", "error": what})
    else:
        err().print(f"[bold red]error:[/] {escape(what)}", highlight=False)
    sys.exit(130)


def _reader_left() -> None:
    """`atlas show ID | head -1`: the reader has what it wanted. Exit as a Unix tool killed
    by SIGPIPE does (status 141), without a word, and without Python's complaint at exit
    about the stdout it can no longer flush."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(128 + signal.SIGPIPE)


def operator_name() -> str:
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


class _Group(click.Group):
    """Every command fails the same way: one clear, redacted line (or one JSON object with
    --json) and exit 1, never a traceback, whatever went wrong."""

    def invoke(self, ctx: click.Context) -> Any:
        as_json = "--json" in sys.argv[1:]
        try:
            try:
                return super().invoke(ctx)
            finally:
                sys.stdout.flush()  # a reader that left early is met here, not at exit
        except BrokenPipeError:
            _reader_left()
        except AtlasError as exc:
            fail(exc, as_json)
        except KeyboardInterrupt as exc:
            _interrupted(exc, as_json)
        except click.Abort:  # "no" at a confirmation, or Ctrl-C there: click says "Aborted!"
            fail(AtlasError("Cancelled: nothing was done."), as_json)
        except (click.exceptions.Exit, click.ClickException):
            raise
        except Exception as exc:
            logging.getLogger("atlas").debug("unexpected error", exc_info=True)
            if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:  # stdout's disk, most often
                fail(AtlasError(f"{exc.strerror}: the output could not be written.", FULL), as_json)
            fail(
                AtlasError(
                    f"Unexpected error: {type(exc).__name__}: {exc}",
                    "run with -v to log the details, and report it",
                ),
                as_json,
            )


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log what Atlas does to stderr.")
@click.version_option(package_name=PACKAGE, prog_name="atlas")
def main(verbose: bool) -> None:
    """Atlas: PostgreSQL backups that are proven to restore. It takes snapshots, stores
    them in a folder or S3, verifies them, restores them into scratch databases (drills)
    and staging (refreshes) after approval in Slack, prunes them by policy, and reminds the
    team when a drill is due.

    Configuration comes from the environment (DATABASE_URL, STAGING_DATABASE_URL,
    ATLAS_STORAGE, ATLAS_STATE, ...; see README). New here? `atlas demo` shows it all on a
    throwaway server, and `atlas doctor` checks your settings. Every command exits non-zero
    on failure.
    """
    # What the imports created lives as long as the process: keeping it out of the
    # cyclic GC makes collections, and interpreter exit, measurably cheaper.
    gc.freeze()
    signal.signal(signal.SIGTERM, _terminate)
    # A command's own output says what went wrong, in one line: without -v the log adds
    # only errors (`serve`, a daemon whose log is its output, keeps its warnings)
    install_logging(logging.DEBUG if verbose else logging.ERROR)
    if verbose:  # the libraries' own chatter stays at INFO
        for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "slack_sdk", "slack_bolt"):
            logging.getLogger(noisy).setLevel(logging.INFO)


def print_table(rows: list[list[tuple[str, str]]], notes: list[str] | None = None) -> None:
    """A table whose ids and times are never cut (they are copied whole); the notes take
    what width is left."""
    from rich import box
    from rich.table import Table

    if not rows:
        return
    from rich.measure import Measurement

    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for i, (name, _) in enumerate(rows[0]):
        width = max(len(name), *(len(r[i][1]) for r in rows))
        table.add_column(name, no_wrap=True, min_width=width)
    if notes is not None:
        table.add_column("note", overflow="ellipsis", no_wrap=True, max_width=40)
    for i, row in enumerate(rows):  # a note or a tag may quote a URL, password and all
        note = [redact(notes[i])] if notes is not None else []
        table.add_row(*(redact(value) for _, value in row), *note)
    out = out_console()
    needed = Measurement.get(out, out.options.update(max_width=10_000), table).minimum
    if out.width < needed:  # a narrow terminal wraps long lines rather than cut a value
        from rich.console import Console

        out = Console(file=_redacted(lambda: sys.stdout), width=needed)
    out.print(table)
