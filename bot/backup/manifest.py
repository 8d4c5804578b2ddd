"""What a dump contains, read in the same database snapshot pg_dump uses.

Restores are later checked against this: same tables, exact row counts, sequence
values and extensions.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from bot.words import count

TABLES = """
SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r'
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2
"""

PARTITIONED = TABLES.replace("c.relkind = 'r'", "c.relkind = 'p'")

SEQUENCES = """
SELECT schemaname, sequencename FROM pg_sequences
WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
ORDER BY 1, 2
"""


def collect(conn: psycopg.Connection) -> dict[str, Any]:
    """Tables with exact row counts, sequences with their state, extensions, and the
    partitioned tables."""
    tables = {}
    for schema, name in conn.execute(TABLES).fetchall():
        q = sql.SQL("SELECT count(*) FROM ONLY {}.{}").format(
            sql.Identifier(schema), sql.Identifier(name)
        )
        row = conn.execute(q).fetchone()
        tables[f"{schema}.{name}"] = int(row[0]) if row else 0
    sequences = {}
    for schema, name in conn.execute(SEQUENCES).fetchall():
        q = sql.SQL("SELECT last_value, is_called FROM {}.{}").format(
            sql.Identifier(schema), sql.Identifier(name)
        )
        row = conn.execute(q).fetchone()
        if row:
            sequences[f"{schema}.{name}"] = {"last_value": int(row[0]), "is_called": bool(row[1])}
    extensions = {
        str(name): str(ver)
        for name, ver in conn.execute(
            "SELECT extname, extversion FROM pg_extension ORDER BY 1"
        ).fetchall()
    }
    # partitioned tables hold no rows of their own (their partitions are in `tables`):
    # listed so that `--table` may name one
    partitioned = [f"{schema}.{name}" for schema, name in conn.execute(PARTITIONED).fetchall()]
    return {
        "tables": tables,
        "sequences": sequences,
        "extensions": extensions,
        "partitioned": partitioned,
    }


def compare(expected: dict[str, Any], actual: dict[str, Any]) -> list[str]:
    """Differences between two manifests, in plain words; empty means they match."""
    problems: list[str] = []
    exp_t, act_t = expected.get("tables", {}), actual.get("tables", {})
    for name in sorted(set(exp_t) - set(act_t)):
        problems.append(f"table {name} is missing")
    for name in sorted(set(act_t) - set(exp_t)):
        problems.append(f"table {name} is unexpected")
    for name in sorted(set(exp_t) & set(act_t)):
        if exp_t[name] != act_t[name]:
            problems.append(f"table {name} has {count(act_t[name], 'row')}, expected {exp_t[name]}")
    exp_s, act_s = expected.get("sequences", {}), actual.get("sequences", {})
    for name in sorted(exp_s):
        if name not in act_s:
            problems.append(f"sequence {name} is missing")
        elif exp_s[name] != act_s[name]:
            problems.append(f"sequence {name} is at {act_s[name]}, expected {exp_s[name]}")
    exp_e, act_e = expected.get("extensions", {}), actual.get("extensions", {})
    for name in sorted(exp_e):
        if name not in act_e:
            problems.append(f"extension {name} is missing")
    return problems
