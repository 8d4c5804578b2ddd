"""The `atlas` command line, run as a real subprocess against a real PostgreSQL server."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import zstandard

from tests.support import closed_port
from tests.support.catalogs import catalog_text
from tests.support.helpers import cli_env
from tests.support.pg import PgCluster, fill_sample, unique_name

ROWS = 50
REPO = Path(__file__).resolve().parents[1]
SNAPSHOT_ID = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{4}$")


def _flat(text: str) -> str:
    """Undo rich's line wrapping so phrases can be searched for."""
    return " ".join(text.split())


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def json(self) -> Any:
        lines = [ln for ln in self.stdout.splitlines() if ln.strip()]
        assert len(lines) == 1, f"expected one JSON line, got {self.stdout!r}"
        return json.loads(lines[0])


class Atlas:
    """Runs `python -m bot.cli` with a controlled environment."""

    def __init__(self, tmp: Path, database_url: str) -> None:
        self.tmp = tmp
        self.storage = tmp / "backups"
        self.env = cli_env(tmp, DATABASE_URL=database_url)
        self.state = self.env["ATLAS_STATE"]

    def __call__(self, *args: str, timeout: float = 120) -> Result:
        proc = subprocess.run(
            [sys.executable, "-m", "bot.cli", *args],
            env=self.env,
            cwd=self.tmp,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)

    def ok(self, *args: str) -> Result:
        res = self(*args)
        assert res.code == 0, f"atlas {' '.join(args)} failed:\n{res.output}"
        return res

    def snapshot(self, note: str = "") -> dict[str, Any]:
        return self.ok("snapshot", "--note", note, "--json").json()

    def catalog_bytes(self) -> bytes:
        """Everything the catalog stores (SQLite: the file and its WAL/SHM companions)."""
        return catalog_text(self.state).encode("utf-8", "surrogateescape")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _plain_dump(row: dict[str, Any]) -> bytes:
    """The stored artifact decompressed independently of Atlas's read path."""
    return (
        zstandard.ZstdDecompressor()
        .decompressobj(read_across_frames=True)
        .decompress(Path(row["location"]).read_bytes())
    )


def _url_without_password(pg: PgCluster, dbname: str) -> str:
    return f"postgresql://{pg.superuser}@{pg.host}:{pg.port}/{dbname}"


@dataclass
class Shared:
    atlas: Atlas
    dbname: str
    counts: dict[str, int]
    row: dict[str, Any]


@pytest.fixture(scope="module")
def shared(pg: PgCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shared]:
    """One sample database and one good snapshot, for tests that only read it."""
    dbname = pg.create_database(unique_name("t_cli_"))
    try:
        counts = fill_sample(pg.url(dbname), rows=ROWS)
        atlas = Atlas(tmp_path_factory.mktemp("cli-shared"), pg.url(dbname))
        row = atlas.snapshot("deploy abc123")
        yield Shared(atlas, dbname, counts, row)
    finally:
        pg.drop_database(dbname)


@pytest.fixture
def atlas(pg_url: str, tmp_path: Path) -> Atlas:
    """A fresh sample database and an empty catalog/storage of its own."""
    fill_sample(pg_url, rows=ROWS)
    return Atlas(tmp_path, pg_url)


def test_version_is_the_installed_package_and_needs_no_configuration(tmp_path: Path) -> None:
    from importlib.metadata import version

    atlas = Atlas(tmp_path, "")
    res = atlas("--version")
    assert res.code == 0, res.output
    assert res.stdout.strip() == f"atlas, version {version('atlas-backups')}"


# -- snapshot --------------------------------------------------------------------------------


def test_snapshot_json(shared: Shared, pg: PgCluster) -> None:
    row = shared.row
    assert SNAPSHOT_ID.match(row["id"]), row["id"]
    assert row["database"] == shared.dbname
    assert row["dbname"] == shared.dbname
    assert row["environment"] == "production"
    assert row["status"] == "ok"
    assert row["note"] == "deploy abc123"
    assert row["source"] == "cli"
    assert row["error"] is None
    assert isinstance(row["size_bytes"], int) and row["size_bytes"] > 0
    assert row["raw_size_bytes"] > 0
    assert re.fullmatch(r"[0-9a-f]{64}", row["sha256"])
    assert row["sha256"] == _sha256(Path(row["location"]))
    assert row["started_at"] and row["finished_at"]
    assert row["started_at"] <= row["finished_at"]
    assert row["verified_at"]
    assert row["compression"] == "zstd"
    assert row["manifest"]  # row counts recorded at dump time
    assert int(row["server_version"].split(".")[0]) >= 15

    location = Path(row["location"])
    assert location.is_file()
    assert location.is_relative_to(shared.atlas.storage.resolve())
    assert location.name == f"{row['id']}.dump.zst"
    assert location.stat().st_size == row["size_bytes"]
    assert _sha256(location) == row["sha256"]
    # the password never reaches what the CLI prints
    assert pg.password is not None
    assert pg.password not in json.dumps(row)


def test_snapshot_sidecar_describes_the_artifact(shared: Shared) -> None:
    location = Path(shared.row["location"])
    sidecar = location.with_name(location.name.removesuffix(".dump.zst") + ".json")
    doc = json.loads(sidecar.read_text())
    assert doc["id"] == shared.row["id"]
    assert doc["sha256"] == shared.row["sha256"]
    assert "pg_restore" in doc["restore"]


def test_plain_snapshot_then_list_newest_first_and_show(atlas: Atlas) -> None:
    res = atlas.ok("snapshot", "--note", "one")
    first_id = res.stdout.strip()
    assert res.stdout == first_id + "\n"  # just the id, for `ID=$(atlas snapshot)`
    assert SNAPSHOT_ID.match(first_id), res.stdout
    assert "ok" in res.stderr

    second = atlas.snapshot("two")
    rows = atlas.ok("list", "--json").json()
    assert [r["id"] for r in rows] == [second["id"], first_id]
    assert [r["note"] for r in rows] == ["two", "one"]
    assert all(r["status"] == "ok" for r in rows)

    shown = atlas.ok("show", first_id, "--json").json()
    assert shown["id"] == first_id
    assert shown["status"] == "ok"
    assert shown["note"] == "one"
    assert shown["sha256"] == rows[1]["sha256"]
    assert shown["location"] == rows[1]["location"]
    assert Path(shown["location"]).is_file()


def test_plain_list_shows_whole_ids(shared: Shared) -> None:
    table = shared.atlas.ok("list")
    assert shared.row["id"] in table.stdout


def test_show_reads_as_text_and_latest_or_a_prefix_names_a_snapshot(atlas: Atlas) -> None:
    first = atlas.snapshot("first")
    second = atlas.snapshot("second <b>")
    shown = atlas.ok("show", "latest")
    assert not shown.stdout.lstrip().startswith("{")  # text for people, not JSON
    assert re.search(rf"^id\s+{second['id']}$", shown.stdout, re.MULTILINE), shown.stdout
    assert re.search(r"^note\s+second <b>$", shown.stdout, re.MULTILINE)
    assert re.search(r"^manifest\s+2 tables, 150 rows, 3 sequences", shown.stdout, re.MULTILINE)
    common = os.path.commonprefix([first["id"], second["id"]])
    # the shortest prefix that names the first alone (two ids of one second can share more
    # than all but their last two characters: CI once saw -d520 and -d5d8)
    unique = first["id"][: len(common) + 1]
    assert atlas.ok("show", unique, "--json").json()["id"] == first["id"]
    ambiguous = atlas("show", common)
    assert ambiguous.code == 1 and "is the start of several snapshot ids" in ambiguous.stderr


def test_list_shows_which_snapshots_are_pinned(atlas: Atlas) -> None:
    kept, loose = atlas.snapshot("a note"), atlas.snapshot("another")
    assert "is kept until" in atlas.ok("keep", kept["id"]).stdout
    rows = {}
    for line in atlas.ok("list").stdout.splitlines():
        if found := re.search(r"\d{8}-\d{6}-[0-9a-f]{4}", line):
            rows[found.group(0)] = line
    assert "ok, kept" in rows[kept["id"]] and "kept" not in rows[loose["id"]]
    assert [r["pinned"] for r in atlas.ok("list", "--json").json()] == [0, 1]


# -- verify ----------------------------------------------------------------------------------


def test_verify_then_truncate(atlas: Atlas) -> None:
    row = atlas.snapshot("to be damaged")
    res = atlas.ok("verify", row["id"])
    assert row["id"] in res.stdout
    assert row["sha256"] in res.stdout

    artifact = Path(row["location"])
    data = artifact.read_bytes()
    artifact.write_bytes(data[: len(data) // 2])

    res = atlas("verify", row["id"])
    assert res.code == 1, res.output
    err = _flat(res.stderr).lower()
    assert "truncated" in err or "bytes" in err, res.stderr
    assert str(row["size_bytes"]) in err

    res = atlas("verify", row["id"], "--json")
    assert res.code == 1
    doc = res.json()
    assert doc["status"] == "failed"
    assert doc["id"] == row["id"]
    assert doc["error"]

    listed = atlas.ok("list", "--json").json()
    assert listed[0]["id"] == row["id"]
    assert listed[0]["status"] == "corrupt"
    assert listed[0]["error"]

    # a damaged artifact is never handed out
    out = atlas.tmp / "damaged.dump"
    assert atlas("fetch", row["id"], "-o", str(out)).code == 1
    assert not out.exists()
    assert not list(atlas.tmp.glob(".damaged.dump*"))


def test_unknown_id(shared: Shared) -> None:
    calls = [("verify", "nope"), ("fetch", "nope", "-o", "x"), ("show", "nope", "--json")]
    with ThreadPoolExecutor(len(calls)) as pool:
        results = list(pool.map(lambda args: shared.atlas(*args), calls))
    for args, res in zip(calls[:2], results[:2], strict=True):
        assert res.code == 1, args
        assert "No snapshot with id 'nope'" in _flat(res.stderr), (args, res.stderr)
        assert "Traceback" not in res.stderr
    assert not (shared.atlas.tmp / "x").exists()
    shown = results[2]
    assert shown.code == 1
    doc = shown.json()
    assert set(doc) == {"status", "error"}
    assert doc["status"] == "failed"
    assert "No snapshot with id 'nope'" in doc["error"]


# -- fetch and restore -----------------------------------------------------------------------


def test_fetch_and_restore_with_the_runbook_line(
    shared: Shared, pg: PgCluster, tmp_path: Path
) -> None:
    out = tmp_path / "restore.dump"
    res = shared.atlas.ok("fetch", shared.row["id"], "-o", str(out))
    assert "pg_restore" in res.stderr
    data = out.read_bytes()
    assert data.startswith(b"PGDMP")
    assert len(data) == shared.row["raw_size_bytes"]
    assert data == _plain_dump(shared.row)

    target = pg.create_database(unique_name("t_restore_"))
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["PGPASSWORD"] = pg.password or ""
        argv = [
            os.path.join(pg.bindir, "pg_restore"),
            "--clean",
            "--if-exists",
            "--no-owner",
            "--no-acl",
            "--dbname",
            _url_without_password(pg, target),
            str(out),
        ]
        assert all(pg.password not in a for a in argv)
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
        for table, count in shared.counts.items():
            assert pg.execute(target, f"SELECT count(*) FROM {table}") == [(count,)]
        assert pg.execute(target, "SELECT last_value FROM invoice_no_seq") == [(ROWS + 100,)]
    finally:
        pg.drop_database(target)


def test_fetch_to_stdout(shared: Shared) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bot.cli", "fetch", shared.row["id"], "-o", "-"],
        env=shared.atlas.env,
        cwd=shared.atlas.tmp,
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(b"PGDMP")
    assert proc.stdout == _plain_dump(shared.row)


def test_fetch_with_db_of_another_database_writes_nothing(shared: Shared) -> None:
    """`--db shop` with a snapshot of another database wrote that one's dump, silently;
    restore and drill refuse it, and so does fetch now."""
    out = shared.atlas.tmp / "shop.dump"
    res = shared.atlas("fetch", shared.row["id"], "--db", "shop", "-o", str(out))
    assert res.code == 1 and f"is of {shared.row['database']}, not shop" in _flat(res.stderr)
    assert not out.exists()


def test_manual_zstd_matches_fetch(shared: Shared, tmp_path: Path) -> None:
    zstd = shutil.which("zstd")
    if zstd is None:
        pytest.skip("zstd binary not installed")
    fetched = tmp_path / "fetched.dump"
    shared.atlas.ok("fetch", shared.row["id"], "-o", str(fetched))
    manual = tmp_path / "manual.dump"
    with open(manual, "wb") as fh:
        subprocess.run([zstd, "-dc", shared.row["location"]], stdout=fh, check=True)
    assert manual.read_bytes() == fetched.read_bytes()


def test_fetch_refuses_to_overwrite(shared: Shared, tmp_path: Path) -> None:
    out = tmp_path / "existing.dump"
    out.write_bytes(b"precious")
    res = shared.atlas("fetch", shared.row["id"], "-o", str(out))
    assert res.code == 1
    assert "already exists" in _flat(res.stderr)
    assert out.read_bytes() == b"precious"

    shared.atlas.ok("fetch", shared.row["id"], "-o", str(out), "--force")
    assert out.read_bytes().startswith(b"PGDMP")
    assert not list(tmp_path.glob("*.partial"))


# -- failures --------------------------------------------------------------------------------


def _storage_files(atlas: Atlas) -> list[Path]:
    if not atlas.storage.exists():
        return []
    return [p for p in atlas.storage.rglob("*") if p.is_file()]


def test_unreachable_database(pg: PgCluster, pg_db: str, tmp_path: Path) -> None:
    port = closed_port()
    url = f"postgresql://{pg.superuser}:{pg.password}@127.0.0.1:{port}/{pg_db}"
    atlas = Atlas(tmp_path, url)
    res = atlas("snapshot", "--note", "nobody home")
    assert res.code == 1
    assert res.stdout == ""
    assert "Cannot connect" in _flat(res.stderr)
    assert "Traceback" not in res.stderr
    assert pg.password is not None
    assert pg.password not in res.output
    assert pg.password not in "".join(res.output.split())

    rows = atlas.ok("list", "--json").json()
    assert len(rows) == 1
    assert rows[0]["status"] == "failed"
    assert "Cannot connect" in rows[0]["error"]
    assert pg.password not in rows[0]["error"]
    assert rows[0]["note"] == "nobody home"
    assert rows[0]["finished_at"]
    assert _storage_files(atlas) == []
    assert pg.password.encode() not in atlas.catalog_bytes()

    # a failed snapshot has nothing to verify
    res = atlas("verify", rows[0]["id"])
    assert res.code == 1
    assert "failed" in _flat(res.stderr)


def test_wrong_password(pg: PgCluster, pg_db: str, tmp_path: Path) -> None:
    secret = "wrong-pass-123"
    atlas = Atlas(tmp_path, pg.url(pg_db, password=secret))
    res = atlas("snapshot")
    assert res.code == 1
    assert "password authentication failed" in _flat(res.stderr)
    assert secret not in res.output
    assert secret not in "".join(res.output.split())

    rows = atlas.ok("list", "--json").json()
    assert rows[0]["status"] == "failed"
    assert "password authentication failed" in rows[0]["error"]
    assert secret.encode() not in atlas.catalog_bytes()
    assert _storage_files(atlas) == []


def test_json_failure(pg: PgCluster, pg_db: str, tmp_path: Path) -> None:
    url = f"postgresql://{pg.superuser}:{pg.password}@127.0.0.1:{closed_port()}/{pg_db}"
    atlas = Atlas(tmp_path, url)
    res = atlas("snapshot", "--json")
    assert res.code == 1
    doc = res.json()
    assert doc["status"] == "failed"
    assert "Cannot connect" in doc["error"]
    assert pg.password not in res.output


def test_no_database_configured(tmp_path: Path) -> None:
    atlas = Atlas(tmp_path, "")
    del atlas.env["DATABASE_URL"]
    res = atlas("snapshot", "--json")
    assert res.code == 1
    assert "No database is configured" in res.json()["error"]


def test_invalid_url_does_not_leave_a_running_snapshot(tmp_path: Path) -> None:
    atlas = Atlas(tmp_path, "postgresql://postgres@127.0.0.1:1/app?sslmod=require")
    atlas.env["ATLAS_DATABASE_NAME"] = "app"
    res = atlas("snapshot")
    assert res.code == 1
    assert "Invalid database URL" in _flat(res.stderr)
    rows = atlas.ok("list", "--json").json()
    assert [r["status"] for r in rows] == ["failed"]


def test_error_text_is_not_markup(tmp_path: Path) -> None:
    cfg = tmp_path / "atlas.toml"
    cfg.write_text("[databases]\nmain = 1\n")
    atlas = Atlas(tmp_path, "")
    del atlas.env["DATABASE_URL"]
    atlas.env["ATLAS_CONFIG"] = str(cfg)
    res = atlas("list")
    assert res.code == 1
    assert "[databases.main] must be a table" in _flat(res.stderr)


def test_help_lists_commands() -> None:
    script = shutil.which("atlas")
    argv = [script] if script else [sys.executable, "-m", "bot.cli"]
    proc = subprocess.run([*argv, "--help"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    for command in ("snapshot", "list", "verify", "fetch", "serve"):
        assert re.search(rf"^\s+{command}\s", proc.stdout, re.MULTILINE), proc.stdout


@pytest.mark.sqlite_only  # nothing here depends on the catalog's kind
def test_list_and_snapshot_mask_a_password_quoted_in_a_note_or_a_tag(atlas: Atlas) -> None:
    """A note or a tag that quotes a connection URL is user text, but the password in it
    is still a password: masked in the table as in `show` and --json."""
    leaked = "postgres://app:Hunter-2x9@db.internal/app"
    res = atlas.ok("snapshot", "--note", f"copy of {leaked}", "--tag", f"source={leaked}")
    listed = atlas.ok("list")
    assert "copy of postgres://app:***@" in listed.stdout + "".join(listed.stdout.split())
    for said in (res.output, listed.output, atlas.ok("show", "latest").output):
        assert "Hunter-2x9" not in said and "Hunter-2x9" not in "".join(said.split())


@pytest.mark.sqlite_only  # nothing here depends on the catalog's kind
def test_a_limit_that_is_no_number_of_rows_is_refused(atlas: Atlas) -> None:
    """`--limit 0` said there were no snapshots, `-1` listed all, a 20-digit one crashed."""
    atlas.ok("snapshot")
    for limit in ("0", "-1", "99999999999999999999"):
        for command in ("list", "drills", "audit"):
            res = atlas(command, "--limit", limit)
            assert res.code == 2 and "Invalid value for '--limit'" in res.output, res.output
            assert "Traceback" not in res.output and "No snapshots" not in res.output
    assert len(atlas.ok("list", "--limit", "1", "--json").json()) == 1


@pytest.mark.sqlite_only  # nothing here depends on the catalog's kind
def test_serve_on_a_taken_or_impossible_port_says_so_in_one_line(tmp_path: Path) -> None:
    """A port another process holds was 'Unexpected error: OSError … (report it)'; one past
    65535 was taken modulo 65536 and served on another port."""
    import socket

    env = cli_env(tmp_path, DATABASE_URL="postgresql://app@127.0.0.1:1/app")
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        args = ["serve", "--http", "--host", "127.0.0.1", "--port", str(port)]
        done = subprocess.run(
            [sys.executable, "-m", "bot.cli", *args], env=env, capture_output=True, text=True,
            timeout=60, check=False,
        )  # fmt: skip
    said = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
    assert done.returncode == 1 and len(said) == 1, done.stderr
    assert f"Cannot listen on 127.0.0.1:{port}: Address already in use" in said[0]
    assert "Unexpected" not in done.stderr and "Traceback" not in done.stderr
    wrong = subprocess.run(
        [sys.executable, "-m", "bot.cli", "serve", "--http", "--port", "70000"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert wrong.returncode == 2 and "70000 is not in the range 0<=x<=65535" in wrong.stderr


@pytest.mark.sqlite_only  # nothing here depends on the catalog's kind
@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_json_output_onto_a_full_disk_is_one_line_on_stderr(tmp_path: Path) -> None:
    """The failure's own JSON went to the same dead stdout: two tracebacks."""
    env = cli_env(tmp_path, DATABASE_URL="postgresql://app@127.0.0.1:1/app")
    for args in (["list", "--json"], ["audit", "--json"]):
        with open("/dev/full", "w") as full:
            done = subprocess.run(
                [sys.executable, "-m", "bot.cli", *args], env=env, stdout=full,
                stderr=subprocess.PIPE, text=True, timeout=60, check=False,
            )  # fmt: skip
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.strip().startswith("error: No space left on device"), done.stderr
