"""Parallel restore of a snapshot stored in segments (see records.Segment).

The archive's head (header and table of contents, i.e. all the SQL a restore runs) is
read and checked first, and kept in a small work file. Then:

1. `pg_restore --section=pre-data` from that file creates the schema;
2. N lanes load the table data side by side. Each lane is one `pg_restore
   --section=data -L LIST` reading from its stdin the head followed by only its own
   tables' data blocks: pg_restore skips to the block it wants in a stream, so it never
   needs the rest. Each block is read on its own (a seek in a local file, an HTTP range
   request on S3), checked against the sha256 the snapshot recorded, and decompressed
   on the way in;
3. `pg_restore --section=post-data --jobs N` from the head file builds indexes and
   constraints, as a hand-run `pg_restore -j N` does.

Nothing but the head touches the local disk. A staging refresh (or ATLAS_DRILL_VERIFY_FIRST)
first reads every block once and checks its sha256, so a damaged artifact is found before
staging is changed; a drill checks each block as it loads it, and fails on the first
mismatch. Either way every byte restored was checked against what the snapshot recorded.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bot import files
from bot.backup import archive
from bot.backup.pipeline import FeedProcess, Frames
from bot.errors import AtlasError, Damaged
from bot.records import Segment, Snapshot
from bot.restore.strategies import (
    RestoreInput,
    StrategyTools,
    base_argv,
    restore_failed,
    restore_file,
    session_env,
)
from bot.store import Storage
from bot.words import count

log = logging.getLogger(__name__)

NOTHING_RESTORED = "nothing was restored from it"
READ = 256 << 10  # stored bytes per read: decompressed pieces stay a few MiB at most


class Blocks:
    """Reads the artifact's data blocks in parallel into N pg_restore lanes."""

    def __init__(
        self, tools: StrategyTools, jobs: int, segments: list[Segment], *, verify_first: bool
    ) -> None:
        self.tools, self.jobs, self.segments = tools, jobs, segments
        self.verify_first = verify_first

    def restore(self, job: RestoreInput) -> None:
        head_segment, blocks = self.segments[0], self.segments[1:]
        head = self._head(job, head_segment)
        toc = self._toc(job, head, blocks)
        if self.verify_first:
            self._verify_all(job, blocks)  # before anything is restored
        fd, name = self.tools.work_file(job.snap, ".toc")
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as fh:
                self.tools.writing_to(fh)(head)
            job.ready()
            job.source.restoring()
            base = base_argv(job)
            env = session_env(job.dest, job.lock_wait_s)
            clock = _Clock(job.snap.id)
            restore_file([*base, "--section=pre-data"], job.dest, path, env=env)
            clock.lap("schema created")
            self._load(job, head, toc, blocks, path.parent)
            clock.lap(
                f"{count(len(blocks), 'data block')} loaded over {count(self.jobs, 'connection')}"
            )
            restore_file(
                [*base, "--section=post-data", f"--jobs={self.jobs}"], job.dest, path, env=env
            )
            clock.lap("indexes and constraints built")
        finally:
            path.unlink(missing_ok=True)

    # -- the head ---------------------------------------------------------------------------

    def _head(self, job: RestoreInput, segment: Segment) -> bytes:
        plain = bytearray()
        self._read(job, segment, plain.extend, hint=NOTHING_RESTORED)
        return bytes(plain)

    def _toc(self, job: RestoreInput, head: bytes, blocks: list[Segment]) -> archive.Toc:
        """The table of contents, which must list exactly the blocks the snapshot recorded."""
        try:
            toc = archive.read_toc(head)
        except (archive.Incomplete, archive.Unreadable) as exc:
            raise AtlasError(
                f"Snapshot {job.snap.id}'s table of contents cannot be read ({exc or 'short'}).",
                "set ATLAS_RESTORE_JOBS=1 to restore it in one stream",
            ) from None
        if [e.dump_id for e in toc.blocks] != [s.dump_id for s in blocks]:
            raise AtlasError(
                f"Snapshot {job.snap.id}'s recorded blocks do not match its table of contents.",
                "set ATLAS_RESTORE_JOBS=1 to restore it in one stream",
            )
        return toc

    # -- reading one segment ----------------------------------------------------------------

    def _read(
        self,
        job: RestoreInput,
        segment: Segment,
        consume: Callable[[bytes], object] | None,
        stop: threading.Event | None = None,
        *,
        hint: str = "the restore stopped there",
    ) -> None:
        read_segment(self.tools.storage, job.snap, segment, consume, stop, hint=hint)

    def _verify_all(self, job: RestoreInput, blocks: list[Segment]) -> None:
        """Check every block's checksum, N at a time, before the target is touched."""
        work: queue.SimpleQueue[Segment] = queue.SimpleQueue()
        for segment in blocks:
            work.put(segment)
        stop = threading.Event()

        def check() -> None:
            while not stop.is_set():
                try:
                    segment = work.get_nowait()
                except queue.Empty:
                    return
                self._read(job, segment, None, stop, hint=NOTHING_RESTORED)

        _run_lanes([check] * min(self.jobs, max(1, len(blocks))), stop)

    # -- the data lanes ---------------------------------------------------------------------

    def _load(
        self, job: RestoreInput, head: bytes, toc: archive.Toc, blocks: list[Segment], folder: Path
    ) -> None:
        lanes = assign(blocks, self.jobs)
        in_blocks = {s.dump_id for s in blocks}
        others = [e.dump_id for e in toc.entries if e.dump_id not in in_blocks]
        stop = threading.Event()
        lanes_dir = files.private_folder(folder, f".atlas-{job.snap.id}-lanes-")
        try:
            work = []
            for n, lane in enumerate(lanes):
                ids = [s.dump_id for s in lane] + (others if n == 0 else [])
                order = {e.dump_id: i for i, e in enumerate(toc.entries)}
                ids.sort(key=order.__getitem__)  # the order the blocks come in
                listing = lanes_dir / f"lane{n}.list"
                files.write_new(listing, "".join(f"{i}\n" for i in ids).encode())
                work.append(self._lane(job, head, lane, listing, stop, n))
            _run_lanes(work, stop)
        finally:
            shutil.rmtree(lanes_dir, ignore_errors=True)

    def _lane(
        self,
        job: RestoreInput,
        head: bytes,
        segments: list[Segment],
        listing: Path,
        stop: threading.Event,
        n: int,
    ) -> Callable[[], None]:
        def run() -> None:
            dest = job.dest
            argv = [*base_argv(job), "--section=data", "--use-list", str(listing)]
            feed = FeedProcess(
                [*argv, "--dbname", dest.conninfo],
                session_env(dest, job.lock_wait_s),
                secrets=dest.secrets,
                name=f"restore-lane-{n}",
            )

            def send(plain: bytes) -> None:
                # once pg_restore has failed, the block is still read to its end: a
                # checksum mismatch is then named as the cause
                if not feed.failed:
                    feed.feed(plain)

            try:
                feed.feed(head)
                for segment in segments:
                    if stop.is_set():
                        break
                    self._read(job, segment, send, stop)
                    if feed.failed:
                        break
                if stop.is_set():
                    feed.kill()
                    return
                code, stderr = feed.finish()
                if code != 0:
                    raise restore_failed(stderr, code)
                if feed.broken:
                    raise AtlasError("pg_restore stopped reading table data before its end.")
            except BaseException:
                feed.kill()
                raise

        return run


class _Clock:
    """Logs how long each step took (`atlas -v`)."""

    def __init__(self, what: str) -> None:
        self.what, self.at = what, time.monotonic()

    def lap(self, done: str) -> None:
        now = time.monotonic()
        log.info("restore of %s: %s in %.2f s", self.what, done, now - self.at)
        self.at = now


def assign(blocks: list[Segment], lanes: int) -> list[list[Segment]]:
    """Blocks dealt to at most `lanes` lanes, largest first to the least loaded lane (so
    the lanes finish close together); each lane keeps table-of-contents order."""
    count = max(1, min(lanes, len(blocks)))
    loads = [0] * count
    dealt: list[list[Segment]] = [[] for _ in range(count)]
    for segment in sorted(blocks, key=lambda s: s.plain_size, reverse=True):
        n = loads.index(min(loads))
        dealt[n].append(segment)
        loads[n] += segment.plain_size
    return [sorted(lane, key=lambda s: s.plain_start) for lane in dealt]


def _run_lanes(work: list[Callable[[], None]], stop: threading.Event) -> None:
    """Run each on its own thread; on the first error stop the others and raise it (a
    damaged block before anything else, since it is the cause of what follows)."""
    errors: list[BaseException] = []

    def guarded(fn: Callable[[], None]) -> None:
        try:
            fn()
        except BaseException as exc:
            errors.append(exc)
            stop.set()

    threads = [
        threading.Thread(target=guarded, args=(fn,), name=f"lane-{n}", daemon=True)
        for n, fn in enumerate(work)
    ]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    except BaseException:  # Ctrl-C: the lanes stop at their next chunk
        stop.set()
        for t in threads:
            t.join(timeout=30)
        raise
    if errors:
        raise next((e for e in errors if isinstance(e, Damaged)), errors[0])


def read_segment(
    storage: Storage,
    snap: Snapshot,
    segment: Segment,
    consume: Callable[[bytes], object] | None,
    stop: threading.Event | None = None,
    *,
    hint: str = "the restore stopped there",
) -> None:
    """Read one segment, decompress it into `consume` (None: only check it), and raise
    Damaged unless its size, sha256 and zstd frame are what the snapshot recorded.

    A segment zstd rejects is still read to its end, so that the error names the
    checksum mismatch behind it."""
    key = snap.storage_key or ""
    where = storage.location(key)
    what = "table of contents" if segment.dump_id == 0 else f"data block {segment.dump_id}"
    sha, size, plain = hashlib.sha256(), 0, 0
    frames = Frames() if consume is not None else None
    broken: Damaged | None = None
    for chunk in storage.read_range(key, segment.start, segment.size, READ):
        sha.update(chunk)
        size += len(chunk)
        if frames is not None and consume is not None and broken is None:
            try:
                out = frames.decompress(chunk)
            except Damaged as exc:
                broken = exc
                continue
            plain += len(out)
            if out:
                consume(out)
        if stop is not None and stop.is_set():
            return
    span = f"bytes {segment.start:,} to {segment.start + segment.size:,}"
    if size != segment.size or sha.hexdigest() != segment.sha256:
        raise Damaged(
            f"Checksum mismatch in the {what} of {where} ({span}): sha256 "
            f"{sha.hexdigest()[:12]}…, expected {segment.sha256[:12]}…. The artifact was "
            "changed or damaged.",
            hint,
        )
    if broken is not None or (
        frames is not None
        and (not frames.ended or frames.count != 1 or plain != segment.plain_size)
    ):
        raise Damaged(
            f"The {what} of {where} ({span}) does not decompress to the "
            f"{segment.plain_size:,} bytes the snapshot recorded"
            + (f": {broken}" if broken else "."),
            hint,
        )
