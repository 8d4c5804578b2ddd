"""S3 storage: server-side encryption asked for on every upload."""

from __future__ import annotations

import pytest

from bot.config import load_settings
from bot.errors import AtlasError
from tests.support.catalogs import state_for
from tests.support.helpers import services_for, settings_for
from tests.support.rds import rds_client, rds_env, rds_server

__all__ = ["rds_client", "rds_env", "rds_server"]  # fixtures, imported for pytest


# -- 5. S3 server-side encryption -------------------------------------------------------------------


def test_s3_uploads_ask_for_server_side_encryption(
    pg_db, pg_url, small, tmp_path, s3_env, s3_client
):
    bucket = s3_env
    for sse, extra in (("AES256", {}), ("aws:kms", {"ATLAS_S3_KMS_KEY_ID": "alias/atlas-test"})):
        settings = settings_for(
            pg_url, tmp_path, storage=f"s3://{bucket}/p", ATLAS_S3_SSE=sse, **extra
        )
        row = services_for(settings).taker.take(requested_by="U1")
        assert row.status == "ok"
        for key in (f"p/{row.storage_key}", f"p/production/{pg_db}/{row.id}.json"):
            head = s3_client.head_object(Bucket=bucket, Key=key)
            assert head["ServerSideEncryption"] == sse, key
            if sse == "aws:kms":
                assert head["SSEKMSKeyId"].endswith("alias/atlas-test"), head


def test_invalid_s3_sse_is_refused_at_start(tmp_path):
    for bad in ("aes256", "AES-256", "kms"):
        with pytest.raises(AtlasError, match="use AES256 or aws:kms"):
            load_settings(
                {
                    "DATABASE_URL": "postgresql://u@db/app",
                    "ATLAS_STORAGE": "s3://b/p",
                    "ATLAS_STATE": state_for(tmp_path),
                    "ATLAS_S3_SSE": bad,
                }
            )
    ok = load_settings({"DATABASE_URL": "postgresql://u@db/app", "ATLAS_S3_SSE": ""})
    assert ok.s3_sse is None
