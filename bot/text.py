"""User text is data: whatever bytes arrive, it is stored and shown as valid text."""

from __future__ import annotations

import unicodedata


def clean_text(text: str, limit: int = 2000) -> str:
    """Valid UTF-8 without control characters (newlines and tabs stay), at most `limit`
    characters. Bytes that are not UTF-8 (a shell's $'\\xff', which Python hands over as
    surrogates) become U+FFFD instead of crashing the catalog or the JSON output."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    text = "".join(c for c in text if c in "\n\t" or unicodedata.category(c) not in ("Cc", "Cs"))
    return text[:limit]
