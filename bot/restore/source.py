"""Where a restore's bytes come from: straight from storage (its table of contents
checked before pg_restore reads a byte), or a copy checked whole before anything runs."""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from bot.errors import AtlasError, Damaged
from bot.records import Snapshot
from bot.store import CHUNK, Storage


@dataclass(frozen=True)
class Source:
    """How a restore reads its artifact: `chunks()` gives the stored bytes, `restoring()`
    is told when pg_restore gets its first byte, and `toc` (size, sha256) is the
    stream's start that must be verified before that."""

    chunks: Callable[[], Iterable[bytes]]
    restoring: Callable[[], None]
    toc: tuple[int, str] | None


class CheckedArtifact:
    """Opens the stored artifact and proves its size and sha256 on a thread, while the
    target database is being prepared.

    A restore runs the SQL inside the archive, so a changed archive must not get the
    chance to run any: nothing reads it for a restore before `wait` returned. The
    restore then reads this same open file (a local artifact, or a private download
    from S3), and every checksum is checked again on the way.
    """

    def __init__(self, storage: Storage, snap: Snapshot, work_dir: Path) -> None:
        self._storage, self._snap, self._work = storage, snap, work_dir
        self._fh: BinaryIO | None = None
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._done = False
        self.seconds = 0.0
        self._t = threading.Thread(target=self._run, name="checksum", daemon=True)
        self._t.start()

    def _run(self) -> None:
        started = time.monotonic()
        try:
            assert self._snap.storage_key
            fh = self._storage.open_copy(self._snap.storage_key, self._work)
            self._fh = fh
            sha, size = hashlib.sha256(), 0
            while not self._stop.is_set() and (chunk := fh.read(CHUNK)):
                sha.update(chunk)
                size += len(chunk)
            self._check(size, sha.hexdigest())
            fh.seek(0)
        except BaseException as exc:
            self._error = exc
        finally:
            self.seconds = time.monotonic() - started
            with self._lock:
                self._done = True
                closing = self._stop.is_set()
            if closing:
                self._close_file()

    def _check(self, size: int, sha256: str) -> None:
        snap = self._snap
        where = self._storage.location(snap.storage_key or "")
        if self._stop.is_set():
            return
        if size != snap.size_bytes:
            raise Damaged(
                f"The stored artifact {where} is {size} bytes, but {snap.size_bytes} were written.",
                "nothing was restored from it",
            )
        if sha256 != snap.sha256:
            raise Damaged(
                f"Checksum mismatch for {where}: sha256 {sha256[:12]}…, "
                f"expected {(snap.sha256 or '')[:12]}…. The artifact was changed or damaged.",
                "nothing was restored from it",
            )

    def wait(self) -> BinaryIO:
        self._t.join()
        if isinstance(self._error, OSError):
            raise AtlasError(
                f"Cannot download the artifact to {self._work}: "
                f"{self._error.strerror or self._error}.",
                "free space there or set ATLAS_WORK_DIR",
            )
        if self._error is not None:
            raise self._error
        assert self._fh is not None
        return self._fh

    def close(self) -> None:
        """Release the file; a download still running closes it itself when done."""
        with self._lock:
            self._stop.set()
            done = self._done
        if done:
            self._close_file()

    def _close_file(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                self._fh.close()


def check_toc(held: bytearray, toc: tuple[int, str], where: str) -> None:
    """The stream's start, which holds every statement pg_restore will run, must be what
    the snapshot recorded."""
    size, expected = toc
    if hashlib.sha256(memoryview(held)[:size]).hexdigest() != expected:
        raise Damaged(
            f"The table of contents of {where} does not match its checksum: the artifact "
            "was changed or damaged.",
            "nothing was restored from it",
        )
