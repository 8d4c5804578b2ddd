"""The local artifact writer and the pipeline's worker lanes: no server needed."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from bot.errors import AtlasError
from bot.pump import Pump
from bot.store.base import CHUNK
from bot.store.local import LocalStorage, LocalWriter


def _partial(tmp_path: Path) -> Path:
    (found,) = [p for p in tmp_path.rglob("*") if p.name.endswith(".partial")]
    return found


def test_read_back_hashes_what_the_file_holds(tmp_path: Path) -> None:
    data = os.urandom(3 * CHUNK + 12345)  # several read-back steps and a short tail
    writer = LocalStorage(tmp_path).writer("prod/app/x.dump.zst")
    for i in range(0, len(data), 200_000):
        writer.write(data[i : i + 200_000])
    stored = writer.commit()
    assert stored.size == len(data)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.read_back
    assert (tmp_path / "prod/app/x.dump.zst").read_bytes() == data
    assert not list(tmp_path.rglob("*.partial"))


def test_read_back_sees_a_byte_changed_on_disk(tmp_path: Path) -> None:
    """The proof comes from the file, not from the bytes handed to write()."""
    data = os.urandom(CHUNK // 2)  # under one step: nothing is read back before commit
    writer = LocalWriter(tmp_path / "x.dump.zst", read_back=True)
    writer.write(data)
    with open(_partial(tmp_path), "r+b") as fh:  # e.g. a faulty disk or another process
        fh.seek(1000)
        fh.write(bytes([data[1000] ^ 0xFF]))
    with pytest.raises(AtlasError, match="does not read back as what was written.*byte 1,000"):
        writer.commit()
    assert list(tmp_path.iterdir()) == []  # neither the final name nor the partial


def test_read_back_refuses_a_file_longer_than_written(tmp_path: Path) -> None:
    writer = LocalWriter(tmp_path / "x.dump.zst", read_back=True)
    writer.write(b"a" * 1000)
    with open(_partial(tmp_path), "ab") as fh:
        fh.write(b"trailing")
    with pytest.raises(AtlasError, match="longer than what was written"):
        writer.commit()
    assert list(tmp_path.iterdir()) == []


def test_read_back_refuses_a_file_shorter_than_written(tmp_path: Path) -> None:
    writer = LocalWriter(tmp_path / "x.dump.zst", read_back=True)
    writer.write(b"a" * 1000)
    os.truncate(_partial(tmp_path), 600)
    with pytest.raises(AtlasError, match="first difference at byte 600"):
        writer.commit()
    assert list(tmp_path.iterdir()) == []


def test_abort_stops_read_back_and_removes_the_partial(tmp_path: Path) -> None:
    writer = LocalWriter(tmp_path / "x.dump.zst", read_back=True)
    writer.write(os.urandom(2 * CHUNK))
    before = threading.active_count()
    writer.abort()
    assert threading.active_count() == before - 1  # the read-back thread ended
    assert list(tmp_path.iterdir()) == []


def test_without_read_back_there_is_no_checksum(tmp_path: Path) -> None:
    writer = LocalWriter(tmp_path / "x.json")
    writer.write(b"{}")
    stored = writer.commit()
    assert stored.sha256 is None and not stored.read_back
    assert (tmp_path / "x.json").read_bytes() == b"{}"


def test_disk_error_names_the_problem_and_cleans_up(tmp_path: Path) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full to simulate a full disk")
    writer = LocalWriter(tmp_path / "x.dump.zst", read_back=True)
    partial = _partial(tmp_path)
    writer._fh.close()
    writer._fh = open("/dev/full", "wb", buffering=0)  # noqa: SIM115 - every write: ENOSPC
    with pytest.raises(AtlasError, match="disk is full"):
        writer.write(b"x" * 4096)
    assert not partial.exists()


# -- Pump ------------------------------------------------------------------------------------


def test_pump_keeps_order_and_finishes_on_close() -> None:
    seen: list[bytes] = []
    pump = Pump(seen.append, name="t")
    chunks = [str(i).encode() for i in range(100)]
    for c in chunks:
        pump.put(c)
    pump.close()
    assert seen == chunks


def test_pump_error_reaches_the_producer() -> None:
    def fail(chunk: bytes) -> None:
        if chunk == b"3":
            raise AtlasError("disk gone")

    pump = Pump(fail, name="t", depth=1)
    with pytest.raises(AtlasError, match="disk gone"):
        for i in range(1000):
            pump.put(str(i).encode())
    with pytest.raises(AtlasError, match="disk gone"):
        pump.close()


def test_pump_close_without_raising_drops_the_rest() -> None:
    """After a failure elsewhere, close(raise_error=False) must not write what is queued."""
    seen: list[bytes] = []
    started, gate = threading.Event(), threading.Event()

    def slow(chunk: bytes) -> None:
        started.set()
        gate.wait(5)
        seen.append(chunk)

    pump = Pump(slow, name="t", depth=10)
    for i in range(5):
        pump.put(bytes([i]))
    assert started.wait(5)
    closer = threading.Thread(target=pump.close, kwargs={"raise_error": False})
    closer.start()
    while pump.error is None:  # close() marks the pump stopped before it waits
        threading.Event().wait(0.01)
    gate.set()
    closer.join(5)
    assert seen == [bytes([0])]  # the chunk in progress finished; the queued ones were skipped
