"""Where artifacts live: a local folder or an S3 bucket, behind one small interface.

Writers never expose a half-written object under its final name: local files are
written under a hidden temporary name and renamed on commit; S3 objects are multipart
uploads that only exist once completed, and are aborted on failure.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import queue
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from bot.backup.pump import Pump
from bot.config import aws_region
from bot.errors import AtlasError, NotFound

CHUNK = 1 << 20


@dataclass(frozen=True)
class StoredObject:
    size: int
    etag: str | None = None
    sha256: str | None = None  # of the stored bytes, when the writer computed it
    read_back: bool = False  # the writer read the object back: exactly the bytes written
    sse: str | None = None  # the server-side encryption S3 reports for it


class ArtifactWriter(Protocol):
    pending_ref: str  # enough to clean up after a crash
    size: int  # bytes written so far
    cleaned: bool  # after abort: nothing is left behind (False: keep pending_ref, retry)

    def write(self, data: bytes) -> None: ...
    def commit(self) -> StoredObject: ...
    def abort(self) -> None: ...


@dataclass(frozen=True)
class Pending:
    """An unfinished write found in storage: a hidden partial file or an open upload."""

    ref: str  # what discard_pending takes
    started: float  # epoch seconds


class Storage(Protocol):
    kind: str

    def location(self, key: str) -> str: ...
    def writer(self, key: str) -> ArtifactWriter: ...
    def put_bytes(self, key: str, data: bytes) -> None: ...
    def read(self, key: str, chunk_size: int = CHUNK) -> Iterator[bytes]: ...
    def list(self, prefix: str) -> Iterator[str]: ...
    def open_copy(self, key: str, work_dir: Path) -> BinaryIO: ...
    def stat(self, key: str) -> StoredObject | None: ...
    def delete(self, key: str) -> None: ...
    def discard_pending(self, pending_ref: str) -> bool: ...
    def discard_unfinished(self, key: str) -> bool: ...
    def pending(self, prefix: str) -> Iterator[Pending]: ...
    def expected_etag(self, writer: ArtifactWriter) -> str | None: ...


def open_storage(spec: str, sse: str | None = None, kms_key_id: str | None = None) -> Storage:
    """`s3://bucket/prefix` or a folder path; `sse` asks S3 to encrypt every upload."""
    if spec.startswith("s3://"):
        bucket, _, prefix = spec[5:].partition("/")
        if not bucket:
            raise AtlasError(f"ATLAS_STORAGE={spec!r} names no bucket.", "use s3://bucket/prefix")
        return S3Storage(bucket, prefix.strip("/"), sse=sse, kms_key_id=kms_key_id)
    return LocalStorage(Path(spec))


def _disk_error(exc: OSError, path: Path) -> AtlasError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return AtlasError(
            f"The disk is full while writing {path.parent} ({exc.strerror}).",
            "free space or point ATLAS_STORAGE elsewhere; the partial file was removed",
        )
    return AtlasError(f"Cannot write {path}: {exc.strerror or exc}.")


class LocalWriter:
    """Writes `final` under a hidden temporary name; `commit` makes it durable and renames it.

    With `read_back`, a second thread reads the file back just behind the writer,
    compares it byte for byte with what was written, and hashes what the filesystem
    returned: the proof that the stored bytes are the streamed ones costs no extra pass
    at the end, and the stream itself is hashed only once. Writeback is started every
    few MiB, so the final fsync has little left to flush.
    """

    WRITEBACK_EVERY = 8 << 20

    def __init__(self, final: Path, *, read_back: bool = False) -> None:
        self.final = final
        self.tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.partial")
        self.pending_ref = str(self.tmp)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.tmp, "xb", buffering=0)  # noqa: SIM115 - closed in commit/abort
        except OSError as exc:
            raise _disk_error(exc, self.tmp) from None
        self.size = 0
        self.cleaned = False
        self._flushed = 0
        self._reader = _ReadBehind(self.tmp) if read_back else None

    def write(self, data: bytes) -> None:
        if self._reader is not None and type(data) is not bytes:
            data = bytes(data)  # kept for the comparison: the caller may reuse its buffer
        try:
            view = memoryview(data)
            while view:
                n = self._fh.write(view)
                view = view[n:]
        except OSError as exc:
            self.abort()
            raise _disk_error(exc, self.tmp) from None
        self.size += len(data)
        if self.size - self._flushed >= self.WRITEBACK_EVERY:
            _start_writeback(self._fh.fileno(), self._flushed, self.size - self._flushed)
            self._flushed = self.size
        if self._reader is not None:
            self._reader.expect(data)

    def commit(self) -> StoredObject:
        """Durable and renamed, or an AtlasError and nothing left behind."""
        try:
            os.fsync(self._fh.fileno())
            self._fh.close()
            sha256 = self._reader.finish() if self._reader is not None else None
            os.replace(self.tmp, self.final)
            dir_fd = os.open(self.final.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError as exc:
            self.abort()
            raise _disk_error(exc, self.final) from None
        except BaseException:
            self.abort()
            raise
        return StoredObject(self.size, sha256=sha256, read_back=sha256 is not None)

    def abort(self) -> None:
        if self._reader is not None:
            self._reader.stop()
        with contextlib.suppress(OSError):
            self._fh.close()
        try:
            self.tmp.unlink()
        except FileNotFoundError:
            pass
        except OSError:
            return  # left behind: the pending ref stays in the catalog for a later try
        self.cleaned = True


class _ReadBehind:
    """Reads a file back while it is being written: every byte must be the one written.

    It trails the writer by at least a chunk, so it reads what the filesystem holds
    rather than racing the write, and it holds only a few chunks for the comparison.
    """

    LAG = 4  # batches of >= 1 MiB held at most; the writer waits beyond that

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDONLY)
        self._sha = hashlib.sha256()
        self._pos = 0  # compared and hashed up to here
        self._batch: list[bytes] = []
        self._batched = 0
        self._pump: Pump[list[bytes]] = Pump(self._compare, name="read-back", depth=self.LAG)

    def expect(self, data: bytes) -> None:
        self._batch.append(data)
        self._batched += len(data)
        if self._batched >= CHUNK:
            self._pump.put(self._batch)
            self._batch, self._batched = [], 0

    def _compare(self, pieces: list[bytes]) -> None:
        for data in pieces:
            got = _pread_exactly(self._fd, len(data), self._pos)
            if got != data:  # bytes == bytes is a memcmp
                at = self._pos + next(
                    (i for i, (a, b) in enumerate(zip(got, data, strict=False)) if a != b),
                    min(len(got), len(data)),
                )
                raise AtlasError(
                    f"The stored file {self.path} does not read back as what was written "
                    f"(first difference at byte {at:,}).",
                    "check the disk and the filesystem holding ATLAS_STORAGE; nothing was kept",
                )
            self._sha.update(got)
            self._pos += len(got)

    def finish(self) -> str:
        """The sha256 of the file, which holds exactly the written bytes and nothing more."""
        try:
            if self._batch:
                self._pump.put(self._batch)
            self._pump.close()
            if os.pread(self._fd, 1, self._pos):
                raise AtlasError(
                    f"The stored file {self.path} is longer than what was written.",
                    "another process may be writing to ATLAS_STORAGE; nothing was kept",
                )
        finally:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        return self._sha.hexdigest()

    def stop(self) -> None:
        self._pump.close(raise_error=False)
        with contextlib.suppress(OSError):
            os.close(self._fd)


def _pread_exactly(fd: int, size: int, offset: int) -> bytes:
    """`size` bytes at `offset`, or fewer only where the file ends."""
    data = os.pread(fd, size, offset)
    if len(data) == size or not data:
        return data
    parts = [data]
    got = len(data)
    while got < size and (more := os.pread(fd, size - got, offset + got)):
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask Linux to start writing this range to disk now (sync_file_range), as databases
    do, so the closing fsync does not wait for the whole file. A no-op elsewhere."""
    global _sync_file_range
    if _sync_file_range is None:
        _sync_file_range = _load_sync_file_range()
    if _sync_file_range is not False:
        _sync_file_range(fd, offset, length, 2)  # SYNC_FILE_RANGE_WRITE: start, don't wait


def _load_sync_file_range() -> Any:
    try:
        import ctypes

        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_sync_file_range: Any = None


class LocalStorage:
    kind = "local"

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().resolve()

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root not in path.parents:
            raise AtlasError(f"Refusing a storage key outside {self.root}: {key!r}")
        return path

    def location(self, key: str) -> str:
        return str(self._path(key))

    def writer(self, key: str) -> LocalWriter:
        return LocalWriter(self._path(key), read_back=True)

    def put_bytes(self, key: str, data: bytes) -> None:
        w = LocalWriter(self._path(key))
        w.write(data)
        w.commit()

    def read(self, key: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        path = self._path(key)
        try:
            fh = open(path, "rb", buffering=0)  # noqa: SIM115 - closed below
        except FileNotFoundError:
            raise NotFound(f"The artifact {path} is missing from storage.") from None
        with fh:
            while chunk := fh.read(chunk_size):
                yield chunk

    def list(self, prefix: str) -> Iterator[str]:
        """Keys of the finished files under `prefix` (never hidden `.partial` ones)."""
        base = self.root / prefix if prefix else self.root
        if not base.is_dir():
            return
        for path in sorted(base.rglob("*")):
            rel = path.relative_to(self.root)
            if path.is_file() and not any(part.startswith(".") for part in rel.parts):
                yield rel.as_posix()

    def open_copy(self, key: str, work_dir: Path) -> BinaryIO:
        """The artifact itself, opened once: later reads see this file even if another
        is renamed into its place."""
        path = self._path(key)
        try:
            return open(path, "rb", buffering=0)  # noqa: SIM115 - the caller closes it
        except FileNotFoundError:
            raise NotFound(f"The artifact {path} is missing from storage.") from None

    def stat(self, key: str) -> StoredObject | None:
        try:
            return StoredObject(self._path(key).stat().st_size)
        except FileNotFoundError:
            return None

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def discard_pending(self, pending_ref: str) -> bool:
        path = Path(pending_ref)
        if not (path.name.endswith(".partial") and self.root in path.resolve().parents):
            return True  # not ours to remove
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError:
            return False
        return True

    def discard_unfinished(self, key: str) -> bool:
        """Remove every unfinished write of `key`, recorded or not (a process killed
        between opening the file and recording its name leaves one nobody knows)."""
        path = self._path(key)
        return all(
            self.discard_pending(str(p)) for p in path.parent.glob(f".{path.name}.*.partial")
        )

    def pending(self, prefix: str) -> Iterator[Pending]:
        """Hidden `.partial` files under `prefix`: writes that never finished."""
        base = self.root / prefix if prefix else self.root
        if not base.is_dir():
            return
        for path in base.rglob(".*.partial"):
            with contextlib.suppress(OSError):
                yield Pending(str(path), path.stat().st_mtime)

    def expected_etag(self, writer: ArtifactWriter) -> str | None:
        return None


def _s3_error(exc: Exception, what: str) -> AtlasError:
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = err.get("Code", "?")
        return AtlasError(
            f"S3 refused {what}: {code}: {err.get('Message', '')}".rstrip(": "),
            "check the bucket name, its policy and the credentials Atlas runs with",
        )
    if isinstance(exc, EndpointConnectionError):
        return AtlasError(f"Cannot reach S3 for {what}: {exc}", "check AWS_ENDPOINT_URL/network")
    if isinstance(exc, NoCredentialsError):
        return AtlasError(f"No AWS credentials for {what}.", "set AWS_* or an instance role")
    return AtlasError(f"S3 failed during {what}: {exc}")


class S3Writer:
    """Streams parts to a multipart upload on two threads while the caller keeps writing.

    `commit` reports the sha256 of the bytes sent; the caller proves the bucket holds
    them through the ETag (the MD5s of the parts) or by reading the object back.

    Parts are filled in place in a few reused buffers (one filling, two uploading), so
    memory stays flat and no part is ever copied whole.
    """

    MIN_PART = 5 << 20  # S3's minimum: the smallest buffers
    IN_FLIGHT = 2

    def __init__(self, client: Any, bucket: str, key: str, sse: dict[str, str]) -> None:
        self.client, self.bucket, self.key = client, bucket, key
        try:
            resp = client.create_multipart_upload(Bucket=bucket, Key=key, **sse)
        except Exception as exc:
            raise _s3_error(exc, f"starting the upload of s3://{bucket}/{key}") from None
        self.upload_id: str = resp["UploadId"]
        self.pending_ref = f"{key}\n{self.upload_id}"
        self._abort_tried = False
        self._free: queue.Queue[bytearray] = queue.Queue()
        for _ in range(self.IN_FLIGHT + 1):
            self._free.put(bytearray(0))  # sized on first use
        self._buf: bytearray | None = None  # the part being filled
        self._filled = 0
        self._parts: list[Future[dict[str, Any]]] = []
        self._md5s: list[bytes] = []
        self._pool = ThreadPoolExecutor(max_workers=self.IN_FLIGHT, thread_name_prefix="s3-part")
        self._error: Exception | None = None
        self._sha = hashlib.sha256()
        self.size = 0
        self.cleaned = False

    def _part_size(self) -> int:
        n = len(self._parts)
        return self.MIN_PART if n < 2000 else self.MIN_PART * 4  # 10,000 parts at most

    def write(self, data: bytes) -> None:
        self._raise_if_failed()
        view = memoryview(data)
        self.size += len(view)
        self._sha.update(view)
        while view:
            if self._buf is None:
                self._buf = self._take_buffer(self._part_size())
                self._filled = 0
            n = min(len(view), len(self._buf) - self._filled)
            self._buf[self._filled : self._filled + n] = view[:n]
            self._filled += n
            view = view[n:]
            if self._filled == len(self._buf):
                self._flush_part()

    def _take_buffer(self, size: int) -> bytearray:
        """A free buffer; waits while all are uploading, which keeps memory bounded."""
        buf = self._free.get()
        self._raise_if_failed()
        return buf if len(buf) == size else bytearray(size)

    def _flush_part(self) -> None:
        buf = self._buf if self._buf is not None else self._take_buffer(0)
        filled = self._filled
        self._buf, self._filled = None, 0
        self._submit(buf, filled)

    def _submit(self, buf: bytearray, filled: int) -> None:
        import base64

        number = len(self._parts) + 1
        # botocore takes bytes or bytearray; only a short last part needs its own copy
        body: bytes | bytearray = buf if filled == len(buf) else bytes(memoryview(buf)[:filled])
        md5 = hashlib.md5(body, usedforsecurity=False).digest()
        self._md5s.append(md5)

        def upload() -> dict[str, Any]:
            try:
                r = self.client.upload_part(
                    Bucket=self.bucket,
                    Key=self.key,
                    UploadId=self.upload_id,
                    PartNumber=number,
                    Body=body,
                    ContentMD5=base64.b64encode(md5).decode(),
                )
                return {"PartNumber": number, "ETag": r["ETag"]}
            except Exception as exc:
                self._error = self._error or exc
                raise
            finally:
                self._free.put(buf)

        self._parts.append(self._pool.submit(upload))

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            err = self._error
            self.abort()
            raise _s3_error(err, f"the write to s3://{self.bucket}/{self.key}") from None

    def commit(self) -> StoredObject:
        if self._filled or not self._parts:
            self._flush_part()
        try:
            parts = [f.result() for f in self._parts]
        except Exception:
            self._raise_if_failed()
            raise
        try:
            resp = self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=self.key,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": parts},
            )
        except Exception as exc:
            self.abort()
            raise _s3_error(exc, f"completing s3://{self.bucket}/{self.key}") from None
        finally:
            self._pool.shutdown(wait=False)
        etag = str(resp.get("ETag", "")).strip('"') or None
        return StoredObject(self.size, etag, sha256=self._sha.hexdigest())

    def multipart_etag(self) -> str:
        digest = hashlib.md5(b"".join(self._md5s), usedforsecurity=False).hexdigest()
        return f"{digest}-{len(self._md5s)}"

    def abort(self) -> None:
        """Stop the upload. When S3 cannot be reached to abort it, `cleaned` stays False:
        the snapshot keeps the upload's reference and later recovery aborts it, since an
        open upload is billed storage that no listing of objects shows."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._abort_tried:  # once: when S3 is unreachable, recovery retries later
            return
        self._abort_tried = True
        self.cleaned = _abort_upload(self.client, self.bucket, self.key, self.upload_id)


def _abort_upload(client: Any, bucket: str, key: str, upload_id: str) -> bool:
    """True when the upload is gone (aborted now, or already)."""
    from botocore.exceptions import ClientError

    try:
        client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    except ClientError as exc:
        return exc.response.get("Error", {}).get("Code") in ("NoSuchUpload", "404")
    except Exception:
        return False
    return True


def sse_args(sse: str | None, kms_key_id: str | None) -> dict[str, str]:
    """Server-side encryption settings for every upload (ATLAS_S3_SSE, ATLAS_S3_KMS_KEY_ID)."""
    if not sse:
        return {}
    args = {"ServerSideEncryption": sse}
    if sse == "aws:kms" and kms_key_id:
        args["SSEKMSKeyId"] = kms_key_id
    return args


class S3Storage:
    kind = "s3"

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        client: Any = None,
        sse: str | None = None,
        kms_key_id: str | None = None,
    ) -> None:
        import boto3
        from botocore.config import Config

        self.bucket, self.prefix = bucket, prefix
        self.sse = sse_args(sse, kms_key_id)
        # boto3's own AWS_MAX_ATTEMPTS / AWS_RETRY_MODE win when set; else 5, standard
        retries: dict[str, Any] = {}
        if not os.environ.get("AWS_MAX_ATTEMPTS"):
            retries["max_attempts"] = 5
        if not os.environ.get("AWS_RETRY_MODE"):
            retries["mode"] = "standard"
        self.client = client or boto3.client(
            "s3",
            region_name=aws_region(),
            config=Config(
                retries=retries or None,
                # parts carry Content-MD5 already; skipping the extra CRC pass saves a copy
                request_checksum_calculation="when_required",
                connect_timeout=10,
                read_timeout=60,
                max_pool_connections=8,
            ),
        )

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def location(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def writer(self, key: str) -> S3Writer:
        return S3Writer(self.client, self.bucket, self._key(key), self.sse)

    def put_bytes(self, key: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **self.sse)
        except Exception as exc:
            raise _s3_error(exc, f"the write to {self.location(key)}") from None

    def read(self, key: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        from botocore.exceptions import ClientError

        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise NotFound(f"The artifact {self.location(key)} is missing from S3.") from None
            raise _s3_error(exc, f"reading {self.location(key)}") from None
        except Exception as exc:
            raise _s3_error(exc, f"reading {self.location(key)}") from None
        try:
            yield from body.iter_chunks(chunk_size)
        except Exception as exc:
            raise _s3_error(exc, f"reading {self.location(key)}") from None
        finally:
            body.close()

    def list(self, prefix: str) -> Iterator[str]:
        """Keys under `prefix`, relative to this storage's own prefix."""
        strip = f"{self.prefix}/" if self.prefix else ""
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._key(prefix)
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    yield str(obj["Key"]).removeprefix(strip)
        except Exception as exc:
            raise _s3_error(exc, f"listing {self.location(prefix)}") from None

    def open_copy(self, key: str, work_dir: Path) -> BinaryIO:
        """A private download: an unnamed temporary file that no other process can open."""
        import tempfile

        fh = tempfile.TemporaryFile(dir=work_dir)  # noqa: SIM115 - the caller closes it
        try:
            for chunk in self.read(key):
                fh.write(chunk)
            fh.seek(0)
        except BaseException:  # OSError (a full work disk) is the caller's to explain
            fh.close()
            raise
        return fh  # type: ignore[return-value]

    def stat(self, key: str) -> StoredObject | None:
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise _s3_error(exc, f"checking {self.location(key)}") from None
        return StoredObject(
            int(head["ContentLength"]),
            str(head.get("ETag", "")).strip('"'),
            sse=head.get("ServerSideEncryption"),
        )

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as exc:
            raise _s3_error(exc, f"deleting {self.location(key)}") from None

    def discard_pending(self, pending_ref: str) -> bool:
        key, _, upload_id = pending_ref.partition("\n")
        return not upload_id or _abort_upload(self.client, self.bucket, key, upload_id)

    def discard_unfinished(self, key: str) -> bool:
        """Abort every open upload of `key`, recorded or not."""
        try:
            found = [p for p in self.pending(key) if p.ref.split("\n")[0] == self._key(key)]
        except AtlasError:
            return False
        return all(self.discard_pending(p.ref) for p in found)

    def pending(self, prefix: str) -> Iterator[Pending]:
        """Open multipart uploads under `prefix`: they cost money and no object listing
        shows them."""
        try:
            pages = self.client.get_paginator("list_multipart_uploads").paginate(
                Bucket=self.bucket, Prefix=self._key(prefix)
            )
            for page in pages:
                for up in page.get("Uploads", []):
                    yield Pending(f"{up['Key']}\n{up['UploadId']}", up["Initiated"].timestamp())
        except Exception as exc:
            raise _s3_error(exc, f"listing open uploads under {self.location(prefix)}") from None

    def expected_etag(self, writer: ArtifactWriter) -> str | None:
        return writer.multipart_etag() if isinstance(writer, S3Writer) else None
