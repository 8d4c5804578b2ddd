"""The streaming pipeline's parts: checked reads of an artifact, and the child processes."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest
import zstandard

from bot.backup import pipeline
from bot.errors import Damaged
from bot.store.local import LocalStorage


def _store(tmp_path: Path, plain: bytes) -> tuple[LocalStorage, str, int, str]:
    data = zstandard.ZstdCompressor(write_checksum=True).compress(plain)
    storage = LocalStorage(tmp_path)
    (tmp_path / "a.zst").write_bytes(data)
    return storage, "a.zst", len(data), hashlib.sha256(data).hexdigest()


def test_a_good_artifact_reads_back_whole(tmp_path: Path) -> None:
    plain = b"row\n" * 100_000
    storage, key, size, sha = _store(tmp_path, plain)
    got: list[bytes] = []
    pipeline.read_artifact(storage, key, got.append, expect_size=size, expect_sha256=sha)
    assert b"".join(got) == plain
    assert pipeline.hash_stored(storage, key) == (size, sha)


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (lambda b: b[:-7], "truncated"),
        (lambda b: b + b"junk", "corrupt"),
        (lambda b: b[:100] + bytes([b[100] ^ 1]) + b[101:], "corrupt"),
    ],
)
def test_damage_is_named_and_typed(tmp_path: Path, damage, words: str) -> None:
    storage, key, size, sha = _store(tmp_path, random.Random(1).randbytes(300_000))
    path = tmp_path / key
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(Damaged) as info:
        pipeline.read_artifact(storage, key, lambda _b: None, expect_size=size, expect_sha256=sha)
    assert (
        words in str(info.value)
        or "Checksum mismatch" in str(info.value)
        or "bytes" in str(info.value)
    )


def test_a_wrong_expected_checksum_is_damage(tmp_path: Path) -> None:
    storage, key, size, _ = _store(tmp_path, b"x" * 10)
    with pytest.raises(Damaged, match="Checksum mismatch"):
        pipeline.read_artifact(
            storage, key, lambda _b: None, expect_size=size, expect_sha256="0" * 64
        )


def test_a_child_that_fails_says_why(tmp_path: Path) -> None:
    feed = pipeline.FeedProcess(["sh", "-c", "echo 'no such table' >&2; exit 3"], {})
    feed.feed(b"x" * (1 << 20))
    code, stderr = feed.finish()
    assert code == 3 and "no such table" in stderr
