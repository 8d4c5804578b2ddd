"""The configured storage, opened once: on first use, or ahead on a thread (an S3 client
takes a few hundred ms to build) with the same result and the same errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.errors import AtlasError
from bot.store import LazyStorage
from tests.support.helpers import settings_for

URL = "postgresql://atlas@127.0.0.1:1/app"


def test_opened_ahead_on_a_thread_is_the_one_get_returns(tmp_path: Path, s3_env) -> None:
    store = LazyStorage(settings_for(URL, tmp_path, storage=f"s3://{s3_env}/prefix"))
    store.open_soon()
    first = store.get()  # waits for the thread: never two clients
    assert store.get() is first and first.kind == "s3"


def test_an_error_opening_ahead_is_raised_by_get(tmp_path: Path) -> None:
    settings = settings_for(URL, tmp_path)
    settings.storage = "s3:///no-bucket"  # past load_settings, which refuses it up front
    store = LazyStorage(settings)
    store.open_soon()
    with pytest.raises(AtlasError, match="names no bucket"):
        store.get()
    with pytest.raises(AtlasError, match="names no bucket"):  # and again, not a cached None
        store.get()
