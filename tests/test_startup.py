"""A command loads what it needs when it runs: `atlas --help` and `atlas list` answer
without loading libpq, zstd, the S3 SDK or Slack's. (How fast they start is measured by
bench/startup_bench.py, not here.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.sqlite_only  # what `list` loads with the default catalog


HEAVY = (
    "psycopg",
    "zstandard",
    "boto3",
    "botocore",
    "slack_sdk",
    "slack_bolt",
    "apscheduler",
    "pydantic",
    "sqlite_utils",
)


def _imported(tmp_path: Path, *args: str) -> set[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ATLAS_", "PG", "SLACK_"))},
        "DATABASE_URL": "postgresql://atlas:not-used@db.example:5432/app",
        "STAGING_DATABASE_URL": "postgresql://atlas@staging.example:5432/app",
        "ATLAS_STATE": str(tmp_path / "atlas.db"),
        "ATLAS_STORAGE": "s3://bucket/prefix",
    }
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "bot.cli", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    assert "bot.errors" in names  # the import log was read (bot.cli runs as __main__)
    return names


def test_help_loads_no_configuration_and_no_client_library(tmp_path: Path) -> None:
    loaded = _imported(tmp_path, "--help")
    assert not {m for m in loaded if m.split(".")[0] in HEAVY}
    assert "bot.config" not in loaded and "bot.services" not in loaded


def test_list_reads_the_catalog_without_libpq_or_storage_clients(tmp_path: Path) -> None:
    loaded = _imported(tmp_path, "list")
    assert "bot.catalog.sqlite" in loaded
    assert not {m for m in loaded if m.split(".")[0] in HEAVY}
    assert not {m for m in loaded if m.startswith(("bot.restore", "bot.backup.take"))}
    assert "importlib.metadata" not in loaded  # only --version needs the package metadata
