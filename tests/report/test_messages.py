"""Slack text and Block Kit: mentions neutralised, sizes and times readable."""

from __future__ import annotations

import pytest

from bot.records import Snapshot
from bot.report import messages
from bot.words import human_seconds

# -- bot.report.messages ----------------------------------------------------------------------------


@pytest.mark.parametrize("markup", ["<!channel>", "<!here>", "<@U123>", "<!everyone>"])
def test_escape_neutralises_mentions(markup: str) -> None:
    out = messages.escape(f"hello {markup} there")
    assert markup not in out
    assert "<" not in out and ">" not in out
    assert out == "hello " + markup.replace("<", "&lt;").replace(">", "&gt;") + " there"


def test_escape_ampersand_first() -> None:
    assert messages.escape("a & b") == "a &amp; b"
    # an already-escaped entity must not turn back into markup
    assert messages.escape("&lt;!channel&gt;") == "&amp;lt;!channel&amp;gt;"


def test_escape_links() -> None:
    out = messages.escape("<https://evil.example|click me>")
    assert "<" not in out and ">" not in out


def test_note_in_rendered_message_is_escaped() -> None:
    row = Snapshot(id="x", database="app", requested_by="U1", note="<!channel> deploy")
    text, blocks = messages.snapshot_started(row)
    rendered = text + str(blocks)
    assert "<!channel>" not in rendered
    assert "&lt;!channel&gt;" in rendered


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (None, "?"),
        (0, "0 B"),
        (1, "1 B"),
        (1023, "1023 B"),
        (1024, "1.0 KB"),
        (1536, "1.5 KB"),
        (5 * 1024**2, "5.0 MB"),
        (3 * 1024**3, "3.0 GB"),
        (2 * 1024**4, "2.0 TB"),
        (5000 * 1024**4, "5000.0 TB"),
    ],
)
def test_human_bytes(n: float | None, expected: str) -> None:
    assert messages.human_bytes(n) == expected


@pytest.mark.parametrize(
    ("s", "expected"),
    [
        (None, "?"),
        (0, "0.0 s"),
        (1.25, "1.2 s"),
        (59.9, "59.9 s"),
        (60, "1 min 0 s"),
        (125, "2 min 5 s"),
        (3599, "59 min 59 s"),
        (3600, "1 h 0 min"),
        (7380, "2 h 3 min"),
    ],
)
def test_human_seconds(s: float | None, expected: str) -> None:
    assert human_seconds(s) == expected


def test_a_fleet_run_says_how_far_its_copies_got():
    from bot.records import Copy, CopyState

    def copy(snap: str, dest: str, state: CopyState) -> Copy:
        return Copy(
            key=f"{snap}:{dest}", snapshot_id=snap, destination=dest, database="db", state=state
        )

    made = [copy(f"s{i}", d, CopyState.OK) for i in range(3) for d in ("vault", "offsite")]
    made[-1] = copy("s2", "offsite", CopyState.PENDING)
    made.append(copy("s3", "offsite", CopyState.PENDING))
    line = messages.fleet_copies(made)
    assert line == "5 of 7 made (offsite: 2 pending, retried)"
    ok = [
        (f"db{i}", Snapshot(id=f"s{i}", database=f"db{i}", size_bytes=10, duration_s=1.0))
        for i in range(4)
    ]
    text = messages.fleet_summary(ok, [], [], [], "Snapshot", copies=line)
    assert text.splitlines()[-1] == "Copies: 5 of 7 made (offsite: 2 pending, retried)"
    one = messages.fleet_copies(
        [copy("s0", "vault", CopyState.OK), copy("s0", "offsite", CopyState.OK)]
    )
    assert one == "copied to 2 of 2"
    single = messages.fleet_summary(ok[:1], [], [], [], "Snapshot", copies=one)
    assert single.endswith(", copied to 2 of 2") and "\n" not in single
    assert messages.fleet_copies([]) == ""
    assert "Copies" not in messages.fleet_summary(ok, [], [], [], "Snapshot")
