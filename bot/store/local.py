"""Artifacts in a local folder: written under a hidden name, read back while written,
renamed on commit."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from bot import files
from bot.errors import AtlasError, NotFound
from bot.pump import Pump
from bot.store.base import CHUNK, ArtifactWriter, Pending, StoredObject


def _disk_error(exc: OSError, path: Path) -> AtlasError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return AtlasError(
            f"The disk is full while writing {path.parent} ({exc.strerror}).",
            "free space or point ATLAS_STORAGE elsewhere; the partial file was removed",
        )
    return AtlasError(f"Cannot write {path}: {exc.strerror or exc}.")


class LocalWriter:
    """Writes `final` under a hidden temporary name; `commit` makes it durable and renames it.

    With `read_back`, a second thread reads the file back just behind the writer,
    compares it byte for byte with what was written, and hashes what the filesystem
    returned: the proof that the stored bytes are the streamed ones costs no extra pass
    at the end, and the stream itself is hashed only once. Writeback is started every
    few MiB, so the final fsync has little left to flush.
    """

    WRITEBACK_EVERY = 8 << 20

    def __init__(
        self, final: Path, *, read_back: bool = False, access: files.Access = files.PRIVATE
    ) -> None:
        self.final = final
        try:
            files.make_dirs(final.parent, access)
            self.tmp, self._fh = files.create_beside(final, access)
        except OSError as exc:
            raise _disk_error(exc, final) from None
        self.pending_ref = str(self.tmp)
        self.size = 0
        self.cleaned = False
        self._flushed = 0
        self._reader = _ReadBehind(self.tmp) if read_back else None

    def write(self, data: bytes) -> None:
        if self._reader is not None and type(data) is not bytes:
            data = bytes(data)  # kept for the comparison: the caller may reuse its buffer
        try:
            view = memoryview(data)
            while view:
                n = self._fh.write(view)
                view = view[n:]
        except OSError as exc:
            self.abort()
            raise _disk_error(exc, self.tmp) from None
        self.size += len(data)
        if self.size - self._flushed >= self.WRITEBACK_EVERY:
            _start_writeback(self._fh.fileno(), self._flushed, self.size - self._flushed)
            self._flushed = self.size
        if self._reader is not None:
            self._reader.expect(data)

    def commit(self) -> StoredObject:
        """Durable and renamed, or an AtlasError and nothing left behind."""
        try:
            os.fsync(self._fh.fileno())
            self._fh.close()
            sha256 = self._reader.finish() if self._reader is not None else None
            os.replace(self.tmp, self.final)
            dir_fd = os.open(self.final.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            self.abort()
            raise _disk_error(exc, self.final) from None
        except BaseException:
            self.abort()
            raise
        return StoredObject(self.size, sha256=sha256, read_back=sha256 is not None)

    def abort(self) -> None:
        if self._reader is not None:
            self._reader.stop()
        with contextlib.suppress(OSError):
            self._fh.close()
        try:
            self.tmp.unlink()
        except FileNotFoundError:
            pass
        except OSError:
            return  # left behind: the pending ref stays in the catalog for a later try
        self.cleaned = True


class _ReadBehind:
    """Reads a file back while it is being written: every byte must be the one written.

    It trails the writer by at least a chunk, so it reads what the filesystem holds
    rather than racing the write, and it holds only a few chunks for the comparison.
    """

    LAG = 4  # batches of >= 1 MiB held at most; the writer waits beyond that

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDONLY)
        self._sha = hashlib.sha256()
        self._pos = 0  # compared and hashed up to here
        self._batch: list[bytes] = []
        self._batched = 0
        self._pump: Pump[list[bytes]] = Pump(self._compare, name="read-back", depth=self.LAG)

    def expect(self, data: bytes) -> None:
        self._batch.append(data)
        self._batched += len(data)
        if self._batched >= CHUNK:
            self._pump.put(self._batch)
            self._batch, self._batched = [], 0

    def _compare(self, pieces: list[bytes]) -> None:
        for data in pieces:
            got = _pread_exactly(self._fd, len(data), self._pos)
            if got != data:  # bytes == bytes is a memcmp
                at = self._pos + next(
                    (i for i, (a, b) in enumerate(zip(got, data, strict=False)) if a != b),
                    min(len(got), len(data)),
                )
                raise AtlasError(
                    f"The stored file {self.path} does not read back as what was written "
                    f"(first difference at byte {at:,}).",
                    "check the disk and the filesystem holding ATLAS_STORAGE; nothing was kept",
                )
            self._sha.update(got)
            self._pos += len(got)

    def finish(self) -> str:
        """The sha256 of the file, which holds exactly the written bytes and nothing more."""
        try:
            if self._batch:
                self._pump.put(self._batch)
            self._pump.close()
            if os.pread(self._fd, 1, self._pos):
                raise AtlasError(
                    f"The stored file {self.path} is longer than what was written.",
                    "another process may be writing to ATLAS_STORAGE; nothing was kept",
                )
        finally:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        return self._sha.hexdigest()

    def stop(self) -> None:
        self._pump.close(raise_error=False)
        with contextlib.suppress(OSError):
            os.close(self._fd)


def _pread_exactly(fd: int, size: int, offset: int) -> bytes:
    """`size` bytes at `offset`, or fewer only where the file ends."""
    data = os.pread(fd, size, offset)
    if len(data) == size or not data:
        return data
    parts = [data]
    got = len(data)
    while got < size and (more := os.pread(fd, size - got, offset + got)):
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask Linux to start writing this range to disk now (sync_file_range), as databases
    do, so the closing fsync does not wait for the whole file. A no-op elsewhere."""
    global _sync_file_range
    if _sync_file_range is None:
        _sync_file_range = _load_sync_file_range()
    if _sync_file_range is not False:
        _sync_file_range(fd, offset, length, 2)  # SYNC_FILE_RANGE_WRITE: start, don't wait


def _load_sync_file_range() -> Any:
    try:
        import ctypes

        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_sync_file_range: Any = None


class LocalStorage:
    """Artifacts in a folder."""

    kind = "local"

    def __init__(self, root: Path, access: files.Access = files.PRIVATE) -> None:
        self.root = root.expanduser().resolve()
        self.access = access

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise AtlasError(f"Refusing a storage key outside {self.root}: {key!r}")
        return path

    def location(self, key: str) -> str:
        return str(self._path(key))

    def writer(self, key: str) -> LocalWriter:
        return LocalWriter(self._path(key), read_back=True, access=self.access)

    def put_bytes(self, key: str, data: bytes) -> None:
        w = LocalWriter(self._path(key), access=self.access)
        w.write(data)
        w.commit()

    def read(self, key: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        path = self._path(key)
        try:
            fh = open(path, "rb", buffering=0)  # noqa: SIM115 - closed below
        except FileNotFoundError:
            raise NotFound(f"The artifact {path} is missing from storage.") from None
        with fh:
            while chunk := fh.read(chunk_size):
                yield chunk

    def read_range(
        self, key: str, start: int, size: int, chunk_size: int = CHUNK
    ) -> Iterator[bytes]:
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise NotFound(f"The artifact {path} is missing from storage.") from None
        try:
            end = start + size
            while start < end and (chunk := os.pread(fd, min(chunk_size, end - start), start)):
                start += len(chunk)
                yield chunk
        finally:
            os.close(fd)

    def list(self, prefix: str) -> Iterator[str]:
        """Keys of the finished files under `prefix` (never hidden `.partial` ones)."""
        base = self.root / prefix if prefix else self.root
        if not base.is_dir():
            return
        for path in sorted(base.rglob("*")):
            rel = path.relative_to(self.root)
            if path.is_file() and not any(part.startswith(".") for part in rel.parts):
                yield rel.as_posix()

    def open_copy(self, key: str, work_dir: Path) -> BinaryIO:
        """The artifact itself, opened once: later reads see this file even if another
        is renamed into its place."""
        path = self._path(key)
        try:
            return open(path, "rb", buffering=0)
        except FileNotFoundError:
            raise NotFound(f"The artifact {path} is missing from storage.") from None

    def stat(self, key: str) -> StoredObject | None:
        try:
            return StoredObject(self._path(key).stat().st_size)
        except FileNotFoundError:
            return None

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def discard_pending(self, pending_ref: str) -> bool:
        path = Path(pending_ref)
        if not (path.name.endswith(".partial") and self.root in path.resolve().parents):
            return True  # not ours to remove
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError:
            return False
        return True

    def discard_unfinished(self, key: str) -> bool:
        """Remove every unfinished write of `key`, recorded or not (a process killed
        between opening the file and recording its name leaves one nobody knows)."""
        path = self._path(key)
        return all(
            self.discard_pending(str(p)) for p in path.parent.glob(f".{path.name}.*.partial")
        )

    def pending(self, prefix: str) -> Iterator[Pending]:
        """Hidden `.partial` files under `prefix`: writes that never finished."""
        base = self.root / prefix if prefix else self.root
        if not base.is_dir():
            return
        for path in base.rglob(".*.partial"):
            with contextlib.suppress(OSError):
                yield Pending(str(path), path.stat().st_mtime)

    def expected_etag(self, writer: ArtifactWriter) -> str | None:
        return None
