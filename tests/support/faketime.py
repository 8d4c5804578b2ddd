"""libfaketime for tests that run the real bot at a shifted wall-clock time."""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Iterator

import pytest

LIBFAKETIME = next(iter(sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))), None)
needs_faketime = pytest.mark.skipif(
    LIBFAKETIME is None, reason="needs libfaketime (Debian package faketime)"
)


def faked(when: str, env: dict[str, str]) -> dict[str, str]:
    """libfaketime preloaded directly (not the `faketime` wrapper, which forks), so signals
    reach the bot itself; the clock starts at `when` and runs on."""
    return {
        **env,
        "LD_PRELOAD": LIBFAKETIME or "",
        "FAKETIME": f"@{when}",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "FAKETIME_NO_CACHE": "1",
    }


@pytest.fixture
def no_faketime_leftovers() -> Iterator[None]:
    """libfaketime shares its clock with child processes through /dev/shm objects named
    after the process that created them, which stay behind when that process is killed.
    Remove those of processes that are gone."""
    yield
    for path in glob.glob("/dev/shm/faketime_shm_*") + glob.glob("/dev/shm/sem.faketime_sem_*"):
        pid = path.rsplit("_", 1)[-1]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            with contextlib.suppress(OSError):
                os.unlink(path)
