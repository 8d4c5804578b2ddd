"""A server's roles and tablespaces, kept beside its databases' snapshots.

No `pg_dump` holds them, and a restore onto a fresh server fails without its roles. Each
fleet run stores `pg_dumpall --globals-only --no-role-passwords` (which needs no superuser,
so it works on managed providers) as an artifact of its own: zstd, checksummed, encrypted
like the rest, read back before it counts. A drill checks it applies on the staging server
in a transaction that is rolled back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NoReturn

from bot.backup import pipeline, sidecar
from bot.backup.keys import Keys
from bot.backup.layout import fresh, globals_key, globals_name, sidecar_key
from bot.catalog import Catalog, outage
from bot.config import Server, Settings
from bot.errors import AtlasError
from bot.fleet import sqlsplit
from bot.fleet.discover import server_conn
from bot.pg import Conn, find_tool, server_info
from bot.records import Snapshot, SnapshotKind, SnapshotResult, SnapshotStatus, now
from bot.redaction import redact
from bot.store import ArtifactWriter, LazyStorage
from bot.tags import merged

if TYPE_CHECKING:
    from bot.store.crypto import Identity

log = logging.getLogger(__name__)

DONE = "PostgreSQL database cluster dump complete"  # pg_dumpall's last comment
TIMEOUT_S = 300
CREATE_ROLE = re.compile(r'CREATE ROLE ("(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*);', re.ASCII)
NOT_IN_A_TRANSACTION = re.compile(r"(CREATE|DROP|ALTER) TABLESPACE\b", re.IGNORECASE)


def statements(text: str) -> list[str]:
    """The SQL statements of pg_dumpall's globals output, split by SQL's rules (a `;` in a
    role's comment does not end it), without comments and psql's meta-commands."""
    return sqlsplit.statements(text)


def created_role(statement: str) -> str | None:
    """The role a `CREATE ROLE name;` statement creates, unquoted; None for others."""
    m = CREATE_ROLE.fullmatch(statement.strip())
    if not m:
        return None
    name = m.group(1)
    return name[1:-1].replace('""', '"') if name.startswith('"') else name.lower()


def check_text(data: bytes) -> str:
    """pg_dumpall's output as text, or AtlasError if it isn't a complete one."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise AtlasError("The globals dump is not UTF-8 text.") from None
    if DONE not in text:
        raise AtlasError("The globals dump is incomplete (pg_dumpall's last line is missing).")
    return text


class GlobalsTaker:
    """Takes one server's globals snapshot: dump, compress, (encrypt,) store, read back."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        store: LazyStorage,
        keys: Keys,
        copies: Callable[[Snapshot], object] | None = None,
    ) -> None:
        self.settings, self.catalog, self.store, self.keys = settings, catalog, store, keys
        self.copies = copies  # copies each stored snapshot to ATLAS_COPIES (never raises)

    def take(
        self,
        server: Server,
        *,
        requested_by: str,
        source: str = "cli",
        tags: dict[str, str] | None = None,
    ) -> Snapshot:
        """Dump the server's globals, store them (encrypted when a key is set), read them
        back, and record the snapshot; a failure is recorded and raised as AtlasError.
        Tagged as the run's databases are."""
        identity = self.keys.current()
        storage = self.store.get()

        def record(snap_id: str) -> Snapshot:
            key = globals_key(server.environment, server.name, snap_id, encrypted=bool(identity))
            return Snapshot(
                id=snap_id,
                database=globals_name(server.name),
                environment=server.environment,
                kind=SnapshotKind.GLOBALS,
                source=source,
                requested_by=requested_by,
                storage_key=key,
                location=storage.location(key),
                encryption="age" if identity is not None else "none",
                tags=merged(self.settings.snapshot_tags, tags or {}),
            )

        snap = fresh(self.catalog.begin_snapshot, record)
        snap_id, key = snap.id, snap.storage_key or ""
        conn = Conn("", None)
        stored = _Stored()
        began = time.monotonic()
        try:
            conn = server_conn(server)
            dumped = _dump_globals(conn, self.settings)
            size, sha256 = self._store(key, dumped.data, identity, stored)
            fields = _result(dumped, size, sha256, round(time.monotonic() - began, 3))
            doc = sidecar.sidecar(
                dataclasses.replace(snap, **fields), identity, plain=self.settings.sidecar_plain
            )
            storage.put_bytes(sidecar_key(key), doc)
            audit = (requested_by, "snapshot.ok", {"kind": "globals", "size": size})
            outage.outlast(  # stored and checked: worth waiting for the catalog
                lambda: self.catalog.finish_snapshot(
                    snap_id, SnapshotStatus.OK, audit=audit, **fields
                )
            )
        except BaseException as exc:
            self._fail(snap, stored, exc, conn)
        if self.copies is not None:
            self.copies(self.catalog.get_snapshot(snap_id))
        return self.catalog.get_snapshot(snap_id)

    def _store(
        self, key: str, data: bytes, identity: Identity | None, stored: _Stored
    ) -> tuple[int, str]:
        """Compress and store the dump, then read it back whole: (stored size, sha256)."""
        import zstandard

        storage = self.store.get()
        packed = zstandard.ZstdCompressor(
            level=self.settings.zstd_level, write_checksum=True
        ).compress(data)
        inner = storage.writer(key)
        stored.writer = inner
        if identity is not None:
            from bot.store.crypto import EncryptingWriter

            stored.writer = EncryptingWriter(inner, identity)
        stored.writer.write(packed)
        result = stored.writer.commit()
        stored.committed = True
        size, sha256 = inner.size, result.sha256  # of the stored bytes
        if not sha256:
            size, sha256 = pipeline.hash_stored(storage, key)
        back = bytearray()
        pipeline.read_artifact(
            storage, key, back.extend, expect_size=size, expect_sha256=sha256, identity=identity
        )
        if bytes(back) != data:
            raise AtlasError("The stored globals dump does not read back as written.")
        return size, sha256

    def _fail(self, snap: Snapshot, stored: _Stored, exc: BaseException, conn: Conn) -> NoReturn:
        """Remove what was written, record why (once the catalog is back, unless Ctrl-C),
        and raise: an AtlasError, or what is no Exception as it was."""
        message = str(exc) if isinstance(exc, AtlasError) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, AtlasError | KeyboardInterrupt):
            log.debug("the globals snapshot failed unexpectedly", exc_info=exc)  # -v shows it
        message = redact(message, conn.secrets)
        key = snap.storage_key or ""
        if stored.writer is not None and not stored.committed:
            with contextlib.suppress(Exception):
                stored.writer.abort()
        if stored.committed:
            for k in (key, sidecar_key(key)):
                with contextlib.suppress(Exception):
                    self.store.get().delete(k)
        stopped = isinstance(exc, KeyboardInterrupt)
        status = SnapshotStatus.INTERRUPTED if stopped else SnapshotStatus.FAILED
        outage.outlast(
            lambda: self.catalog.finish_snapshot(snap.id, status, error=message),
            within_s=0.0 if stopped else outage.OUTLAST_S,
        )
        self.catalog.audit(snap.requested_by or "", "snapshot.failed", snap.id, error=message)
        if isinstance(exc, Exception):
            raise AtlasError(message) from None
        raise exc


@dataclass
class _Stored:
    """The writer of a globals artifact, once opened, and whether it was committed."""

    writer: ArtifactWriter | None = None
    committed: bool = False


@dataclass(frozen=True)
class _Dumped:
    """pg_dumpall's output and what it was run against."""

    data: bytes
    text: str
    dbname: str
    server_version: str
    tool_version: str


def _dump_globals(conn: Conn, settings: Settings) -> _Dumped:
    """Run pg_dumpall --globals-only (no passwords) against the server; its checked text."""
    with conn.connect(autocommit=True) as c:
        info = server_info(c)
    tool, version = find_tool("pg_dumpall", info.major, settings.pg_bindir)
    proc = subprocess.run(
        [tool, "--globals-only", "--no-role-passwords", "--dbname", conn.conninfo],
        env=conn.env(),
        capture_output=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    if proc.returncode != 0:
        why = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["?"]
        raise AtlasError(f"pg_dumpall --globals-only failed: {why[0]}")
    text = check_text(proc.stdout)
    return _Dumped(proc.stdout, text, info.dbname, info.version, version)


def _result(dumped: _Dumped, size: int, sha256: str, seconds: float) -> SnapshotResult:
    """The globals snapshot's record once stored and read back: sizes, checksum, and a
    manifest of the roles it creates and how many tablespace statements it holds."""
    parts = statements(dumped.text)
    return {
        "dbname": dumped.dbname,
        "server_version": dumped.server_version,
        "pg_dump_version": dumped.tool_version,
        "size_bytes": size,
        "raw_size_bytes": len(dumped.data),
        "sha256": sha256,
        "verified_at": now(),
        "duration_s": seconds,
        "manifest": {
            "roles": sorted(r for p in parts if (r := created_role(p))),
            "tablespaces": sum(1 for p in parts if NOT_IN_A_TRANSACTION.match(p)),
        },
    }


@dataclass
class Applied:
    """What applying a globals dump on a server, then rolling it back, found."""

    existing: list[str] = field(default_factory=list)  # roles the server already has
    skipped: int = 0  # tablespace statements, which no transaction can hold
    error: str | None = None  # the statement that failed, and why
    unchecked: str | None = None  # why it could not be tried (no CREATEROLE)
    not_permitted: list[str] = field(default_factory=list)  # what the role may not do


def apply_rolled_back(conn: Conn, text: str) -> Applied:
    """Run the globals in one transaction on `conn`'s server and roll it back: nothing
    stays. Roles the server already has are named and their CREATE skipped (their ALTERs
    still run), as are tablespace statements."""
    import psycopg

    out = Applied()
    parts = statements(text)
    with conn.connect(autocommit=True) as c:
        row = c.execute(
            "SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        if not (row and row[0]):
            out.unchecked = "the staging role lacks CREATEROLE, so the roles could not be tried"
            return out
        have = {r[0] for r in c.execute("SELECT rolname FROM pg_roles").fetchall()}
        c.autocommit = False
        try:
            for stmt in parts:
                role = created_role(stmt)
                if role is not None and role in have:
                    out.existing.append(role)
                    continue
                if NOT_IN_A_TRANSACTION.match(stmt.strip()):
                    out.skipped += 1
                    continue
                first = stmt.strip().splitlines()[0][:200]
                c.execute("SAVEPOINT atlas_statement")
                try:
                    c.execute(stmt.encode())
                except psycopg.errors.InsufficientPrivilege:
                    # a CREATEROLE role may not touch superuser roles: named, not fatal
                    c.execute("ROLLBACK TO SAVEPOINT atlas_statement")
                    out.not_permitted.append(first)
                except psycopg.Error as exc:
                    out.error = f"{first}: {str(exc).strip().splitlines()[0]}"
                    break
        finally:
            c.rollback()
    return out
