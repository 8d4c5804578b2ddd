"""Ctrl-C held back for a few statements that must not be cut in half: a file opened in a
destination must also be recorded where the abort path can find it."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Within the block a SIGINT is noted, not raised; it is raised as KeyboardInterrupt
    when the block ends. Off the main thread (where Python delivers no signal) it does
    nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []

    def note(signum: int, _frame: FrameType | None) -> None:
        came.append(signum)

    before = signal.signal(signal.SIGINT, note)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)
    if came:
        raise KeyboardInterrupt
