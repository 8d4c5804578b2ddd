"""ATLAS_COPIES and `[copies.NAME]` read as a user writes them, and refused, in one line
that keeps any secret out, when they are mistyped."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import load_settings
from bot.errors import AtlasError

pytestmark = pytest.mark.no_catalog

BASE = {"DATABASE_URL": "postgresql://app@127.0.0.1:1/app", "ATLAS_STORAGE": "s3://acme-prod/db"}


def _load(**env: str):
    return load_settings({**BASE, **env})


def test_named_destinations_with_their_own_accounts():
    st = _load(
        ATLAS_COPIES="offsite=s3://acme-dr/db, nas=/mnt/nas/atlas,s3://acme-vault/x",
        ATLAS_COPY_OFFSITE_ENDPOINT_URL="https://s3.eu-west-2.example.com",
        ATLAS_COPY_OFFSITE_ACCESS_KEY_ID="AKIADR",
        ATLAS_COPY_OFFSITE_SECRET_ACCESS_KEY="dr-secret",
        ATLAS_COPY_OFFSITE_SSE="aws:kms",
        ATLAS_COPY_OFFSITE_RETENTION_DAYS="365",
        ATLAS_COPY_NAS_KEEP_MONTHLY="12",
    )
    assert list(st.copies) == ["offsite", "nas", "acme-vault"]
    dr = st.copies["offsite"]
    assert (dr.url, dr.endpoint_url, dr.sse, dr.retention_days) == (
        "s3://acme-dr/db",
        "https://s3.eu-west-2.example.com",
        "aws:kms",
        365,
    )
    assert "dr-secret" not in repr(dr)
    assert st.copies["nas"].keep_monthly == 12 and st.copies["nas"].retention_days is None


def test_copies_in_the_toml_file(tmp_path: Path):
    config = tmp_path / "atlas.toml"
    config.write_text('[copies.vault]\nurl = "s3://acme-vault/db"\nretention_days = 90\n')
    st = _load(ATLAS_CONFIG=str(config))
    assert st.copies["vault"].retention_days == 90
    config.write_text('[copies.vault]\nurl = "s3://acme-vault/db"\nretension_days = 90\n')
    with pytest.raises(AtlasError, match="unknown key 'retension_days'"):
        _load(ATLAS_CONFIG=str(config))


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({"ATLAS_COPIES": "dr=s3:/acme-dr:hunter2@x"}, "ATLAS_COPIES dr: 's3:/…' looks like a URL"),
        ({"ATLAS_COPIES": "s3//u:hunter2@acme"}, "ATLAS_COPIES entry 1"),
        ({"ATLAS_COPIES": "dr=s3://acme-prod/db"}, "is ATLAS_STORAGE itself"),
        ({"ATLAS_COPIES": "a=s3://acme-a/x,a=s3://acme-b/x"}, "names 'a' twice"),
        ({"ATLAS_COPIES": "DR=s3://acme-dr/x"}, "a name is 1-32 lower-case"),
        (
            {"ATLAS_COPIES": "dr=s3://acme-dr/x", "ATLAS_COPY_DRR_SSE": "AES256"},
            "ATLAS_COPY_DRR_SSE is set, but ATLAS_COPIES names no such destination (dr)",
        ),
        (
            {"ATLAS_COPIES": "dr=s3://acme-dr/x", "ATLAS_COPY_DR_SECRET_KEY": "hunter2"},
            "ATLAS_COPY_DR_SECRET_KEY: unknown key",
        ),
        ({"ATLAS_COPIES": "dr=s3://acme-dr/x", "ATLAS_COPY_DR_SSE": "aes"}, "sse is AES256"),
        (
            {"ATLAS_COPIES": "nas=/mnt/nas", "ATLAS_COPY_NAS_ENDPOINT_URL": "http://x"},
            "for s3:// URLs only",
        ),
        (
            {"ATLAS_COPIES": "dr=s3://acme-dr/x", "ATLAS_COPY_DR_RETENTION_DAYS": "0"},
            "retention_days must be at least 1",
        ),
    ],
)
def test_a_mistyped_copy_is_refused_in_one_line(env, said):
    with pytest.raises(AtlasError) as caught:
        _load(**env)
    text = str(caught.value)
    assert said in text and "hunter2" not in text and "\n" not in text


def test_a_copy_where_atlas_storage_already_is_is_refused(tmp_path: Path):
    """A copy at ATLAS_STORAGE under another spelling would count as a second place, and
    its retention would delete what ATLAS_STORAGE's policy keeps: refused, however spelled."""
    primary = tmp_path / "backups"
    primary.mkdir()
    (tmp_path / "link").symlink_to(primary)
    folder = {"ATLAS_STORAGE": str(primary)}
    for spelled in (
        f"{primary}/.",
        f"{tmp_path}//backups",
        str(tmp_path / "link"),
        f"{primary}/nas",
    ):
        with pytest.raises(AtlasError, match="is ATLAS_STORAGE itself"):
            _load(**folder, ATLAS_COPIES=f"nas={spelled}")
    with pytest.raises(AtlasError, match="is ATLAS_STORAGE itself"):
        _load(ATLAS_STORAGE=f"{primary}/copy", ATLAS_COPIES=f"nas={primary}")  # it holds it
    for spelled in (
        "s3://acme-prod//db",
        "s3://acme-prod/db/",
        "s3://acme-prod/db/dr",
        "s3://acme-prod",
    ):
        with pytest.raises(AtlasError, match="is ATLAS_STORAGE itself"):
            _load(ATLAS_COPIES=f"dr={spelled}")
    assert _load(**folder, ATLAS_COPIES=f"nas={tmp_path / 'backups-nas'}").copies["nas"]
    assert _load(ATLAS_COPIES="dr=s3://acme-prod/db-dr").copies["dr"]
    elsewhere = _load(ATLAS_COPIES="dr=s3://acme-prod/db/dr", ATLAS_COPY_DR_ENDPOINT_URL="http://x")
    assert elsewhere.copies["dr"].endpoint_url == "http://x"  # another server's bucket
