"""`atlas copy`: make every copy ATLAS_COPIES still lacks, now."""

from __future__ import annotations

import sys

import click

from bot.cli.app import err, fail, main, open_services, print_json
from bot.errors import AtlasError
from bot.words import count


@main.command("copy")
@click.option("--to", "destination", default=None, metavar="NAME", help="Only this destination.")
@click.option("--db", "database", default=None, metavar="NAME", help="Only this database.")
@click.option("--json", "as_json", is_flag=True)
def copy_(destination: str | None, database: str | None, as_json: bool) -> None:
    """Copy every good snapshot to each destination of ATLAS_COPIES that lacks it (failed
    copies, and snapshots taken before a destination was added), reading each copy back
    there. Exits 1 when any copy is still missing."""
    from bot.records import CopyState, public

    try:
        services = open_services()
        names = services.settings.copies
        if not names:
            raise AtlasError(
                "ATLAS_COPIES names no destination, so there is nothing to copy to.",
                "set ATLAS_COPIES=NAME=s3://BUCKET/PREFIX (or a folder); README: 3-2-1",
            )
        if destination is not None and destination not in names:
            raise AtlasError(
                f"--to {destination}: ATLAS_COPIES has no destination of that name.",
                f"destinations: {', '.join(sorted(names))}",
            )
        services.copier.backfill(destination, database)
        done = services.copier.retry(due=False, destination=destination, database=database)
    except AtlasError as exc:
        fail(exc, as_json)
        return
    missing = [c for c in done if c.state != CopyState.OK and c.state != CopyState.DELETED]
    if as_json:
        print_json({"copies": [public(c) for c in done], "missing": len(missing)})
    elif not done:
        err().print("Nothing to copy: each destination holds every good snapshot.")
    else:
        for c in done:
            why = f"  {c.error}" if c.error and c.state != CopyState.OK else ""
            click.echo(f"{c.state:<8} {c.snapshot_id} -> {c.destination}{why}")
        made = sum(c.state == CopyState.OK for c in done)
        err().print(
            f"{count(made, 'copy')} in place, {len(missing)} still missing",
            highlight=False,
            markup=False,
        )
    if missing:
        sys.exit(1)
