"""`/atlas report` in Slack: real signed requests into the app, the file uploaded to the
fake Web API the way Slack takes files, and a summary in its message."""

from __future__ import annotations

import csv
import io

from tests.support.bot import start_bot
from tests.support.pg import fill_sample


def _upload(slack_api) -> tuple[bytes, dict]:
    done = slack_api.wait_for("files.completeUploadExternal", timeout=60)
    [sent] = slack_api.calls("file.upload")
    return slack_api.uploads[sent["params"]["file_id"]], done["params"]


def test_slack_posts_the_report_as_a_file_with_a_summary(pg_url, pg_db, tmp_path, slack_api):
    fill_sample(pg_url, rows=50)
    bot, server = start_bot(pg_url, tmp_path, slack_api, ATLAS_SNAPSHOT_SCHEDULE="0 3 * * *")
    try:
        code, body = bot.command("snapshot", channel_id="CATLAS")
        assert code == 200, body
        bot.wait_final()
        [snap] = bot.services.snapshots.recent()
        slack_api.clear()

        code, body = bot.command("report format:csv", channel_id="CATLAS")
        assert code == 200 and "Making the report" in body, body
        content, done = _upload(slack_api)
        rows = list(csv.DictReader(io.StringIO(content.decode())))
        assert [r["id"] for r in rows if r["record"] == "snapshot"] == [snap.id]
        assert done["channel_id"] == "CATLAS"
        [file] = done["files"]
        assert file["title"].startswith("atlas-report-") and file["title"].endswith(".csv")
        comment = done["initial_comment"]
        assert f"`{pg_db}`" in comment and "Audit chain intact, head `" in comment, comment
        head = [r for r in rows if r["record"] == "chain"][0]["id"]
        assert head and head in comment

        slack_api.clear()  # the default: HTML of the last year
        bot.command("report", channel_id="CATLAS")
        content, _ = _upload(slack_api)
        assert content.startswith(b"<!doctype html>") and snap.id.encode() in content
    finally:
        server.close()  # type: ignore[attr-defined]
        bot.services.shutdown()


def test_a_mistyped_report_is_answered_at_once_and_a_failed_upload_says_what_to_do(
    pg_url, tmp_path, slack_api
):
    bot, server = start_bot(pg_url, tmp_path, slack_api)
    try:
        for words, said in [
            ("report since:someday", "is not a date"),
            ("report last year", "does not take 'last'"),
            ("report format:pdf", "unknown report format 'pdf'"),
        ]:
            code, body = bot.command(words, channel_id="CATLAS")
            assert code == 200 and said in body and "\n" not in body.strip(), body
        assert not slack_api.calls("files.getUploadURLExternal")

        # a database name is user text: a mention in it stays inert
        bot.command("report db:<!channel>", channel_id="CATLAS")
        _, done = _upload(slack_api)
        assert "<!channel>" not in done["initial_comment"]
        assert "&lt;!channel&gt;" in done["initial_comment"]

        slack_api.fail_next("files.getUploadURLExternal", "not_in_channel")
        bot.command("report", channel_id="CPRIVATE")
        said = slack_api.wait_for(
            lambda c: c["method"] == "response_url" and "could not be posted" in str(c["params"])
        )
        assert (
            "files:write" in said["params"]["text"]
            and "atlas report -o FILE" in said["params"]["text"]
        )
    finally:
        server.close()  # type: ignore[attr-defined]
        bot.services.shutdown()
