"""`atlas status`, `doctor`, `audit`, `keygen`, `serve`, `console`, `demo` and `catalog
migrate`: running Atlas."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from bot import records
from bot.errors import AtlasError
from bot.words import count

# Each command imports what it needs when it runs: `atlas --help` loads click and little
# else, and `atlas list` never loads libpq, zstd or the restore code.
if TYPE_CHECKING:
    pass

from bot.cli.app import (
    LIMIT,
    err,
    escape,
    fail,
    main,
    open_services,
    operator_name,
    print_json,
)


@main.command()
@click.option("--json", "as_json", is_flag=True)
@click.option("--no-provider", is_flag=True, help="Skip the provider (RDS) check.")
def status(as_json: bool, no_provider: bool) -> None:
    """The backup checklist with live facts; exits 1 when anything is ❌ (gate deploys on it)."""
    from bot.ops import status as st
    from bot.ops.findings import FAIL, ICONS

    try:
        lines = st.evaluate(
            st.gather(open_services(), check_provider=not no_provider, surface="cli")
        )
    except AtlasError as exc:
        fail(exc, as_json)
        return
    worst = st.worst(lines)
    if as_json:
        print_json({"status": worst, "checks": [line.__dict__ for line in lines]})
    else:
        for line in lines:
            click.echo(f"{ICONS[line.level]} {line.title}: {line.detail.replace('`', '')}")
    if worst == FAIL:
        sys.exit(1)


@main.command()
@click.option("-o", "--output", required=True, help="Key file to create (mode 0600).")
def keygen(output: str) -> None:
    """Create an age key for encryption at rest; point ATLAS_ENCRYPTION_KEY_FILE at it."""
    from bot import files
    from bot.store.crypto import generate_identity

    secret, recipient = generate_identity()
    text = f"# created by atlas keygen\n# public key: {recipient}\n{secret}\n"
    try:
        files.write_new(Path(output), text.encode())
    except FileExistsError:
        fail(AtlasError(f"{output} already exists; Atlas never overwrites a key."), False)
        return
    except OSError as exc:
        fail(AtlasError(f"Cannot write {output}: {exc.strerror or exc}."), False)
        return
    err().print(
        f"wrote {output}; public key {recipient}. Keep a copy of this file somewhere safe: "
        "without it encrypted snapshots cannot be restored.",
        highlight=False,
        markup=False,
    )


@main.command()
@click.option("--limit", default=50, show_default=True, type=LIMIT)
@click.option("--json", "as_json", is_flag=True)
@click.option(
    "--verify", "check", is_flag=True, help="Check the hash chain; exit 1 if an entry changed."
)
@click.option(
    "--head",
    default=None,
    metavar="HASH",
    help="With --verify: a head noted earlier (a report's), which must still be in the chain.",
)
def audit(limit: int, as_json: bool, check: bool, head: str | None) -> None:
    """The append-only record of what Atlas did and who asked."""
    if check or head:
        _verify_audit(head, as_json)
        return
    try:
        rows = open_services().catalog.audit_log(limit=limit)
    except AtlasError as exc:
        fail(exc, as_json)
        return
    if as_json:  # detail as the JSON text it always was
        print_json([{**records.public(r), "detail": _detail(r.detail)} for r in rows])
        return
    for r in rows:
        click.echo(f"{r.at}  {r.actor:<24} {r.action:<24} {r.subject}  {_detail(r.detail)}")


def _verify_audit(head: str | None, as_json: bool) -> None:
    """`audit --verify`: recompute the hash chain; exit 1 when an entry does not fit, or
    when a head noted earlier is no longer in it."""
    from bot.chain import noted, verify

    try:
        try:
            head = noted(head) if head is not None else None
        except ValueError as exc:
            raise AtlasError(f"--head: {exc}.") from None
        found = verify(open_services().catalog.audit_chain(), head)
    except AtlasError as exc:
        fail(exc, as_json)
        return
    bad = found.broken_at
    if as_json:
        print_json(
            {
                "status": "ok" if found.ok else "failed",
                "checked": found.checked,
                "unchained": found.unchained,
                "head": found.head,
                "head_found": found.head_found,
                "broken_at": bad.id if bad else None,
                "why": found.why or None,
            }
        )
    elif bad is not None:
        err().print(
            f"error: audit entry {bad.id} ({bad.at}, {bad.action}) does not fit the chain: "
            f"{found.why}. The log was changed after it was written "
            f"({count(found.checked, 'entry', 'entries')} before it check out).",
            highlight=False,
            markup=False,
        )
    elif found.head_found is False:
        err().print(
            f"error: the head {head} noted earlier is not in the chain: entries were changed "
            "and the chain written again after it.",
            highlight=False,
            markup=False,
        )
    else:
        older = (
            f"; {count(found.unchained, 'older entry', 'older entries')} predate the chain"
            if found.unchained
            else ""
        )
        chained = count(found.checked, "entry", "entries")
        click.echo(f"ok: {chained} chained{older}; head {found.head or 'none yet'}")
    if not found.ok:
        sys.exit(1)


def _detail(detail: dict[str, Any]) -> str:
    return json.dumps(detail, default=str, sort_keys=True)


@main.command()
@click.option(
    "--http", "force_http", is_flag=True, help="Serve HTTP even if SLACK_APP_TOKEN is set."
)
@click.option("--host", default="0.0.0.0", show_default=True)  # noqa: S104 - a server
@click.option(
    "--port",
    default=None,
    type=click.IntRange(0, 65535),
    help="HTTP port (default: $PORT or 3000; 0: any free one).",
)
def serve(force_http: bool, host: str, port: int | None) -> None:
    """Run the Slack bot: Socket Mode when SLACK_APP_TOKEN is set, else HTTP."""
    from bot.config import load_settings
    from bot.slack.serve import run

    root = logging.getLogger()
    root.setLevel(min(root.level, logging.WARNING))
    try:
        run(load_settings(), force_http=force_http, host=host, port=port)
    except AtlasError as exc:
        fail(exc, False)


@main.command()
@click.option(
    "--keep",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the artifacts and catalog in this folder to look at afterwards.",
)
def demo(keep: Path | None) -> None:
    """Try Atlas with nothing set up: a throwaway PostgreSQL, a snapshot, a verified
    restore drill and the checklist, in under a minute. Needs the PostgreSQL server
    binaries (initdb, pg_ctl); stops everything it started when it ends."""
    from bot.demo.walkthrough import run

    def say(line: str) -> None:
        click.echo(line, err=True)

    try:
        code = run(keep, say)
    except AtlasError as exc:
        fail(exc, False)
        return
    except KeyboardInterrupt:
        say("Interrupted: the demo's server is stopped and its folders are removed.")
        sys.exit(130)
    sys.exit(code)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--no-slack", is_flag=True, help="Skip the Slack checks.")
def doctor(as_json: bool, no_slack: bool) -> None:
    """Check the configuration before relying on it: databases reachable and readable,
    tools new enough, staging privileges, storage and catalog writable, keys, schedule,
    Slack. Exits 1 on any ❌."""
    from bot.ops import doctor as dr
    from bot.ops import findings

    try:
        checks = dr.run_all(open_services(), slack=not no_slack)
    except AtlasError as exc:  # the configuration itself: a finding like the others
        checks = [findings.fail("configuration", str(exc))]
    if as_json:
        print_json(dr.to_json(checks))
    else:
        click.echo(dr.render(checks))
    if dr.worst(checks) == findings.FAIL:
        sys.exit(1)


@main.command()
@click.option("--as", "user", default="you", show_default=True, help="Who you are in the channel.")
def console(user: str) -> None:
    """The Slack flow in this terminal, without a workspace: `/atlas …`, reactions from
    other people (`approve as carol`), buttons, reminders (`/tick`). Uses your
    configuration, like `atlas serve` does."""
    from importlib.metadata import entry_points

    from bot.config import load_settings

    found = [ep for ep in entry_points(group="atlas.console")]
    if not found:
        fail(
            AtlasError("The console is not installed.", "reinstall Atlas: pip install -e ."), False
        )
        return
    sys.exit(found[0].load()(load_settings(), user=user))


@main.group()
def catalog() -> None:
    """Where Atlas records its work (ATLAS_STATE)."""


@catalog.command("migrate")
@click.option(
    "--to",
    "url",
    required=True,
    metavar="URL",
    help="postgresql://USER@HOST/DBNAME of a new, empty catalog (keep its password in "
    "~/.pgpass or PGPASSWORD).",
)
@click.option("--json", "as_json", is_flag=True)
def catalog_migrate(url: str, as_json: bool) -> None:
    """Move the SQLite catalog (ATLAS_STATE) into PostgreSQL, for replicas to share.
    Stop `atlas serve` first; afterwards set ATLAS_STATE to the URL."""
    from bot.catalog import is_url, open_catalog
    from bot.catalog.copy import copy_catalog
    from bot.catalog.postgres import PostgresCatalog
    from bot.catalog.sqlite import SqliteCatalog
    from bot.config import load_settings
    from bot.owners import REPLICA_LEASE
    from bot.redaction import redact
    from bot.restore.guard import refuse_catalog_among_targets, refuse_catalog_in_a_fleet

    settings = load_settings()
    if not is_url(url):
        raise AtlasError(
            f"--to {redact(url)!r} is not a PostgreSQL URL.",
            "write it as postgresql://USER@HOST:5432/DBNAME",
        )
    if is_url(settings.state):
        raise AtlasError(
            "ATLAS_STATE already names a PostgreSQL catalog; there is nothing to migrate.",
            "point ATLAS_STATE at the SQLite file to move",
        )
    if not Path(settings.state).is_file():
        raise AtlasError(
            f"No catalog file at {settings.state} (ATLAS_STATE).",
            "point ATLAS_STATE at the SQLite file `atlas serve` has used",
        )
    source = open_catalog(Path(settings.state))
    live = source.live_leases(REPLICA_LEASE)
    if live:
        raise AtlasError(
            f"`atlas serve` is running on this catalog ({live[0].removeprefix(REPLICA_LEASE)}"
            "): what it records during the copy would stay behind in the old one.",
            "stop it, run this again, then start it with ATLAS_STATE set to the new URL",
        )
    settings.state = url.strip()
    refuse_catalog_among_targets(settings)
    refuse_catalog_in_a_fleet(settings, settings.state)
    target = open_catalog(settings.state)
    assert isinstance(source, SqliteCatalog) and isinstance(target, PostgresCatalog)
    copied = copy_catalog(source, target)
    target.audit(operator_name(), "catalog.migrated", "catalog", rows=copied.rows)
    if as_json:
        print_json({"to": target.describe(), "rows": copied.rows})
        return
    err().print(
        f"Copied {count(sum(copied.rows.values()), 'row')} to {escape(target.describe())}: "
        + ", ".join(f"{n} {t}" for t, n in copied.rows.items() if n)
    )
    err().print("Now set ATLAS_STATE to that URL for every `atlas` process.")
