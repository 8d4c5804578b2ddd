"""The sidecar: a self-describing JSON next to each artifact, so storage alone is enough
to restore (by hand, or through `atlas rescan` into a new catalog). Pure: bytes in and
out, no storage or catalog."""

from __future__ import annotations

import base64
import contextlib
import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bot.backup.layout import FORMAT, FORMATS, GLOBALS_FORMAT
from bot.errors import AtlasError
from bot.records import Snapshot, SnapshotKind, SnapshotStatus, names
from bot.tags import parse_one

if TYPE_CHECKING:
    from bot.store.crypto import Identity

SIDECAR_MAX = 16 << 20  # manifests of very many tables stay far below this
# What an encrypted snapshot's sidecar keeps sealed: the tables, their row counts and
# sequence values (a globals manifest: every role), the note and who asked.
SEALED = ("manifest", "note", "requested_by", "tags")


def sidecar(snap: Snapshot, identity: Identity | None, *, plain: bool = False) -> bytes:
    """The sidecar of a good snapshot. For an encrypted one, what would tell a reader of
    the bucket about the data or the people (table names, row counts, the note, who
    asked) is sealed to the same key, unless `plain` (ATLAS_SIDECAR_PLAIN) says not to."""
    doc: dict[str, Any] = {name: getattr(snap, name) for name in names(Snapshot, "sidecar")}
    doc["format"] = FORMAT
    doc["manifest"] = snap.manifest
    encrypted = snap.encryption == "age"
    if encrypted and identity is not None:
        doc["recipient"] = identity.recipient
    if snap.kind == SnapshotKind.GLOBALS:
        doc["format"] = GLOBALS_FORMAT
        read = "age -d -i KEY.txt ID.sql.zst.age | zstd -dc" if encrypted else "zstd -dc ID.sql.zst"
        doc["restore"] = f'{read} | psql -v ON_ERROR_STOP=1 --dbname "$TARGET_SERVER_URL"'
    else:
        decode = (
            "age -d -i KEY.txt ID.dump.zst.age | zstd -dc > ID.dump"
            if encrypted
            else "zstd -dc ID.dump.zst > ID.dump"
        )
        doc["restore"] = (
            f"{decode} && pg_restore --clean --if-exists --no-owner "
            '--no-acl --dbname "$STAGING_DATABASE_URL" ID.dump'
        )
    doc["restore"] = doc["restore"].replace("ID", snap.id)
    if encrypted and identity is not None and not plain:
        _seal(doc, identity, snap.id)
    return json.dumps(doc, indent=2, sort_keys=True).encode()


def _seal(doc: dict[str, Any], identity: Identity, snap_id: str) -> None:
    from bot.store import crypto

    private = {name: doc.pop(name) for name in SEALED}
    sealed = crypto.seal(json.dumps(private, sort_keys=True).encode(), identity)
    doc["sealed"] = base64.b64encode(sealed).decode()
    doc["sealed_fields"] = list(SEALED)
    doc["unseal"] = f"jq -r .sealed {snap_id}.json | base64 -d | age -d -i KEY.txt"


def unseal(doc: dict[str, Any], key: str, identity: Identity | None) -> None:
    """Put a sealed sidecar's private part back into `doc`, or AtlasError saying why not."""
    if "sealed" not in doc:
        return
    if identity is None:
        raise AtlasError(
            f"{key}: its manifest is encrypted, and no key is configured.",
            "set ATLAS_ENCRYPTION_KEY_FILE to the key its snapshot was made with",
        )
    from bot.store import crypto

    try:
        private = json.loads(crypto.unseal(base64.b64decode(str(doc["sealed"])), identity))
    except (ValueError, AtlasError) as exc:
        raise AtlasError(f"{key}: its sealed part cannot be read ({exc}).") from None
    if not isinstance(private, dict):
        raise AtlasError(f"{key}: its sealed part is not a document.")
    doc.update({name: private.get(name) for name in SEALED})


def parse(
    data: bytes,
    key: str,
    snap_id: str,
    place: tuple[str, str],
    identity: Identity | None = None,
) -> dict[str, Any]:
    """The sidecar's document (its sealed part opened with `identity`), or AtlasError
    saying why it cannot be trusted. `place` is the (environment, database) its key names."""
    if len(data) > SIDECAR_MAX:
        raise AtlasError(f"{key} is larger than a sidecar can be.")
    try:
        doc = json.loads(data)
    except ValueError:
        raise AtlasError(f"{key} is not JSON.") from None
    if not isinstance(doc, dict):
        raise AtlasError(f"{key} is not a sidecar.")
    unseal(doc, key, identity)
    environment, database = place
    expected = {
        "id": snap_id,
        "database": database,
        "environment": environment,
        "compression": "zstd",
    }
    for name, want in expected.items():
        if doc.get(name) != want:
            raise AtlasError(f"{key}: {name} is {doc.get(name)!r}, expected {want!r}.")
    if doc.get("format") not in (*FORMATS, GLOBALS_FORMAT):
        raise AtlasError(f"{key}: format is {doc.get('format')!r}, expected {FORMAT!r}.")
    sha256, size = doc.get("sha256"), doc.get("size_bytes")
    if doc.get("encryption") not in ("none", "age"):
        raise AtlasError(f"{key}: unknown encryption {doc.get('encryption')!r}.")
    if not (isinstance(sha256, str) and len(sha256) == 64 and _is_hex(sha256)):
        raise AtlasError(f"{key}: no valid sha256.")
    if not isinstance(size, int) or size <= 0 or not isinstance(doc.get("manifest"), dict):
        raise AtlasError(f"{key}: no size or manifest.")
    if not _is_time(doc.get("started_at")) or not _is_time(doc.get("verified_at"), None):
        raise AtlasError(f"{key}: started_at or verified_at is not a time.")
    return doc


def snapshot_from(doc: dict[str, Any], artifact: str, location: str) -> Snapshot:
    """The catalog record of a snapshot a trusted sidecar describes."""

    def text(name: str) -> str | None:
        return str(doc[name]) if doc.get(name) is not None else None

    return Snapshot(
        id=doc["id"],
        database=doc["database"],
        dbname=text("dbname"),
        requested_by=text("requested_by"),
        started_at=text("started_at"),
        verified_at=text("verified_at"),
        server_version=text("server_version"),
        pg_dump_version=text("pg_dump_version"),
        toc_sha256=text("toc_sha256"),
        environment=doc["environment"],
        status=SnapshotStatus.OK,
        source="rescan",
        note=str(doc.get("note") or "")[:2000],
        tags=_tags(doc.get("tags")),
        size_bytes=doc["size_bytes"],
        raw_size_bytes=_int_or_none(doc.get("raw_size_bytes")),
        sha256=doc["sha256"],
        toc_bytes=_int_or_none(doc.get("toc_bytes")),
        segments=doc.get("segments") if isinstance(doc.get("segments"), list) else None,
        storage_key=artifact,
        location=location,
        compression="zstd",
        encryption=doc["encryption"],
        manifest=doc["manifest"],
        pinned=False,
        kind=SnapshotKind.GLOBALS if doc.get("format") == GLOBALS_FORMAT else SnapshotKind.DATABASE,
    )


def _tags(value: Any) -> dict[str, str] | None:
    """The sidecar's tags, each checked as if typed: one that is not a tag is left out."""
    if not isinstance(value, dict):
        return None
    good = {}
    for key, text in value.items():
        with contextlib.suppress(AtlasError):
            name, tag = parse_one(f"{key}={text}")
            good[name] = tag
    return good or None


def _is_time(value: Any, *allowed: Any) -> bool:
    if value in allowed:
        return True
    try:
        datetime.fromisoformat(str(value))
    except ValueError:
        return False
    return True


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
