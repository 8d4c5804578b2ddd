"""Snapshot ids are a second and four random hex digits: two snapshots of one second share
one once in 65,536 pairs, which a large fleet meets a few times a year. The second is given
a new id, never failed as 'kept starting at the same moment'."""

from __future__ import annotations

import pytest

from bot.backup.layout import SNAPSHOT_ID, fresh
from bot.errors import Busy, IdTaken
from bot.records import Snapshot
from tests.support.helpers import services_for, settings_for

TAKEN = "20261207-010339-d520"


def test_an_id_another_database_took_is_drawn_again(pg_url, tmp_path):
    catalog = services_for(settings_for(pg_url, tmp_path)).catalog
    catalog.begin_snapshot(Snapshot(id=TAKEN, database="other"))
    with pytest.raises(IdTaken):
        catalog.begin_snapshot(Snapshot(id=TAKEN, database="app"))

    drawn: list[str] = []

    def record(snap_id: str) -> Snapshot:  # the first draw is the unlucky one
        drawn.append(snap_id)
        return Snapshot(id=TAKEN if len(drawn) == 1 else snap_id, database="app")

    snap = fresh(catalog.begin_snapshot, record)
    assert len(drawn) == 2 and snap.id == drawn[1] != TAKEN
    assert SNAPSHOT_ID.fullmatch(snap.id) and catalog.get_snapshot(snap.id).status == "running"
    with pytest.raises(Busy):  # one running per database still holds, whatever the id
        fresh(catalog.begin_snapshot, lambda snap_id: Snapshot(id=snap_id, database="app"))
