"""Block Kit as the console shows it."""

from __future__ import annotations

from bot.records import Snapshot
from bot.report import messages, terminal


def test_mentions_escapes_and_emoji() -> None:
    text = ":white_check_mark: <@U42> asked in <#C1|ops> &lt;!channel&gt; `x`"
    assert terminal.mrkdwn(text) == "✅ @U42 asked in #ops <!channel> `x`"


def test_sections_context_and_buttons_as_numbered_choices() -> None:
    text = "*app*: a drill is due in 7 days"
    lines, buttons = terminal.render(text, messages.with_drill_button(text, "app"))
    assert lines == ["app: a drill is due in 7 days", "  [1] Start a restore drill"]
    assert buttons == ["Start a restore drill"]


def test_a_snapshot_report_reads_as_text() -> None:
    snap = Snapshot(
        id="s1", database="app", requested_by="U1", note="<!here> 0042", size_bytes=2048
    )
    lines, buttons = terminal.render(*messages.snapshot_failed(snap, "disk full"))
    assert lines[0].startswith("❌ Snapshot `s1` of app failed: disk full")
    assert "<!here> 0042" in "\n".join(lines) and buttons == []
