"""Where snapshots live in storage."""

from __future__ import annotations

from bot.backup.layout import artifact_key
from bot.config import DatabaseTarget

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
