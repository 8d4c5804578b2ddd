"""Shared pytest fixtures for Atlas (real PostgreSQL, moto S3 server, fake Slack Web API)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.support import pick_free_port
from tests.support.catalogs import POSTGRESQL, SQLITE, catalog_backend, catalog_server
from tests.support.faketime import no_faketime_leftovers
from tests.support.ops import bot, key_file, small, staging
from tests.support.pg import least_privilege, pg, pg_db, pg_url
from tests.support.s3 import s3_client, s3_env, s3_server
from tests.support.slack import slack_api
from tests.support.socket_mode import socket_mode

__all__ = [
    "catalog_backend",
    "catalog_server",
    "no_faketime_leftovers",
    "bot",
    "key_file",
    "small",
    "staging",
    "free_port",
    "least_privilege",
    "pg",
    "pg_db",
    "pg_url",
    "s3_client",
    "s3_env",
    "s3_server",
    "slack_api",
    "socket_mode",
]


@pytest.fixture
def free_port() -> int:
    """A currently free TCP port on 127.0.0.1."""
    return pick_free_port()


# A test module that reaches a catalog through any of these runs on both catalogs.
_CATALOG_USES = (
    "settings_for(",
    "cli_env(",
    "state_for(",
    "services_for(",
    "start_bot(",
    "open_catalog(",
    "ATLAS_STATE",
    "bot: Bot",
    "staging: ",
)
_sources: dict[str, bool] = {}


def pytest_configure(config: pytest.Config) -> None:
    """Users' installs cache bytecode; some CI images turn that off
    (PYTHONDONTWRITEBYTECODE), which makes every `atlas` the tests start compile Atlas from
    source again. Run as users do (the workers inherit this environment)."""
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    sys.dont_write_bytecode = False


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto`: two workers per core, at most eight. The tests mostly wait on servers
    and subprocesses of their own, so a core serves two of them."""
    return max(2, min(8, 2 * (os.cpu_count() or 1)))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--catalog",
        choices=("both", SQLITE, POSTGRESQL),
        default="both",
        help="which catalog backend tests that use a catalog run on (default: both)",
    )


def _uses_catalog(path: Path) -> bool:
    key = str(path)
    if key not in _sources:
        text = path.read_text(encoding="utf-8")
        _sources[key] = any(use in text for use in _CATALOG_USES)
    return _sources[key]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests that touch a catalog run on SQLite and on PostgreSQL (`--catalog` picks one);
    `@pytest.mark.sqlite_only` keeps a test about the SQLite file to that file, and
    `own_catalog` marks tests that pick their catalog themselves, `no_catalog` those that
    only parse settings."""
    if "catalog_backend" not in metafunc.fixturenames:
        return
    choice = metafunc.config.getoption("--catalog")
    definition = metafunc.definition
    if any(
        definition.get_closest_marker(m) for m in ("sqlite_only", "own_catalog", "no_catalog")
    ) or not _uses_catalog(Path(str(metafunc.definition.fspath))):
        backends = [SQLITE]
    else:
        backends = [SQLITE, POSTGRESQL] if choice == "both" else [choice]
    if backends != [SQLITE]:
        metafunc.parametrize("catalog_backend", backends, indirect=True)
