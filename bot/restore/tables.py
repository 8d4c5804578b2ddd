"""Which entries of a snapshot's table of contents restore a few of its tables.

A table comes with everything that depends on it in the archive: its data, indexes,
constraints, triggers, defaults, comments and owned sequences (with their values). A
foreign key between a chosen table and one that is not chosen is a *link*: it is not
part of the tables themselves, so the caller decides (a staging restore keeps it when the
rows it needs exist; a drill or fetch of the tables alone leaves it out and says so).

Pure: a parsed table of contents and names in, the entries to keep out.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bot.backup.archive import Entry, Toc
from bot.errors import AtlasError
from bot.records import CheckResult

SESSION = ("ENCODING", "STDSTRINGS", "SEARCHPATH")  # settings every restore script starts with
NOT_NEEDED = ("DATABASE", "DATABASE PROPERTIES", "ACL", "DEFAULT ACL")


@dataclass(frozen=True, order=True)
class TableName:
    """SCHEMA.TABLE as a user names it."""

    schema: str
    name: str

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"


def parse_tables(values: Iterable[str]) -> tuple[TableName, ...]:
    """`--table` values: SCHEMA.TABLE, or TABLE for one in `public`; each named once."""
    out: list[TableName] = []
    for raw in values:
        text = raw.strip()
        schema, dot, name = text.partition(".")
        if not dot:
            schema, name = "public", text
        if not schema or not name or "." in name:
            raise AtlasError(
                f"{raw!r} is not a table name.",
                "name each table as SCHEMA.TABLE, e.g. --table public.orders",
            )
        table = TableName(schema, name)
        if table not in out:
            out.append(table)
    return tuple(out)


def known_tables(
    snap_id: str, manifest: dict[str, Any] | None, tables: tuple[TableName, ...]
) -> None:
    """Refuse a table the snapshot's manifest does not list (before anything is asked
    for or read); a snapshot without one is checked against its archive later."""
    listed = (manifest or {}).get("tables")
    if not tables or not isinstance(listed, dict):
        return
    known = set(listed) | set((manifest or {}).get("partitioned") or ())  # parents: no rows
    missing = [str(t) for t in tables if str(t) not in known]
    if missing:
        close = [m for n in missing for m in difflib.get_close_matches(n, known, n=1)]
        some = ", ".join(sorted(known)[:8]) + (", …" if len(known) > 8 else "")
        raise AtlasError(
            f"Snapshot {snap_id} has no table {', '.join(missing)}.",
            (f"did you mean {', '.join(close)}? " if close else "")
            + f"name them as SCHEMA.TABLE; it has {some or 'none'}",
        )


@dataclass(frozen=True)
class Link:
    """A foreign key between a chosen table and one that is not chosen."""

    name: str  # the constraint's name
    table: str  # SCHEMA.TABLE it is defined on
    definition: str  # the SQL that adds it
    outward: bool  # defined on a chosen table (else: on another table, pointing at one)

    def __str__(self) -> str:
        return f"{self.table}.{self.name}"


@dataclass(frozen=True)
class Selection:
    """What restores the chosen tables."""

    tables: tuple[TableName, ...]  # those named, then the partitions of those partitioned
    keep: tuple[Entry, ...]  # in archive order
    links: tuple[Link, ...]  # left out of `keep`
    left_out: tuple[str, ...]  # other objects that need a table not chosen (e.g. a view)
    sequences: tuple[str, ...]  # SCHEMA.NAME of the owned sequences kept
    partitioned: tuple[str, ...] = ()  # SCHEMA.TABLE of the chosen that hold no rows

    @property
    def dump_ids(self) -> frozenset[int]:
        return frozenset(e.dump_id for e in self.keep)

    def list_file(self) -> str:
        """`pg_restore -L` lines naming the entries kept."""
        return "".join(f"{e.dump_id}; {e.desc}\n" for e in self.keep)


def partition_check(
    chosen: Selection, named: Iterable[TableName], problems: list[str]
) -> CheckResult | None:
    """What a restore of a partitioned table brought with it, where its checks are read:
    "public.events_2025, public.events_2026 (partitioned), …", failed when a problem names
    one of them. None when no named table was partitioned."""
    asked = {str(t) for t in named}
    came = [str(t) for t in chosen.tables if str(t) not in asked]
    if not came:
        return None
    parents = set(chosen.partitioned)
    listed = ", ".join(f"{t} (partitioned)" if t in parents else t for t in came)
    wrong = any(f" {t} " in f" {p} " for p in problems for t in came)
    detail = (
        f"{listed} restored with {', '.join(sorted(asked & parents))}; each leaf's rows counted"
    )
    return CheckResult("partitions", not wrong, detail, 0.0)


def select(toc: Toc, tables: tuple[TableName, ...], *, standalone: bool) -> Selection:
    """The entries that restore `tables`. `standalone` (a drill, a fetch) adds what they
    need to exist first (schemas, types, functions) and leaves out objects that need
    other tables; otherwise (into staging, where those exist) they are kept."""
    by_id = {e.dump_id: e for e in toc.entries}
    chosen = _with_partitions(toc, _chosen(toc, tables))
    tables = tuple(chosen.values())
    all_tables = {e.dump_id for e in toc.entries if e.desc == "TABLE"}
    down = _dependents(toc, set(chosen))
    touched = _Touched(by_id, all_tables)
    keep: set[int] = set(chosen)
    links: list[Link] = []
    left_out: list[str] = []
    for dump_id in sorted(down - set(chosen)):
        entry = by_id[dump_id]
        if not touched(dump_id) - set(chosen):
            keep.add(dump_id)
        elif entry.desc == "FK CONSTRAINT":
            links.append(_link(entry, tables))
        elif standalone:
            left_out.append(_describe(entry))
        else:
            keep.add(dump_id)
    if standalone:
        keep |= _prerequisites(by_id, keep, all_tables)
    keep |= {e.dump_id for e in toc.entries if e.desc in SESSION}
    kept = tuple(e for e in toc.entries if e.dump_id in keep and e.desc not in NOT_NEEDED)
    sequences = tuple(f"{e.namespace}.{e.tag}" for e in kept if e.desc == "SEQUENCE")
    parents = tuple(str(chosen[i]) for i in chosen if "PARTITION BY" in by_id[i].definition)
    return Selection(tables, kept, tuple(links), tuple(left_out), sequences, parents)


def _chosen(toc: Toc, tables: tuple[TableName, ...]) -> dict[int, TableName]:
    found = {
        TableName(e.namespace or "", e.tag): e.dump_id for e in toc.entries if e.desc == "TABLE"
    }
    missing = [str(t) for t in tables if t not in found]
    if missing:
        raise AtlasError(
            f"The snapshot has no table {', '.join(missing)}.",
            "`atlas show ID` lists the tables a snapshot holds (schema-qualified)",
        )
    return {found[t]: t for t in tables}


def _with_partitions(toc: Toc, chosen: dict[int, TableName]) -> dict[int, TableName]:
    """`chosen`, then the partitions of each partitioned table in it, at every level: a
    partitioned table's rows are its partitions'. pg_dump attaches each partition in an
    entry of its own (TABLE ATTACH) that depends on the partition and its parent."""
    names = {e.dump_id: TableName(e.namespace or "", e.tag) for e in toc.entries}
    tables = {e.dump_id for e in toc.entries if e.desc == "TABLE"}
    children: dict[int, list[int]] = {}
    for e in toc.entries:
        if e.desc != "TABLE ATTACH":
            continue
        part = [d for d in e.deps if d in tables and names[d] == names[e.dump_id]]
        parent = [d for d in e.deps if d in tables and d not in part]
        if len(part) == 1 and len(parent) == 1:
            children.setdefault(parent[0], []).append(part[0])
    out = dict(chosen)
    todo = list(chosen)
    while todo:
        for child in children.get(todo.pop(0), ()):
            if child not in out:
                out[child] = names[child]
                todo.append(child)
    return out


def _dependents(toc: Toc, roots: set[int]) -> set[int]:
    """`roots` and every entry that depends on one of them, directly or not."""
    children: dict[int, list[int]] = {}
    for e in toc.entries:
        for dep in e.deps:
            children.setdefault(dep, []).append(e.dump_id)
    seen, todo = set(roots), list(roots)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return seen


class _Touched:
    """The tables an entry depends on, directly or through other entries."""

    def __init__(self, by_id: dict[int, Entry], tables: set[int]) -> None:
        self.by_id, self.tables = by_id, tables
        self.memo: dict[int, frozenset[int]] = {}

    def __call__(self, dump_id: int) -> frozenset[int]:
        if dump_id in self.memo:
            return self.memo[dump_id]
        self.memo[dump_id] = frozenset()  # a cycle adds nothing
        found = {dump_id} if dump_id in self.tables else set()
        for dep in self.by_id[dump_id].deps if dump_id in self.by_id else ():
            found |= self(dep)
        self.memo[dump_id] = frozenset(found)
        return self.memo[dump_id]


def _prerequisites(by_id: dict[int, Entry], keep: set[int], tables: set[int]) -> set[int]:
    """What the kept entries depend on (schemas, types, functions, extensions), short of
    other tables: those are not restored."""
    seen: set[int] = set()
    todo = [d for k in keep for d in by_id[k].deps]
    while todo:
        dep = todo.pop()
        if dep in seen or dep in keep or dep in tables or dep not in by_id:
            continue
        seen.add(dep)
        todo.extend(by_id[dep].deps)
    return seen


def _link(entry: Entry, tables: tuple[TableName, ...]) -> Link:
    on_table, _, name = entry.tag.partition(" ")
    table = TableName(entry.namespace or "", on_table)
    return Link(name or entry.tag, str(table), entry.definition, table in tables)


def _describe(entry: Entry) -> str:
    where = f"{entry.namespace}." if entry.namespace else ""
    return f"{entry.desc.lower()} {where}{entry.tag}"
