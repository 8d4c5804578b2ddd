"""Restoring a few of a snapshot's tables (`--table`).

- Into a drill's scratch database, the tables alone with what they need (schemas,
  types, functions): `TablesAlone`. A foreign key to a table not restored is left out.
- Into staging: `TablesIntoStaging`. One `pg_restore --single-transaction --clean` of
  an archive cut down to those tables, to which Atlas adds its own SQL: before the drops,
  foreign keys of other tables that point at them are set aside; at the end, every row
  count and sequence is compared with the manifest (a difference raises, so nothing is
  committed), and the foreign keys between a restored table and one that is not are
  added back where the rows they need exist. Until all of that ran, and every checksum
  of the artifact held, staging is as it was.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from psycopg import sql

from bot.backup import archive, pipeline
from bot.errors import AtlasError
from bot.pg import Conn
from bot.records import CheckResult, Segment, Snapshot, segments_of
from bot.restore import privileges
from bot.restore.blocks import NOTHING_RESTORED, read_segment
from bot.restore.cut import Pick, TableCut
from bot.restore.strategies import (
    RestoreInput,
    StrategyTools,
    base_argv,
    restore_failed,
    session_env,
)
from bot.restore.tables import Link, Selection, TableName, known_tables, parse_tables, select
from bot.store import Storage

LACKS = re.compile(
    r'ERROR:\s+(type|function|schema|collation|operator) "?([^"\s]+)"? does not exist'
)


DEPENDS = re.compile(
    r"DETAIL:\s+((?:materialized )?view|rule|function) (\S+) depends on table (\S+)"
)


def _explained(exc: AtlasError) -> AtlasError:
    """A table restored in place needs what staging already holds (its extensions,
    types, schemas): when staging lacks one, say so and how to get it there. When
    staging has something of its own over a table (a view the snapshot lacks), which
    replacing the table would drop, name it and say what to do."""
    held = DEPENDS.search(exc.message)
    if held is not None:
        kind, name, table = held.groups()
        return AtlasError(
            f"pg_restore stopped: staging has a {kind} {name} over {table} that the snapshot "
            "does not have: staging has drifted from the snapshot, and replacing the table "
            "would drop it.",
            f"drop {name} in staging and create it again after the restore, or refresh the "
            "whole database with `atlas restore ID` and no --table",
        )
    found = LACKS.search(exc.message)
    if found is None:
        return exc
    kind, name = found.groups()
    return AtlasError(
        f"pg_restore stopped: staging has no {kind} {name}, which the tables need: staging "
        "has drifted from the snapshot.",
        "refresh the whole database first with `atlas restore ID` and no --table, or create "
        f"that {kind} in staging, an extension's with CREATE EXTENSION",
    )


class _Tables:
    """What both ways of restoring some tables are given, and what they chose."""

    def __init__(
        self,
        tools: StrategyTools,
        tables: tuple[TableName, ...],
        segments: list[Segment] | None = None,
    ) -> None:
        self.tools, self.tables, self.segments = tools, tables, segments
        self.selection: Selection | None = None


class TablesAlone(_Tables):
    """The chosen tables into an empty database (a drill's scratch)."""

    def restore(self, job: RestoreInput) -> None:
        def pick(toc: archive.Toc) -> tuple[Selection, list[archive.Extra]]:
            return select(toc, self.tables, standalone=True), []

        self.selection = feed_cut(self.tools, job, base_argv(job), pick, self.segments)


class TablesIntoStaging(_Tables):
    """The chosen tables replaced in staging, in one transaction."""

    def __init__(
        self,
        tools: StrategyTools,
        tables: tuple[TableName, ...],
        segments: list[Segment] | None = None,
    ) -> None:
        super().__init__(tools, tables, segments)
        self.inward: list[tuple[str, str]] = []  # other tables' foreign keys to them
        self.held: dict[str, privileges.Held] = {}  # owners and grants staging had
        self.committed = False  # pg_restore ended well: the tables are replaced
        self.ending = False  # every byte was in and pg_restore was committing

    def restore(self, job: RestoreInput) -> None:
        expected = job.snap.manifest or {}
        self.inward = links_pointing_at(job.dest, self.tables)
        self.held = privileges.held(job.dest, [str(t) for t in self.tables])
        given_back = privileges.statements(self.held)

        def pick(toc: archive.Toc) -> tuple[Selection, list[archive.Extra]]:
            chosen = select(toc, self.tables, standalone=False)
            tag = "$atlas_" + secrets.token_hex(6) + "$"
            extra = archive.Extra(
                "tables restored as one",
                archive.SECTION_POST,
                definition=epilogue(chosen, expected, tag, given_back),
                drop=prelude(chosen, job.lock_wait_s, tag),
            )
            return chosen, [extra]

        argv = [*base_argv(job), "--clean", "--if-exists", "--single-transaction"]
        self.selection = feed_cut(
            self.tools, job, argv, pick, self.segments, ending=self._ending, ended=self._ended
        )
        self.committed = True

    def _ending(self, now: bool) -> None:
        self.ending = now

    def _ended(self) -> None:
        """pg_restore had exited well when the job was stopped: its transaction committed."""
        self.committed = True


def cutter(
    names: Iterable[str], storage: Callable[[], Storage]
) -> Callable[[Snapshot, Callable[[bytes], object]], TableCut]:
    """For `atlas fetch --table`: a cut of a snapshot to the tables `names` alone (what
    `drill --table` restores), its table of contents checked where its checksum is known.
    A segmented snapshot's head and wanted blocks are read alone, each checked against
    its sha256; the rest of the artifact is never read."""
    tables = parse_tables(names)

    def pick(toc: archive.Toc) -> tuple[Selection, list[archive.Extra]]:
        return select(toc, tables, standalone=True), []

    def cut(snap: Snapshot, write: Callable[[bytes], object]) -> TableCut:
        known_tables(snap.id, snap.manifest, tables)
        toc = (snap.toc_bytes, snap.toc_sha256) if snap.toc_bytes and snap.toc_sha256 else None
        made = TableCut(pick, write, toc=toc, where=snap.location or snap.id)
        segments = segments_of(snap)
        if segments is not None:
            made.own_read = lambda: _read_wanted(storage(), snap, segments, made)
        return made

    return cut


def feed_cut(
    tools: StrategyTools,
    job: RestoreInput,
    argv: list[str],
    pick: Pick,
    segments: list[Segment] | None,
    *,
    ending: Callable[[bool], None] = lambda _now: None,
    ended: Callable[[], None] = lambda: None,
) -> Selection:
    """pg_restore ARGV fed the artifact cut down by `pick`: from `segments`, only the head
    and the blocks wanted are read (each checked against its sha256); otherwise the whole
    artifact streams past. The end is released only once every checksum read held.
    `ending` hears True once all is fed (pg_restore may commit from there) and False once
    pg_restore has exited (its code says how); `ended`, when the job is stopped after
    pg_restore had already exited well."""
    job.ready()
    restore = pipeline.FeedProcess(
        [*argv, "--dbname", job.dest.conninfo],
        session_env(job.dest, job.lock_wait_s),
        secrets=job.dest.secrets,
        name="pg-restore",
        dies_with_us=True,  # into staging: never to commit after Atlas was killed
    )
    started: list[bool] = []

    def out(data: bytes) -> None:
        if not started:
            started.append(True)
            job.source.restoring()
        restore.feed(data)

    where = tools.location(job.snap.storage_key or "")
    cut = TableCut(pick, out, toc=job.source.toc, where=where)
    try:
        if segments is None:
            tools.reader.read(job.snap, cut, source=job.source.chunks())
            cut.end()
        else:
            _read_wanted(tools.storage, job.snap, segments, cut)
        cut.release()
        ending(True)
        code, stderr = restore.finish()
        ending(False)
        if code != 0:
            raise _explained(restore_failed(stderr, code))
    except BaseException:
        if restore.proc.poll() == 0:  # stopped as pg_restore ended: it had committed
            ended()
        restore.kill()
        raise
    assert cut.selection is not None
    return cut.selection


def _read_wanted(storage: Storage, snap: Snapshot, segments: list[Segment], cut: TableCut) -> None:
    """The head segment, then the data blocks the cut wants, each read on its own."""
    head = bytearray()
    read_segment(storage, snap, segments[0], head.extend, hint=NOTHING_RESTORED)
    wanted = cut.from_head(bytes(head))
    for segment in segments[1:]:
        if segment.dump_id in wanted:
            read_segment(storage, snap, segment, cut.block)


def _lit(value: object) -> str:
    return sql.Literal(value).as_string(None)


def _ident(name: str) -> str:
    schema, _, table = name.partition(".")
    return sql.Identifier(schema, table).as_string(None)


def prelude(chosen: Selection, lock_wait_s: int, tag: str) -> str:
    """Runs first, before --clean drops the tables: how long a lock may be waited for,
    and the foreign keys of other tables that point at the chosen ones, set aside."""
    names = "ARRAY[" + ", ".join(_lit(_ident(str(t))) for t in chosen.tables) + "]::text[]"
    wait = f"SET LOCAL lock_timeout = {_lit(f'{lock_wait_s}s')};\n" if lock_wait_s else ""
    return f"""-- Atlas: the foreign keys that point at the tables restored, set aside
{wait}CREATE TEMP TABLE atlas_links (on_table text, name text, stmt text) ON COMMIT DROP;
WITH chosen AS (SELECT to_regclass(t) AS rel FROM unnest({names}) AS t)
INSERT INTO atlas_links
SELECT c.conrelid::regclass::text, c.conname,
       format('ALTER TABLE %s ADD CONSTRAINT %I %s', c.conrelid::regclass, c.conname,
              pg_catalog.pg_get_constraintdef(c.oid))
FROM pg_catalog.pg_constraint c
WHERE c.contype = 'f'
  AND c.confrelid IN (SELECT rel FROM chosen WHERE rel IS NOT NULL)
  AND c.conrelid NOT IN (SELECT rel FROM chosen WHERE rel IS NOT NULL);
DO {tag} DECLARE l record; BEGIN
  FOR l IN SELECT * FROM atlas_links LOOP
    EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', l.on_table, l.name);
  END LOOP;
END {tag};
{_drop_partitioned(chosen)}"""


def _drop_partitioned(chosen: Selection) -> str:
    """A partitioned table dropped whole, its partitions with it: --clean would drop the
    partitions' inherited keys one by one, which PostgreSQL refuses."""
    return "".join(f"DROP TABLE IF EXISTS {_ident(t)};\n" for t in chosen.partitioned)


def epilogue(
    chosen: Selection, manifest: dict[str, Any], tag: str, given_back: Sequence[str]
) -> str:
    """Runs last: the row counts and sequences the manifest recorded (a difference
    raises, and the transaction is not committed), then every foreign key between a
    restored table and another added back, each where the rows it needs exist, then the
    owners and grants staging had (`privileges.statements`), each where Atlas may."""
    checks = [_count_check(str(t), manifest) for t in chosen.tables]
    checks += [_sequence_check(s, manifest) for s in chosen.sequences]
    outward = [link for link in chosen.links if link.outward]
    adds = "".join(_add_link(link) for link in outward)
    owners = _each_where_allowed(given_back, tag)
    return f"""-- Atlas: the tables restored, checked against the snapshot's manifest
DO {tag} DECLARE n bigint; v bigint; c boolean; BEGIN
{"".join(checks)}END {tag};
{adds}DO {tag} DECLARE l record; BEGIN
  FOR l IN SELECT * FROM atlas_links LOOP
    BEGIN
      EXECUTE l.stmt;
    EXCEPTION WHEN OTHERS THEN
      NULL;  -- the rows it needs are not there: left out, and the result says so
    END;
  END LOOP;
END {tag};
{owners}"""


def _each_where_allowed(statements: Sequence[str], tag: str) -> str:
    """A block that runs each statement on its own: one Atlas's role may not run is
    skipped (the result names what staging lost), never a reason to undo the tables."""
    if not statements:
        return ""
    items = ", ".join(_lit(s) for s in statements)
    return f"""DO {tag} DECLARE s text; BEGIN
  FOREACH s IN ARRAY ARRAY[{items}]::text[] LOOP
    BEGIN
      EXECUTE s;
    EXCEPTION WHEN OTHERS THEN
      NULL;
    END;
  END LOOP;
END {tag};
"""


def _count_check(name: str, manifest: dict[str, Any]) -> str:
    want = (manifest.get("tables") or {}).get(name)
    if want is None:
        return ""
    return (
        f"  SELECT count(*) INTO n FROM ONLY {_ident(name)};\n"
        f"  IF n <> {int(want)} THEN RAISE EXCEPTION "
        f"'Atlas: table % has % rows restored; the snapshot has %', {_lit(name)}, n, "
        f"{int(want)}; END IF;\n"
    )


def _sequence_check(name: str, manifest: dict[str, Any]) -> str:
    want = (manifest.get("sequences") or {}).get(name)
    if not isinstance(want, dict):
        return ""
    last, called = int(want.get("last_value", 0)), bool(want.get("is_called"))
    return (
        f"  SELECT last_value, is_called INTO v, c FROM {_ident(name)};\n"
        f"  IF v <> {last} OR c <> {str(called).lower()} THEN RAISE EXCEPTION "
        f"'Atlas: sequence % is at %; the snapshot has {last}', {_lit(name)}, v; END IF;\n"
    )


def _add_link(link: Link) -> str:
    stmt = link.definition.strip().rstrip(";")
    return (
        f"INSERT INTO atlas_links VALUES ({_lit(link.table)}, {_lit(link.name)}, {_lit(stmt)});\n"
    )


def link_results(
    dest: Conn, chosen: Selection, inward: list[tuple[str, str]]
) -> tuple[list[CheckResult], list[str]]:
    """What became of each foreign key between a restored table and another: a passed
    check where it is in place again, a warning where it was left out."""
    wanted = [(link.table, link.name) for link in chosen.links if link.outward] + inward
    have = links_in_place(dest, wanted)
    results, warnings = [], []
    for table, name in wanted:
        if (table, name) in have:
            results.append(CheckResult(f"foreign key {table}.{name}", True, "restored", 0.0))
        else:
            warnings.append(
                f"foreign key {table}.{name} left out: rows it needs are not in staging "
                "(add it back once they are)"
            )
    return results, warnings


def privilege_results(
    dest: Conn, tables: tuple[TableName, ...], before: dict[str, privileges.Held]
) -> tuple[list[CheckResult], list[str]]:
    """Whether each table replaced has the owner and grants staging gave it before: a
    passed check where so, a warning naming what it lost where Atlas's role could not
    give it back."""
    if not before:
        return [], []
    lost = privileges.differences(before, privileges.held(dest, [str(t) for t in tables]))
    if lost:
        hint = "(Atlas's role may not: grant them by hand, or restore as staging's owner)"
        return [], [f"owner or grants not given back: {'; '.join(lost)} {hint}"]
    kept = f"{len(before)} relation{'s' if len(before) != 1 else ''} as staging had them"
    return [CheckResult("owners and grants", True, kept, 0.0)], []


def links_in_place(dest: Conn, links: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of the (SCHEMA.TABLE, constraint) foreign keys staging has now."""
    if not links:
        return set()
    with dest.connect(autocommit=True) as c:
        rows = c.execute(
            "SELECT n.nspname || '.' || r.relname, c.conname FROM pg_constraint c "
            "JOIN pg_class r ON r.oid = c.conrelid JOIN pg_namespace n ON n.oid = r.relnamespace "
            "WHERE c.contype = 'f'"
        ).fetchall()
    have = {(str(t), str(n)) for t, n in rows}
    return {link for link in links if link in have}


def links_pointing_at(dest: Conn, tables: tuple[TableName, ...]) -> list[tuple[str, str]]:
    """(SCHEMA.TABLE, constraint) of staging's foreign keys from other tables that point at
    `tables`: set aside by the restore, and added back where they still hold."""
    names = [str(t) for t in tables]
    with dest.connect(autocommit=True) as c:
        rows = c.execute(
            "SELECT n.nspname || '.' || r.relname, c.conname, "
            "fn.nspname || '.' || f.relname FROM pg_constraint c "
            "JOIN pg_class r ON r.oid = c.conrelid JOIN pg_namespace n ON n.oid = r.relnamespace "
            "JOIN pg_class f ON f.oid = c.confrelid "
            "JOIN pg_namespace fn ON fn.oid = f.relnamespace WHERE c.contype = 'f'"
        ).fetchall()
    return [(str(t), str(n)) for t, n, f in rows if f in names and t not in names]
