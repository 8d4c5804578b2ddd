"""What every storage offers: a writer that never exposes a half-written object under
its final name, reads in chunks, listings, and the unfinished writes a crash left."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

CHUNK = 1 << 20


@dataclass(frozen=True)
class StoredObject:
    """An object in storage: its size, and its server-side encryption."""

    size: int
    etag: str | None = None
    sha256: str | None = None  # of the stored bytes, when the writer computed it
    read_back: bool = False  # the writer read the object back: exactly the bytes written
    sse: str | None = None  # the server-side encryption S3 reports for it


class ArtifactWriter(Protocol):
    """An artifact being written: committed under its final name only when whole."""

    @property
    def pending_ref(self) -> str:
        """Enough to clean up after a crash."""
        ...

    @property
    def size(self) -> int:
        """Bytes written so far."""
        ...

    @property
    def cleaned(self) -> bool:
        """After abort: nothing is left behind (False: keep pending_ref, retry later)."""
        ...

    def write(self, data: bytes) -> None: ...
    def commit(self) -> StoredObject: ...
    def abort(self) -> None: ...


@dataclass(frozen=True)
class Pending:
    """An unfinished write found in storage: a hidden partial file or an open upload."""

    ref: str  # what discard_pending takes
    started: float  # epoch seconds

    @property
    def name(self) -> str:
        """The key it writes (an upload's ref also carries its upload id)."""
        return self.ref.split("\n")[0]


class Storage(Protocol):
    """Where artifacts live (a folder or S3); `LazyStorage` picks one from the settings."""

    kind: str

    def location(self, key: str) -> str: ...
    def writer(self, key: str) -> ArtifactWriter: ...
    def put_bytes(self, key: str, data: bytes) -> None: ...
    def read(self, key: str, chunk_size: int = CHUNK) -> Iterator[bytes]: ...
    def read_range(
        self, key: str, start: int, size: int, chunk_size: int = CHUNK
    ) -> Iterator[bytes]:
        """`size` bytes from `start` (fewer only where the object ends)."""
        ...

    def list(self, prefix: str) -> Iterator[str]: ...
    def open_copy(self, key: str, work_dir: Path) -> BinaryIO: ...
    def stat(self, key: str) -> StoredObject | None: ...
    def delete(self, key: str) -> None: ...
    def discard_pending(self, pending_ref: str) -> bool: ...
    def discard_unfinished(self, key: str) -> bool: ...
    def pending(self, prefix: str) -> Iterator[Pending]: ...
    def expected_etag(self, writer: ArtifactWriter) -> str | None: ...
