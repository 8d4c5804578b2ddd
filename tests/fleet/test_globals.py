"""A server's roles and tablespaces: stored with each fleet run (compressed, checksummed,
encrypted when a key is set, read back), fetched as SQL, verified, and applied on the
staging server in a transaction that is rolled back by every drill."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.backup.layout import globals_name
from bot.fleet.globals import apply_rolled_back, created_role, statements
from bot.pg import Conn
from bot.records import SnapshotKind
from bot.store.crypto import generate_identity
from tests.support.helpers import REPO, cli_env, run_cli, services_for, settings_for
from tests.support.pg import LeastPrivilege, PgCluster, fill_sample

# pg_dumpall --globals-only as PostgreSQL 15 writes it (with a later minor's \restrict)
SAMPLE = r'''\restrict abc123

--
-- PostgreSQL database cluster dump
--

SET default_transaction_read_only = off;

SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;

--
-- Roles
--

CREATE ROLE app;
ALTER ROLE app WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB LOGIN NOREPLICATION NOBYPASSRLS;
CREATE ROLE "Odd ""name""";
ALTER ROLE "Odd ""name""" WITH NOSUPERUSER INHERIT NOCREATEROLE NOCREATEDB NOLOGIN NOREPLICATION NOBYPASSRLS;
CREATE TABLESPACE fast OWNER app LOCATION '/mnt/fast';

--
-- Role memberships
--

GRANT "Odd ""name""" TO app GRANTED BY postgres;

\unrestrict abc123

--
-- PostgreSQL database cluster dump complete
--

'''


def test_statements_leave_out_comments_and_psql_commands() -> None:
    parts = statements(SAMPLE)
    assert parts[0] == "SET default_transaction_read_only = off;"
    assert not [p for p in parts if p.startswith(("--", "\\"))]
    assert len(parts) == 9
    assert [created_role(p) for p in parts if created_role(p)] == ["app", 'Odd "name"']
    assert created_role("CREATE ROLE app WITH LOGIN;") is None  # not the bare form


@pytest.fixture(scope="module")
def staging_server() -> Iterator[PgCluster]:
    """A second, fresh server: the roles of production don't exist there."""
    with PgCluster() as cluster:
        yield cluster


@pytest.fixture
def fleet(pg: PgCluster) -> Iterator[tuple[str, str]]:
    """A database `<tag>db` and two roles `<tag>app` (with a password) and `<tag>ro`."""
    tag = f"gl_{uuid.uuid4().hex[:6]}_"
    pg.create_database(tag + "db")
    fill_sample(pg.url(tag + "db"), rows=20)
    pg.execute("postgres", f"CREATE ROLE {tag}ro NOLOGIN")
    pg.execute("postgres", f"CREATE ROLE {tag}app LOGIN PASSWORD 'pw-{tag}-secret' IN ROLE {tag}ro")
    try:
        yield tag, f"pw-{tag}-secret"
    finally:
        pg.drop_database(tag + "db")
        pg.execute("postgres", f"DROP ROLE IF EXISTS {tag}app")
        pg.execute("postgres", f"DROP ROLE IF EXISTS {tag}ro")


@pytest.mark.parametrize("encrypted", [False, True])
def test_each_run_stores_the_roles_without_passwords_and_fetch_writes_the_sql(
    least_privilege: LeastPrivilege,
    fleet: tuple[str, str],
    tmp_path: Path,
    encrypted: bool,
) -> None:
    tag, password = fleet
    extra = {
        "DATABASE_URL": least_privilege.url(least_privilege.reader, "postgres"),
        "ATLAS_DATABASES": f"{tag}*",
    }
    if encrypted:
        secret, _ = generate_identity()
        (tmp_path / "age.key").write_text(secret + "\n")
        extra["ATLAS_ENCRYPTION_KEY_FILE"] = str(tmp_path / "age.key")
    env = cli_env(tmp_path, **extra)
    run = run_cli(["snapshot", "--all", "--json"], env, REPO, text=True)
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    kinds = {s["database"]: s["kind"] for s in doc["snapshots"]}
    assert kinds == {tag + "db": "database", globals_name("default"): "globals"}
    roles = next(s for s in doc["snapshots"] if s["kind"] == "globals")
    assert roles["storage_key"].endswith(".sql.zst.age" if encrypted else ".sql.zst")
    assert roles["verified_at"] and roles["encryption"] == ("age" if encrypted else "none")
    assert roles["duration_s"] is not None and roles["size_bytes"] > 0

    out = tmp_path / "globals.sql"
    fetched = run_cli(["fetch", roles["id"], "-o", str(out)], env, REPO, text=True)
    assert fetched.returncode == 0, fetched.stderr
    sql = out.read_text()
    assert f"CREATE ROLE {tag}app;" in sql and f"GRANT {tag}ro TO {tag}app" in sql
    assert password not in sql and "SCRAM-SHA-256" not in sql  # --no-role-passwords
    assert run_cli(["verify", roles["id"]], env, REPO, text=True).returncode == 0

    # a changed byte is found by verify, and the roles snapshot is marked, not the database's
    stored = tmp_path / "backups" / roles["storage_key"]
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.write_bytes(bytes(data))
    bad = run_cli(["verify", roles["id"]], env, REPO, text=True)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    listed = {
        r["id"]: r["status"]
        for r in json.loads(run_cli(["list", "--json"], env, REPO, text=True).stdout)
    }
    assert listed[roles["id"]] == "corrupt"
    assert [s for i, s in listed.items() if i != roles["id"]] == ["ok"]


def test_a_globals_snapshot_is_not_restored_as_a_database(
    least_privilege: LeastPrivilege, fleet: tuple[str, str], tmp_path: Path
) -> None:
    tag, _ = fleet
    settings = settings_for(
        least_privilege.url(least_privilege.reader, "postgres"),
        tmp_path,
        ATLAS_DATABASES=f"{tag}*",
    )
    services = services_for(settings)
    _, outcomes = services.fleets.snapshot(requested_by="test")
    roles = next(o.snapshot for o in outcomes if o.snapshot and o.snapshot.kind == "globals")
    assert roles.kind == SnapshotKind.GLOBALS
    with pytest.raises(Exception, match="holds a server's roles and tablespaces"):
        services.restores.pick_snapshot(roles.id)


def test_a_drill_applies_the_roles_on_staging_and_rolls_them_back(
    pg: PgCluster,
    least_privilege: LeastPrivilege,
    fleet: tuple[str, str],
    staging_server: PgCluster,
    tmp_path: Path,
) -> None:
    tag, _ = fleet
    settings = settings_for(
        least_privilege.url(least_privilege.reader, "postgres"),
        tmp_path,
        ATLAS_DATABASES=f"{tag}*",
        STAGING_DATABASE_URL=staging_server.url("postgres"),
    )
    services = services_for(settings)
    _, outcomes = services.fleets.snapshot(requested_by="test")
    assert all(o.snapshot for o in outcomes), outcomes
    drill = services.restores.run(kind="drill", snap_id=None, requested_by="test")
    assert drill.status == "passed", (drill.error, drill.problems)
    warnings = [p for p in drill.problems if p.startswith("warning:")]
    assert warnings and "roles already on staging" in warnings[0]
    assert "postgres" in warnings[0] and tag not in warnings[0]  # only the server's own
    left = staging_server.execute(
        "postgres", "SELECT rolname FROM pg_roles WHERE rolname LIKE %s", [tag + "%"]
    )
    assert left == []  # rolled back: nothing stays

    # a staging role without CREATEROLE can't try them: said, not failed
    stager = f"{tag}stager"
    staging_server.create_role(stager, "stager-pw", createdb=True)
    try:
        services.settings.servers["default"].staging_url = staging_server.url(
            "postgres", user=stager, password="stager-pw"
        )
        services.fleets.listed()
        drill = services.restores.run(kind="drill", snap_id=None, requested_by="test")
        assert drill.status == "passed", (drill.error, drill.problems)
        assert any("lacks CREATEROLE" in p for p in drill.problems)
    finally:
        staging_server.execute("postgres", f"DROP ROLE IF EXISTS {stager}")


def test_roles_that_do_not_apply_are_named_and_nothing_stays(staging_server: PgCluster) -> None:
    tag = f"gl_{uuid.uuid4().hex[:6]}_"
    text = (
        f"CREATE ROLE {tag}a;\nALTER ROLE {tag}a WITH LOGIN;\n"
        f"GRANT {tag}missing TO {tag}a GRANTED BY postgres;\n"
        "-- PostgreSQL database cluster dump complete\n"
    )
    applied = apply_rolled_back(Conn.parse(staging_server.url("postgres")), text)
    assert applied.error is not None
    assert (
        applied.error.startswith(f"GRANT {tag}missing TO {tag}a")
        and "does not exist" in applied.error
    )
    assert (
        staging_server.execute("postgres", "SELECT 1 FROM pg_roles WHERE rolname = %s", [tag + "a"])
        == []
    )


def test_a_semicolon_inside_quotes_does_not_end_a_statement() -> None:
    text = (
        "\\restrict x\n-- roles\nCREATE ROLE app;\n"
        "COMMENT ON ROLE app IS 'reads;\nand writes;';\n"
        'CREATE ROLE "semi;colon";\n'
        "COMMENT ON ROLE app IS E'it\\'s; fine';\n"
        "DO $body$ BEGIN PERFORM 1; END $body$;\n"
        "/* a block; comment */ ALTER ROLE app WITH LOGIN;\n"
        "\\unrestrict x\n"
    )
    assert statements(text) == [
        "CREATE ROLE app;",
        "COMMENT ON ROLE app IS 'reads;\nand writes;';",
        'CREATE ROLE "semi;colon";',
        "COMMENT ON ROLE app IS E'it\\'s; fine';",
        "DO $body$ BEGIN PERFORM 1; END $body$;",
        "ALTER ROLE app WITH LOGIN;",
    ]


def test_a_role_comment_ending_a_line_with_a_semicolon_applies(staging_server: PgCluster) -> None:
    tag = f"gl_{uuid.uuid4().hex[:6]}_"
    text = (
        f"CREATE ROLE {tag}a;\nCOMMENT ON ROLE {tag}a IS 'billing;\nreports;';\n"
        "-- PostgreSQL database cluster dump complete\n"
    )
    applied = apply_rolled_back(Conn.parse(staging_server.url("postgres")), text)
    assert applied.error is None and applied.not_permitted == []


def test_statements_a_createrole_role_may_not_run_are_skipped_and_named(
    staging_server: PgCluster,
) -> None:
    tag = f"gl_{uuid.uuid4().hex[:6]}_"
    role = staging_server.create_role(f"{tag}cr", password="Cr-pw-1", createdb=True)
    staging_server.execute("postgres", f"ALTER ROLE {role} CREATEROLE")
    try:
        text = (
            f"CREATE ROLE {tag}a;\nALTER ROLE postgres WITH SUPERUSER INHERIT LOGIN;\n"
            f"ALTER ROLE {tag}a WITH LOGIN;\n-- PostgreSQL database cluster dump complete\n"
        )
        url = staging_server.url("postgres", user=role, password="Cr-pw-1")
        applied = apply_rolled_back(Conn.parse(url), text)
        assert applied.error is None, applied.error
        assert applied.not_permitted == ["ALTER ROLE postgres WITH SUPERUSER INHERIT LOGIN;"]
    finally:
        staging_server.drop_role(role)


def test_rescan_adopts_a_fleets_roles_snapshot(
    least_privilege: LeastPrivilege, fleet: tuple[str, str], tmp_path: Path
) -> None:
    tag, _ = fleet
    env = cli_env(
        tmp_path,
        DATABASE_URL=least_privilege.url(least_privilege.reader, "postgres"),
        ATLAS_DATABASES=f"{tag}*",
    )
    run = run_cli(["snapshot", "--all", "--json"], env, REPO, text=True)
    assert run.returncode == 0, run.stderr
    roles = next(s for s in json.loads(run.stdout)["snapshots"] if s["kind"] == "globals")
    lost = {**env, "ATLAS_STATE": str(tmp_path / "new" / "atlas.db")}
    found = json.loads(run_cli(["rescan", "--json"], lost, REPO, text=True).stdout)["results"]
    outcome = {r["id"]: r["outcome"] for r in found}
    assert outcome[roles["id"]] == "imported", found
    listed = json.loads(run_cli(["list", "--json"], lost, REPO, text=True).stdout)
    [back] = [s for s in listed if s["id"] == roles["id"]]
    assert back["kind"] == "globals" and back["database"] == globals_name("default")
