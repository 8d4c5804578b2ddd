"""How the bytes reach pg_restore, chosen by `plan.choose` from the job and the settings.

- `blocks.Blocks`: a snapshot stored in segments, restored over N connections, each
  table's data read on its own (see bot/restore/blocks.py). Everything below is for
  snapshots taken before segments were recorded, and encrypted ones.
- `StreamOne`: one pg_restore fed from the stream (ATLAS_RESTORE_JOBS=1).
- `StreamThenIndexes`: schema and data stream into pg_restore; indexes and
  constraints are built afterwards with --jobs from a small file holding just the
  archive's table of contents.
- `Spool`: ATLAS_RESTORE_SPOOL. The whole checked plain dump goes to the work dir first,
  then one pg_restore --jobs N, so table data loads over N connections too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from bot import files
from bot.backup import pipeline
from bot.backup.read import Reader
from bot.errors import AtlasError, Damaged
from bot.pg import Conn
from bot.pump import Pump
from bot.records import Snapshot
from bot.redaction import redact
from bot.restore.source import Source, check_toc
from bot.store import LazyStorage, Storage


@dataclass(frozen=True)
class RestoreInput:
    """What a strategy restores, where, with which pg_restore, from which source."""

    snap: Snapshot
    dest: Conn
    pg_restore: str
    source: Source
    # returns once `dest` exists (a drill's scratch database is created meanwhile)
    ready: Callable[[], None] = field(default=lambda: None)
    lock_wait_s: int = 0  # its sessions' lock_timeout (0: wait as long as it takes)


class Strategy(Protocol):
    """A way to run pg_restore on a snapshot."""

    def restore(self, job: RestoreInput) -> None:
        """Restore `job.snap` into `job.dest`; raise on any checksum or pg_restore error."""
        ...


# Settings of Atlas's own sessions on the scratch or staging database. They change how
# fast a restore runs, never what it restores: no JIT compilation of the foreign-key
# checks' queries (it costs more than it saves there), and commits that do not wait for
# the disk (a restore that dies half-way is a failed restore either way).
SESSION_OPTIONS = ("-c jit=off", "-c synchronous_commit=off")


def session_env(dest: Conn, lock_wait_s: int = 0) -> dict[str, str]:
    """The environment of a pg_restore into `dest`, with Atlas's session settings after
    any PGOPTIONS the operator set, and how long it may wait for a lock."""
    env = dest.env()
    waits = (f"-c lock_timeout={lock_wait_s}s",) if lock_wait_s else ()
    env["PGOPTIONS"] = " ".join(filter(None, (env.get("PGOPTIONS", ""), *SESSION_OPTIONS, *waits)))
    return env


class StrategyTools:
    """What every strategy works with: the checked reader, the storage, and a private
    work folder."""

    def __init__(self, reader: Reader, storage: Storage | LazyStorage, work_dir: Path) -> None:
        self.reader, self._storage, self.work_dir = reader, storage, work_dir

    @property
    def storage(self) -> Storage:
        """Opened when first read: a strategy that starts with the database's own work
        gives an S3 client time to be built meanwhile (`LazyStorage.open_soon`)."""
        return self._storage.get() if isinstance(self._storage, LazyStorage) else self._storage

    def location(self, key: str) -> str:
        return self.storage.location(key)

    def work_file(self, snap: Snapshot, suffix: str) -> tuple[int, str]:
        try:
            return files.temp_file(self.work_dir, f".atlas-{snap.id}-", suffix)
        except OSError as exc:
            raise AtlasError(
                f"Cannot write to {self.work_dir}: {exc.strerror or exc}.",
                "check that the folder exists and is writable, or set ATLAS_WORK_DIR",
            ) from None

    def writing_to(self, fh: BinaryIO) -> Callable[[bytes], None]:
        """`fh.write`, with a full or failing work disk said in plain words."""
        work = self.work_dir

        def write(chunk: bytes) -> None:
            try:
                fh.write(chunk)
            except OSError as exc:
                raise AtlasError(
                    f"Cannot write to {work}: {exc.strerror or exc}.",
                    "free space there or set ATLAS_WORK_DIR",
                ) from None

        return write

    def stream_into(
        self, argv: list[str], job: RestoreInput, *, toc: tuple[str, BinaryIO] | None = None
    ) -> None:
        """Run pg_restore on the decompressed artifact fed through its stdin; raise on any
        checksum or pg_restore error. The artifact is opened once pg_restore has started
        (pg_restore runs nothing before it reads its input).

        With `toc` (pg_restore, file), the start of the stream is also written to the
        file until `pg_restore --list` has read the whole table of contents from it.
        """
        dest, source, snap = job.dest, job.source, job.snap
        job.ready()
        restore = pipeline.FeedProcess(
            [*argv, "--dbname", dest.conninfo],
            session_env(dest, job.lock_wait_s),
            secrets=dest.secrets,
            name="pg-restore",
        )
        lister: pipeline.TocProbe | None = None
        copy: Pump[bytes] | None = None
        if toc is not None:
            lister = pipeline.TocProbe(toc[0], dest.env())
            copy = Pump(self.writing_to(toc[1]), name="toc-copy")
        feed = _Feed(restore, source, self.location(snap.storage_key or ""), lister, copy)
        try:
            self.reader.read(snap, feed, source=source.chunks())
            feed.end()
            code, stderr = restore.finish()
            if code != 0:
                raise restore_failed(stderr, code)
        except BaseException:
            restore.kill()
            feed.kill()
            raise


class _Feed:
    """Where `stream_into` hands each decompressed chunk: held until the table of contents
    is verified (nothing reaches pg_restore before its SQL is), then to pg_restore, and to
    the table of contents' file and lister until the lister has read all of it."""

    def __init__(
        self,
        restore: pipeline.FeedProcess,
        source: Source,
        where: str,
        lister: pipeline.TocProbe | None,
        copy: Pump[bytes] | None,
    ) -> None:
        self.restore, self.source, self.where = restore, source, where
        self.lister, self.copy = lister, copy
        self.held: bytearray | None = bytearray() if source.toc is not None else None
        self.fed = False
        self.stopped = False

    def __call__(self, chunk: bytes) -> None:
        if self.stopped:
            return  # pg_restore gave up: the rest is only read to check its checksums
        if self.held is not None and self.source.toc is not None:
            self.held += chunk
            if len(self.held) < self.source.toc[0]:
                return
            check_toc(self.held, self.source.toc, self.where)
            chunk, self.held = bytes(self.held), None
        if not self.fed:
            self.fed = True
            self.source.restoring()
        if self.restore.failed:
            # pg_restore exited on an error. Damaged data is one cause: read on to the
            # end, so that a checksum mismatch is named as what it is.
            self.stopped = True
            if self.lister is not None:
                self.lister.kill()
                self.lister = None
            return
        self.restore.feed(chunk)
        if self.lister is not None and self.copy is not None:
            self.copy.put(chunk)  # the file holds at least what the lister was given
            if self.lister.feed(chunk):
                _finish_toc(self.lister, self.copy)
                self.lister = None

    def end(self) -> None:
        """The artifact was read whole: the table of contents must have been in it."""
        if self.held is not None:
            raise Damaged(f"The archive {self.where} ends inside its table of contents.")
        if self.lister is not None and self.copy is not None:
            _finish_toc(self.lister, self.copy)  # a short archive: the file holds all of it
            self.lister = None

    def kill(self) -> None:
        if self.lister is not None:
            self.lister.kill()
        if self.copy is not None:
            self.copy.close(raise_error=False)


def base_argv(job: RestoreInput) -> list[str]:
    """Every restore goes into a database made for it (a drill's scratch database, a
    refresh's new one), so nothing is cleaned first."""
    return [job.pg_restore, "--no-owner", "--no-acl", "--exit-on-error"]


class StreamOne:
    """One pg_restore reading the checked stream."""

    def __init__(self, tools: StrategyTools) -> None:
        self.tools = tools

    def restore(self, job: RestoreInput) -> None:
        self.tools.stream_into(base_argv(job), job)


class StreamThenIndexes:
    """The data streamed first, then indexes and constraints in parallel."""

    def __init__(self, tools: StrategyTools, jobs: int) -> None:
        self.tools, self.jobs = tools, jobs

    def restore(self, job: RestoreInput) -> None:
        base = base_argv(job)
        fd, name = self.tools.work_file(job.snap, ".toc")
        toc = Path(name)
        try:
            with os.fdopen(fd, "wb") as fh:
                self.tools.stream_into(
                    [*base, "--section=pre-data", "--section=data"],
                    job,
                    toc=(job.pg_restore, fh),
                )
            restore_file(
                [*base, "--section=post-data", f"--jobs={self.jobs}"],
                job.dest,
                toc,
                env=session_env(job.dest, job.lock_wait_s),
            )
        finally:
            toc.unlink(missing_ok=True)


class Spool:
    """The artifact spooled to disk, then a parallel pg_restore."""

    def __init__(self, tools: StrategyTools, jobs: int) -> None:
        self.tools, self.jobs = tools, jobs

    def restore(self, job: RestoreInput) -> None:
        """Decompress the whole artifact into a private file in the work dir, checking every
        checksum, then restore it with `pg_restore --jobs N`: table data loads over N
        connections, at the cost of disk space for the plain dump."""
        work = self.tools.work_dir
        need = int(job.snap.raw_size_bytes or 0)
        free = _free_bytes(work)
        if free is not None and need > free:
            raise AtlasError(
                f"ATLAS_RESTORE_SPOOL needs {need / 1e9:.1f} GB free in {work} for the plain "
                f"dump; {free / 1e9:.1f} GB are.",
                "free space there, point ATLAS_WORK_DIR at a larger disk, or unset "
                "ATLAS_RESTORE_SPOOL to stream instead",
            )
        fd, name = self.tools.work_file(job.snap, ".dump")
        spooled = Path(name)
        try:
            with os.fdopen(fd, "wb") as fh:
                self.tools.reader.read(
                    job.snap, self.tools.writing_to(fh), source=job.source.chunks()
                )
            job.ready()
            job.source.restoring()
            restore_file(
                [*base_argv(job), f"--jobs={self.jobs}"],
                job.dest,
                spooled,
                env=session_env(job.dest, job.lock_wait_s),
            )
        finally:
            spooled.unlink(missing_ok=True)


def restore_file(
    argv: list[str], dest: Conn, path: Path, *, env: dict[str, str] | None = None
) -> None:
    """pg_restore ARGV of a file into `dest`; raise with its (redacted) words on failure."""
    proc = subprocess.run(
        [*argv, "--dbname", dest.conninfo, str(path)],
        env=env if env is not None else session_env(dest),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise restore_failed(redact(proc.stderr, dest.secrets), proc.returncode)


def restore_failed(stderr: str, code: int) -> AtlasError:
    """pg_restore's own words: from its last ERROR on (the statement it ran is left
    out), else its last lines."""
    lines = [ln.removeprefix("pg_restore: ").strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [n for n, ln in enumerate(lines) if "ERROR:" in ln]
    if errors:
        first = lines[errors[-1]]
        shown = [first[first.index("ERROR:") :]]
        for ln in lines[errors[-1] + 1 : errors[-1] + 3]:
            if ln.startswith(("Command was:", "CONTEXT:", "LINE ", "HINT:")):
                break
            shown.append(ln)
    else:
        shown = lines[-3:]
    return AtlasError(
        "pg_restore stopped on an error: " + ("; ".join(shown) or f"exit {code}"),
        "a restore that succeeds with errors is a failed restore",
    )


def _finish_toc(lister: pipeline.TocProbe, copy: Pump[bytes]) -> None:
    """The copy is complete once the lister read the whole table of contents."""
    copy.close()
    lister.verified()


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None  # a missing folder: creating the file says so clearly
