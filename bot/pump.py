"""Ordered worker threads for the streaming pipelines."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
STOP_WAIT_S = 10.0  # how long a stopped pump waits for its thread


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
        """Wait until every chunk was handled (or dropped after an error). A stop
        (`raise_error=False`, an abort path) waits at most STOP_WAIT_S: the thread is a
        daemon, and a stopped job must not hang its process."""
        if not self._closed:
            self._closed = True
            if not raise_error:
                self.error = self.error or _Stopped()  # skip what is still queued
            self._end(None if raise_error else time.monotonic() + STOP_WAIT_S)
        if raise_error and self.error is not None:
            raise self.error

    def _end(self, deadline: float | None) -> None:
        """Queue the end and wait for the thread to take it. A Ctrl-C that lands inside a
        queue operation can cost the thread its wake-up (CI saw a stopped `restore
        --table` wait here for ever, the thread in get() with the end queued): so every
        half second, wake all who wait, and queue the end again if the queue is empty."""
        while not self._offer(None):
            if deadline is not None and time.monotonic() > deadline:
                return
        while self._t.is_alive():
            self._t.join(timeout=0.5)
            if deadline is not None and time.monotonic() > deadline:
                return
            if self._q.empty():
                self._offer(None, wait=0)

    def _offer(self, item: T | None, wait: float = 0.5) -> bool:
        """Put `item` within `wait` seconds, waking everyone who waits on the queue."""
        try:
            self._q.put(item, timeout=wait)  # 0: only if there is room now
            return True
        except queue.Full:
            return False
        finally:
            for waiting in (self._q.not_empty, self._q.not_full):
                with waiting:
                    waiting.notify_all()


class _Stopped(Exception):
    """Marks a pump that was stopped on purpose; never raised to users."""
