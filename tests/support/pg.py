"""Throwaway PostgreSQL cluster for tests (real server, started with initdb/pg_ctl)."""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import quote, urlencode

import psycopg
import pytest
from psycopg import sql

from tests.support import pick_free_port

__all__ = [
    "DEFAULT_PASSWORD",
    "PgCluster",
    "fill_sample",
    "pg",
    "pg_db",
    "pg_url",
    "pg_bindir",
    "unique_name",
]

DEFAULT_PASSWORD = "s3cr3t-pg-pass"


def pg_bindir() -> str:
    """Directory holding initdb/pg_ctl (``pg_config --bindir``, else newest /usr/lib/postgresql)."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        bindir = out.stdout.strip()
        if out.returncode == 0 and os.path.exists(os.path.join(bindir, "initdb")):
            return bindir
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0,
    )
    if candidates:
        return os.path.dirname(candidates[-1])
    found = shutil.which("initdb")
    if found:
        return os.path.dirname(found)
    raise RuntimeError("PostgreSQL server binaries (initdb/pg_ctl) not found")


class PgCluster:
    """A private PostgreSQL cluster listening on 127.0.0.1:<free port> and a unix socket.

    With ``password_auth=True`` TCP connections require a SCRAM password (local socket
    stays ``trust``); ``url()`` then embeds ``password``.
    """

    host = "127.0.0.1"
    superuser = "postgres"

    def __init__(self, *, password_auth: bool = True, password: str = DEFAULT_PASSWORD) -> None:
        self.password_auth = password_auth
        self.password: str | None = password if password_auth else None
        self.port: int = 0
        self.base_dir: str = ""
        self.socket_dir: str = ""
        self.data_dir: str = ""
        self.log_file: str = ""
        self.bindir = pg_bindir()
        self._running = False

    # -- lifecycle ---------------------------------------------------------------------------

    def _as_pg_user(self, argv: Sequence[str]) -> list[str]:
        """Prefix ``argv`` with ``runuser -u postgres --`` when running as root."""
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *argv]
        return list(argv)

    def _run(self, argv: Sequence[str], timeout: float = 120) -> None:
        proc = subprocess.run(
            self._as_pg_user(argv), capture_output=True, text=True, timeout=timeout, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"{os.path.basename(argv[0])} failed ({proc.returncode}):\n"
                f"{proc.stdout}\n{proc.stderr}\n{self._log_tail()}"
            )

    def _log_tail(self) -> str:
        try:
            with open(self.log_file, encoding="utf-8", errors="replace") as fh:
                return fh.read()[-4000:]
        except OSError:
            return ""

    def start(self) -> PgCluster:
        """initdb + pg_ctl start on a free port; retries with a new port on a port race."""
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        self.base_dir = tempfile.mkdtemp(prefix=f"atlas-pg-{worker}-")
        self.socket_dir = self.base_dir
        self.data_dir = os.path.join(self.base_dir, "data")
        self.log_file = os.path.join(self.base_dir, "log")
        if os.geteuid() == 0:
            shutil.chown(self.base_dir, user="postgres", group="postgres")
        try:
            self._initdb()
            last_error: Exception | None = None
            for _attempt in range(5):
                self.port = pick_free_port(self.host)
                try:
                    self._pg_ctl_start()
                    self._running = True
                    self._wait_ready()
                    return self
                except RuntimeError as exc:  # most likely the port got taken meanwhile
                    last_error = exc
                    self._running = False
                    self._pg_ctl_stop()
            raise RuntimeError(f"could not start PostgreSQL: {last_error}")
        except BaseException:
            self.stop()
            raise

    def _initdb(self) -> None:
        argv = [
            os.path.join(self.bindir, "initdb"),
            "-D",
            self.data_dir,
            "-U",
            self.superuser,
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ]
        if self.password_auth:
            assert self.password is not None
            pwfile = os.path.join(self.base_dir, "pwfile")
            with open(pwfile, "w", encoding="utf-8") as fh:
                fh.write(self.password + "\n")
            os.chmod(pwfile, 0o600)
            if os.geteuid() == 0:
                shutil.chown(pwfile, user="postgres", group="postgres")
            argv += ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
        else:
            argv += ["-A", "trust"]
        try:
            self._run(argv)
        finally:
            if self.password_auth:
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(self.base_dir, "pwfile"))

    def _pg_ctl_start(self) -> None:
        opts = (
            f"-p {self.port} -k {self.socket_dir} -c listen_addresses={self.host} "
            "-c fsync=off -c full_page_writes=off -c synchronous_commit=off "
            "-c max_connections=100"
        )
        self._run(
            [
                os.path.join(self.bindir, "pg_ctl"),
                "-D",
                self.data_dir,
                "-l",
                self.log_file,
                "-w",
                "-t",
                "60",
                "-o",
                opts,
                "start",
            ]
        )

    def _pg_ctl_stop(self) -> None:
        if not self.data_dir or not os.path.exists(os.path.join(self.data_dir, "postmaster.pid")):
            return
        subprocess.run(
            self._as_pg_user(
                [os.path.join(self.bindir, "pg_ctl"), "-D", self.data_dir, "-m", "immediate", "-w"]
                + ["stop"]
            ),
            capture_output=True,
            timeout=60,
            check=False,
        )

    def _wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.url(), connect_timeout=5):
                    return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL not ready: {exc}\n{self._log_tail()}") from exc
                time.sleep(0.1)

    def stop(self) -> None:
        """Immediate shutdown and removal of the cluster directory (idempotent)."""
        self._pg_ctl_stop()
        self._running = False
        if self.base_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = ""

    def __enter__(self) -> PgCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- connection helpers ------------------------------------------------------------------

    def url(
        self,
        dbname: str = "postgres",
        *,
        user: str | None = None,
        password: str | None = None,
        **params: Any,
    ) -> str:
        """libpq URL, e.g. ``postgresql://postgres:pw@127.0.0.1:PORT/db?sslmode=disable``.

        ``user``/``password`` default to the superuser (and its password when password auth).
        Extra keyword args become query parameters.
        """
        user = user or self.superuser
        if password is None and user == self.superuser:
            password = self.password
        auth = quote(user, safe="")
        if password is not None:
            auth += ":" + quote(password, safe="")
        query = f"?{urlencode(params)}" if params else ""
        return f"postgresql://{auth}@{self.host}:{self.port}/{quote(dbname, safe='')}{query}"

    def connect(self, dbname: str = "postgres", **kwargs: Any) -> psycopg.Connection[Any]:
        """Superuser psycopg connection (autocommit) over TCP."""
        kwargs.setdefault("autocommit", True)
        return psycopg.connect(self.url(dbname), **kwargs)

    def execute(self, dbname: str, query: str, params: Sequence[Any] | None = None) -> list[Any]:
        """Run one statement in autocommit mode; returns fetched rows (``[]`` if none)."""
        with self.connect(dbname) as conn, conn.cursor() as cur:
            cur.execute(query, params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description is not None else []

    def create_database(self, name: str, *, owner: str | None = None) -> str:
        """CREATE DATABASE ``name`` (optionally owned by ``owner``); returns the name."""
        stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if owner:
            stmt = sql.SQL("{} OWNER {}").format(stmt, sql.Identifier(owner))
        with self.connect() as conn:
            conn.execute(stmt)
        return name

    def drop_database(self, name: str) -> None:
        """DROP DATABASE IF EXISTS ``name`` WITH (FORCE) (kicks connected sessions)."""
        with self.connect() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def create_role(
        self,
        name: str,
        password: str,
        *,
        superuser: bool = False,
        createdb: bool = False,
    ) -> str:
        """Create a LOGIN role with ``password``; returns ``name``."""
        flags = ["LOGIN", "SUPERUSER" if superuser else "NOSUPERUSER"]
        flags.append("CREATEDB" if createdb else "NOCREATEDB")
        stmt = sql.SQL("CREATE ROLE {} {} PASSWORD {}").format(
            sql.Identifier(name), sql.SQL(" ".join(flags)), sql.Literal(password)
        )
        with self.connect() as conn:
            conn.execute(stmt)
        return name

    def drop_role(self, name: str) -> None:
        """DROP ROLE IF EXISTS ``name`` (it must not own objects anymore)."""
        with self.connect() as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))


def fill_sample(target: str | psycopg.Connection[Any], rows: int = 1000) -> dict[str, int]:
    """Create a small sample schema and data; return expected ``count(*)`` per table.

    Tables: ``users`` (``rows`` rows), ``orders`` (``2*rows`` rows, FK to users),
    sequence ``invoice_no_seq`` advanced to ``rows + 100``, and extensions
    ``citext``/``pgcrypto`` when available (``users.handle`` is citext if so).
    """
    if isinstance(target, str):
        with psycopg.connect(target, autocommit=True) as conn:
            return fill_sample(conn, rows)
    conn = target
    with conn.transaction():
        has_citext = _try_extension(conn, "citext")
        _try_extension(conn, "pgcrypto")
        handle_type = "citext" if has_citext else "text"
        conn.execute(
            "CREATE TABLE users ("
            " id serial PRIMARY KEY,"
            " email text NOT NULL,"
            f" handle {handle_type},"
            " created_at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute(
            "CREATE TABLE orders ("
            " id bigserial PRIMARY KEY,"
            " user_id int NOT NULL REFERENCES users(id),"
            " amount numeric(12,2) NOT NULL,"
            " note text)"
        )
        conn.execute("CREATE INDEX orders_user_id_idx ON orders(user_id)")
        conn.execute(
            "INSERT INTO users (email, handle, created_at)"
            " SELECT 'user' || g || '@example.com', 'User' || g,"
            "        timestamptz '2024-01-01 00:00:00+00' + g * interval '1 minute'"
            " FROM generate_series(1, %s) AS g",
            (rows,),
        )
        conn.execute(
            "INSERT INTO orders (user_id, amount, note)"
            " SELECT ((g - 1) %% %s) + 1, (g %% 997) * 1.25, 'order #' || g"
            " FROM generate_series(1, %s) AS g",
            (max(rows, 1), 2 * rows),
        )
        conn.execute("CREATE SEQUENCE invoice_no_seq")
        conn.execute("SELECT setval('invoice_no_seq', %s)", (rows + 100,))
    return {"users": rows, "orders": 2 * rows}


def _try_extension(conn: psycopg.Connection[Any], name: str) -> bool:
    try:
        with conn.transaction():
            conn.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(name)))
        return True
    except psycopg.Error:
        return False


def unique_name(prefix: str = "t_") -> str:
    """A unique lowercase identifier such as ``t_3f2a9c1b0d4e``."""
    return f"{prefix}{uuid.uuid4().hex[:12]}"


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def pg() -> Iterator[PgCluster]:
    """Session-wide (per xdist worker) cluster with password auth (``DEFAULT_PASSWORD``)."""
    cluster = PgCluster(password_auth=True, password=DEFAULT_PASSWORD)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def pg_db(pg: PgCluster) -> Iterator[str]:
    """A fresh, empty database ``t_<hex>``; dropped (forcefully) afterwards."""
    name = pg.create_database(unique_name("t_"))
    try:
        yield name
    finally:
        pg.drop_database(name)


@pytest.fixture
def pg_url(pg: PgCluster, pg_db: str) -> str:
    """Superuser libpq URL (with password) of the ``pg_db`` database."""
    return pg.url(pg_db)
