"""The one redaction step between Atlas and a person: every error, log line, JSON output
and Slack message passes through `redact` on its way out.

Two things are masked. First, anything shaped like a password: the userinfo of a URL
(whatever its scheme, or none: `postgresq://app:PW@host`, `app:PW@host/db`), `password=`
in a key=value string or a URL query, and `PGPASSWORD=`. Second, every secret Atlas was
configured with, wherever it appears: `remember` is called with each URL, token and key
as settings load, so a password inside a URL too mangled to parse is still found and
masked when libpq or pg_dump quotes it back.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote

MASK = "***"
MIN_SECRET = 3  # shorter values would mask ordinary words; the shapes below still apply

# user:password@ in a URL, whatever the scheme, and user:password@host without one.
_USERINFO = re.compile(r"((?:\b[A-Za-z][A-Za-z0-9+.-]*://)?[^\s:/@'\"=]+:)(?!//)([^@\s'\"]+)(@)")
_KV = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&'\"]+)", re.IGNORECASE)
_ENV = re.compile(r"(\bPGPASSWORD=)(\S+)")
_TOKEN = re.compile(r"\b(xox[abpr]|xapp)-[A-Za-z0-9-]{6,}")
_AGE_KEY = re.compile(r"AGE-SECRET-KEY-1[0-9A-Z]+", re.IGNORECASE)

_lock = threading.Lock()
_known: set[str] = set()


def remember(*values: str | None) -> None:
    """Add configured secrets (or whole URLs and connection strings that may hold one)."""
    found: set[str] = set()
    for value in values:
        if not value:
            continue
        found |= secrets_in(value)
    with _lock:
        _known.update(s for s in found if len(s) >= MIN_SECRET)


def remember_whole(*values: str | None) -> None:
    """Add settings that are a secret through and through (a signing secret, an AWS
    secret key, PGPASSWORD): the whole value, which has no shape to be found by, and what
    `remember` finds in it as well."""
    remember(*values)
    with _lock:
        _known.update(v.strip() for v in values if v and len(v.strip()) >= MIN_SECRET)


def secrets_in(text: str) -> set[str]:
    """The secret values a URL, connection string or token carries, however mistyped."""
    out: set[str] = set()
    text = text.strip()
    if _TOKEN.fullmatch(text) or _AGE_KEY.fullmatch(text):
        return {text}
    # A URL's password runs from the first ':' of its userinfo to the last '@' before the
    # host: a mistyped one may hold spaces, slashes or colons, and must be found all the same.
    body = text.split("://", 1)[1] if "://" in text else text
    if "@" in body and "=" not in body.split("@", 1)[0]:
        userinfo = body.rsplit("@", 1)[0]
        if ":" in userinfo:
            password = userinfo.split(":", 1)[1]
            out.add(password)
            # with an unencoded '@' in it, libpq reads up to the first '@' as the password
            # and the rest as the host, which its errors then name: each piece is secret
            out.update(password.split("@"))
    for m in _USERINFO.finditer(text):
        out.add(m.group(2))
    for m in _KV.finditer(text):
        value = m.group(2)
        if value.startswith("'"):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])  # libpq's quoting
        out.add(value)
    for m in _ENV.finditer(text):
        out.add(m.group(2))
    out |= {unquote(s) for s in out}
    return {s for s in out if s and s != MASK}


def known() -> frozenset[str]:
    with _lock:
        return frozenset(_known)


def forget_all() -> None:
    """For tests that load several configurations in one process."""
    with _lock:
        _known.clear()


def redact(text: str, extra: Iterable[str | None] = ()) -> str:
    """`text` with every password-shaped value and every known secret masked."""
    if not text:
        return text
    text = _USERINFO.sub(rf"\1{MASK}\3", text)
    text = _KV.sub(rf"\1{MASK}", text)
    text = _ENV.sub(rf"\1{MASK}", text)
    text = _TOKEN.sub(lambda m: m.group(1) + "-" + MASK, text)
    text = _AGE_KEY.sub(MASK, text)
    secrets = {s for s in (*known(), *extra) if s and len(s) >= MIN_SECRET}
    for secret in sorted(secrets, key=len, reverse=True):  # longest first: no partial leaks
        text = text.replace(secret, MASK)
    return text


def redact_value(value: Any) -> Any:
    """`redact` applied to every string inside JSON-like data (Slack blocks, --json output)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    return value


class RedactedStream:
    """A text stream (looked up on each write: tests and click swap sys.stdout) whose
    every write is redacted: what the CLI prints for people goes through it."""

    def __init__(self, stream: Callable[[], Any]) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream().write(redact(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:  # flush, isatty, fileno, encoding, …
        return getattr(self._stream(), name)


class RedactingFormatter(logging.Formatter):
    """Log lines, tracebacks included, are redacted after formatting."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def install_logging(level: int) -> None:
    """Root logging to stderr through the redacting formatter (Bolt, waitress and boto too)."""
    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
