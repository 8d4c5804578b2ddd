"""Listener unit tests: each listener called directly, as the Bolt starter template does,
with mocked `ack`/`respond` and a real Services on a catalog of its own."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest.mock import Mock

import pytest
from slack_bolt import Ack, BoltContext, Respond

from bot.records import Snapshot, SnapshotStatus, now
from bot.services import Services
from tests.support.helpers import services_for, settings_for

NO_SERVER = "postgresql://atlas@127.0.0.1:1/app?connect_timeout=1"


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    s = services_for(settings_for(NO_SERVER, tmp_path, ATLAS_ALLOWED_USERS="U_OK,U_APPROVER"))
    yield s
    s.shutdown()


@pytest.fixture
def context(services: Services) -> BoltContext:
    return BoltContext({"services": services, "bot_user_id": "UBOT"})


@pytest.fixture
def ack() -> Mock:
    return Mock(spec=Ack)


@pytest.fixture
def respond() -> Mock:
    return Mock(spec=Respond)


def good_snapshot(services: Services, snap_id: str = "20261129-010203-abcd") -> Snapshot:
    """A good snapshot in the catalog (no artifact: enough for listeners that only read)."""
    snap = Snapshot(
        id=snap_id,
        database="app",
        status=SnapshotStatus.OK,
        started_at=now(),
        size_bytes=1234,
        storage_key=f"production/app/{snap_id}.dump.zst",
        sha256="0" * 64,
        verified_at=now(),
        manifest={"tables": {}, "sequences": {}, "extensions": {}},
    )
    assert services.catalog.add_snapshot(snap)
    return snap


def replied(mock: Mock) -> str:
    """The text of the one call `ack` or `respond` got."""
    mock.assert_called_once()
    return str(mock.call_args.kwargs.get("text"))


def eventually(check: Callable[[], Any], timeout: float = 10) -> Any:
    deadline = time.time() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.time() > deadline:
                raise
            time.sleep(0.02)
