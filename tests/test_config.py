"""Settings from the environment and ATLAS_CONFIG, validated once with clear errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bot.config import ENV_NAMES, load_settings
from bot.errors import AtlasError

pytestmark = pytest.mark.no_catalog  # settings are parsed, no catalog is opened


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's shell out of the tests."""
    names = set(ENV_NAMES)
    names |= {"PGDATABASE", "PGHOST", "PGPORT", "PGUSER", "PGPASSWORD"}
    for name in names:
        monkeypatch.delenv(name, raising=False)


# -- bot.config ------------------------------------------------------------------------------


def test_allowed_users_csv() -> None:
    settings = load_settings(env={"ATLAS_ALLOWED_USERS": "U1, U2"})
    assert settings.allowed_users == ["U1", "U2"]


def test_allowed_users_empty_and_sloppy() -> None:
    assert load_settings(env={}).allowed_users == []
    assert load_settings(env={"ATLAS_ALLOWED_USERS": ""}).allowed_users == []
    assert load_settings(env={"ATLAS_ALLOWED_USERS": " U1 ,, U2 ,"}).allowed_users == ["U1", "U2"]


def test_approvers_and_users_split_on_spaces_as_on_commas() -> None:
    """Ids hold no spaces: `U1 U2` is two approvers, not one that nobody's reaction is."""
    settings = load_settings(env={"ATLAS_APPROVERS": "U1 U2,\tS3", "ATLAS_ALLOWED_USERS": "U1  U4"})
    assert (settings.approvers, settings.allowed_users) == (["U1", "U2", "S3"], ["U1", "U4"])


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


# -- fleets: ATLAS_DATABASES and [servers.NAME] ----------------------------------------------


def _load(**env: str):
    return load_settings(env=env)


def test_atlas_databases_makes_the_server_the_unit() -> None:
    st = _load(
        DATABASE_URL="postgresql://atlas:pw@db1.internal/postgres",
        ATLAS_DATABASES="*, !postgres,!*_test",
        ATLAS_MAX_PARALLEL="3",
    )
    assert st.databases == {}  # nothing until the server is listed
    server = st.servers["default"]
    assert server.prefix == "" and server.url_setting == "DATABASE_URL"
    assert server.selection.include == ("*",)
    assert server.selection.exclude == ("postgres", "*_test")
    assert st.max_parallel == 3
    with pytest.raises(AtlasError, match="No database of the configured servers is known yet"):
        st.target()


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"ATLAS_DATABASES": "orders, !"}, "ATLAS_DATABASES: a pattern is empty"),
        ({"ATLAS_DATABASES": "!postgres"}, "ATLAS_DATABASES: nothing is included"),
        ({"ATLAS_MAX_PARALLEL": "0"}, "ATLAS_MAX_PARALLEL: must be at least 1"),
        ({"ATLAS_MAX_PARALLEL": "two"}, "ATLAS_MAX_PARALLEL: 'two' is not a whole number"),
        ({"ATLAS_DRILL_SCOPE": "servers"}, "ATLAS_DRILL_SCOPE: 'servers' is neither 'database'"),
    ],
)
def test_mistyped_fleet_settings_are_one_clear_line(env: dict[str, str], words: str) -> None:
    with pytest.raises(AtlasError) as err:
        _load(DATABASE_URL="postgresql://atlas:s3cret-pw@db1/postgres", **env)
    assert words in str(err.value)
    assert "s3cret-pw" not in str(err.value)


def test_atlas_databases_needs_a_server() -> None:
    with pytest.raises(AtlasError, match="ATLAS_DATABASES is set but no server is"):
        _load(ATLAS_DATABASES="*")


def test_servers_in_the_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "atlas.toml"
    cfg.write_text(
        """
[servers.db2]
url = "postgresql://atlas:pw@db2.internal/postgres"
include = "orders, billing*"
exclude = ["billing_archive"]
staging_url = "postgresql://atlas@staging2.internal/postgres"
schedule = "30 2 * * *"
environment = "eu"
drill_scope = "server"
"""
    )
    st = _load(ATLAS_CONFIG=str(cfg))
    assert st.drill_scope == "database" and st.servers["db2"].drill_scope == "server"
    server = st.servers["db2"]
    assert server.prefix == "db2." and server.environment == "eu"
    assert server.schedule == "30 2 * * *"
    assert server.selection.select(["orders", "billing", "billing_archive", "x"]) == [
        "billing",
        "orders",
    ]
    assert "pw" not in repr(server)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ('url = "postgresql://h/postgres"\nincldue = "*"', "unknown key 'incldue'"),
        ('include = "*"', "url is required"),
        ('url = "postgresql://h/postgres"\nschedule = "every night"', "[servers.db2]"),
        ('url = "postgresql://h/postgres"\ninclude = ""', "nothing is included"),
        ('url = "postgresql://h/postgres"\ndrill_scope = "rotation"', "neither 'database'"),
        ('url = "postgresql://h/postgres"\nstaging_url = 5', "staging_url must be text"),
        ('url = "postgresql://h/postgres"\ninclude = 5', "include must be names"),
        ('url = "postgresql://h/postgres"\nexclude = [1, 2]', "exclude must be names"),
        ("url = 5", "url must be text"),
    ],
)
def test_mistyped_server_tables_are_refused_with_the_reason(
    tmp_path: Path, body: str, words: str
) -> None:
    cfg = tmp_path / "atlas.toml"
    cfg.write_text(f"[servers.db2]\n{body}\n")
    with pytest.raises(AtlasError) as err:
        _load(ATLAS_CONFIG=str(cfg))
    assert "ATLAS_CONFIG: [servers.db2]" in str(err.value)
    assert words in str(err.value)


def test_a_database_may_have_a_schedule_of_its_own(tmp_path: Path) -> None:
    cfg = tmp_path / "atlas.toml"
    cfg.write_text(
        '[databases.billing]\nurl = "postgresql://h/billing"\nschedule = "0 */6 * * *"\n'
    )
    assert _load(ATLAS_CONFIG=str(cfg)).databases["billing"].schedule == "0 */6 * * *"
    cfg.write_text('[databases.billing]\nurl = "postgresql://h/billing"\nschedule = "hourly"\n')
    with pytest.raises(AtlasError, match=r"ATLAS_CONFIG: \[databases.billing\]"):
        _load(ATLAS_CONFIG=str(cfg))


@pytest.mark.parametrize(
    "state",
    [
        "postgresq://atlas:Cat-pw-9@db/atlas_catalog",
        "atlas:Cat-pw-9@db:5432/atlas_catalog",
        "host=db dbname=atlas_catalog password=Cat-pw-9",
    ],
)
def test_a_mistyped_catalog_url_is_refused_not_taken_for_a_file(state: str) -> None:
    with pytest.raises(AtlasError) as refused:
        load_settings(env={"ATLAS_STATE": state})
    said = str(refused.value)
    assert "ATLAS_STATE" in said and "postgresql://USER@HOST" in said
    assert "Cat-pw-9" not in said and "\n" not in said


def test_catalog_state_is_a_path_or_a_postgresql_url() -> None:
    assert load_settings(env={"ATLAS_STATE": "/var/lib/atlas/atlas.db"}).state == Path(
        "/var/lib/atlas/atlas.db"
    )
    assert load_settings(env={"ATLAS_STATE": "./user@2026/atlas.db"}).state == Path(
        "./user@2026/atlas.db"
    )
    url = "postgres://atlas@db/atlas_catalog"
    assert load_settings(env={"ATLAS_STATE": f" {url} "}).state == url


def test_catalog_state_reads_home_as_storage_does_and_is_never_blank(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert load_settings(env={"ATLAS_STATE": "~/atlas.db"}).state == tmp_path / "atlas.db"
    (tmp_path / "atlas.toml").write_text('[databases.app]\nurl = "postgresql://h/app"\n')
    assert list(load_settings(env={"ATLAS_CONFIG": "~/atlas.toml"}).databases) == ["app"]
    for blank in ("", "  "):
        with pytest.raises(AtlasError, match="ATLAS_STATE: is empty"):
            load_settings(env={"ATLAS_STATE": blank})


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('[database.app]\nurl = "postgresql://h/app"', "unknown key 'database'"),
        ('retention = 7\n[databases.app]\nurl = "postgresql://h/app"', "unknown key 'retention'"),
        ("databases = 5", "databases must be [databases.NAME] tables, not int"),
        ('databases = ["a"]', "databases must be [databases.NAME] tables, not list"),
        ("servers = 5", "servers must be [servers.NAME] tables"),
        ("checks = 5", "checks must be [[checks]] tables"),
        ('[databases.app]\nurl = "postgresql://h/app"\nstaging_problem = "sure"', "unknown key"),
        ('[databases.app]\nurl = "postgresql://h/app"\nname = "other"', "unknown key 'name'"),
        ("[copies.x]\nurl = 5", "url must be text"),
        ('[copies.x]\nurl = "s3://acme-x/db"\nregion = ["a"]', "region must be text"),
    ],
)
def test_a_mistyped_config_file_is_refused_in_one_line(
    tmp_path: Path, text: str, words: str
) -> None:
    """A misspelt table would be ignored (that database never backed up), a value of the
    wrong kind would break a later command with Python's words: both refused on loading."""
    cfg = tmp_path / "atlas.toml"
    cfg.write_text(text + "\n")
    with pytest.raises(AtlasError) as err:
        _load(ATLAS_CONFIG=str(cfg))
    said = str(err.value)
    assert said.startswith(("ATLAS_CONFIG", "Invalid configuration: ")) and words in said, said
    assert "\n" not in said and "Error" not in said


def test_a_mistyped_environment_is_named_as_such() -> None:
    """ATLAS_ENVIRONMENT names a folder in storage: a bad one is refused under its own name
    (it was blamed on the database, or crashed with ATLAS_DATABASES); blank is the default."""
    base = {"DATABASE_URL": "postgresql://h/app"}
    for bad in ("prod/x", ".hidden"):
        for extra in ({}, {"ATLAS_DATABASES": "app"}):
            with pytest.raises(AtlasError, match=f"ATLAS_ENVIRONMENT: '{re.escape(bad)}' must be"):
                load_settings(env={**base, **extra, "ATLAS_ENVIRONMENT": bad})
    assert load_settings(env={**base, "ATLAS_ENVIRONMENT": ""}).environment == "production"
    assert load_settings(env={**base, "ATLAS_ENVIRONMENT": " staging "}).environment == "staging"


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("ATLAS_DRILL_EVERY", "99999999999", "between 1 and 3660 days"),
        ("ATLAS_DRILL_EVERY", "²", "'quarter' or a positive number of days"),
        ("ATLAS_SNAPSHOT_SCHEDULE", "0 3 31 2 *", "never comes"),
    ],
)
def test_a_setting_that_could_never_work_is_refused_at_start(
    name: str, value: str, words: str
) -> None:
    """A drill interval past ten years or in superscript digits, a schedule on 31 February:
    refused as the settings load, not a crash later or a schedule that never runs."""
    with pytest.raises(AtlasError) as err:
        load_settings(env={name: value})
    assert f"{name}: " in str(err.value) and words in str(err.value)


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"ATLAS_S3_KMS_KEY_ID": "alias/atlas"}, "only ATLAS_S3_SSE=aws:kms uses a key"),
        ({"ATLAS_S3_KMS_KEY_ID": "alias/atlas", "ATLAS_S3_SSE": "AES256"}, "ATLAS_S3_SSE=aws:kms"),
        (
            {"ATLAS_PROVIDER_RETENTION_MIN": "40"},
            "MIN (40) is above ATLAS_PROVIDER_RETENTION_MAX (30)",
        ),
    ],
)
def test_settings_that_contradict_each_other_are_refused(env: dict[str, str], words: str) -> None:
    """Each fine alone, silently ignored or never satisfiable together."""
    with pytest.raises(AtlasError, match=re.escape(words)):
        load_settings(env=env)


def test_identifiers_pasted_with_spaces_are_trimmed() -> None:
    settings = load_settings(env={"ATLAS_RDS_INSTANCE": " db-1\n", "ATLAS_S3_SSE": "aws:kms"})
    assert settings.rds_instance == "db-1"
    kms = {"ATLAS_S3_SSE": "aws:kms", "ATLAS_S3_KMS_KEY_ID": " alias/atlas "}
    assert load_settings(env=kms).s3_kms_key_id == "alias/atlas"
