"""Artifacts in an S3 bucket: multipart uploads that exist only once completed, and are
aborted on failure (or later, when S3 could not be reached to abort them)."""

from __future__ import annotations

import hashlib
import os
import queue
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from bot.config import aws_region
from bot.errors import AtlasError, NotFound
from bot.store.base import CHUNK, ArtifactWriter, Pending, StoredObject


def _s3_error(exc: Exception, what: str, setting_prefix: str = "") -> AtlasError:
    """`exc` in one line with what to do; `setting_prefix` is a copy destination's
    ATLAS_COPY_<NAME>_ prefix (its endpoint and keys), "" for ATLAS_STORAGE's boto3 chain."""
    from botocore.exceptions import (
        ClientError,
        EndpointConnectionError,
        HTTPClientError,
        NoCredentialsError,
    )

    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = err.get("Code", "?")
        return AtlasError(
            f"S3 refused {what}: {code}: {err.get('Message', '')}".rstrip(": "),
            "check the bucket name, its policy and the credentials Atlas runs with",
        )
    if isinstance(exc, EndpointConnectionError):
        endpoint = f"{setting_prefix}ENDPOINT_URL" if setting_prefix else "AWS_ENDPOINT_URL"
        return AtlasError(f"Cannot reach S3 for {what}: {exc}", f"check {endpoint}/network")
    if isinstance(exc, NoCredentialsError):
        keys = "AWS_*"
        if setting_prefix:
            keys = f"{setting_prefix}ACCESS_KEY_ID/SECRET_ACCESS_KEY (or PROFILE)"
        return AtlasError(f"No AWS credentials for {what}.", f"set {keys} or an instance role")
    if isinstance(exc, HTTPClientError):  # the link broke, timed out or was closed
        endpoint = f"{setting_prefix}ENDPOINT_URL" if setting_prefix else "AWS_ENDPOINT_URL"
        return AtlasError(
            f"The connection to S3 broke during {what}: {_how_it_broke(exc)}",
            f"check {endpoint} and the network, then try again",
        )
    return AtlasError(f"S3 failed during {what}: {exc}")


def _how_it_broke(exc: Exception) -> str:
    """A broken transfer in a few words: how far it got, where the chain of errors says
    so (urllib3's IncompleteRead), instead of botocore's text that repeats it twice."""
    from botocore.exceptions import ConnectionClosedError, ReadTimeoutError

    seen: list[BaseException] = [exc]
    for err in seen:  # grows as it goes: causes, contexts and wrapped errors
        partial, expected = getattr(err, "partial", None), getattr(err, "expected", None)
        if isinstance(partial, int) and isinstance(expected, int):
            return f"{partial:,} bytes came, {expected:,} more were due"
        inner = [err.__cause__, err.__context__, *getattr(err, "args", ())]
        inner.append(getattr(err, "kwargs", {}).get("error"))
        seen.extend(e for e in inner if isinstance(e, BaseException) and e not in seen)
        if len(seen) > 12:
            break
    if isinstance(exc, ReadTimeoutError):
        return "no answer within the read timeout"
    if isinstance(exc, ConnectionClosedError):
        return "the server closed the connection before it answered"
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


class S3Writer:
    """Streams parts to a multipart upload on two threads while the caller keeps writing.

    `commit` reports the sha256 of the bytes sent; the caller proves the bucket holds
    them through the ETag (the MD5s of the parts) or by reading the object back.

    Parts are filled in place in a few reused buffers (one filling, two uploading), so
    memory stays flat and no part is ever copied whole.
    """

    MIN_PART = 5 << 20  # S3's minimum: the smallest buffers
    IN_FLIGHT = 2

    def __init__(
        self, client: Any, bucket: str, key: str, sse: dict[str, str], setting_prefix: str = ""
    ) -> None:
        self.client, self.bucket, self.key = client, bucket, key
        self.setting_prefix = setting_prefix
        try:
            resp = client.create_multipart_upload(Bucket=bucket, Key=key, **sse)
        except Exception as exc:
            raise _s3_error(
                exc, f"starting the upload of s3://{bucket}/{key}", setting_prefix
            ) from None
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
            raise _s3_error(
                err, f"the write to s3://{self.bucket}/{self.key}", self.setting_prefix
            ) from None

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
            raise _s3_error(
                exc, f"completing s3://{self.bucket}/{self.key}", self.setting_prefix
            ) from None
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


@dataclass(frozen=True)
class Account:
    """Whose bucket, where: a copy destination's own endpoint and credentials (None:
    boto3's usual chain, AWS_ENDPOINT_URL and AWS_* as ATLAS_STORAGE uses them)."""

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)
    setting_prefix: str = ""  # ATLAS_COPY_<NAME>_: where its errors tell the operator to look


class S3Storage:
    """Artifacts in an S3 bucket."""

    kind = "s3"

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        client: Any = None,
        sse: str | None = None,
        kms_key_id: str | None = None,
        account: Account | None = None,
    ) -> None:
        import boto3
        from botocore.config import Config

        self.bucket, self.prefix = bucket, prefix
        self.setting_prefix = account.setting_prefix if account is not None else ""
        self.sse = sse_args(sse, kms_key_id)
        # boto3's own AWS_MAX_ATTEMPTS / AWS_RETRY_MODE win when set; else 5, standard
        retries: dict[str, Any] = {}
        if not os.environ.get("AWS_MAX_ATTEMPTS"):
            retries["max_attempts"] = 5
        if not os.environ.get("AWS_RETRY_MODE"):
            retries["mode"] = "standard"
        make: Any = boto3.client  # boto3's default session, as ATLAS_STORAGE uses it
        if account is not None:
            make = boto3.session.Session(
                profile_name=account.profile,
                aws_access_key_id=account.access_key_id,
                aws_secret_access_key=account.secret_access_key,
            ).client
        account = account or Account()
        self.client = client or make(
            "s3",
            region_name=account.region or aws_region(),
            endpoint_url=account.endpoint_url,  # None: AWS_ENDPOINT_URL, else AWS
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
        return S3Writer(self.client, self.bucket, self._key(key), self.sse, self.setting_prefix)

    def put_bytes(self, key: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **self.sse)
        except Exception as exc:
            raise _s3_error(
                exc, f"the write to {self.location(key)}", self.setting_prefix
            ) from None

    def read(self, key: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        return self._get(key, chunk_size)

    def read_range(
        self, key: str, start: int, size: int, chunk_size: int = CHUNK
    ) -> Iterator[bytes]:
        """An HTTP range request: several run side by side in a parallel restore."""
        if size <= 0:
            return iter(())
        return self._get(key, chunk_size, f"bytes={start}-{start + size - 1}")

    def _get(self, key: str, chunk_size: int, byte_range: str | None = None) -> Iterator[bytes]:
        from botocore.exceptions import ClientError

        extra = {"Range": byte_range} if byte_range else {}
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key), **extra)["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise NotFound(f"The artifact {self.location(key)} is missing from S3.") from None
            raise _s3_error(exc, f"reading {self.location(key)}", self.setting_prefix) from None
        except Exception as exc:
            raise _s3_error(exc, f"reading {self.location(key)}", self.setting_prefix) from None
        try:
            yield from body.iter_chunks(chunk_size)
        except Exception as exc:
            raise _s3_error(exc, f"reading {self.location(key)}", self.setting_prefix) from None
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
            raise _s3_error(exc, f"listing {self.location(prefix)}", self.setting_prefix) from None

    def open_copy(self, key: str, work_dir: Path) -> BinaryIO:
        """A private download: an unnamed temporary file that no other process can open."""
        from bot import files

        fh = files.anonymous_file(work_dir)
        try:
            for chunk in self.read(key):
                fh.write(chunk)
            fh.seek(0)
        except BaseException:  # OSError (a full work disk) is the caller's to explain
            fh.close()
            raise
        return fh

    def stat(self, key: str) -> StoredObject | None:
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404", "NotFound"):
                return None
            raise _s3_error(exc, f"checking {self.location(key)}", self.setting_prefix) from None
        except Exception as exc:  # no answer at all: a cut network, a refused connection
            raise _s3_error(exc, f"checking {self.location(key)}", self.setting_prefix) from None
        return StoredObject(
            int(head["ContentLength"]),
            str(head.get("ETag", "")).strip('"'),
            sse=head.get("ServerSideEncryption"),
        )

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as exc:
            raise _s3_error(exc, f"deleting {self.location(key)}", self.setting_prefix) from None

    def discard_pending(self, pending_ref: str) -> bool:
        key, _, upload_id = pending_ref.partition("\n")
        return not upload_id or _abort_upload(self.client, self.bucket, key, upload_id)

    def discard_unfinished(self, key: str) -> bool:
        """Abort every open upload of `key`, recorded or not."""
        try:
            found = [p for p in self.pending(key) if p.name == self._key(key)]
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
            raise _s3_error(
                exc, f"listing open uploads under {self.location(prefix)}", self.setting_prefix
            ) from None

    def expected_etag(self, writer: ArtifactWriter) -> str | None:
        return writer.multipart_etag() if isinstance(writer, S3Writer) else None
