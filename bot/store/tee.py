"""A writer whose every byte also goes to a callback: how copies stream beside the
snapshot's own write (`bot/copies/streams.py` is the callback)."""

from __future__ import annotations

from collections.abc import Callable

from bot.store.base import ArtifactWriter, StoredObject


class Tee:
    """`inner` writes and commits; `feed` sees the same bytes, after `inner` took them."""

    def __init__(self, inner: ArtifactWriter, feed: Callable[[bytes], None]) -> None:
        self.inner, self.feed = inner, feed

    @property
    def pending_ref(self) -> str:
        return self.inner.pending_ref

    @property
    def size(self) -> int:
        return self.inner.size

    @property
    def cleaned(self) -> bool:
        return self.inner.cleaned

    def write(self, data: bytes) -> None:
        self.inner.write(data)
        self.feed(data)

    def commit(self) -> StoredObject:
        return self.inner.commit()

    def abort(self) -> None:
        self.inner.abort()
