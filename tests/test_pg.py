"""libpq URLs without their passwords, redaction, and picking pg_dump/pg_restore."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from bot.config import ENV_NAMES
from bot.errors import AtlasError
from bot.pg import Conn, find_tool
from bot.redaction import redact


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's shell out of the tests."""
    names = set(ENV_NAMES)
    names |= {"PGDATABASE", "PGHOST", "PGPORT", "PGUSER", "PGPASSWORD"}
    for name in names:
        monkeypatch.delenv(name, raising=False)


# -- bot.pg.redact ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "postgresql://alice:hunter22@db.example:5432/app",
        "postgres://alice:hunter22@db.example/app?sslmode=require",
        "could not connect: postgresql://alice:hunter22@10.0.0.1/app failed",
    ],
)
def test_redact_url_password(text: str) -> None:
    out = redact(text)
    assert "hunter22" not in out
    assert "alice:***@" in out


def test_redact_url_keeps_the_rest() -> None:
    out = redact("postgresql://alice:hunter22@db.example:5432/app")
    assert out == "postgresql://alice:***@db.example:5432/app"


def test_redact_url_without_password_is_unchanged() -> None:
    assert redact("postgresql://alice@db.example/app") == "postgresql://alice@db.example/app"


def test_redact_key_value_password_quoted_with_space() -> None:
    out = redact("host=db user=alice password='x y' dbname=app")
    assert "x y" not in out
    assert "'x" not in out and "y'" not in out
    assert "host=db" in out and "dbname=app" in out
    assert "password=***" in out


def test_redact_key_value_password_plain_and_case_insensitive() -> None:
    out = redact("host=db PASSWORD = s3cret dbname=app")
    assert "s3cret" not in out
    assert "dbname=app" in out


def test_redact_listed_secrets() -> None:
    out = redact(
        'FATAL: password authentication failed; token tok-123 and pw "p@ss w0rd"',
        ["tok-123", "p@ss w0rd", None, ""],
    )
    assert "tok-123" not in out
    assert "p@ss w0rd" not in out
    assert "password authentication failed" in out


def test_redact_ignores_tiny_secrets() -> None:
    # Masking one- or two-letter "secrets" would mangle every message.
    assert redact("a table", ["a"]) == "a table"


# -- bot.pg.Conn -----------------------------------------------------------------------------


def test_conn_parse_url_splits_password() -> None:
    conn = Conn.parse("postgresql://bob:pa%20ss%40x@db.example:5433/app?sslmode=disable")
    assert conn.password == "pa ss@x"
    assert "pa ss" not in conn.conninfo
    assert "password" not in conn.conninfo
    assert "pa%20ss" not in conn.conninfo
    for part in ("user=bob", "dbname=app", "host=db.example", "port=5433", "sslmode=disable"):
        assert part in conn.conninfo
    assert conn.secrets == ["pa ss@x"]


def test_conn_parse_key_value_splits_password() -> None:
    conn = Conn.parse("host=db.example port=6543 dbname=app user=bob password='x y'")
    assert conn.password == "x y"
    assert "password" not in conn.conninfo
    assert "x y" not in conn.conninfo
    assert "dbname=app" in conn.conninfo


def test_conn_parse_without_password() -> None:
    conn = Conn.parse("postgresql://bob@db.example/app")
    assert conn.password is None
    assert conn.secrets == []
    assert "PGPASSWORD" not in conn.env({})


def test_conn_env_carries_password() -> None:
    conn = Conn.parse("postgresql://bob:hunter22@db.example/app")
    env = conn.env({"PATH": "/usr/bin"})
    assert env["PGPASSWORD"] == "hunter22"
    assert env["PATH"] == "/usr/bin"
    assert env["PGCONNECT_TIMEOUT"] == "10"


def test_conn_env_does_not_mutate_base() -> None:
    base = {"PATH": "/usr/bin"}
    Conn.parse("postgresql://bob:hunter22@db.example/app").env(base)
    assert base == {"PATH": "/usr/bin"}


def test_conn_describe_has_no_password() -> None:
    url = "postgresql://bob:hunter22@db.example:5433/app"
    conn = Conn.parse(url)
    assert conn.describe() == "db.example:5433/app"
    assert "hunter22" not in conn.describe()
    kv = Conn.parse("host=db.example dbname=app user=bob password='x y'")
    assert "x y" not in kv.describe()
    assert kv.describe() == "db.example:5432/app"


def test_conn_with_dbname_keeps_password_out_of_conninfo() -> None:
    conn = Conn.parse("postgresql://bob:hunter22@db.example/app").with_dbname("other")
    assert "dbname=other" in conn.conninfo
    assert "hunter22" not in conn.conninfo
    assert conn.password == "hunter22"


def test_conn_parse_invalid_url_is_atlas_error_without_password() -> None:
    with pytest.raises(AtlasError) as info:
        Conn.parse("postgresql://bob:hunter22@db.example/app?nonsense_option=1")
    assert "Invalid database URL" in str(info.value)
    assert "hunter22" not in str(info.value)


# -- bot.pg.find_tool ------------------------------------------------------------------------


def _fake_tool(directory: Path, name: str, version_line: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f'#!/bin/sh\necho "{version_line}"\n')
    path.chmod(0o755)
    return path


def test_find_tool_too_old(tmp_path: Path) -> None:
    _fake_tool(tmp_path / "bin", "pg_dump", "pg_dump (PostgreSQL) 12.3")
    with pytest.raises(AtlasError) as info:
        find_tool("pg_dump", 15, bindir=str(tmp_path / "bin"))
    message = str(info.value)
    assert "older than the server" in message
    assert "postgresql-client-15" in message
    assert "12.3" in message


def test_find_tool_new_enough_fake(tmp_path: Path) -> None:
    fake = _fake_tool(tmp_path / "bin", "pg_dump", "pg_dump (PostgreSQL) 16.2")
    assert find_tool("pg_dump", 15, bindir=str(tmp_path / "bin")) == (str(fake), "16.2")


def test_find_tool_missing(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(AtlasError) as info:
        find_tool("pg_dump", 15, bindir=str(tmp_path / "empty"))
    assert "was not found" in str(info.value)
    assert "ATLAS_PG_BINDIR" in str(info.value)


def test_find_tool_skips_debian_pg_wrapper_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wrapper only dispatches to the versioned binaries, which are found anyway."""
    wrapper = _fake_tool(tmp_path / "share", "pg_wrapper", "pg_dump (PostgreSQL) 99.0")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "pg_dump").symlink_to(wrapper)
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    from bot.pg import _candidates

    assert str(tmp_path / "bin" / "pg_dump") not in _candidates("pg_dump", None)
    plain = _fake_tool(tmp_path / "plain", "pg_dump", "pg_dump (PostgreSQL) 99.0")
    monkeypatch.setenv("PATH", str(plain.parent))
    assert str(plain) in _candidates("pg_dump", None)  # any other pg_dump on PATH counts


def test_find_tool_not_a_postgres_tool(tmp_path: Path) -> None:
    _fake_tool(tmp_path / "bin", "pg_dump", "something else 1.0")
    with pytest.raises(AtlasError, match="was not found"):
        find_tool("pg_dump", 15, bindir=str(tmp_path / "bin"))


def _real_bindir() -> str | None:
    pg_config = shutil.which("pg_config")
    if not pg_config:
        return None
    out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
    bindir = out.stdout.strip()
    return bindir if out.returncode == 0 and os.path.isdir(bindir) else None


@pytest.mark.parametrize("tool", ["pg_dump", "pg_restore"])
def test_find_tool_real_bindir(tool: str) -> None:
    bindir = _real_bindir()
    if bindir is None:
        pytest.skip("pg_config not available")
    path, version = find_tool(tool, 15, bindir=bindir)
    assert Path(path) == Path(bindir) / tool
    assert int(version.split(".")[0]) >= 15


def test_a_url_pasted_with_spaces_around_it_is_read_as_the_url() -> None:
    """libpq reads ` postgresql://…` (a leading space) as key=value text, and its error
    ('missing "=" after …') says nothing of the space."""
    conn = Conn.parse(" postgresql://app:pw-7x@db.internal:5433/app\n", "DATABASE_URL")
    assert conn.describe() == "db.internal:5433/app" and conn.password == "pw-7x"
