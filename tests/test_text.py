"""User text is data: any bytes become valid text."""

from __future__ import annotations

from bot.text import clean_text


def test_invalid_utf8_from_a_shell_becomes_replacement_characters() -> None:
    raw = b"bad \xff\xfe byte\x07s".decode("utf-8", "surrogateescape")
    assert clean_text(raw) == "bad \ufffd\ufffd bytes"


def test_newlines_and_tabs_stay_and_the_limit_holds() -> None:
    assert clean_text("a\n\tb") == "a\n\tb"
    assert clean_text("x" * 5000) == "x" * 2000
    assert clean_text("x" * 50, limit=10) == "x" * 10
