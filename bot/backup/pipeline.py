"""Streaming pipelines: pg_dump -> zstd -> sha256 -> storage, and storage -> checks -> consumer.

Nothing here holds a whole dump in memory or on disk: data moves in chunks of about
1 MiB, so memory stays flat however large the database is.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import IO, Any, cast

import zstandard

from bot.backup.archive import Splitter
from bot.errors import AtlasError, Damaged
from bot.pump import Pump
from bot.records import Segment
from bot.redaction import redact
from bot.store.base import CHUNK, ArtifactWriter, Storage

log = logging.getLogger(__name__)

OnBytes = Callable[[int, int, float], None]  # raw bytes, stored bytes, elapsed seconds


@dataclass(frozen=True)
class DumpStats:
    """What a dump's stream measured: sizes, time, its head and its segments."""

    raw_size: int
    seconds: float
    toc_bytes: int  # the start of the dump that holds its header and table of contents
    toc_sha256: str
    segments: list[Segment] | None = None  # None: not split (encrypted, or not splittable)


class StderrTail:
    """Collects the last few KiB a child writes to stderr without blocking it."""

    def __init__(self, stream: IO[bytes] | None) -> None:
        self.data = b""
        self._t = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self._t.start()

    def _run(self, stream: IO[bytes] | None) -> None:
        if stream is None:
            return
        for line in iter(stream.readline, b""):
            self.data = (self.data + line)[-8192:]

    def text(self, secrets: Sequence[str] = ()) -> str:
        self._t.join(timeout=5)
        return redact(self.data.decode("utf-8", "replace").strip(), secrets)


def _close_stdin(proc: subprocess.Popen[bytes]) -> None:
    """End the child's input; a child that already exited may have closed it first."""
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()


_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: the kernel kills it if Atlas dies (a SIGKILL, an OOM
    kill), so a pg_restore writing into staging never goes on, and commits, alone."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _grow_pipe(fd: int) -> None:
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, CHUNK)


class FeedProcess:
    """Feeds a byte stream to a child process's stdin on its own thread.

    If the child stops reading, the rest is dropped and `finish` reports the child's
    exit code and stderr.
    """

    def __init__(
        self,
        argv: list[str],
        env: dict[str, str],
        *,
        secrets: Sequence[str] = (),
        name: str = "feed",
        dies_with_us: bool = False,
    ) -> None:
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
            preexec_fn=_die_with_parent if dies_with_us else None,
        )
        assert self.proc.stdin is not None
        _grow_pipe(self.proc.stdin.fileno())
        self.err = StderrTail(self.proc.stderr)
        self.secrets = secrets
        self.broken = False
        self._pump = Pump(self._write, name=name)

    def _write(self, chunk: bytes) -> None:
        if self.broken:
            return
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            stdin.write(chunk)
        except OSError:
            self.broken = True  # the child stopped reading: its exit code says why

    def feed(self, chunk: bytes) -> None:
        self._pump.put(chunk)

    @property
    def failed(self) -> bool:
        """The child already exited with an error: feeding it more is pointless."""
        return self.broken and self.proc.poll() not in (None, 0)

    def finish(self) -> tuple[int, str]:
        """Wait for the child to read everything (or give up); its exit code and stderr."""
        try:
            self._pump.close()
        finally:
            _close_stdin(self.proc)
        code = self.proc.wait()
        return code, self.err.text(self.secrets)

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.kill()
        self._pump.close(raise_error=False)
        _close_stdin(self.proc)
        self.proc.wait()


class ArchiveCheck(FeedProcess):
    """Feeds a byte stream to `pg_restore -f /dev/null`, which reads every TOC entry and
    data block: a truncated or corrupt custom-format archive makes it fail. `--list`
    alone reads only the table of contents and would miss truncation."""

    def __init__(self, pg_restore: str, env: dict[str, str]) -> None:
        super().__init__([pg_restore, "--file", os.devnull], env, name="archive-check")

    def verify(self) -> None:
        """Raise if pg_restore could not read the archive through to its end."""
        code, stderr = self.finish()
        if code != 0 or self.broken:
            detail = stderr or f"exit code {code}"
            raise Damaged(f"The archive does not read through to its end: {detail}")


class TocProbe:
    """`pg_restore --list` on the start of a plain dump stream.

    It exits once it has read the archive's header and table of contents, which hold
    every SQL statement a restore runs; what follows is table data. `size` and
    `sha256` cover the stream up to where it stopped (a little past the TOC's end).
    """

    def __init__(self, pg_restore: str, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [pg_restore, "--list"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.err = StderrTail(self.proc.stderr)
        self.sha = hashlib.sha256()
        self.size = 0
        self.done = False

    def feed(self, chunk: bytes) -> bool:
        """Hand it `chunk`; True once it has stopped reading (done, or failed).

        The write blocks while the pipe is full, so a chunk larger than the pipe's
        buffer returns only once pg_restore read most of it or exited.
        """
        if self.done or self.proc.poll() is not None:
            self.done = True
            return True
        self.sha.update(chunk)
        self.size += len(chunk)
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(chunk)
            self.proc.stdin.flush()
        except BrokenPipeError:
            self.done = True  # it stopped reading
        else:
            self.done = self.proc.poll() is not None
        return self.done

    def finish(self) -> tuple[int, str]:
        _close_stdin(self.proc)
        return self.proc.wait(), self.err.text()

    def verified(self) -> tuple[int, str]:
        """(size, sha256) of the stream's start that holds the whole TOC; raises when
        pg_restore could not read a table of contents from it."""
        code, stderr = self.finish()
        if code != 0:
            raise AtlasError(f"pg_restore cannot read the archive's table of contents: {stderr}")
        return self.size, self.sha.hexdigest()

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.kill()
        self.finish()


class _Cut:
    """Put on the store lane after a frame ends: the segment before it is complete."""


CUT = _Cut()


class SegmentHashes:
    """The store lane's work when the stream is split: write the compressed bytes and
    hash each segment between cuts, beside the compressor rather than after it."""

    def __init__(self, write: Callable[[bytes], object]) -> None:
        self._write = write
        self._sha = hashlib.sha256()
        self._size = 0
        self.done: list[tuple[int, str]] = []  # (stored size, sha256) per segment

    def __call__(self, item: bytes | _Cut) -> None:
        if isinstance(item, _Cut):
            self.done.append((self._size, self._sha.hexdigest()))
            self._sha, self._size = hashlib.sha256(), 0
            return
        self._sha.update(item)
        self._size += len(item)
        self._write(item)


def _segments(
    splitter: Splitter, hashes: SegmentHashes, raw: int, stored: int
) -> list[Segment] | None:
    """Join where the splitter cut the plain stream with what the store lane hashed."""
    starts = splitter.finish()
    toc = splitter.toc
    if starts is None or toc is None or len(starts) != len(hashes.done):
        log.info("the dump is stored whole, not split: %s", splitter.failed or "cuts disagree")
        return None
    ids = [0, *(e.dump_id for e in toc.blocks)]
    ends = [*starts[1:], raw]
    out, at = [], 0
    for dump_id, start, end, (size, sha) in zip(ids, starts, ends, hashes.done, strict=True):
        out.append(Segment(dump_id, start, end - start, at, size, sha))
        at += size
    return out if at == stored else None


class _Sink:
    """What zstd's stream writer writes to: counts bytes and hands them to the storage
    writer's thread."""

    def __init__(self, pump: Pump[Any]) -> None:
        self.pump = pump
        self.size = 0

    def write(self, data: bytes) -> int:
        self.size += len(data)
        self.pump.put(data)
        return len(data)


def run_dump(
    argv: list[str],
    env: dict[str, str],
    writer: ArtifactWriter,
    *,
    pg_restore: str,
    level: int = 3,
    threads: int = 0,
    secrets: Sequence[str] = (),
    progress: OnBytes | None = None,
    split: bool = True,
) -> DumpStats:
    """Run pg_dump (custom format, uncompressed) and stream it compressed into `writer`.

    The plain dump is also fed to pg_restore as it goes, so the archive is proven
    readable without a second pass. The caller commits or aborts the writer.

    With `split`, a zstd frame ends where the table of contents ends and where each
    data block ends, and each such segment is hashed: a restore can then read the
    blocks side by side. The frames concatenate to one valid `.zst` file.
    """
    started = time.monotonic()
    dump = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        bufsize=CHUNK,
    )
    assert dump.stdout is not None
    err = StderrTail(dump.stderr)
    check: ArchiveCheck | None = None
    # Three lanes run side by side: this thread reads pg_dump and compresses (zstd uses
    # its own worker threads), the check lane hashes the plain dump and feeds pg_restore,
    # the store lane hashes and writes the compressed bytes.
    splitter = Splitter() if split else None
    hashes = SegmentHashes(writer.write) if split else None
    store: Pump[Any] = Pump(hashes or writer.write, name="store")
    toc: TocProbe | None = None
    try:
        check = ArchiveCheck(pg_restore, env)
        toc = TocProbe(pg_restore, env)
        _grow_pipe(dump.stdout.fileno())
        sink = _Sink(store)
        # zstandard needs only `write`: the sink is a minimal file-like object
        zw = _compressor(level, threads).stream_writer(
            cast(IO[bytes], sink), write_size=CHUNK, closefd=False
        )

        def on_raw(raw: int) -> None:
            if progress:
                progress(raw, sink.size, time.monotonic() - started)

        raw = _compress(dump.stdout, zw, check, toc, splitter, store, on_raw)
        code = dump.wait()
        if code != 0:
            raise _dump_failed(code, err.text(secrets))
        _end_frames(zw, splitter, hashes is not None, store)
        check.verify()
        toc_bytes, toc_sha256 = toc.verified()
        segments = None
        if splitter is not None and hashes is not None:
            segments = _segments(splitter, hashes, raw, sink.size)
        return DumpStats(raw, time.monotonic() - started, toc_bytes, toc_sha256, segments)
    except BaseException:
        _stop_lanes(dump, store, check, toc)
        raise


def _stop_lanes(
    dump: subprocess.Popen[bytes],
    store: Pump[Any],
    check: ArchiveCheck | None,
    toc: TocProbe | None,
) -> None:
    """After a failure: pg_dump killed, the store lane closed (the caller aborts the
    writer, so nothing may still write to it), the pg_restore checks killed."""
    if dump.poll() is None:
        dump.kill()
    dump.wait()
    store.close(raise_error=False)
    if check is not None:
        check.kill()
    if toc is not None:
        toc.kill()


def _compressor(level: int, threads: int) -> zstandard.ZstdCompressor:
    params = zstandard.ZstdCompressionParameters.from_level(
        level,
        threads=threads or -1,
        job_size=2 << 20,  # smaller jobs than zstd's default: ~40 MB less memory, same speed
        write_checksum=True,
    )
    return zstandard.ZstdCompressor(compression_params=params)


def _compress(
    out: IO[bytes],
    zw: Any,
    check: ArchiveCheck,
    toc: TocProbe,
    splitter: Splitter | None,
    store: Pump[Any],
    on_raw: Callable[[int], None],
) -> int:
    """Read pg_dump to its end: each chunk to the archive check, to the TOC probe until it
    is done, and to zstd, whose frame ends (and the store lane's cut) where the splitter
    says a segment ends. Returns the plain bytes read."""
    raw = 0
    while chunk := out.read(CHUNK):
        raw += len(chunk)
        check.feed(chunk)
        if not toc.done:
            toc.feed(chunk)
        if splitter is None:
            zw.write(chunk)
        else:
            for piece, ends_segment in splitter.feed(chunk):
                zw.write(piece)
                if ends_segment:
                    zw.flush(zstandard.FLUSH_FRAME)
                    store.put(CUT)
        on_raw(raw)
    return raw


def _end_frames(zw: Any, splitter: Splitter | None, cut: bool, store: Pump[Any]) -> None:
    """What the splitter still holds, the last frame ended, the store lane closed."""
    if splitter is not None:
        for piece, _ in splitter.end():
            zw.write(piece)
    zw.flush(zstandard.FLUSH_FRAME)
    if cut:
        store.put(CUT)
    store.close()


def _dump_failed(code: int, stderr: str) -> AtlasError:
    if code < 0:
        return AtlasError(
            f"pg_dump was killed by signal {-code} before it finished.",
            "nothing was kept; check the server and the host's memory, then retry",
        )
    lines = [ln.removeprefix("pg_dump: ").strip() for ln in stderr.splitlines() if ln.strip()]
    text = "; ".join(lines[-3:]) or f"exit code {code}"
    hint = None
    if "server version" in text and "version mismatch" in text:
        hint = "install a pg_dump at least as new as the server, or set ATLAS_PG_BINDIR"
    elif "password authentication failed" in text:
        hint = "check the password in DATABASE_URL or .pgpass"
    return AtlasError(f"pg_dump failed: {text}", hint)


# -- reading an artifact back ------------------------------------------------------------


def read_artifact(
    storage: Storage,
    key: str,
    consume: Callable[[bytes], object],
    *,
    expect_size: int,
    expect_sha256: str,
    identity: Any = None,
    source: Iterable[bytes] | None = None,
) -> None:
    """Stream a stored artifact, decompress it into `consume`, and check it end to end.

    `source` gives the stored bytes when the caller already holds them open (e.g. a
    private copy); otherwise they are read from storage.

    Raises Damaged on a size or checksum mismatch, truncation or trailing garbage: the
    consumer must treat what it received as void in that case.
    """
    sha = hashlib.sha256()
    frames = Frames()
    counted = [0]

    def stored_chunks() -> Iterator[bytes]:
        for chunk in storage.read(key) if source is None else source:
            sha.update(chunk)
            counted[0] += len(chunk)
            yield chunk

    chunks: Iterable[bytes] = stored_chunks()
    if identity is not None:
        from bot.store.crypto import decrypt_chunks

        chunks = decrypt_chunks(identity, chunks)
    try:
        for chunk in chunks:
            if out := frames.decompress(chunk):
                consume(out)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()  # stop a decrypting thread and release the storage read at once
    size, where = counted[0], storage.location(key)
    if size != expect_size:
        raise Damaged(
            f"The stored artifact {where} is {size} bytes, but {expect_size} were written."
        )
    if sha.hexdigest() != expect_sha256:
        raise Damaged(
            f"Checksum mismatch for {where}: sha256 {sha.hexdigest()[:12]}…, "
            f"expected {expect_sha256[:12]}…. The artifact was changed or damaged."
        )
    if not frames.ended:
        raise Damaged(f"The artifact {where} is truncated (its last zstd frame does not end).")


class Frames:
    """Decompresses concatenated zstd frames, as `zstd -dc` does, checking each frame's
    own checksum, and knows whether the input ended exactly where a frame ends."""

    def __init__(self) -> None:
        self._dctx = zstandard.ZstdDecompressor()
        self._obj = self._dctx.decompressobj()
        self._fresh = True  # nothing fed to the current frame yet
        self.count = 0  # frames completed

    def decompress(self, data: bytes | memoryview) -> bytes:
        """Plain bytes for `data`; raises Damaged on anything zstd rejects."""
        out: list[bytes] = []
        while len(data):
            try:
                out.append(self._obj.decompress(data))
            except zstandard.ZstdError as exc:
                raise Damaged(f"The artifact is corrupt (zstd: {exc}).") from None
            self._fresh = False
            if not self._obj.eof:
                break
            self.count += 1
            data = self._obj.unused_data
            self._obj = self._dctx.decompressobj()
            self._fresh = True
        return out[0] if len(out) == 1 else b"".join(out)

    @property
    def ended(self) -> bool:
        return self._fresh and self.count > 0


def hash_stored(storage: Storage, key: str) -> tuple[int, str]:
    """Size and sha256 of the stored bytes, read back from storage."""
    sha = hashlib.sha256()
    size = 0
    for chunk in storage.read(key):
        sha.update(chunk)
        size += len(chunk)
    return size, sha.hexdigest()
