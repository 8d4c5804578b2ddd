"""Snapshots the team hears about: one channel message per snapshot, updated with its
progress and ending in its result; snapshots a dead process left behind, closed out and
announced (now, or by the next process that has Slack); damage, announced to everyone."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future
from typing import TYPE_CHECKING

from bot.backup.recovery import Recovery
from bot.catalog import Catalog
from bot.config import Settings
from bot.errors import AtlasError, Busy
from bot.records import Snapshot, SnapshotStatus
from bot.report import messages
from bot.report.chat import Chat, Message

if TYPE_CHECKING:
    from bot.backup.take import DumpProgress, Taker

log = logging.getLogger(__name__)

# a snapshot closed out by a process without Slack, and its announcement by one with it
UNANNOUNCED = "snapshot.interrupted_unannounced"
ANNOUNCED = "snapshot.interrupted_announced"

# (provider identifier, snapshot name, is a cluster) -> the provider's snapshot id
StartProvider = Callable[[str, str, bool], str]


class ReportedSnapshots:
    """Taking a snapshot with its message, and saying what became of those that died."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        chat: Chat,
        taker: Callable[[], Taker],
        recovery: Recovery,
        background: Executor,
        start_provider: StartProvider,
    ) -> None:
        self.settings, self.catalog, self.chat = settings, catalog, chat
        self._taker, self.recovery, self.background = taker, recovery, background
        self._start_provider = start_provider

    def take(
        self,
        *,
        requested_by: str,
        note: str = "",
        database: str | None = None,
        source: str = "slack",
        channel: str | None = None,
        progress: Callable[[DumpProgress], None] | None = None,
        provider: bool = False,
        tags: Mapping[str, str] | None = None,
    ) -> Snapshot:
        """Take a snapshot and tell the channel: one message, updated with progress and result."""
        self.check_provider(provider)
        msg = Message(self.chat, channel or self.settings.channel)
        started: list[Snapshot] = []

        def on_start(snap: Snapshot) -> None:
            started.append(snap)
            msg.post(*messages.snapshot_started(snap))
            if msg.ts:
                self.catalog.update_snapshot(snap.id, slack_channel=msg.channel, slack_ts=msg.ts)

        def on_progress(p: DumpProgress) -> None:
            if started:
                msg.update(
                    *messages.snapshot_progress(started[0], p.raw_bytes, p.stored_bytes, p.elapsed)
                )
            if progress:
                progress(p)

        try:
            snap = self._taker().take(
                requested_by=requested_by,
                note=note,
                database=database,
                source=source,
                progress=on_progress,
                progress_every=0.5,
                on_start=on_start,
                tags=tags,
            )
        except (AtlasError, KeyboardInterrupt) as exc:
            _said_failed(msg, started, exc)
            raise
        copies = self.catalog.copies_of(snap.id)
        msg.update(*messages.snapshot_done(snap, copies), final=True)
        if provider:
            snap = self.provider_snapshot(snap, msg)
            msg.update(*messages.snapshot_done(snap, copies), final=True)
        return snap

    def start(
        self,
        *,
        requested_by: str,
        note: str,
        channel: str | None,
        database: str | None = None,
        provider: bool = False,
        tags: Mapping[str, str] | None = None,
    ) -> Future[Snapshot]:
        """Check for a running snapshot now (so the user hears at once), then run in background."""
        self.check_provider(provider)  # answer at once, in the command's reply
        target = self.settings.target(database)
        running = self.catalog.running_snapshot(target.name, target.environment)
        if running:
            raise Busy(
                f"A snapshot of {target.name} is already running: {running.id}, started by "
                f"{running.requested_by or 'someone'} at {running.started_at}.",
                "wait for it to finish; `/atlas list` shows it",
            )

        def job() -> Snapshot:
            try:
                return self.take(
                    requested_by=requested_by,
                    note=note,
                    database=database,
                    channel=channel,
                    provider=provider,
                    tags=tags,
                )
            except AtlasError as exc:
                log.warning("snapshot for %s failed: %s", requested_by, exc)
                raise

        return self.background.submit(job)

    def check_provider(self, wanted: bool) -> None:
        if wanted and not (self.settings.rds_cluster or self.settings.rds_instance):
            raise AtlasError(
                "--provider needs a provider: nothing was started.",
                "set ATLAS_RDS_INSTANCE or ATLAS_RDS_CLUSTER",
            )

    def provider_snapshot(self, snap: Snapshot, msg: Message) -> Snapshot:
        """`--provider`: also start an RDS snapshot, named after ours."""
        ident = self.settings.rds_cluster or self.settings.rds_instance or ""
        try:
            pid = self._start_provider(ident, f"atlas-{snap.id}", bool(self.settings.rds_cluster))
        except AtlasError as exc:
            msg.post(
                messages.error(
                    f"Snapshot {snap.id} is stored, but the provider snapshot failed: {exc}"
                ),
                [],
            )
            raise
        self.catalog.update_snapshot(snap.id, provider_snapshot=pid)
        self.catalog.audit(
            snap.requested_by or "atlas", "provider.snapshot", snap.id, provider_snapshot=pid
        )
        return self.catalog.get_snapshot(snap.id)

    def damaged(self, snap: Snapshot, found_by: str) -> None:
        """A damaged backup is news for the whole channel, whoever found it."""
        good = self.catalog.list_snapshots(
            limit=1,
            database=snap.database,
            status=SnapshotStatus.OK,
            environment=snap.environment,
        )
        Message(self.chat, self.settings.channel).post(
            *messages.snapshot_damaged(snap, found_by, good[0] if good else None)
        )

    def recover(self, *, by_silence: bool = True) -> list[Snapshot]:
        """Close out snapshots whose process died and say so in Slack. A process without
        Slack (a CLI in a shell with no token) leaves the announcement to one that has it:
        `atlas serve` edits the snapshot's message and tells the channel at its next
        recovery."""
        # without by_silence, only snapshots whose process is certainly gone (this host)
        snaps = self.recovery.recover(None if by_silence else float("inf"))
        for snap in snaps:
            if self.chat.configured:
                self._announce_interrupted(snap)
            elif snap.slack_ts:
                self.catalog.audit("atlas", UNANNOUNCED, snap.id)
        if self.chat.configured:
            self._announce_pending()
        return snaps

    def _announce_interrupted(self, snap: Snapshot) -> None:
        text, blocks = messages.snapshot_interrupted(snap)
        channel = snap.slack_channel or self.settings.channel
        if snap.slack_ts:
            Message.existing(self.chat, channel, snap.slack_ts).update(text, blocks, final=True)
        Message(self.chat, channel).post(text, blocks)

    def _announce_pending(self) -> None:
        """Close-outs a process without Slack recorded as not yet announced."""
        pending = {e.subject for e in self.catalog.audit_log(200) if e.action == UNANNOUNCED}
        for snap_id in sorted(pending):
            done = self.catalog.audit_log(20, subject=snap_id)
            if any(e.action == ANNOUNCED for e in done):
                continue
            self._announce_interrupted(self.catalog.get_snapshot(snap_id))
            self.catalog.audit("atlas", ANNOUNCED, snap_id)


def _said_failed(msg: Message, started: list[Snapshot], exc: BaseException) -> None:
    """The snapshot's message ends in what stopped it (a refusal before it began is a
    message of its own)."""
    if isinstance(exc, KeyboardInterrupt):
        if started:
            msg.update(
                *messages.snapshot_failed(started[0], "interrupted by the operator"), final=True
            )
    elif isinstance(exc, Busy) or not started:
        prefix = "" if isinstance(exc, Busy) else "Snapshot failed: "
        msg.post(messages.error(f"{prefix}{exc}"), [])
    else:
        msg.update(*messages.snapshot_failed(started[0], str(exc)), final=True)
