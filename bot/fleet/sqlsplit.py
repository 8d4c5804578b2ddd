"""pg_dumpall's globals script cut into statements by SQL's own rules, not by lines: a `;`
inside a quoted role comment, a quoted name or a dollar-quoted body does not end a
statement. psql's meta-commands (`\\connect`, `\\restrict`) and comments between
statements are left out. Pure: text in, statements out."""

from __future__ import annotations

import re

_DOLLAR = re.compile(r"\$([A-Za-z_][A-Za-z_0-9]*)?\$")


def _skip_quoted(text: str, i: int, quote: str) -> int:
    """The index just past the quoted run that starts at `i` ('' or "" doubles a quote;
    an E'' string also escapes with a backslash)."""
    escapes = quote == "'" and i > 0 and text[i - 1] in "eE"
    j = i + 1
    while j < len(text):
        if escapes and text[j] == "\\":
            j += 2
            continue
        if text[j] == quote:
            if j + 1 < len(text) and text[j + 1] == quote:
                j += 2
                continue
            return j + 1
        j += 1
    return j


def _skip(text: str, i: int) -> int:
    """Past whatever starts at `i` that a `;` inside must not end: quotes, comments."""
    c = text[i]
    if c in "'\"":
        return _skip_quoted(text, i, c)
    if text.startswith("--", i):
        end = text.find("\n", i)
        return len(text) if end < 0 else end
    if text.startswith("/*", i):
        end = text.find("*/", i + 2)
        return len(text) if end < 0 else end + 2
    if c == "$":
        m = _DOLLAR.match(text, i)
        if m:
            end = text.find(m.group(0), m.end())
            return len(text) if end < 0 else end + len(m.group(0))
    return i + 1


def _leading_noise(text: str, i: int) -> int:
    """Past blank space, comments and meta-command lines between statements."""
    while i < len(text):
        if text[i].isspace():
            i += 1
        elif text.startswith("--", i) or text[i] == "\\":
            end = text.find("\n", i)
            i = len(text) if end < 0 else end + 1
        elif text.startswith("/*", i):
            i = _skip(text, i)
        else:
            break
    return i


def statements(text: str) -> list[str]:
    out: list[str] = []
    i = _leading_noise(text, 0)
    start = i
    while i < len(text):
        if text[i] == ";":
            out.append(text[start : i + 1].strip())
            i = start = _leading_noise(text, i + 1)
            continue
        i = _skip(text, i)
    if text[start:].strip():
        out.append(text[start:].strip())
    return out
