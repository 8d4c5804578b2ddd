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
from urllib.parse import unquote as _unquote

_SCHEMES = ("postgresql://", "postgres://")
# libpq's connection keywords (PostgreSQL 15, with a few of 16's); any other is libpq's call
KEYWORDS = frozenset(
    [
        "host",
        "hostaddr",
        "port",
        "dbname",
        "user",
        "password",
        "passfile",
        "channel_binding",
        "connect_timeout",
        "client_encoding",
        "options",
        "application_name",
        "fallback_application_name",
        "keepalives",
        "keepalives_idle",
        "keepalives_interval",
        "keepalives_count",
        "tcp_user_timeout",
        "replication",
        "gssencmode",
        "sslmode",
        "requiressl",
        "sslcompression",
        "sslcert",
        "sslkey",
        "sslpassword",
        "sslrootcert",
        "sslcrl",
        "sslcrldir",
        "sslsni",
        "requirepeer",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
        "krbsrvname",
        "gsslib",
        "gssdelegation",
        "service",
        "target_session_attrs",
        "load_balance_hosts",
        "require_auth",
        "sslcertmode",
    ]
)
_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})|%00")
_KEYWORD = re.compile(r"\s*([A-Za-z_]+)\s*=\s*")


def unquote(text: str) -> str:
    return _unquote(text, errors="strict")  # bytes that are not UTF-8: libpq's call


def _keyword(key: str) -> str:
    if key not in KEYWORDS:
        raise ValueError(f"the keyword {key!r}")
    return key


def parse(text: str) -> dict[str, str]:
    """The connection parameters of a URL or key=value string; ValueError if unsure."""
    if text.startswith(_SCHEMES):
        return _parse_url(text)
    if "://" in text:
        raise ValueError("not a postgresql:// URL")
    return _parse_keywords(text)


def _parse_url(url: str) -> dict[str, str]:
    """As libpq reads it: user info up to the first '@' (if one comes before any '/'),
    then the host up to '/' or '?', the database name up to '?', then parameters."""
    rest = url.split("://", 1)[1]
    if "#" in rest:
        raise ValueError("a fragment")
    if _PERCENT.search(rest):
        raise ValueError("a malformed percent-encoding")
    if any(c.isspace() or c in "'\"\\" for c in rest):
        raise ValueError("spaces, quotes or backslashes")
    out: dict[str, str] = {}
    at, slash = rest.find("@"), rest.find("/")
    if at >= 0 and (slash < 0 or at < slash):
        userinfo, rest = rest[:at], rest[at + 1 :]
        if any(c in userinfo for c in "?[]"):
            raise ValueError("unusual characters in the user info")
        user, colon, password = userinfo.partition(":")
        if colon and not password:
            raise ValueError("an empty password")
        if user:
            out["user"] = unquote(user)
        if colon:
            out["password"] = unquote(password)
    if "@" in rest:
        raise ValueError("several '@'")
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    hostspec, rest = rest[:cut], rest[cut:]
    if "," in hostspec:
        raise ValueError("several hosts")
    if hostspec.startswith("["):
        host, bracket, port = hostspec[1:].partition("]")
        if not host or not bracket or (port and not port.startswith(":")):
            raise ValueError("a malformed IPv6 host")
        port = port[1:]
    else:
        if "[" in hostspec or "]" in hostspec:
            raise ValueError("a malformed host")
        host, _, port = hostspec.partition(":")
    if host:
        out["host"] = unquote(host)
    if port:
        if not port.isdigit():
            raise ValueError("a port that is not a number")
        out["port"] = port
    path, _, query = rest.partition("?")
    if path.startswith("/") and len(path) > 1:
        out["dbname"] = unquote(path[1:])
    for pair in query.split("&") if query else []:
        key, eq, value = pair.partition("=")
        if not eq or "=" in value:
            raise ValueError("a malformed parameter")
        out[_keyword(unquote(key))] = unquote(value)
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
        out[_keyword(m.group(1))] = value
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
