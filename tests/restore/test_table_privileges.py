"""`--table` into staging keeps what staging's application relies on: the owner and the
grants of each table replaced (its columns and owned sequences included), and a
partitioned table comes with its partitions, at every level, in a drill, a fetch and a
restore. Against a real server, with roles of its own; `pg_db` drops staging and what
the refreshes kept."""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bot.restore import privileges as P
from bot.restore import tables as T
from tests.support.helpers import cli_env, run_cli, services_for, settings_for
from tests.support.pg import fill_realistic, pg_bindir

GRANTS = """
SELECT '', coalesce(pg_get_userbyid(nullif(e.grantee, 0)), 'PUBLIC'), e.privilege_type,
       e.is_grantable
FROM pg_class c, aclexplode(c.relacl) e
WHERE c.oid = %(rel)s::regclass AND e.grantee <> c.relowner
UNION ALL
SELECT a.attname, coalesce(pg_get_userbyid(nullif(e.grantee, 0)), 'PUBLIC'), e.privilege_type,
       e.is_grantable
FROM pg_attribute a, aclexplode(a.attacl) e
WHERE a.attrelid = %(rel)s::regclass AND a.attnum > 0
ORDER BY 1, 2, 3
"""
OWNER = "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = %s::regclass"


def _grants(pg: Any, db: str, rel: str) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in pg.execute(db, GRANTS, {"rel": rel})]


def _owner(pg: Any, db: str, rel: str) -> str:
    return str(pg.execute(db, OWNER, [rel])[0][0])


@pytest.fixture
def roles(pg):
    tail = secrets.token_hex(3)
    names = [pg.create_role(f"{n}_{tail}", "pw") for n in ("app_owner", "app_reader")]
    yield names
    for name in names:
        for (db,) in pg.execute("postgres", "SELECT datname FROM pg_database WHERE datallowconn"):
            pg.execute(db, f'DROP OWNED BY "{name}" CASCADE')
        pg.drop_role(name)


def test_a_table_replaced_keeps_its_owner_and_every_grant_staging_gave(
    pg, pg_db, pg_url, tmp_path, roles
):
    owner, reader = roles
    expected = fill_realistic(pg_url, scale=1)
    staging = pg.create_database(pg_db + "_stg")
    services = services_for(settings_for(pg_url, tmp_path, STAGING_DATABASE_URL=pg.url(staging)))
    snap = services.taker.take(requested_by="U1")
    assert services.restores.run(kind="restore", snap_id=snap.id, requested_by="U1").swapped
    for stmt in (
        f'GRANT USAGE ON SCHEMA app TO "{reader}"',
        f'ALTER TABLE app.orders OWNER TO "{owner}"',
        f'GRANT SELECT, INSERT ON app.orders TO "{reader}" WITH GRANT OPTION',
        f'GRANT UPDATE (note) ON app.orders TO "{reader}"',
        "GRANT SELECT ON app.orders TO PUBLIC",
        f'GRANT USAGE ON SEQUENCE app.orders_id_seq TO "{reader}"',
    ):
        pg.execute(staging, stmt)
    before = {
        r: (_owner(pg, staging, r), _grants(pg, staging, r))
        for r in ("app.orders", "app.orders_id_seq")
    }
    assert before["app.orders"][0] == owner and len(before["app.orders"][1]) == 4
    pg.execute(
        staging,
        "DELETE FROM app.orders WHERE id > 100"
        " AND NOT EXISTS (SELECT 1 FROM billing.invoices i WHERE i.order_id = id)"
        " AND NOT EXISTS (SELECT 1 FROM app.order_items t WHERE t.order_id = id)",
    )
    job = services.restores.run(
        kind="restore", snap_id=snap.id, requested_by="U1", tables=["app.orders"]
    )
    assert job.status == "passed", job
    assert pg.execute(staging, "SELECT count(*) FROM app.orders")[0][0] == expected["app.orders"]
    after = {r: (_owner(pg, staging, r), _grants(pg, staging, r)) for r in before}
    assert after == before
    kept = [c for c in job.checks if c.name == "owners and grants"]
    assert kept and kept[0].passed and "2 relations" in kept[0].detail, job.checks
    assert not [p for p in job.problems if "not given back" in p]
    # the reader can still do what it could: staging's application works as before
    with psycopg.connect(pg.url(staging, user=reader, password="pw"), autocommit=True) as c:
        c.execute(
            "INSERT INTO app.orders (customer_id, status, placed_at)"
            " SELECT customer_id, status, now() FROM app.orders LIMIT 1"
        )
        c.execute("UPDATE app.orders SET note = 'x' WHERE id = 1")


def test_what_was_not_given_back_is_named_in_plain_words():
    grant = P.Grant("", "app_reader", "SELECT", False)
    column = P.Grant("note", "", "UPDATE", False)
    before = {"app.t": P.Held("app.t", False, "app_owner", frozenset({grant, column}))}
    assert P.statements(before) == [
        'ALTER TABLE app.t OWNER TO "app_owner"',
        'GRANT SELECT ON TABLE app.t TO "app_reader"',
        'GRANT UPDATE ("note") ON TABLE app.t TO PUBLIC',
    ]
    after = {"app.t": P.Held("app.t", False, "atlas", frozenset({grant}))}
    assert P.differences(before, after) == [
        "app.t is owned by atlas, not app_owner as before",
        "app.t lost UPDATE(note) to PUBLIC",
    ]
    assert P.differences(before, {}) == []  # gone with its table: said elsewhere
    assert P.differences(before, before) == []


PARTITIONED = """
CREATE TABLE public.events (id bigserial, at date NOT NULL, kind text NOT NULL,
  PRIMARY KEY (id, at, kind)) PARTITION BY RANGE (at);
CREATE TABLE public.events_2025 PARTITION OF public.events
  FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE public.events_2026 PARTITION OF public.events
  FOR VALUES FROM ('2026-01-01') TO ('2027-01-01') PARTITION BY LIST (kind);
CREATE TABLE public.events_2026_a PARTITION OF public.events_2026 FOR VALUES IN ('a');
CREATE TABLE public.events_2026_b PARTITION OF public.events_2026 FOR VALUES IN ('b');
CREATE INDEX ON public.events (kind);
INSERT INTO public.events (at, kind)
  SELECT date '2025-01-01' + (g % 700), CASE WHEN g % 3 = 0 THEN 'a' ELSE 'b' END
  FROM generate_series(1, 3000) g;
CREATE TABLE public.other (id int PRIMARY KEY);
INSERT INTO public.other SELECT generate_series(1, 10);
"""
PARTS = ("public.events_2025", "public.events_2026_a", "public.events_2026_b")


def _counts(pg: Any, db: str) -> dict[str, int]:
    return {t: int(pg.execute(db, f"SELECT count(*) FROM {t}")[0][0]) for t in PARTS}


def test_a_partitioned_table_comes_with_its_partitions_at_every_level(pg, pg_db, pg_url, tmp_path):
    for stmt in PARTITIONED.split(";\n"):
        if stmt.strip():
            pg.execute(pg_db, stmt)
    want = _counts(pg, pg_db)
    assert sum(want.values()) == 3000 and min(want.values()) > 0
    staging = pg.create_database(pg_db + "_stg")
    settings = settings_for(pg_url, tmp_path, STAGING_DATABASE_URL=pg.url(staging))
    services = services_for(settings)
    snap = services.taker.take(requested_by="U1")
    assert {"public.events", "public.events_2026"} <= set(snap.manifest["partitioned"])
    drill = services.restores.run(
        kind="drill", snap_id=snap.id, requested_by="U1", tables=["public.events"]
    )
    assert drill.status == "passed", drill
    assert not [p for p in drill.problems if not p.startswith("warning: ")], drill.problems
    proved = {c.name: c for c in drill.checks}["partitions"]  # says what came with it
    assert proved.passed and "public.events_2026 (partitioned)" in proved.detail, proved
    assert all(part in proved.detail for part in PARTS), proved
    # into staging: refreshed whole, then drifted, then the partitioned table replaced
    assert services.restores.run(kind="restore", snap_id=snap.id, requested_by="U1").swapped
    pg.execute(staging, "DELETE FROM public.events WHERE kind = 'a'")
    pg.execute(staging, "DELETE FROM public.other WHERE id > 5")
    job = services.restores.run(
        kind="restore", snap_id=snap.id, requested_by="U1", tables=["public.events"]
    )
    assert job.status == "passed", (job.error, job.problems)
    assert "public.events_2025" in {c.name: c for c in job.checks}["partitions"].detail
    assert _counts(pg, staging) == want
    assert pg.execute(staging, "SELECT count(*) FROM public.other")[0][0] == 5  # untouched
    attached = pg.execute(
        staging, "SELECT count(*) FROM pg_partition_tree('public.events') WHERE isleaf"
    )[0][0]
    assert attached == 3
    # fetch --table writes the parent and every partition, with their rows
    out = tmp_path / "events.dump"
    env = cli_env(tmp_path, DATABASE_URL=pg_url)
    env["ATLAS_STATE"] = services.settings.state
    done = run_cli(["fetch", snap.id, "--table", "events", "-o", str(out)], env, tmp_path)
    assert done.returncode == 0, done.stderr
    listed = subprocess.run(
        [str(Path(pg_bindir()) / "pg_restore"), "--list", str(out)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    data = {ln.split()[-2] for ln in listed.splitlines() if " TABLE DATA public " in ln}
    assert data == {"events_2025", "events_2026_a", "events_2026_b"}, listed


@pytest.mark.no_catalog
def test_the_partitions_check_names_what_came_and_fails_on_a_problem_of_one() -> None:
    events, leaf, mid = (T.TableName(*n.split(".")) for n in ("a.ev", "a.ev_1", "a.ev_2"))
    chosen = T.Selection((events, leaf, mid), (), (), (), (), partitioned=("a.ev", "a.ev_2"))
    check = T.partition_check(chosen, [events], [])
    assert check is not None and check.passed
    assert (
        check.detail == "a.ev_1, a.ev_2 (partitioned) restored with a.ev; each leaf's rows counted"
    )
    bad = T.partition_check(chosen, [events], ["table a.ev_1 has 2 rows, expected 3"])
    assert bad is not None and not bad.passed
    other = T.partition_check(chosen, [events], ["table a.ev_10 is missing"])
    assert other is not None and other.passed  # a.ev_10 is not a.ev_1
    plain = T.Selection((leaf,), (), (), (), ())
    assert T.partition_check(plain, [leaf], []) is None


def test_a_view_only_staging_has_over_a_table_is_named_and_staging_is_untouched(
    pg, pg_db, pg_url, tmp_path
):
    """Staging drifted: a view over the table, that the snapshot does not have. Replacing
    the table would drop it, so the restore stops, names it and says what to do."""
    for stmt in PARTITIONED.split(";\n"):
        if stmt.strip():
            pg.execute(pg_db, stmt)
    staging = pg.create_database(pg_db + "_stg")
    services = services_for(settings_for(pg_url, tmp_path, STAGING_DATABASE_URL=pg.url(staging)))
    snap = services.taker.take(requested_by="U1")
    assert services.restores.run(kind="restore", snap_id=snap.id, requested_by="U1").swapped
    pg.execute(
        staging,
        "CREATE VIEW public.recent AS SELECT other.id, kind FROM public.other, "
        "public.events WHERE other.id = events.id",
    )
    pg.execute(staging, "DELETE FROM public.other WHERE id > 5")
    job = services.restores.run(
        kind="restore", snap_id=snap.id, requested_by="U1", tables=["public.other"]
    )
    assert job.status == "failed"
    assert "staging has a view public.recent over public.other" in (job.error or ""), job
    assert "drop public.recent in staging and create it again" in (job.error or "")
    assert (job.error or "").endswith("was not touched.")
    assert pg.execute(staging, "SELECT count(*) FROM public.other")[0][0] == 5
