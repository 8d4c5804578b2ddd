"""Words for counts and durations: "1 snapshot", "2 snapshots", "0 snapshots", never "1 snapshots" or
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


def human_seconds(s: float | None) -> str:
    """A duration as people read it: '4.2 s', '3 min 5 s', '2 h 10 min'."""
    if s is None:
        return "?"
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(int(s), 60)
    return f"{m} min {sec} s" if m < 60 else f"{m // 60} h {m % 60} min"
