"""Ordered worker threads for the streaming pipelines."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Pump(Generic[T]):
    """A thread that hands every chunk put to it, in order, to `fn`.

    It lets hashing and I/O run beside the compressor instead of after it. The queue is
    short, so memory stays flat. An error in `fn` stops the work and is raised to the
    producer on its next `put` or at `close`.
    """

    def __init__(self, fn: Callable[[T], object], *, name: str, depth: int = 4) -> None:
        self._fn = fn
        self._q: queue.Queue[T | None] = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self._closed = False
        self._t = threading.Thread(target=self._run, name=name, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while (chunk := self._q.get()) is not None:
            if self.error is None:
                try:
                    self._fn(chunk)
                except BaseException as exc:
                    self.error = exc

    def put(self, chunk: T) -> None:
        if self.error is not None:
            raise self.error
        self._q.put(chunk)

    def close(self, *, raise_error: bool = True) -> None:
        """Wait until every chunk was handled (or dropped after an error)."""
        if not self._closed:
            self._closed = True
            if not raise_error:
                self.error = self.error or _Stopped()  # skip what is still queued
            self._end()
        if raise_error and self.error is not None:
            raise self.error

    def _end(self) -> None:
        """Queue the end and wait for the thread to take it. A Ctrl-C that cut a `put`
        short in the middle of the queue's Condition.wait can leave a stale waiter behind,
        and the one notify a put makes then wakes nobody (CI saw a stopped restore hang
        here): so every half second, wake all who wait, until the thread is done."""
        while True:
            try:
                self._q.put(None, timeout=0.5)
                break
            except queue.Full:
                self._wake()
        while self._t.is_alive():
            self._t.join(timeout=0.5)
            self._wake()

    def _wake(self) -> None:
        for waiting in (self._q.not_empty, self._q.not_full):
            with waiting:
                waiting.notify_all()


class _Stopped(Exception):
    """Marks a pump that was stopped on purpose; never raised to users."""
