"""Reading pg_dump's custom archive: the table of contents, and where each data block
starts, checked against real dumps and against pg_restore's own reading of them."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import psycopg
import pytest

from bot.backup import archive
from bot.pg import find_tool
from tests.support.pg import fill_realistic


def _dump(url: str, path: Path, *extra: str) -> bytes:
    pg_dump, _ = find_tool("pg_dump", 0, None)
    conn = psycopg.conninfo.conninfo_to_dict(url)
    env = {"PGPASSWORD": str(conn.pop("password", ""))}
    argv = [pg_dump, "-Fc", "--no-owner", "--no-acl", *extra, "-f", str(path)]
    subprocess.run([*argv, psycopg.conninfo.make_conninfo(**conn)], env=env, check=True)
    return path.read_bytes()


def _walk_blocks(data: bytes, toc: archive.Toc) -> list[int]:
    """Where each segment starts, by following every chunk length: slow and sure."""
    starts, pos = [0, toc.size], toc.size
    for entry in toc.blocks:
        assert data[pos : pos + 6] == archive.block_header(entry)
        pos += 6
        while True:
            length = int.from_bytes(data[pos + 1 : pos + 5], "little")
            pos += 5
            if length == 0:
                break
            pos += length
        starts.append(pos)
    assert pos == len(data)  # the last block ends the archive
    return starts[:-1]


@pytest.fixture
def realistic_dump(pg_url: str, tmp_path: Path) -> bytes:
    fill_realistic(pg_url, scale=3)
    return _dump(pg_url, tmp_path / "plain.dump", "-Z0")


def test_the_table_of_contents_reads_as_pg_restore_reads_it(realistic_dump, tmp_path):
    toc = archive.read_toc(realistic_dump)
    pg_restore, _ = find_tool("pg_restore", 0, None)
    head = tmp_path / "head.dump"
    head.write_bytes(realistic_dump[: toc.size])  # pg_restore --list needs no more than this
    listed = subprocess.run(
        [pg_restore, "--list", str(head)], capture_output=True, text=True, check=True
    ).stdout
    entries = [ln for ln in listed.splitlines() if ln and not ln.startswith(";")]
    ids = [int(ln.split(";")[0]) for ln in entries]
    assert ids == [e.dump_id for e in toc.entries if e.dump_id in ids]  # same order
    by_id = {e.dump_id: e for e in toc.entries}
    assert all(f" {by_id[i].desc} " in ln for i, ln in zip(ids, entries, strict=True))
    unlisted = {e.desc for e in toc.entries if e.dump_id not in ids}
    assert unlisted <= {"ENCODING", "STDSTRINGS", "SEARCHPATH", "DATABASE"}  # session setup
    tables = [e for e in toc.entries if e.desc == "TABLE DATA"]
    assert len(tables) >= 24 and all(e.has_data for e in tables)
    assert {e.desc for e in toc.blocks} == {"TABLE DATA"}
    fks = [e for e in toc.entries if e.desc == "FK CONSTRAINT"]
    assert fks and all(e.drop and "DROP CONSTRAINT" in e.drop for e in fks)
    with pytest.raises(archive.Incomplete):
        archive.read_toc(realistic_dump[: toc.size - 1])


@pytest.mark.parametrize("sizes", ["1MiB", "tiny and odd"])
def test_the_splitter_finds_every_block_however_the_stream_is_chunked(realistic_dump, sizes):
    data = realistic_dump
    truth = _walk_blocks(data, archive.read_toc(data))
    rng = random.Random(7)
    splitter = archive.Splitter()
    pieces: list[bytes] = []
    cuts: list[int] = []
    at = pos = 0
    while pos < len(data):
        n = 1 << 20 if sizes == "1MiB" else rng.choice([1, 2, 5, 10, 11, 12, 97, 4096])
        for piece, ends in splitter.feed(data[pos : pos + n]):
            pieces.append(bytes(piece))
            at += len(piece)
            if ends:
                cuts.append(at)
        pos += n
    pieces += [bytes(p) for p, _ in splitter.end()]
    assert b"".join(pieces) == data  # nothing lost, nothing added
    assert splitter.finish() == truth
    assert [0, *cuts] == truth  # the compressor ends a frame at each


def test_what_cannot_be_split_passes_through_whole(pg_url, tmp_path):
    fill_realistic(pg_url)
    streams = {
        "compressed by pg_dump": _dump(pg_url, tmp_path / "z.dump", "-Z6"),
        "not an archive": b"COPY public.t FROM stdin;\n" * 5000,
        "cut inside its table of contents": _dump(pg_url, tmp_path / "p.dump", "-Z0")[:300],
    }
    for why, data in streams.items():
        splitter = archive.Splitter()
        out = b"".join(bytes(p) for p, _ in splitter.feed(data))
        out += b"".join(bytes(p) for p, _ in splitter.end())
        assert out == data, why
        assert splitter.finish() is None and splitter.failed, why


def test_large_objects_end_the_index(pg_url, tmp_path):
    """Large-object data is binary: nothing is searched for inside it, and it comes last."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE docs (id int PRIMARY KEY, body oid)")
        conn.execute(
            "INSERT INTO docs SELECT g, lo_from_bytea(0, decode(repeat('00', 5000) || "
            "'0000000000010000', 'hex')) FROM generate_series(1, 3) g"
        )
    data = _dump(pg_url, tmp_path / "lo.dump", "-Z0")
    toc = archive.read_toc(data)
    assert toc.blocks[-1].block_type == archive.BLOCK_BLOBS
    splitter = archive.Splitter()
    out = b"".join(bytes(p) for p, _ in splitter.feed(data))
    out += b"".join(bytes(p) for p, _ in splitter.end())
    assert out == data
    assert splitter.finish() == _walk_blocks_to_blobs(data, toc)


def _walk_blocks_to_blobs(data: bytes, toc: archive.Toc) -> list[int]:
    starts = [0, toc.size]
    pos = toc.size
    for entry in toc.blocks[:-1]:
        pos += 6
        while (length := int.from_bytes(data[pos + 1 : pos + 5], "little")) != 0:
            pos += 5 + length
        pos += 5
        starts.append(pos)
    return starts
