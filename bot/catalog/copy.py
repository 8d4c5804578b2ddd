"""`atlas catalog migrate --to postgresql://…`: an existing catalog's rows moved into a
new PostgreSQL catalog, in one transaction, so replicas can share what one process
recorded. Leases are not copied: they belong to processes that are about to stop."""

from __future__ import annotations

from dataclasses import dataclass

from bot.catalog.postgres import PostgresCatalog
from bot.catalog.sqlite import SqliteCatalog
from bot.errors import AtlasError
from bot.words import count

# parents before the rows that name them; `audit` keeps its ids and order
TABLES = (
    "snapshots",
    "requests",
    "reactions",
    "drills",
    "restores",
    "reminders",
    "seen_requests",
    "work",
    "copies",
    "audit",
)
RECORDS = ("snapshots", "requests", "drills", "restores", "audit")


@dataclass(frozen=True)
class Copied:
    """What `atlas catalog migrate` copied, table by table."""

    rows: dict[str, int]


def copy_catalog(source: SqliteCatalog, target: PostgresCatalog) -> Copied:
    """Copy every row; refuse a target that already records anything, so nothing of
    either catalog is overwritten or mixed."""
    counts: dict[str, int] = {}
    with target.conn.transaction() as dst:
        for table in RECORDS:
            n = int(dst.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])
            if n:
                raise AtlasError(
                    f"The catalog at {target.describe()} already holds {count(n, 'row')} in {table}.",
                    "migrate into a new, empty catalog (a database or schema of its own)",
                )
        with source.conn.db() as src:
            for table in TABLES:
                if not src[table].exists():
                    counts[table] = 0
                    continue
                wanted = set(dst[table].columns_dict)
                rows = list(src[table].rows)
                for row in rows:
                    dst[table].insert({k: v for k, v in row.items() if k in wanted})
                counts[table] = len(rows)
        if counts.get("audit"):  # new audit lines continue after the copied ones
            dst.execute(
                "SELECT setval(pg_get_serial_sequence('audit', 'id'), (SELECT max(id) FROM audit))"
            )
    return Copied(counts)
