"""Where artifacts live: a local folder or an S3 bucket, behind one small interface
(`base.Storage`), plus client-side encryption around any writer (`crypto`)."""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from bot import files
from bot.errors import AtlasError
from bot.store.base import CHUNK, ArtifactWriter, Pending, Storage, StoredObject

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.destinations import Destination


def open_storage(
    spec: str,
    sse: str | None = None,
    kms_key_id: str | None = None,
    access: files.Access = files.PRIVATE,
) -> Storage:
    """`s3://bucket/prefix` or a folder path; `sse` asks S3 to encrypt every upload, and
    `access` says who on the host may read a folder's files."""
    if spec.startswith("s3://"):
        bucket, _, prefix = spec[5:].partition("/")
        if not bucket:
            raise AtlasError(f"ATLAS_STORAGE={spec!r} names no bucket.", "use s3://bucket/prefix")
        from bot.store.s3 import S3Storage

        return S3Storage(bucket, prefix.strip("/"), sse=sse, kms_key_id=kms_key_id)
    from bot.store.local import LocalStorage

    return LocalStorage(Path(spec), access)


def open_destination(dest: Destination, access: files.Access = files.PRIVATE) -> Storage:
    """A copy destination's storage, with its own endpoint and credentials."""
    if not dest.is_s3:
        return open_storage(dest.url, access=access)
    from bot.destinations import env_prefix
    from bot.store.s3 import Account, S3Storage

    bucket, _, prefix = dest.url[5:].partition("/")
    account = Account(
        dest.endpoint_url,
        dest.region,
        dest.profile,
        dest.access_key_id,
        dest.secret_access_key,
        env_prefix(dest.name),
    )
    return S3Storage(bucket, prefix.strip("/"), None, dest.sse, dest.kms_key_id, account)


class LazyStorage:
    """The configured storage, opened on first use: `atlas list` never imports boto3."""

    def __init__(
        self, settings: Settings, storage: Storage | None = None, copy: str | None = None
    ) -> None:
        self._settings = settings
        self._storage = storage
        self._lock = threading.Lock()
        self.copy = copy  # read from this destination of ATLAS_COPIES (`--from`), not storage

    def get(self) -> Storage:
        with self._lock:
            if self._storage is None:
                st = self._settings
                access = files.Access.for_group(st.file_group)
                if self.copy is not None:
                    self._storage = open_destination(st.copies[self.copy], access)
                else:
                    self._storage = open_storage(st.storage, st.s3_sse, st.s3_kms_key_id, access)
            return self._storage

    def open_soon(self) -> None:
        """Open the storage on a thread: an S3 client takes a few hundred ms to import and
        build, which the caller's own waits (creating a scratch database) can hide. `get`
        waits for it, and raises whatever opening it raised."""
        if self._storage is not None:
            return

        def work() -> None:
            with contextlib.suppress(Exception):  # get() tries again and raises it there
                self.get()

        threading.Thread(target=work, name="atlas-open-storage", daemon=True).start()


__all__ = [
    "CHUNK",
    "ArtifactWriter",
    "Pending",
    "Storage",
    "LazyStorage",
    "StoredObject",
    "open_destination",
    "open_storage",
]
