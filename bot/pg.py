"""libpq connection handling that keeps passwords out of argv, logs and messages."""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from bot import conninfo, locations, redaction
from bot.errors import AtlasError


@dataclass(frozen=True)
class Conn:
    """A connection split into the part that may be shown and the password that may not."""

    conninfo: str  # key=value form, no password: safe for argv
    password: str | None

    @classmethod
    def parse(cls, url: str, setting: str = "the database URL") -> Conn:
        """Split a libpq URL or key=value string; a malformed one is one clear error that
        names the setting and never quotes its password."""
        redaction.remember(url)
        try:
            url = locations.postgres_url(url)  # stripped: a pasted space is no key=value
        except ValueError as exc:
            raise AtlasError(f"Invalid database URL in {setting}: {exc}.") from None
        if locations.unencoded_at(url):
            raise AtlasError(
                f"Invalid database URL in {setting}: its password holds an unencoded '@', "
                "which libpq takes for the start of the host name.",
                "write each '@' in it as %40 (and each space as %20), or keep the password in "
                "~/.pgpass or PGPASSWORD",
            )
        try:
            params = conninfo_to_dict(url) if url else {}
        except psycopg.ProgrammingError as exc:
            raise AtlasError(
                f"Invalid database URL in {setting}: {first_line(str(exc))}.",
                "write it as postgresql://USER@HOST:5432/DBNAME (percent-encode special "
                "characters in the password, or keep it in ~/.pgpass or PGPASSWORD), "
                "or as host=HOST dbname=DBNAME user=USER",
            ) from None
        password = params.pop("password", None)
        return cls(make_conninfo("", **params), str(password) if password is not None else None)

    def env(self, base: dict[str, str] | None = None) -> dict[str, str]:
        """Environment for a libpq subprocess: the password travels here, never in argv."""
        env = dict(os.environ if base is None else base)
        if self.password is not None:
            env["PGPASSWORD"] = self.password
        env.setdefault("PGCONNECT_TIMEOUT", "10")
        env["PGAPPNAME"] = "atlas"
        return env

    def connect(self, **kwargs: object) -> psycopg.Connection:
        kw: dict[str, object] = {"connect_timeout": 10, "application_name": "atlas"}
        kw.update(kwargs)
        if self.password is not None:
            kw["password"] = self.password
        try:
            # libpq parameters: psycopg types its own keywords, not these
            return psycopg.connect(self.conninfo, **kw)  # type: ignore[arg-type]
        except psycopg.OperationalError as exc:
            raise AtlasError(
                f"Cannot connect to {self.describe()}: {first_line(redaction.redact(str(exc), self.secrets))}",
                "check the URL, that the server is up, and the credentials",
            ) from None

    def with_dbname(self, dbname: str) -> Conn:
        params = conninfo_to_dict(self.conninfo)
        params["dbname"] = dbname
        return Conn(make_conninfo("", **params), self.password)

    @property
    def secrets(self) -> list[str]:
        return [self.password] if self.password else []

    def address(self) -> tuple[str, str, str]:
        """(host, port, dbname) with libpq's defaults filled in, for comparing two URLs."""
        params = conninfo_to_dict(self.conninfo)
        return conninfo.address({k: str(v) for k, v in params.items() if v is not None})

    def describe(self) -> str:
        """host:port/dbname for humans; never the password."""
        p = conninfo_to_dict(self.conninfo)
        host = p.get("host") or p.get("hostaddr") or os.environ.get("PGHOST") or "local socket"
        port = p.get("port") or os.environ.get("PGPORT") or "5432"
        db = p.get("dbname") or os.environ.get("PGDATABASE") or p.get("user") or "?"
        return f"{host}:{port}/{db}"


def first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[0] if lines else text.strip()


@dataclass(frozen=True)
class ServerInfo:
    """What a PostgreSQL server says of itself and the connected database."""

    version_num: int  # e.g. 150018
    version: str  # e.g. "15.18"
    dbname: str

    @property
    def major(self) -> int:
        return self.version_num // 10000


def server_info(conn: psycopg.Connection) -> ServerInfo:
    row = conn.execute(
        "SELECT current_setting('server_version_num')::int, current_setting('server_version'), "
        "current_database()"
    ).fetchone()
    assert row is not None
    return ServerInfo(int(row[0]), str(row[1]).split()[0], str(row[2]))


_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


@functools.lru_cache(maxsize=32)
def tool_version(path: str) -> tuple[int, int]:
    """(major, minor) of a PostgreSQL client tool, e.g. pg_dump 15.18 -> (15, 18)."""
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True)
    except OSError as exc:
        raise AtlasError(f"Cannot run {path}: {exc.strerror}") from None
    m = _VERSION.search(out.stdout)
    if out.returncode != 0 or not m:
        raise AtlasError(f"{path} --version gave no PostgreSQL version: {out.stdout.strip()!r}")
    return int(m.group(1)), int(m.group(2) or 0)


def _candidates(name: str, bindir: str | None) -> list[str]:
    if bindir:
        return [str(Path(bindir) / name)]
    found: list[str] = []
    on_path = shutil.which(name)
    # Debian's pg_wrapper (a Perl script) runs one of /usr/lib/postgresql/*/bin, which
    # are listed below anyway; asking it for its version costs ~20 ms of Perl start-up.
    if on_path and not os.path.realpath(on_path).endswith("/pg_wrapper"):
        found.append(on_path)
    patterns = [
        "/usr/lib/postgresql/*/bin",
        "/usr/pgsql-*/bin",
        "/opt/homebrew/opt/postgresql@*/bin",
        "/usr/local/opt/postgresql@*/bin",
    ]
    for pattern in patterns:
        for d in sorted(glob.glob(pattern)):
            p = Path(d) / name
            if p.is_file() and os.access(p, os.X_OK):
                found.append(str(p))
    return found


def warm_tool_versions(names: Iterable[str], bindir: str | None = None) -> Callable[[], None]:
    """Ask every candidate tool for its version at once, on threads, so the few
    milliseconds each `--version` takes overlap the database connection. Call the
    returned function before `find_tool`."""

    def ask(path: str) -> None:
        with contextlib.suppress(AtlasError):
            tool_version(path)

    paths = [p for name in names for p in _candidates(name, bindir)]
    threads = [threading.Thread(target=ask, args=(p,), daemon=True) for p in paths]
    for t in threads:
        t.start()

    def wait() -> None:
        for t in threads:
            t.join()

    return wait


def find_tool(name: str, server_major: int, bindir: str | None = None) -> tuple[str, str]:
    """The newest `name` (pg_dump, pg_restore) at least as new as the server, and its version.

    pg_dump refuses servers newer than itself, and an old pg_restore cannot read a new
    archive; choosing here turns that into one clear message before anything runs.
    """
    best: tuple[tuple[int, int], str] | None = None
    seen: list[str] = []
    for path in _candidates(name, bindir):
        try:
            ver = tool_version(path)
        except AtlasError:
            continue
        seen.append(f"{path} ({ver[0]}.{ver[1]})")
        if best is None or ver > best[0]:
            best = (ver, path)
    if best is None:
        where = f"in ATLAS_PG_BINDIR={bindir}" if bindir else "on PATH"
        raise AtlasError(
            f"{name} was not found {where}.",
            "install the PostgreSQL client tools or set ATLAS_PG_BINDIR",
        )
    (major, minor), path = best
    if major < server_major:
        raise AtlasError(
            f"{name} {major}.{minor} is older than the server (PostgreSQL {server_major}); "
            f"{name} must be at least the server's major version. Found: {', '.join(seen)}.",
            f"install postgresql-client-{server_major} (or newer) or point ATLAS_PG_BINDIR at it",
        )
    return path, f"{major}.{minor}"
