"""Copies that stream while the snapshot is taken: the stored bytes go to ATLAS_STORAGE
and, through a bounded queue and a thread per destination, to each copy at once.

The stream goes at the pace of the slowest destination that keeps taking bytes. One that
stops taking them for STALL_S, refuses or breaks leaves the stream, so it delays the
snapshot by STALL_S at most, once: after the snapshot is stored, that copy is made from
ATLAS_STORAGE instead, and retried later if that fails too. Every copy, streamed or not,
is read back where it lies before it counts.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import queue
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from bot import interrupts
from bot.owners import Heartbeat
from bot.records import Copy, CopyState, Snapshot, copy_key
from bot.store import ArtifactWriter, StoredObject

if TYPE_CHECKING:
    from bot.catalog import Catalog
    from bot.config import Settings
    from bot.store import Storage


class Owner(Protocol):
    """What the streams need of the copier that opened them (`copier.Copier`)."""

    settings: Settings
    catalog: Catalog
    owner: str
    beat_s: float

    def claim(self, snap: Snapshot, name: str) -> Copy | None: ...
    def storage(self, name: str) -> Storage: ...
    def finish_streams(
        self, snap: Snapshot, ended: list[tuple[str, StoredObject | str]]
    ) -> None: ...


log = logging.getLogger(__name__)

QUEUE_CHUNKS = 16  # what a destination may lag behind (about 1 MB each)
STALL_S = 5.0  # a destination that takes nothing for this long leaves the stream


@dataclass
class Lane:
    """One destination's part of the stream."""

    name: str
    writer: ArtifactWriter | None
    chunks: queue.Queue[bytes | None] = field(
        default_factory=lambda: queue.Queue(maxsize=QUEUE_CHUNKS)
    )
    dropped: str | None = None  # why it left the stream
    sha: hashlib._Hash = field(default_factory=hashlib.sha256)
    size: int = 0
    thread: threading.Thread | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def drop(self, why: str) -> None:
        """Leave the stream: the drain stops at once, whatever is still queued."""
        with self.lock:
            if self.dropped is not None:
                return
            self.dropped = why
        with contextlib.suppress(queue.Empty):
            while True:
                self.chunks.get_nowait()
        with contextlib.suppress(queue.Full):
            self.chunks.put_nowait(None)


class Streams:
    """The copies of one snapshot, fed as it is stored (`tee` wraps its writer)."""

    def __init__(self, copier: Owner, snap: Snapshot) -> None:
        self.copier, self.snap = copier, snap
        self.lanes: list[Lane] = []
        # the claims are this process's while the snapshot runs, however long
        self._beat = Heartbeat(lambda: copier.catalog.beat_copies(copier.owner), copier.beat_s)

    def open(self) -> None:
        """Claim this snapshot's copies and open a writer in each destination."""
        self._beat.__enter__()
        try:
            with interrupts.held():  # a writer opened is a lane the abort can find
                for name in self.copier.settings.copies:
                    if self.copier.claim(self.snap, name) is not None:
                        self.lanes.append(self._lane(name))
        except BaseException:
            self.abort("its copies could not be claimed")
            raise

    def _lane(self, name: str) -> Lane:
        try:
            lane = Lane(name, self.copier.storage(name).writer(self.snap.storage_key or ""))
        except Exception as exc:  # cannot be reached now: made from ATLAS_STORAGE after
            return Lane(name, None, dropped=f"{type(exc).__name__}: {exc}")
        lane.thread = threading.Thread(
            target=self._drain, args=(lane,), name=f"atlas-stream-{name}", daemon=True
        )
        lane.thread.start()
        return lane

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """The stored bytes, as ATLAS_STORAGE got them: queued for each lane still in,
        waiting for room at most STALL_S."""
        chunk = bytes(data)  # the caller may reuse its buffer
        for lane in self.lanes:
            if lane.dropped is not None:
                continue
            try:
                lane.chunks.put(chunk, timeout=STALL_S)
            except queue.Full:
                lane.drop(f"it took nothing for {STALL_S:g} s")

    def _drain(self, lane: Lane) -> None:
        assert lane.writer is not None
        while (chunk := lane.chunks.get()) is not None:
            if lane.dropped is not None:
                break
            try:
                lane.writer.write(chunk)
            except Exception as exc:
                lane.drop(f"{type(exc).__name__}: {exc}")
                break
            lane.sha.update(chunk)
            lane.size += len(chunk)

    def finish(self, snap: Snapshot, wait_s: float) -> None:
        """The snapshot is stored: end each lane, commit and prove what streamed, and make
        the copies that left the stream from ATLAS_STORAGE."""
        for lane in self.lanes:
            if lane.dropped is None:
                try:
                    lane.chunks.put(None, timeout=wait_s)
                except queue.Full:
                    lane.drop("it did not finish in time")
        for lane in self.lanes:
            if lane.thread is not None:
                lane.thread.join(wait_s)
                if lane.thread.is_alive():
                    lane.drop("it did not finish in time")
        self._beat.__exit__(None, None, None)  # finish_streams beats from here
        self.copier.finish_streams(
            snap, [(lane.name, self._commit(lane, snap)) for lane in self.lanes]
        )

    def _commit(self, lane: Lane, snap: Snapshot) -> StoredObject | str:
        """The streamed copy committed (its head), or why it must be made again."""
        if lane.dropped is None and (lane.size, lane.sha.hexdigest()) != (
            snap.size_bytes,
            snap.sha256,
        ):
            lane.dropped = "what streamed differs from what was stored"
        if lane.dropped is not None or lane.writer is None:
            if lane.writer is not None:
                lane.writer.abort()
            log.info(
                "the copy to %s left the stream (%s): made from ATLAS_STORAGE",
                lane.name,
                lane.dropped,
            )
            return lane.dropped or "not streamed"
        try:
            return lane.writer.commit()
        except Exception as exc:
            lane.writer.abort()
            return f"{type(exc).__name__}: {exc}"

    def abort(self, why: str) -> None:
        """The snapshot failed: nothing of it may stay in any destination."""
        self._beat.__exit__(None, None, None)
        for lane in self.lanes:
            lane.drop(why)
        for lane in self.lanes:
            if lane.thread is not None:
                lane.thread.join(30)
            if lane.writer is not None:
                lane.writer.abort()
            self.copier.catalog.end_copy(
                copy_key(self.snap.id, lane.name),
                self.copier.owner,
                CopyState.DELETED,
                error=f"the snapshot failed: {why}",
            )
