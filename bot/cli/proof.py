"""`atlas report`: the evidence for auditors, as an HTML page, JSON or CSV."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import click

from bot.cli.app import err, fail, main, open_services
from bot.errors import AtlasError
from bot.words import count

if TYPE_CHECKING:
    from bot.proof.records import Chain


@main.command()
@click.option("--since", default=None, metavar="DATE", help="From this day (default: a year ago).")
@click.option(
    "--until", default=None, metavar="DATE", help="Up to the end of this day (default: now)."
)
@click.option("--db", "database", default=None, metavar="NAME", help="One database only.")
@click.option(
    "--format",
    "fmt",
    default=None,
    type=click.Choice(["html", "json", "csv"], case_sensitive=False),
    help="Default: from the file name, else html.",
)
@click.option(
    "-o", "--output", required=True, metavar="FILE", help="Where to write it (- for stdout)."
)
def report(
    since: str | None, until: str | None, database: str | None, fmt: str | None, output: str
) -> None:
    """Proof for auditors: policy, snapshots against the schedule with every gap, each
    drill and refresh with its approvals, checks and restore time against the target RTO,
    quarters with a passed drill, the achieved RPO, and the audit chain's head."""
    from bot import files
    from bot.proof import gather, make

    services = open_services()
    window = make.scope(since, until, database, datetime.now(UTC))
    kind = make.format_of(output, fmt)
    proof = gather.report(services.catalog, services.settings, window)
    data = make.render(proof, kind)
    if output == "-":
        sys.stdout.buffer.write(data)  # a reader gone early: the group ends it quietly
        _chain_intact(proof.chain)
        return
    try:
        files.replace_with(Path(output), data)
    except OSError as exc:
        fail(
            AtlasError(
                f"cannot write {output}: {exc.strerror or exc}", "choose a folder you can write to"
            ),
            False,
        )
        return
    gaps = sum(len(db.gaps) for db in proof.databases)
    err().print(
        f"wrote {output} ({kind}): {count(len(proof.databases), 'database')}, "
        f"{count(gaps, 'gap')}, chain head {proof.chain.head or 'none'}",
        highlight=False,
        markup=False,
    )
    _chain_intact(proof.chain)


def _chain_intact(chain: Chain) -> None:
    """A broken chain is in the report, and the exit code: a cron job must hear it."""
    if not chain.intact:
        fail(AtlasError(f"The audit chain is BROKEN: {chain.problem}"), False)
