"""ATLAS_COPIES: the further destinations every snapshot is copied to (3-2-1).

Each destination is a folder or an `s3://` URL with its own endpoint, credentials,
server-side encryption and retention. Read from the environment
(`ATLAS_COPIES=offsite=s3://bucket/atlas,nas=/mnt/nas/atlas` and
`ATLAS_COPY_OFFSITE_ENDPOINT_URL=…`) or from the TOML file's `[copies.NAME]` tables.
Text in, records out (a folder is resolved on disk only to tell whether a copy lies
where ATLAS_STORAGE does); a mistyped key or URL is a ValueError naming it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bot import locations, redaction

NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
SSE = ("AES256", "aws:kms")
# a destination's settings, as TOML keys; ATLAS_COPY_<NAME>_<KEY upper-cased> in the env
TEXT_KEYS = ("endpoint_url", "region", "profile", "access_key_id", "sse", "kms_key_id")
SECRET_KEYS = ("secret_access_key",)
NUMBER_KEYS = ("retention_days", "keep_daily", "keep_weekly", "keep_monthly")
KEYS = ("url", *TEXT_KEYS, *SECRET_KEYS, *NUMBER_KEYS)
OWN_SETTINGS = ("ATLAS_COPY_ALERT_HOURS", "ATLAS_COPY_TIMEOUT_S")  # not a destination's


@dataclass(frozen=True)
class Destination:
    """One further place every snapshot is copied to, and how long it keeps them (None:
    as ATLAS_STORAGE keeps them)."""

    name: str
    url: str
    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    sse: str | None = None
    kms_key_id: str | None = None
    retention_days: int | None = None
    keep_daily: int | None = None
    keep_weekly: int | None = None
    keep_monthly: int | None = None

    @property
    def is_s3(self) -> bool:
        return self.url.startswith("s3://")


def env_prefix(name: str) -> str:
    return f"ATLAS_COPY_{name.upper().replace('-', '_')}_"


def from_env(env: Mapping[str, str], primary: str) -> dict[str, Destination]:
    """The destinations ATLAS_COPIES lists, with each one's ATLAS_COPY_<NAME>_* settings."""
    out: dict[str, Destination] = {}
    for number, entry in enumerate(_entries(env.get("ATLAS_COPIES", "")), start=1):
        name, _, url = entry.partition("=") if "=" in entry.split("://")[0] else ("", "", entry)
        name = name.strip()
        # an entry's own text may hold a secret: errors name it by its place until it has
        # a name that is known to be one
        where = f"ATLAS_COPIES {name}" if NAME.fullmatch(name) else f"ATLAS_COPIES entry {number}"
        try:
            checked = locations.storage(url)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        name = name or _derived_name(checked)
        if name in out:
            raise ValueError(f"ATLAS_COPIES names {name!r} twice; give each destination a name")
        body: dict[str, Any] = {"url": checked}
        for key in KEYS[1:]:
            if (value := env.get(env_prefix(name) + key.upper(), "").strip()) != "":
                body[key] = value
        out[name] = destination(name, body, primary, where)
    _refuse_stray(env, out)
    return out


def from_toml(tables: Any, primary: str) -> dict[str, Destination]:
    """`[copies.NAME]` tables: url and the same keys as the environment's, lower-case."""
    if not isinstance(tables, dict):
        raise ValueError("[copies] must hold tables: [copies.NAME] with a url")
    out = {}
    for name, body in tables.items():
        if not isinstance(body, dict):
            raise ValueError(f"[copies.{name}] must be a table with a url")
        out[name] = destination(name, body, primary, f"[copies.{name}]")
    return out


def destination(name: str, body: Mapping[str, Any], primary: str, where: str) -> Destination:
    """One destination from its settings; ValueError names `where` and what is wrong."""
    if not NAME.fullmatch(name):
        raise ValueError(f"{where}: a name is 1-32 lower-case letters, digits, '-' or '_'")
    unknown = sorted(set(body) - set(KEYS))
    if unknown:
        raise ValueError(f"{where}: unknown key {unknown[0]!r} (known: {', '.join(KEYS)})")
    for key in ("url", *TEXT_KEYS, *SECRET_KEYS):  # TOML may give a number or a list
        if key in body and not isinstance(body[key], str):
            raise ValueError(f"{where}: {key} must be text in quotes")
    try:
        url = locations.storage(str(body.get("url") or ""))
    except ValueError as exc:
        raise ValueError(f"{where}: url {exc}") from None
    if url.rstrip("/") == primary.rstrip("/"):
        raise ValueError(f"{where} is ATLAS_STORAGE itself: a copy in the same place is no copy")
    if not body.get("endpoint_url") and _overlaps(url, primary):
        raise ValueError(
            f"{where} is ATLAS_STORAGE itself, spelled another way, or lies inside it (or it "
            "inside the copy): a copy there is no copy, and its retention would delete "
            "ATLAS_STORAGE's snapshots; point it at a place of its own"
        )
    values: dict[str, Any] = {k: _text(body[k]) for k in TEXT_KEYS + SECRET_KEYS if k in body}
    for key in NUMBER_KEYS:
        if key in body:
            values[key] = _number(body[key], key, where, 1 if key == "retention_days" else 0)
    if values.get("endpoint_url"):
        values["endpoint_url"] = locations.http_url(values["endpoint_url"])
    if values.get("sse") and values["sse"] not in SSE:
        raise ValueError(f"{where}: sse is AES256 or aws:kms")
    if not url.startswith("s3://") and set(values) & set(TEXT_KEYS + SECRET_KEYS):
        raise ValueError(f"{where}: endpoint, credentials and sse are for s3:// URLs only")
    redaction.remember_whole(values.get("secret_access_key"))
    return Destination(name=name, url=url, **values)


def _overlaps(url: str, primary: str) -> bool:
    """Whether two storage locations are one place, or one holds the other: folders as the
    file system resolves them (`.`, `..`, `//`, `~`, links), S3 as bucket and prefix
    without the slashes Atlas strips. A copy with its own endpoint is another server."""
    if url.startswith("s3://") != primary.startswith("s3://"):
        return False
    if url.startswith("s3://"):
        a, b = (_s3_parts(u) for u in (url, primary))
        return a[0] == b[0] and _nested(a[1], b[1])
    a_path, b_path = (os.path.realpath(os.path.expanduser(u.strip())) for u in (url, primary))
    return _nested(a_path.rstrip("/"), b_path.rstrip("/"))


def _s3_parts(url: str) -> tuple[str, str]:
    bucket, _, prefix = url.strip()[5:].partition("/")
    return bucket, "/".join(p for p in prefix.split("/") if p)


def _nested(a: str, b: str) -> bool:
    """`a` and `b` are the same path, or one lies under the other."""
    return a == b or a.startswith(b + "/") or b.startswith(a + "/") or not a or not b


def _entries(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _derived_name(url: str) -> str:
    """A bare URL's name: its bucket, or its folder's last part."""
    base = url.strip()[5:].split("/")[0] if url.strip().startswith("s3://") else url
    name = re.sub(r"[^a-z0-9_-]+", "-", base.rstrip("/").rsplit("/", 1)[-1].lower()).strip("-")
    return name[:32] or "copy"


def _text(value: Any) -> str:
    return str(value).strip()


def _number(value: Any, key: str, where: str, low: int) -> int:
    try:
        n = int(str(value).strip())
    except ValueError:
        raise ValueError(f"{where}: {key} must be a whole number, not {value!r}") from None
    if n < low:
        raise ValueError(f"{where}: {key} must be at least {low}")
    return n


def _refuse_stray(env: Mapping[str, str], known: Mapping[str, Destination]) -> None:
    """An ATLAS_COPY_* variable for no listed destination, or with a key no destination
    has, is a typo that would otherwise be silently ignored."""
    prefixes = {env_prefix(n): n for n in known}
    for var in sorted(env):
        if not var.startswith("ATLAS_COPY_") or var in OWN_SETTINGS:
            continue
        prefix = next((p for p in prefixes if var.startswith(p)), None)
        if prefix is None:
            names = ", ".join(sorted(known)) or "none"
            raise ValueError(f"{var} is set, but ATLAS_COPIES names no such destination ({names})")
        key = var[len(prefix) :].lower()
        if key not in KEYS[1:]:
            raise ValueError(
                f"{var}: unknown key (known: {', '.join(k.upper() for k in KEYS[1:])})"
            )
