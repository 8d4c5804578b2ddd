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
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import psycopg
import pytest
from psycopg import sql

from tests.support import pick_free_port

__all__ = [
    "DEFAULT_PASSWORD",
    "LeastPrivilege",
    "PgCluster",
    "fill_realistic",
    "fill_sample",
    "least_privilege",
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


MEMORY_ROOM = 4 << 30  # free space /dev/shm must have for test clusters to go there


def memory_folder(where: str = "/dev/shm") -> str | None:
    """`where` when it is a tmpfs with room, else None (the usual temp folder).

    Test clusters create and drop thousands of databases of ~300 files each. On ext4
    without a journal (this machine's root), each new file's inode search walks past
    recently deleted ones (perf: ext4_create -> recently_deleted), and CREATE DATABASE took
    200-300 ms of CPU instead of 12-25 ms on tmpfs. Benches default to in_memory=False: a
    real server's data is on disk."""
    try:
        with open("/proc/mounts", encoding="utf-8") as fh:
            kinds = {fields[1]: fields[2] for fields in (line.split() for line in fh)}
        room = os.statvfs(where)
    except OSError:
        return None
    writable = os.access(where, os.W_OK | os.X_OK)
    if kinds.get(where) != "tmpfs" or not writable or room.f_bavail * room.f_frsize < MEMORY_ROOM:
        return None
    return where


class PgCluster:
    """A private PostgreSQL cluster listening on 127.0.0.1:<free port> and a unix socket.

    With ``password_auth=True`` TCP connections require a SCRAM password (local socket
    stays ``trust``); ``url()`` then embeds ``password``.
    """

    host = "127.0.0.1"
    superuser = "postgres"

    def __init__(
        self,
        *,
        password_auth: bool = True,
        password: str = DEFAULT_PASSWORD,
        in_memory: bool = True,
    ) -> None:
        self.password_auth = password_auth
        self.in_memory = in_memory
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
        parent = memory_folder() if self.in_memory else None
        self.base_dir = tempfile.mkdtemp(prefix=f"atlas-pg-{worker}-", dir=parent)
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


def fill_realistic(target: str | psycopg.Connection[Any], scale: int = 1) -> dict[str, int]:
    """An application schema as production databases have them: two schemas, 24 tables
    of a few sizes, primary keys, foreign keys (one of them to itself), unique and
    partial and expression indexes, a citext column, sequences, a view and a materialised
    view. Returns the expected ``count(*)`` per table (``schema.table``)."""
    if isinstance(target, str):
        with psycopg.connect(target, autocommit=True) as conn:
            return fill_realistic(conn, scale)
    conn = target
    n = 200 * scale
    counts: dict[str, int] = {}
    with conn.transaction():
        text_type = "citext" if _try_extension(conn, "citext") else "text"
        conn.execute("CREATE SCHEMA app")
        conn.execute("CREATE SCHEMA billing")
        for i in range(1, 14):  # small lookup tables
            conn.execute(
                f"CREATE TABLE app.lookup_{i} (id smallint PRIMARY KEY, code text NOT NULL UNIQUE)"
            )
            conn.execute(
                f"INSERT INTO app.lookup_{i} SELECT g, 'code-{i}-' || g FROM generate_series(1, 20) g"
            )
            counts[f"app.lookup_{i}"] = 20
        conn.execute(
            f"CREATE TABLE app.customers (id bigserial PRIMARY KEY, email {text_type} NOT NULL,"
            " name text NOT NULL, tier smallint REFERENCES app.lookup_1(id),"
            " referred_by bigint REFERENCES app.customers(id), created_at timestamptz NOT NULL)"
        )
        conn.execute("CREATE UNIQUE INDEX customers_email ON app.customers (email)")
        conn.execute("CREATE INDEX customers_lower_name ON app.customers (lower(name))")
        conn.execute(
            "INSERT INTO app.customers (email, name, tier, referred_by, created_at)"
            " SELECT 'c' || g || '@example.com', 'Customer ' || g, 1 + g %% 20,"
            "  CASE WHEN g > 10 THEN g / 10 END,"
            "  timestamptz '2024-01-01 00:00:00+00' + g * interval '37 minutes'"
            " FROM generate_series(1, %s) g",
            (n,),
        )
        counts["app.customers"] = n
        conn.execute(
            "CREATE TABLE app.addresses (id bigserial PRIMARY KEY,"
            " customer_id bigint NOT NULL REFERENCES app.customers(id) ON DELETE CASCADE,"
            " kind smallint REFERENCES app.lookup_2(id), line text, city text, zip text)"
        )
        conn.execute("CREATE INDEX addresses_customer ON app.addresses (customer_id)")
        conn.execute(
            "INSERT INTO app.addresses (customer_id, kind, line, city, zip)"
            " SELECT 1 + g %% %s, 1 + g %% 2, g || ' Main St', 'City ' || g %% 50, lpad(g::text, 5, '0')"
            " FROM generate_series(1, %s) g",
            (n, 2 * n),
        )
        counts["app.addresses"] = 2 * n
        conn.execute(
            "CREATE TABLE app.products (id serial PRIMARY KEY, sku text NOT NULL UNIQUE,"
            " title text NOT NULL, category smallint REFERENCES app.lookup_3(id),"
            " price numeric(10,2) NOT NULL CHECK (price >= 0), active boolean NOT NULL)"
        )
        conn.execute("CREATE INDEX products_active ON app.products (category) WHERE active")
        conn.execute(
            "INSERT INTO app.products (sku, title, category, price, active)"
            " SELECT 'SKU-' || g, 'Product ' || g, 1 + g %% 20, (g %% 500) * 1.5, g %% 7 <> 0"
            " FROM generate_series(1, %s) g",
            (n // 2,),
        )
        counts["app.products"] = n // 2
        conn.execute(
            "CREATE TABLE app.orders (id bigserial PRIMARY KEY,"
            " customer_id bigint NOT NULL REFERENCES app.customers(id),"
            " status smallint NOT NULL REFERENCES app.lookup_4(id),"
            " placed_at timestamptz NOT NULL, note text)"
        )
        conn.execute("CREATE INDEX orders_customer ON app.orders (customer_id, placed_at DESC)")
        conn.execute("CREATE INDEX orders_open ON app.orders (placed_at) WHERE status < 3")
        conn.execute(
            "INSERT INTO app.orders (customer_id, status, placed_at, note)"
            " SELECT 1 + g %% %s, 1 + g %% 5,"
            "  timestamptz '2025-01-01 00:00:00+00' + g * interval '11 minutes', md5(g::text)"
            " FROM generate_series(1, %s) g",
            (n, 5 * n),
        )
        counts["app.orders"] = 5 * n
        conn.execute(
            "CREATE TABLE app.order_items (order_id bigint NOT NULL"
            " REFERENCES app.orders(id) ON DELETE CASCADE,"
            " line smallint NOT NULL, product_id int NOT NULL REFERENCES app.products(id),"
            " qty int NOT NULL, PRIMARY KEY (order_id, line))"
        )
        conn.execute("CREATE INDEX order_items_product ON app.order_items (product_id)")
        conn.execute(
            "INSERT INTO app.order_items SELECT o, l, 1 + (o * 7 + l) %% %s, 1 + l"
            " FROM generate_series(1, %s) o, generate_series(1, 3) l",
            (n // 2, 5 * n),
        )
        counts["app.order_items"] = 15 * n
        conn.execute(
            "CREATE TABLE app.reviews (id bigserial PRIMARY KEY,"
            " product_id int NOT NULL REFERENCES app.products(id),"
            " customer_id bigint REFERENCES app.customers(id), stars smallint, body text)"
        )
        conn.execute("CREATE INDEX reviews_product ON app.reviews (product_id, stars)")
        conn.execute(
            "INSERT INTO app.reviews (product_id, customer_id, stars, body)"
            " SELECT 1 + g %% %s, 1 + g %% %s, 1 + g %% 5, repeat('good ', 1 + g %% 20)"
            " FROM generate_series(1, %s) g",
            (n // 2, n, n),
        )
        counts["app.reviews"] = n
        conn.execute(
            "CREATE TABLE app.events (id bigserial PRIMARY KEY, at timestamptz NOT NULL,"
            " kind smallint REFERENCES app.lookup_5(id), payload jsonb)"
        )
        conn.execute("CREATE INDEX events_at ON app.events USING brin (at)")
        conn.execute(
            "INSERT INTO app.events (at, kind, payload)"
            " SELECT timestamptz '2025-06-01 00:00:00+00' + g * interval '1 second', 1 + g %% 20,"
            "  jsonb_build_object('n', g, 'tag', 't' || g %% 13)"
            " FROM generate_series(1, %s) g",
            (10 * n,),
        )
        counts["app.events"] = 10 * n
        conn.execute(
            "CREATE TABLE billing.invoices (id bigserial PRIMARY KEY,"
            " order_id bigint NOT NULL UNIQUE REFERENCES app.orders(id),"
            " currency smallint REFERENCES app.lookup_6(id), total numeric(12,2) NOT NULL)"
        )
        conn.execute(
            "INSERT INTO billing.invoices (order_id, currency, total)"
            " SELECT g, 1 + g %% 3, (g %% 1000) * 3.25 FROM generate_series(1, %s) g",
            (4 * n,),
        )
        counts["billing.invoices"] = 4 * n
        conn.execute(
            "CREATE TABLE billing.payments (id bigserial PRIMARY KEY,"
            " invoice_id bigint NOT NULL REFERENCES billing.invoices(id),"
            " method smallint REFERENCES app.lookup_7(id), amount numeric(12,2) NOT NULL,"
            " paid_at timestamptz NOT NULL)"
        )
        conn.execute("CREATE INDEX payments_invoice ON billing.payments (invoice_id)")
        conn.execute(
            "INSERT INTO billing.payments (invoice_id, method, amount, paid_at)"
            " SELECT 1 + g %% %s, 1 + g %% 4, (g %% 700) * 2.0,"
            "  timestamptz '2025-02-01 00:00:00+00' + g * interval '13 minutes'"
            " FROM generate_series(1, %s) g",
            (4 * n, 4 * n),
        )
        counts["billing.payments"] = 4 * n
        for name, fk in (("refunds", "payments"), ("disputes", "payments")):
            conn.execute(
                f"CREATE TABLE billing.{name} (id serial PRIMARY KEY,"
                f" ref_id bigint NOT NULL REFERENCES billing.{fk}(id), reason text)"
            )
            conn.execute(
                f"INSERT INTO billing.{name} (ref_id, reason)"
                " SELECT g * 3, 'reason ' || g FROM generate_series(1, %s) g",
                (n // 4,),
            )
            counts[f"billing.{name}"] = n // 4
        conn.execute("CREATE SEQUENCE billing.invoice_number START 1000")
        conn.execute("SELECT setval('billing.invoice_number', %s)", (1000 + 4 * n,))
        conn.execute("CREATE VIEW app.open_orders AS SELECT * FROM app.orders WHERE status < 3")
        conn.execute(
            "CREATE MATERIALIZED VIEW billing.daily_totals AS SELECT date_trunc('day', paid_at)"
            " AS day, sum(amount) AS total FROM billing.payments GROUP BY 1"
        )
    return counts


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


@dataclass
class LeastPrivilege:
    """Roles as a careful team grants them, on the test cluster.

    - ``reader``: reads production through ``pg_read_all_data``; no superuser, owns nothing.
    - ``stager``: only ``CREATEDB`` on the staging server, for drills' scratch databases.
    - ``owner``: owns the staging database that refreshes replace, with ``CREATEDB`` to
      build the new one beside it and swap it in; nothing else.
    """

    pg: PgCluster
    production: str  # database name
    staging: str  # database name, owned by `owner`
    reader: str
    stager: str
    owner: str
    password: str

    def url(self, role: str, dbname: str, **params: Any) -> str:
        return self.pg.url(dbname, user=role, password=self.password, **params)

    @property
    def reader_url(self) -> str:
        return self.url(self.reader, self.production)

    @property
    def stager_url(self) -> str:
        return self.url(self.stager, "postgres")

    @property
    def owner_url(self) -> str:
        return self.url(self.owner, self.staging)


@pytest.fixture
def least_privilege(pg: PgCluster, pg_db: str) -> Iterator[LeastPrivilege]:
    """Non-superuser roles for ``pg_db`` (production) and a staging database beside it."""
    tag = uuid.uuid4().hex[:8]
    roles = LeastPrivilege(
        pg=pg,
        production=pg_db,
        staging=f"{pg_db}_stg",
        reader=f"reader_{tag}",
        stager=f"stager_{tag}",
        owner=f"owner_{tag}",
        password=f"lp-{tag}-pw",
    )
    pg.create_role(roles.reader, roles.password)
    pg.create_role(roles.stager, roles.password, createdb=True)
    pg.create_role(roles.owner, roles.password, createdb=True)
    pg.execute("postgres", f'GRANT pg_read_all_data TO "{roles.reader}"')
    pg.create_database(roles.staging, owner=roles.owner)
    try:
        yield roles
    finally:
        with pg.connect() as conn:
            for (name,) in conn.execute(
                "SELECT datname FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba"
                " WHERE r.rolname = ANY(%s)",
                [[roles.stager, roles.owner]],
            ).fetchall():
                conn.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
        for role in (roles.reader, roles.stager, roles.owner):
            pg.execute("postgres", f'DROP OWNED BY "{role}"')
            pg.drop_role(role)


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
    """A fresh, empty database ``t_<hex>``; dropped (forcefully) afterwards, with every
    database named after it (its staging, and what refreshes of that staging kept), so
    that no test sees another's leftovers on the worker's cluster."""
    name = pg.create_database(unique_name("t_"))
    try:
        yield name
    finally:
        rows = pg.execute(
            "postgres", "SELECT datname FROM pg_database WHERE strpos(datname, %s) > 0", [name]
        )
        for (found,) in rows:
            pg.drop_database(found)


@pytest.fixture
def pg_url(pg: PgCluster, pg_db: str) -> str:
    """Superuser libpq URL (with password) of the ``pg_db`` database."""
    return pg.url(pg_db)
