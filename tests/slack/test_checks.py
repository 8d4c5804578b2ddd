"""`atlas doctor`'s scope check asks for exactly what manifest.yml declares: a scope added to
the manifest and forgotten here would never be checked, and one here but not in the manifest
would fail every correct install."""

from __future__ import annotations

from bot.slack.checks import SCOPES
from tests.support.slack import manifest_scopes


def test_doctor_checks_the_scopes_the_manifest_declares() -> None:
    assert sorted(SCOPES) == sorted(manifest_scopes())
    assert len(set(SCOPES)) == len(SCOPES)
