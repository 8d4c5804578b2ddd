"""Words for counts: "1 snapshot", "2 snapshots", "0 snapshots", never "1 snapshots" or
"snapshot(s)". Pure. `tests/test_words.py` walks every message template for the slips."""

from __future__ import annotations

IRREGULAR = {"copy": "copies", "entry": "entries", "index": "indexes", "refresh": "refreshes"}


def plural(noun: str) -> str:
    return IRREGULAR.get(noun, noun + "s")


def count(n: int | float, noun: str, many: str | None = None) -> str:
    """`n noun`, the noun plural unless `n` is exactly 1 (`many` for an odd plural)."""
    word = noun if n == 1 else many or plural(noun)
    shown = f"{n}" if isinstance(n, int) else f"{n:g}"
    return f"{shown} {word}"
