"""Reading a libpq connection string without loading libpq.

Every command reads the database URL to name the database and to refuse a staging URL
that spells production; loading psycopg and libpq for that costs more than the rest of
`atlas list`. This reads both libpq forms (`postgresql://...` URLs and `key=value`
strings). Anything it does not understand raises ValueError, and the caller asks libpq
instead, so an unusual string is never read differently from how libpq reads it.
"""

from __future__ import annotations

import os
import re
from urllib.parse import unquote

_SCHEMES = ("postgresql://", "postgres://")
_KEYWORD = re.compile(r"\s*([A-Za-z_]+)\s*=\s*")


def parse(text: str) -> dict[str, str]:
    """The connection parameters of a URL or key=value string; ValueError if unsure."""
    if text.startswith(_SCHEMES):
        return _parse_url(text)
    if "://" in text:
        raise ValueError("not a postgresql:// URL")
    return _parse_keywords(text)


def _parse_url(url: str) -> dict[str, str]:
    rest = url.split("://", 1)[1]
    if "#" in rest:
        raise ValueError("a fragment")
    rest, _, query = rest.partition("?")
    authority, slash, path = rest.partition("/")
    out: dict[str, str] = {}
    if "@" in path:
        raise ValueError("an '@' after the host")
    userinfo, at, hostspec = authority.rpartition("@")
    if "@" in userinfo:
        raise ValueError("several '@'")
    if at:
        user, colon, password = userinfo.partition(":")
        if user:
            out["user"] = unquote(user)
        if colon:
            out["password"] = unquote(password)
    if "," in hostspec:
        raise ValueError("several hosts")
    if hostspec.startswith("["):
        host, bracket, port = hostspec[1:].partition("]")
        if not bracket or (port and not port.startswith(":")):
            raise ValueError("a malformed IPv6 host")
        port = port[1:]
    else:
        host, _, port = hostspec.partition(":")
    if host:
        out["host"] = unquote(host)
    if port:
        if not port.isdigit():
            raise ValueError("a port that is not a number")
        out["port"] = port
    if slash and path:
        out["dbname"] = unquote(path)
    for pair in filter(None, query.split("&")):
        key, eq, value = pair.partition("=")
        if not eq or not key:
            raise ValueError("a malformed parameter")
        out[unquote(key)] = unquote(value)
    return out


def _parse_keywords(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _KEYWORD.match(text, pos)
        if not m:
            raise ValueError("not key=value")
        pos = m.end()
        if pos < len(text) and text[pos] == "'":
            value, pos = _quoted(text, pos + 1)
        else:
            end = pos
            while end < len(text) and not text[end].isspace():
                if text[end] in "\\'":
                    raise ValueError("an escape outside quotes")
                end += 1
            value, pos = text[pos:end], end
        out[m.group(1)] = value
    return out


def _quoted(text: str, pos: int) -> tuple[str, int]:
    chars = []
    while pos < len(text):
        c = text[pos]
        if c == "\\" and pos + 1 < len(text):
            chars.append(text[pos + 1])
            pos += 2
        elif c == "'":
            return "".join(chars), pos + 1
        else:
            chars.append(c)
            pos += 1
    raise ValueError("an unterminated quote")


def params(text: str) -> dict[str, str]:
    """`parse`, or libpq's own reading when `parse` is unsure (psycopg loads then).
    Raises ValueError for a string libpq rejects too."""
    try:
        return parse(text)
    except ValueError:
        pass
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        return {k: str(v) for k, v in conninfo_to_dict(text).items() if v is not None}
    except psycopg.ProgrammingError as exc:
        raise ValueError(str(exc)) from None


def address(p: dict[str, str]) -> tuple[str, str, str]:
    """(host, port, dbname) with libpq's defaults filled in, for comparing two URLs."""
    host = str(p.get("host") or p.get("hostaddr") or os.environ.get("PGHOST") or "localhost")
    if host.startswith("/") or host in ("127.0.0.1", "::1"):
        host = "localhost"
    port = str(p.get("port") or os.environ.get("PGPORT") or "5432")
    user = p.get("user") or os.environ.get("PGUSER") or ""
    db = str(p.get("dbname") or os.environ.get("PGDATABASE") or user)
    return host.lower(), port, db
