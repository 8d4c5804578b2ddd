"""Every operation, from every entry point, on every topology and storage: all pairs of
them, each case asserting what the operation did and the final state of every message
Atlas left in Slack. See tests/matrix/README.md for the axes and what a run costs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.matrix.entries import ENTRY_POINTS
from tests.matrix.operations import (
    ENTRIES,
    OFFERED,
    OPERATIONS,
    STORAGES,
    TOPOLOGIES,
    allowed,
    prepare,
)
from tests.matrix.pairs import all_pairs, pairs_of
from tests.matrix.world import Servers, World, world
from tests.support.catalogs import CatalogServer
from tests.support.pg import PgCluster
from tests.support.slack import FakeSlackApi

pytestmark = pytest.mark.own_catalog  # the topology picks its catalog

AXES = (tuple(OPERATIONS), ENTRIES, TOPOLOGIES, STORAGES)
CASES = all_pairs(AXES, allowed)
# a Slack message left in one of these states says work is still going on
UNFINISHED = (":hourglass_flowing_sand:", ":gear:", ":raised_hand:")


@pytest.fixture(scope="module")
def servers(pg: PgCluster, catalog_server: CatalogServer) -> Iterator[Servers]:
    with PgCluster() as second, PgCluster() as staging:
        yield Servers(pg, second, staging, catalog_server)


def test_the_cases_cover_every_allowed_pair() -> None:
    import itertools

    every = {p for c in itertools.product(*AXES) if allowed(c) for p in pairs_of(c)}
    covered = set().union(*(pairs_of(c) for c in CASES))
    assert covered == every and all(allowed(c) for c in CASES)
    for axis, values in enumerate(AXES):  # no axis is dropped: each value is in a case
        assert {c[axis] for c in CASES} == set(values)


def _final_messages_are_final(w: World) -> None:
    for message in w.slack.messages():
        text = str(message.get("text", ""))
        assert not text.startswith(UNFINISHED), (text, w.replica_logs())


@pytest.mark.parametrize(
    ("op", "entry", "topology", "storage"), CASES, ids=["-".join(c) for c in CASES]
)
def test_matrix(
    op: str,
    entry: str,
    topology: str,
    storage: str,
    servers: Servers,
    s3_server: str,
    slack_api: FakeSlackApi,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with world(topology, storage, servers, tmp_path, slack_api, s3_server) as w:
        for name, value in w.env.items():  # the in-process scheduler reads AWS_* as boto3 does
            if name.startswith("AWS_"):
                monkeypatch.setenv(name, value)
        case = prepare(op, w)
        operation = OPERATIONS[op]
        said = ENTRY_POINTS[entry](operation, w, case)
        operation.check(w, case, said)
        _final_messages_are_final(w)
        if entry != "console" and operation.posts:
            done = [m for m in w.slack.messages() if _matches(operation.done, m)]
            assert done, [m.get("text") for m in w.slack.messages()]
        if entry == "schedule" and op == "status":  # the schedule's status is a reminder
            reminders = [m for m in w.slack.messages() if _matches("Restore drill", m)]
            assert any(w.target in str(m["text"]) for m in reminders), said


def _matches(pattern: str, message: dict) -> bool:
    import re

    return re.search(pattern, str(message.get("text", ""))) is not None


def test_what_slack_does_not_offer_is_answered_with_where_to_run_it(
    servers: Servers, s3_server: str, slack_api: FakeSlackApi, tmp_path: Path
) -> None:
    """`/atlas fetch` in Slack or the console: not an unknown command, but the terminal
    command that does it; nothing is started."""
    import sys

    import pexpect

    from tests.matrix.world import CHANNEL, SECRET
    from tests.support.slack import post_slash_command

    offered_nowhere_but_cli = sorted(set(OPERATIONS) - OFFERED["slack"] - OFFERED["console"])
    assert offered_nowhere_but_cli == ["fetch", "rescan", "show"]
    with world("one", "folder", servers, tmp_path, slack_api, s3_server) as w:
        w.start_replicas(1)
        for op in sorted(set(OPERATIONS) - OFFERED["slack"]):
            code, body = post_slash_command(
                f"http://127.0.0.1:{w.ports[0]}", SECRET, text=op, channel_id=CHANNEL
            )
            assert code == 200 and f"`/atlas {op}` runs from a terminal" in body, body
            assert f"`atlas {op}" in body
        c = pexpect.spawn(
            sys.executable, ["-m", "bot.cli", "console"], env=w.env, encoding="utf-8", timeout=60
        )
        c.expect("you> ")
        c.sendline("/atlas fetch")
        c.expect(r"`/atlas fetch` runs from a terminal, not Slack: `atlas fetch ID -o FILE`")
        c.sendline("/quit")
        c.expect(pexpect.EOF)
        before = len(w.snapshots(None))
    assert before == 1  # the world's own snapshot; nothing else was started
