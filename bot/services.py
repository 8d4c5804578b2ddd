"""The operations Slack and the CLI share, wired to the catalog, storage and Slack reporting."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from bot.backup.snapshots import Progress, Snapshots
from bot.catalog import Catalog
from bot.config import Settings
from bot.errors import AtlasError, Busy
from bot.report import messages
from bot.slack.client import Message, make_client

if TYPE_CHECKING:
    from slack_sdk import WebClient

    from bot.approval.flow import ApprovalFlow
    from bot.restore.restores import Restores

log = logging.getLogger(__name__)


class Services:
    """Everything a request handler needs, built once from settings."""

    def __init__(
        self, settings: Settings, catalog: Catalog | None = None, slack: WebClient | None = None
    ) -> None:
        self.settings = settings
        self.catalog = catalog or Catalog(settings.state)
        self.snapshots = Snapshots(settings, self.catalog)
        self.snapshots.on_damage = self._announce_damage
        self.slack = slack
        self.jobs = ThreadPoolExecutor(max_workers=4, thread_name_prefix="atlas-job")
        self._build_lock = threading.RLock()
        self._restores: Restores | None = None
        self._flow: ApprovalFlow | None = None

    # Built on first use, once even when handler threads race: `atlas snapshot` starts
    # its dump without importing the restore and approval code.
    @property
    def restores(self) -> Restores:
        with self._build_lock:
            if self._restores is None:
                from bot.restore.restores import Restores

                self._restores = Restores(self.settings, self.catalog, self.snapshots)
            return self._restores

    @property
    def flow(self) -> ApprovalFlow:
        with self._build_lock:
            if self._flow is None:
                from bot.approval.flow import ApprovalFlow

                self._flow = ApprovalFlow(self)
            return self._flow

    @classmethod
    def from_settings(cls, settings: Settings) -> Services:
        return cls(settings, slack=make_client(settings))

    def snapshot_reported(
        self,
        *,
        requested_by: str,
        note: str = "",
        database: str | None = None,
        source: str = "slack",
        channel: str | None = None,
        progress: Any = None,
        provider: bool = False,
    ) -> dict[str, Any]:
        """Take a snapshot and tell the channel: one message, updated with progress and result."""
        self._check_provider(provider)
        msg = Message(self.slack, channel or self.settings.channel)
        started: dict[str, Any] = {}

        def on_start(row: dict[str, Any]) -> None:
            started.update(row)
            msg.post(*messages.snapshot_started(row))
            if msg.ts:
                self.catalog.update_snapshot(row["id"], slack_channel=msg.channel, slack_ts=msg.ts)

        def on_progress(p: Progress) -> None:
            msg.update(*messages.snapshot_progress(started, p.raw_bytes, p.stored_bytes, p.elapsed))
            if progress:
                progress(p)

        try:
            row = self.snapshots.take(
                requested_by=requested_by,
                note=note,
                database=database,
                source=source,
                progress=on_progress,
                progress_every=0.5,
                on_start=on_start,
            )
        except Busy as exc:
            msg.post(messages.error(str(exc)), [])
            raise
        except AtlasError as exc:
            if started:
                msg.update(*messages.snapshot_failed(started, str(exc)), final=True)
            else:
                msg.post(messages.error(f"Snapshot failed: {exc}"), [])
            raise
        except KeyboardInterrupt:
            if started:
                msg.update(
                    *messages.snapshot_failed(started, "interrupted by the operator"), final=True
                )
            raise
        msg.update(*messages.snapshot_done(row), final=True)
        if provider:
            row = self.provider_snapshot(row, msg)
            msg.update(*messages.snapshot_done(row), final=True)
        return row

    def _check_provider(self, wanted: bool) -> None:
        if wanted and not (self.settings.rds_cluster or self.settings.rds_instance):
            raise AtlasError(
                "--provider needs a provider: nothing was started.",
                "set ATLAS_RDS_INSTANCE or ATLAS_RDS_CLUSTER",
            )

    def provider_snapshot(self, row: dict[str, Any], msg: Message) -> dict[str, Any]:
        """`--provider`: also start an RDS snapshot, named after ours."""
        from bot.ops import provider

        ident = self.settings.rds_cluster or self.settings.rds_instance or ""
        try:
            pid = provider.start_snapshot(
                ident, f"atlas-{row['id']}", cluster=bool(self.settings.rds_cluster)
            )
        except AtlasError as exc:
            msg.post(
                messages.error(
                    f"Snapshot {row['id']} is stored, but the provider snapshot failed: {exc}"
                ),
                [],
            )
            raise
        self.catalog.update_snapshot(row["id"], provider_snapshot=pid)
        self.catalog.audit(
            row["requested_by"], "provider.snapshot", row["id"], provider_snapshot=pid
        )
        return self.catalog.get_snapshot(row["id"])

    def start_snapshot(
        self,
        *,
        requested_by: str,
        note: str,
        channel: str | None,
        database: str | None = None,
        provider: bool = False,
    ) -> Future[dict[str, Any]]:
        """Check for a running snapshot now (so the user hears at once), then run in background."""
        self._check_provider(provider)  # answer at once, in the command's reply
        target = self.settings.target(database)
        running = self.catalog.running_snapshot(target.name, target.environment)
        if running:
            raise Busy(
                f"A snapshot of {target.name} is already running: {running['id']}, started by "
                f"{running.get('requested_by') or 'someone'} at {running['started_at']}.",
                "wait for it to finish; `/atlas list` shows it",
            )

        def job() -> dict[str, Any]:
            try:
                return self.snapshot_reported(
                    requested_by=requested_by,
                    note=note,
                    database=database,
                    channel=channel,
                    provider=provider,
                )
            except AtlasError as exc:
                log.warning("snapshot for %s failed: %s", requested_by, exc)
                raise

        return self.jobs.submit(job)

    def _announce_damage(self, row: dict[str, Any], found_by: str) -> None:
        """A damaged backup is news for the whole channel, whoever found it."""
        good = self.catalog.list_snapshots(
            limit=1, database=row["database"], status="ok", environment=row["environment"]
        )
        Message(self.slack, self.settings.channel).post(
            *messages.snapshot_damaged(row, found_by, good[0] if good else None)
        )

    def recover(self) -> list[dict[str, Any]]:
        """After a restart: close out snapshots that were running and say so in Slack."""
        rows = self.snapshots.recover()
        for row in rows:
            text, blocks = messages.snapshot_interrupted(row)
            channel = row.get("slack_channel") or self.settings.channel
            if row.get("slack_ts"):
                original = Message(self.slack, channel)
                original.ts = row["slack_ts"]
                original.update(text, blocks, final=True)
            Message(self.slack, channel).post(text, blocks)
        return rows

    def shutdown(self) -> None:
        self.jobs.shutdown(wait=False, cancel_futures=True)
