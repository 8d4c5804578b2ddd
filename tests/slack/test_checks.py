"""`atlas doctor`'s scope check asks for exactly what manifest.yml declares: a scope added to
the manifest and forgotten here would never be checked, and one here but not in the manifest
would fail every correct install."""

from __future__ import annotations

from pathlib import Path

import yaml

from bot.slack.checks import SCOPES

REPO = Path(__file__).resolve().parents[2]


def test_doctor_checks_the_scopes_the_manifest_declares() -> None:
    manifest = yaml.safe_load((REPO / "manifest.yml").read_text())
    declared = manifest["oauth_config"]["scopes"]["bot"]
    assert sorted(SCOPES) == sorted(declared)
    assert len(set(SCOPES)) == len(SCOPES)
