"""The operations Slack and the CLI share: background work with its answer, and the
announcements every surface needs."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from bot.errors import AtlasError
from bot.records import Snapshot, SnapshotStatus, now
from bot.services import Services
from tests.support.helpers import services_for, settings_for


@pytest.fixture
def services(tmp_path: Path, slack_api) -> Services:
    s = services_for(
        settings_for("postgresql://a@127.0.0.1:1/app", tmp_path, ATLAS_CHANNEL="CSVC"),
        slack_api.client(),
    )
    yield s
    s.shutdown()


def _wait(future) -> None:
    future.result(timeout=10)


def test_later_hands_on_the_result_or_the_error(services: Services) -> None:
    got: list[object] = []
    done = threading.Event()

    def record(value: object) -> None:
        got.append(value)
        done.set()

    _wait(services.background.later(lambda: 42, record, record))
    _wait(
        services.background.later(lambda: (_ for _ in ()).throw(AtlasError("nope")), record, record)
    )
    _wait(services.background.later(lambda: 1 / 0, record, record))
    assert got[0] == 42
    assert isinstance(got[1], AtlasError) and str(got[1]) == "nope"
    assert isinstance(got[2], AtlasError) and "ZeroDivisionError" in str(got[2])


def test_damage_is_announced_with_the_good_snapshot_to_use(services: Services, slack_api) -> None:
    good = Snapshot(
        id="20261129-000000-0001", database="app", status=SnapshotStatus.OK, started_at=now()
    )
    bad = Snapshot(id="20261129-000000-0002", database="app", error="Checksum mismatch")
    assert services.catalog.add_snapshot(good)
    services.reported.damaged(bad, "d-1")
    call = slack_api.wait_for("chat.postMessage")
    assert call["params"]["channel"] == "CSVC"
    assert bad.id in call["params"]["text"] and good.id in str(call["params"]["blocks"])


def test_recovery_is_announced_on_the_original_message(services: Services, slack_api) -> None:
    import socket
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()
    services.catalog.begin_snapshot(
        Snapshot(
            id="s-dead",
            database="app",
            owner=f"{socket.gethostname()}:{dead.pid}",
            slack_channel="CSVC",
            slack_ts="1.0001",
        )
    )
    [snap] = services.reported.recover()
    assert snap.status == SnapshotStatus.INTERRUPTED
    assert slack_api.calls("chat.update")[-1]["params"]["ts"] == "1.0001"
    assert "interrupted" in slack_api.calls("chat.postMessage")[-1]["params"]["text"]
