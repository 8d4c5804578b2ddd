"""`bot.pump.Pump`: a stopped pipeline's close() must end, whatever a Ctrl-C left behind."""

from __future__ import annotations

import threading
import time

import pytest

from bot.pump import Pump

pytestmark = pytest.mark.no_catalog


def _waiting(pump: Pump[bytes]) -> None:
    """Until the pump's thread waits in get() for a chunk."""
    deadline = time.monotonic() + 5
    while not pump._q.not_empty._waiters:  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "the pump's thread never waited"
        time.sleep(0.01)


@pytest.mark.parametrize("raise_error", [False, True])
def test_close_ends_when_a_stale_waiter_takes_the_notify(raise_error: bool) -> None:
    """CPython's Condition.wait, cut short by KeyboardInterrupt between its steps, can
    leave its waiter, still locked, in the condition's list; the next notify() releases
    that one and wakes nobody. CI saw a Ctrl-C'd `restore --table` wait there forever.
    Here the stale waiter is put where such a wait leaves it, before the thread's own."""
    seen: list[bytes] = []
    pump: Pump[bytes] = Pump(seen.append, name="test-pump")
    pump.put(b"a")
    _waiting(pump)
    stale = threading.Lock()
    stale.acquire()
    pump._q.not_empty._waiters.appendleft(stale)  # type: ignore[attr-defined]
    ended = threading.Event()
    closing = threading.Thread(
        target=lambda: (pump.close(raise_error=raise_error), ended.set()), daemon=True
    )
    closing.start()
    assert ended.wait(5), "close() waited for a thread that nobody woke"
    assert seen == [b"a"]
