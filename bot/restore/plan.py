"""Which strategy restores a snapshot, from the job, the snapshot and the settings."""

from __future__ import annotations

from dataclasses import dataclass

from bot.config import Settings
from bot.records import Snapshot, segments_of
from bot.restore import partial
from bot.restore.blocks import Blocks
from bot.restore.strategies import Spool, Strategy, StrategyTools, StreamOne, StreamThenIndexes
from bot.restore.tables import TableName


@dataclass(frozen=True)
class Plan:
    """How a restore runs: its strategy, and whether the artifact is checked whole first."""

    strategy: Strategy
    check_whole_first: bool  # the whole artifact is checked before pg_restore starts
    hold_toc: bool  # the stream's table of contents is checked before pg_restore reads it


def choose(
    snap: Snapshot,
    settings: Settings,
    tools: StrategyTools,
    tables: tuple[TableName, ...] = (),
    *,
    into_staging: bool = False,
) -> Plan:
    """A snapshot stored in segments restores over ATLAS_RESTORE_JOBS connections, each
    segment checked as it is read. Older and encrypted snapshots stream once the table
    of contents (all the SQL a restore runs) is verified, or (with
    ATLAS_DRILL_VERIFY_FIRST) once the whole artifact is. Spooling checks everything
    while it writes the plain dump to the work dir. Drills and refreshes alike restore
    into a database made for them, so a damaged block fails that one, never staging."""
    toc_first = not settings.drill_verify_first and bool(snap.toc_bytes and snap.toc_sha256)
    segments = segments_of(snap)
    if tables:  # only their blocks read (segments), or the stream cut down as it passes
        kind = partial.TablesIntoStaging if into_staging else partial.TablesAlone
        if segments is not None and snap.encryption == "none":
            return Plan(kind(tools, tables, segments), check_whole_first=False, hold_toc=False)
        return Plan(kind(tools, tables), check_whole_first=not toc_first, hold_toc=toc_first)
    jobs = settings.restore_jobs
    if jobs >= 2 and segments is not None and snap.encryption == "none":
        blocks = Blocks(tools, jobs, segments, verify_first=settings.drill_verify_first)
        return Plan(blocks, check_whole_first=False, hold_toc=False)
    if settings.restore_spool and jobs >= 2:
        return Plan(Spool(tools, jobs), check_whole_first=False, hold_toc=False)
    if jobs < 2:
        strategy: Strategy = StreamOne(tools)
    else:
        strategy = StreamThenIndexes(tools, jobs)
    return Plan(strategy, check_whole_first=not toc_first, hold_toc=toc_first)
