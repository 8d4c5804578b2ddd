"""The one redaction step: password shapes and every configured secret, however mistyped
the URL that carried it."""

from __future__ import annotations

import logging

import pytest

from bot import redaction


@pytest.fixture(autouse=True)
def _forget() -> None:
    redaction.forget_all()


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("postgresq://app:Pw-1x@db/app", "Pw-1x"),
        ("app:Pw-1x@db:5432/app", "Pw-1x"),
        ("postgresql://app:Pw 1x@db/app", "Pw 1x"),
        ("postgresql://app:pa/ss:w@rd@db/app", "pa/ss:w@rd"),
        ("host=db password='a b\\' c' user=app", "a b' c"),
        ("postgresql://app@db/app?password=Pw-1x&sslmode=require", "Pw-1x"),
        ("postgresql://app:Pw%401x@db/app", "Pw@1x"),
        # an unencoded '@': libpq ends the password at the first one and takes the rest
        # for the host, which an error then names
        ("postgresql://app:Cat@log pw!@db/app", "log pw!"),
    ],
)
def test_secrets_are_found_in_mistyped_urls(url: str, secret: str) -> None:
    assert secret in redaction.secrets_in(url)
    redaction.remember(url)
    said = f"could not parse {url!r}; also {secret} alone"
    assert secret not in redaction.redact(said)


def test_urls_without_a_password_give_none() -> None:
    assert redaction.secrets_in("postgresql://app@db/app") == set()
    assert redaction.secrets_in("postgresql://db:5432/app") == set()


def test_tokens_and_keys_are_masked_by_their_shape() -> None:
    text = "token xoxb-1234-abcdef and AGE-SECRET-KEY-1QQQQQQQQQQ here"
    out = redaction.redact(text)
    assert "xoxb-1234" not in out and "AGE-SECRET-KEY-1Q" not in out and "here" in out


def test_short_values_are_not_masked_everywhere() -> None:
    redaction.remember("postgresql://a:pw@db/app")
    assert redaction.redact("the pw field") == "the pw field"  # too short to mask as a word
    assert "pw" not in redaction.redact("postgresql://a:pw@db/app")  # the shape still applies


def test_json_like_values_are_redacted_throughout() -> None:
    redaction.remember("postgresql://a:Pw-1x@db/app")
    out = redaction.redact_value({"error": "Pw-1x", "list": ["ok", "Pw-1x"], "n": 3})
    assert out == {"error": "***", "list": ["ok", "***"], "n": 3}


def test_log_lines_and_tracebacks_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    redaction.remember("postgresql://a:Pw-1x@db/app")
    formatter = redaction.RedactingFormatter("%(message)s")
    try:
        raise RuntimeError("failed with Pw-1x")
    except RuntimeError:
        record = logging.LogRecord("t", logging.ERROR, __file__, 1, "saw %s", ("Pw-1x",), None)
        import sys

        record.exc_info = sys.exc_info()
    out = formatter.format(record)
    assert "Pw-1x" not in out and "RuntimeError" in out


def test_settings_that_are_a_secret_whole_are_masked_whole(tmp_path) -> None:
    """A signing secret, an AWS key (a copy destination's too) or PGPASSWORD has no shape
    to be found by: loading the settings is what makes each one known."""
    from bot.config import load_settings

    whole = {
        "SLACK_SIGNING_SECRET": "8f14e45fceea167a5a36dedd4bea2543",
        "PGPASSWORD": "hunter2hunter",
        "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "AWS_SESSION_TOKEN": "FwoGZXIvYXdzEXAMPLEtoken",
        "ATLAS_COPY_OFFSITE_SECRET_ACCESS_KEY": "offsite+Secret/Key9",
    }
    load_settings(
        {
            "DATABASE_URL": "postgresql://app@db/app",
            "ATLAS_STORAGE": str(tmp_path / "b"),
            "ATLAS_COPIES": "offsite=s3://copies/atlas",
            **whole,
        }
    )
    for name, value in whole.items():
        assert redaction.redact(f"it said {value}, then") == "it said ***, then", name
