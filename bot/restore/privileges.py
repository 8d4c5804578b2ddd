"""Who owns the tables a `--table` restore replaces in staging, and who may use them.

pg_restore runs with --no-owner --no-acl: the tables it makes belong to Atlas's role and
grant nothing. A table replaced in place must still serve staging's application, so the
owner and the grants staging had on each table (its columns, its partitions and its
owned sequences) are read before the restore and given back inside its transaction.
What could not be given back is named in the result.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from psycopg import sql

from bot.pg import Conn

# Each relation named, its partitions at every level, and the sequences they own
# (serial and identity columns), with owner and privileges beyond the owner's own.
QUERY = """
WITH named AS (
  SELECT to_regclass(t) AS rel FROM unnest(%s::text[]) AS t
), tree AS (  -- pg_partition_tree lists nothing for a table that is not partitioned
  SELECT rel FROM named WHERE rel IS NOT NULL
  UNION
  SELECT p.relid FROM named, pg_partition_tree(named.rel) p WHERE named.rel IS NOT NULL
), rels AS (
  SELECT rel FROM tree
  UNION
  SELECT d.objid FROM pg_depend d JOIN tree ON d.refobjid = tree.rel
  WHERE d.classid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
    AND (SELECT relkind FROM pg_class WHERE oid = d.objid) = 'S'
)
SELECT c.oid::regclass::text, c.relkind = 'S', pg_get_userbyid(c.relowner),
       coalesce(x.attname, ''), coalesce(pg_get_userbyid(nullif(x.grantee, 0)), ''),
       x.privilege_type, x.is_grantable
FROM rels JOIN pg_class c ON c.oid = rels.rel
LEFT JOIN LATERAL (
  SELECT NULL::name AS attname, e.grantee, e.privilege_type, e.is_grantable
  FROM aclexplode(c.relacl) e WHERE e.grantee <> c.relowner
  UNION ALL
  SELECT att.attname, e.grantee, e.privilege_type, e.is_grantable
  FROM pg_attribute att, aclexplode(att.attacl) e
  WHERE att.attrelid = c.oid AND att.attnum > 0 AND NOT att.attisdropped
    AND e.grantee <> c.relowner
) x ON true
ORDER BY 1, 4, 5, 6
"""


@dataclass(frozen=True, order=True)
class Grant:
    """One privilege on a relation, or on one of its columns; grantee "" is PUBLIC."""

    column: str
    grantee: str
    privilege: str
    grantable: bool


@dataclass(frozen=True)
class Held:
    """A relation's owner and the grants on it, as staging had them."""

    name: str  # as regclass prints it: schema-qualified and quoted where needed
    sequence: bool
    owner: str
    grants: frozenset[Grant]


def held(dest: Conn, tables: Iterable[str]) -> dict[str, Held]:
    """What staging holds now for `tables` (those it has), by relation name."""
    names = [_qualified(t) for t in tables]
    with dest.connect(autocommit=True) as c:
        rows = c.execute(QUERY, [names]).fetchall()
    found: dict[str, tuple[bool, str, set[Grant]]] = {}
    for name, seq, owner, column, grantee, privilege, grantable in rows:
        _, _, grants = found.setdefault(str(name), (bool(seq), str(owner), set()))
        if privilege is not None:
            grants.add(Grant(str(column), str(grantee), str(privilege), bool(grantable)))
    return {n: Held(n, s, o, frozenset(g)) for n, (s, o, g) in found.items()}


def statements(before: dict[str, Held]) -> list[str]:
    """SQL that gives each relation back its owner, then its grants (a sequence follows
    its table's owner: it cannot be given one of its own)."""
    out = [
        f"ALTER TABLE {h.name} OWNER TO {_ident(h.owner)}"
        for h in before.values()
        if not h.sequence
    ]
    for h in before.values():
        kind = "SEQUENCE" if h.sequence else "TABLE"
        for g in sorted(h.grants):
            cols = f" ({_ident(g.column)})" if g.column else ""
            option = " WITH GRANT OPTION" if g.grantable else ""
            who = _ident(g.grantee) if g.grantee else "PUBLIC"
            out.append(f"GRANT {g.privilege}{cols} ON {kind} {h.name} TO {who}{option}")
    return out


def differences(before: dict[str, Held], after: dict[str, Held]) -> list[str]:
    """What staging no longer has, in plain words: an owner or grants not given back."""
    out = []
    for name, was in before.items():
        now = after.get(name)
        if now is None:
            continue  # not in the snapshot: dropped with its table, said elsewhere
        if now.owner != was.owner:
            out.append(f"{name} is owned by {now.owner}, not {was.owner} as before")
        lost = sorted(was.grants - now.grants)
        if lost:
            shown = ", ".join(_describe(g) for g in lost[:5])
            more = f" and {len(lost) - 5} more" if len(lost) > 5 else ""
            out.append(f"{name} lost {shown}{more}")
    return out


def _describe(g: Grant) -> str:
    cols = f"({g.column})" if g.column else ""
    return f"{g.privilege}{cols} to {g.grantee or 'PUBLIC'}"


def _qualified(table: str) -> str:
    schema, _, name = table.partition(".")
    return sql.Identifier(schema, name).as_string(None)


def _ident(name: str) -> str:
    """A column's or a role's name, quoted."""
    return sql.Identifier(name).as_string(None)
