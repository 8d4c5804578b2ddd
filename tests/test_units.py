"""Pure unit tests: no PostgreSQL server, no S3, no Slack."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from bot.backup.layout import artifact_key
from bot.config import DatabaseTarget, Settings, load_settings
from bot.errors import AtlasError
from bot.pg import Conn, find_tool, redact
from bot.policy import access
from bot.records import Snapshot
from bot.report import messages


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """pydantic-settings also reads os.environ, so keep the developer's shell out of the tests."""
    names = {f.alias for f in Settings.model_fields.values() if f.alias}
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


# -- bot.report.messages ----------------------------------------------------------------------------


@pytest.mark.parametrize("markup", ["<!channel>", "<!here>", "<@U123>", "<!everyone>"])
def test_escape_neutralises_mentions(markup: str) -> None:
    out = messages.escape(f"hello {markup} there")
    assert markup not in out
    assert "<" not in out and ">" not in out
    assert out == "hello " + markup.replace("<", "&lt;").replace(">", "&gt;") + " there"


def test_escape_ampersand_first() -> None:
    assert messages.escape("a & b") == "a &amp; b"
    # an already-escaped entity must not turn back into markup
    assert messages.escape("&lt;!channel&gt;") == "&amp;lt;!channel&amp;gt;"


def test_escape_links() -> None:
    out = messages.escape("<https://evil.example|click me>")
    assert "<" not in out and ">" not in out


def test_note_in_rendered_message_is_escaped() -> None:
    row = Snapshot(id="x", database="app", requested_by="U1", note="<!channel> deploy")
    text, blocks = messages.snapshot_started(row)
    rendered = text + str(blocks)
    assert "<!channel>" not in rendered
    assert "&lt;!channel&gt;" in rendered


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (None, "?"),
        (0, "0 B"),
        (1, "1 B"),
        (1023, "1023 B"),
        (1024, "1.0 KB"),
        (1536, "1.5 KB"),
        (5 * 1024**2, "5.0 MB"),
        (3 * 1024**3, "3.0 GB"),
        (2 * 1024**4, "2.0 TB"),
        (5000 * 1024**4, "5000.0 TB"),
    ],
)
def test_human_bytes(n: float | None, expected: str) -> None:
    assert messages.human_bytes(n) == expected


@pytest.mark.parametrize(
    ("s", "expected"),
    [
        (None, "?"),
        (0, "0.0 s"),
        (1.25, "1.2 s"),
        (59.9, "59.9 s"),
        (60, "1 min 0 s"),
        (125, "2 min 5 s"),
        (3599, "59 min 59 s"),
        (3600, "1 h 0 min"),
        (7380, "2 h 3 min"),
    ],
)
def test_human_seconds(s: float | None, expected: str) -> None:
    assert messages.human_seconds(s) == expected


# -- bot.policy.access ------------------------------------------------------------------------------


def test_may_run_without_allow_list_lets_everyone() -> None:
    assert access.may_run("U1", [])
    assert access.may_run("UANY", [])


def test_may_run_with_allow_list() -> None:
    allowed = ["U1", "U2"]
    assert access.may_run("U1", allowed)
    assert access.may_run("U2", allowed)
    assert not access.may_run("U3", allowed)
    assert not access.may_run("", allowed)
    assert not access.may_run("u1", allowed)  # Slack ids are case-sensitive


def test_refusal_names_the_user() -> None:
    assert "<@U9>" in access.refusal("U9")


# -- bot.config ------------------------------------------------------------------------------


def test_allowed_users_csv() -> None:
    settings = load_settings(env={"ATLAS_ALLOWED_USERS": "U1, U2"})
    assert settings.allowed_users == ["U1", "U2"]


def test_allowed_users_empty_and_sloppy() -> None:
    assert load_settings(env={}).allowed_users == []
    assert load_settings(env={"ATLAS_ALLOWED_USERS": ""}).allowed_users == []
    assert load_settings(env={"ATLAS_ALLOWED_USERS": " U1 ,, U2 ,"}).allowed_users == ["U1", "U2"]


def test_slack_api_url_gets_trailing_slash() -> None:
    settings = load_settings(env={"SLACK_API_URL": "http://127.0.0.1:9999/api"})
    assert settings.slack_api_url == "http://127.0.0.1:9999/api/"
    already = load_settings(env={"SLACK_API_URL": "http://127.0.0.1:9999/api/"})
    assert already.slack_api_url == "http://127.0.0.1:9999/api/"


def test_database_url_yields_target_named_after_db() -> None:
    url = "postgresql://bob:hunter22@db.example:5432/shop"
    settings = load_settings(env={"DATABASE_URL": url, "STAGING_DATABASE_URL": "postgresql://s/x"})
    target = settings.target()
    assert target.name == "shop"
    assert target.url == url
    assert target.environment == "production"
    assert target.staging_url == "postgresql://s/x"
    assert settings.target("shop") is target
    assert list(settings.databases) == ["shop"]


def test_database_name_overrides_url() -> None:
    settings = load_settings(
        env={
            "DATABASE_URL": "postgresql://bob@db.example/shop",
            "ATLAS_DATABASE_NAME": "orders-db",
            "ATLAS_ENVIRONMENT": "staging",
        }
    )
    target = settings.target()
    assert target.name == "orders-db"
    assert target.environment == "staging"
    assert list(settings.databases) == ["orders-db"]


def test_invalid_database_name_is_clear() -> None:
    with pytest.raises(AtlasError, match="Invalid database name"):
        load_settings(env={"DATABASE_URL": "postgresql://h/x", "ATLAS_DATABASE_NAME": "a/b"})


@pytest.mark.parametrize("level", ["abc", "0", "20", "-3"])
def test_invalid_zstd_level(level: str) -> None:
    with pytest.raises(AtlasError) as info:
        load_settings(env={"ATLAS_ZSTD_LEVEL": level})
    message = str(info.value)
    assert message.startswith("Invalid configuration")
    assert "ATLAS_ZSTD_LEVEL" in message


def test_valid_zstd_level() -> None:
    assert load_settings(env={"ATLAS_ZSTD_LEVEL": "19"}).zstd_level == 19


def test_config_toml(tmp_path: Path) -> None:
    cfg = tmp_path / "atlas.toml"
    cfg.write_text(
        "[databases.main]\n"
        'url = "postgresql://app@db.example/main"\n'
        'environment = "staging"\n'
        "\n"
        "[databases.billing]\n"
        'url = "postgresql://app@db.example/billing"\n'
        'staging_url = "postgresql://app@staging.example/billing"\n'
    )
    settings = load_settings(env={"ATLAS_CONFIG": str(cfg)})
    main = settings.target("main")
    assert main.url == "postgresql://app@db.example/main"
    assert main.environment == "staging"
    billing = settings.target("billing")
    assert billing.environment == "production"  # ATLAS_ENVIRONMENT's default
    assert billing.staging_url == "postgresql://app@staging.example/billing"
    assert settings.target().name == "main"  # the first one listed


def test_config_toml_plus_database_url(tmp_path: Path) -> None:
    cfg = tmp_path / "atlas.toml"
    cfg.write_text('[databases.main]\nurl = "postgresql://app@db.example/main"\n')
    settings = load_settings(
        env={"ATLAS_CONFIG": str(cfg), "DATABASE_URL": "postgresql://app@db.example/other"}
    )
    assert sorted(settings.databases) == ["main", "other"]


def test_config_file_missing(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(AtlasError) as info:
        load_settings(env={"ATLAS_CONFIG": str(missing)})
    assert str(missing) in str(info.value)
    assert "does not exist" in str(info.value)


def test_config_file_invalid_toml(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[databases.main\nurl = ")
    with pytest.raises(AtlasError, match="not valid TOML"):
        load_settings(env={"ATLAS_CONFIG": str(cfg)})


def test_config_file_bad_database_name(tmp_path: Path) -> None:
    cfg = tmp_path / "atlas.toml"
    cfg.write_text('[databases."bad name"]\nurl = "postgresql://h/x"\n')
    with pytest.raises(AtlasError, match=r"databases\.bad name"):
        load_settings(env={"ATLAS_CONFIG": str(cfg)})


def test_unknown_target_lists_known_names(tmp_path: Path) -> None:
    cfg = tmp_path / "atlas.toml"
    cfg.write_text(
        '[databases.main]\nurl = "postgresql://h/main"\n'
        '[databases.billing]\nurl = "postgresql://h/billing"\n'
    )
    settings = load_settings(env={"ATLAS_CONFIG": str(cfg)})
    with pytest.raises(AtlasError) as info:
        settings.target("nope")
    message = str(info.value)
    assert "'nope'" in message
    assert "billing, main" in message


def test_no_database_configured() -> None:
    settings = load_settings(env={})
    assert settings.databases == {}
    with pytest.raises(AtlasError) as info:
        settings.target()
    assert "No database is configured" in str(info.value)
    assert "DATABASE_URL" in str(info.value)


def test_pgdatabase_alone_configures_a_target() -> None:
    settings = load_settings(env={"PGDATABASE": "inventory"})
    target = settings.target()
    assert target.name == "inventory"
    assert target.url == ""


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


# -- bot.backup.layout.artifact_key --------------------------------------------------------------


def test_artifact_key_keeps_environment_and_database_apart() -> None:
    prod = DatabaseTarget(name="app", environment="production")
    staging = DatabaseTarget(name="app", environment="staging")
    other = DatabaseTarget(name="billing", environment="production")
    keys = {artifact_key(t, "20240101-000000-abcd") for t in (prod, staging, other)}
    assert len(keys) == 3
    assert artifact_key(prod, "ID") == "production/app/ID.dump.zst"
    assert artifact_key(staging, "ID") == "staging/app/ID.dump.zst"
    assert artifact_key(other, "ID") == "production/billing/ID.dump.zst"
