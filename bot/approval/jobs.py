"""Running approved requests: claimed once across retries and restarts, run in the
background, reported in the request's thread and the channel; expired ones closed."""

from __future__ import annotations

import socket
from collections.abc import Callable
from concurrent.futures import Executor

from bot.approval.ask import ApprovalRequests
from bot.catalog import Catalog
from bot.errors import AtlasError
from bot.owners import REPLICA_LEASE, owner_gone
from bot.records import DrillStatus, JobRecord, Kind, Request, RequestStatus, now
from bot.report import messages
from bot.report.chat import Blocks, Chat, Message
from bot.restore.run import Restores
from bot.restore.scratch import Scratch


class ApprovedJobs:
    """Approved restore jobs: each run once, its verdict said where it was asked for."""

    def __init__(
        self,
        catalog: Catalog,
        chat: Chat,
        ask: ApprovalRequests,
        restores: Restores,
        scratch: Scratch,
        background: Executor,
    ) -> None:
        self.catalog, self.chat, self.ask = catalog, chat, ask
        self.restores, self.scratch, self.background = restores, scratch, background

    def start(self, req_id: str) -> bool:
        """Claim the approved request and run its job in the background; once only."""
        if not self.catalog.claim_job(req_id):
            return False
        self.ask.refresh(req_id)
        self.background.submit(self._run, req_id)
        return True

    def _run(self, req_id: str) -> None:
        req = self.catalog.get_request(req_id)
        words = messages.KIND_WORDS[req.kind]
        # the thread's one progress message ends as the verdict, never at its last phase
        progress = Message(self.chat, req.channel, thread_ts=req.ts)
        progress.post(f":gear: {words} started.", [])
        try:
            drill = self._job(req, lambda text: progress.update(f":gear: {text}", [], final=True))
        except AtlasError as exc:
            self.catalog.update_request(req_id, status=RequestStatus.FAILED, reason=str(exc))
            self.ask.refresh(req_id)
            progress.update(messages.error(str(exc)), [], final=True)
            Message(self.chat, req.channel).post(
                messages.error(f"{words} for request {req_id} failed: {exc}"), []
            )
            return
        ok = drill.status == DrillStatus.PASSED
        self.catalog.update_request(
            req_id,
            status=RequestStatus.DONE if ok else RequestStatus.FAILED,
            drill_id=drill.id,
            reason=None if ok else (drill.error or "verification failed"),
        )
        self.ask.refresh(req_id)
        text, blocks = self._verdict(drill)
        progress.update(text, blocks, final=True)  # the thread is final before the channel
        Message(self.chat, req.channel).post(text, blocks)

    def _job(self, req: Request, say: Callable[[str], None]) -> JobRecord:
        """Run what the request asked for: a drill, a refresh, or an undo."""
        if req.kind == Kind.UNDO:
            return self.restores.undo.run(
                database=req.database,
                requested_by=req.requested_by,
                approved_by=req.approved_by,
                request_id=req.id,
                say=say,
                undoes=req.snapshot_id,  # the refresh whose kept staging was approved
            )
        return self.restores.run(
            kind=req.kind,
            snap_id=req.snapshot_id,
            requested_by=req.requested_by,
            approved_by=req.approved_by,
            request_id=req.id,
            phase=say,
            tables=req.tables,
        )

    def announce(self, drill: JobRecord, channel: str | None) -> None:
        """Post the verdict of a drill or refresh that no request asked for (the CLI's)
        in the channel: the team sees every restore, wherever it was started."""
        Message(self.chat, channel).post(*self._verdict(drill))

    def _verdict(self, drill: JobRecord) -> tuple[str, Blocks]:
        return messages.drill_report(drill, self.restores.previous_passed(drill))

    def expire_due(self) -> list[str]:
        """Close pending requests past their expiry and say so on their messages."""
        expired = []
        for req in self.catalog.list_requests(RequestStatus.PENDING):
            if req.expires_at > now():
                continue
            if self.catalog.expire_request(req.id, "nobody approved it in time"):
                self.catalog.audit("atlas", f"{req.kind}.expired", req.id)
                self.ask.refresh(req.id)
                expired.append(req.id)
        return expired

    def reap(self, live_replicas: list[str] | None = None) -> list[str]:
        """Fail the running jobs whose process died: one of this host that is gone, or,
        given the replicas alive (their `replica:` leases), one of another host whose
        replica no longer holds its lease. Their scratch databases are dropped, and each
        request's message says what happened. Returns the requests failed."""
        failed = []
        for req in self.catalog.list_requests(RequestStatus.RUNNING):
            gone = owner_gone(req.owner)
            if not gone and live_replicas is not None and req.owner:
                mine = req.owner.startswith(socket.gethostname() + ":")
                gone = not mine and not any(
                    r.startswith(f"{REPLICA_LEASE}{req.owner}:") for r in live_replicas
                )
            if not gone:
                continue
            reason = "Atlas stopped while the job ran"
            self.catalog.update_request(req.id, status=RequestStatus.FAILED, reason=reason)
            for d in self.catalog.list_jobs(limit=100, request_id=req.id):
                if d.status == DrillStatus.RUNNING:
                    self.catalog.update_job(
                        d.id,
                        d.kind,
                        status=DrillStatus.INTERRUPTED,
                        error=reason,
                        finished_at=now(),
                    )
            self.catalog.audit("atlas", f"{req.kind}.interrupted", req.id, owner=req.owner)
            self.ask.refresh(req.id)
            failed.append(req.id)
        if failed:
            self.scratch.clean_up()  # what the interrupted drills left on staging
        return failed

    def resume(self) -> None:
        """After a restart: run approved jobs that never started; fail ones that died."""
        self.reap()
        self.scratch.clean_up()  # what interrupted drills left on staging
        for req in self.catalog.list_requests(RequestStatus.APPROVED):
            self.start(req.id)
        self.expire_due()
