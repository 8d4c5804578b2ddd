"""Client-side encryption of artifacts in the age format (https://age-encryption.org/v1).

An encrypted artifact is a plain age file (binary, X25519 recipient) around the usual zstd
stream, so it can be restored by hand, without Atlas, with Debian's `age` package:

    age -d -i key.txt X.dump.zst.age | zstd -dc > X.dump

Why pyrage: it binds `rage`, the Rust reference implementation of age, ships abi3 wheels
(nothing to compile, no binary to install next to the bot) and, since 1.2, has
`encrypt_io`/`decrypt_io`, which stream between file-like objects with constant memory.
Those calls *pull* from a reader and *push* to a writer, while Atlas pushes chunks into an
`ArtifactWriter` and pulls chunks out of storage; each direction therefore runs the pyrage
call on one helper thread joined to the caller through a small bounded channel (a few
1 MiB chunks), so memory stays flat however large the artifact. Running the `age` binary
as a subprocess would also stream, but it would make a system package a runtime
dependency of the bot; here `age` is only needed by people restoring by hand (and by the
interop test).

Integrity: age authenticates every 64 KiB chunk and marks the last one, so a wrong key,
a flipped byte, truncation or trailing data all fail with AtlasError. `decrypt_chunks`
only yields authenticated plaintext, but a truncated artifact is only known to be
truncated at its end: like `pipeline.read_artifact`, a consumer must treat what it
received as void when the iteration raises.

Keys: age X25519 identities ("AGE-SECRET-KEY-1…", as `age-keygen` writes them) from
ATLAS_ENCRYPTION_KEY_FILE or ATLAS_ENCRYPTION_KEY, one per line. New artifacts are
encrypted to the first one's recipient (public key); every one of them decrypts, as with
`age -d -i FILE`, so a key is rotated by putting the new one first and keeping the old
one below it until its artifacts are pruned. Key text never appears in messages or reprs.
"""

from __future__ import annotations

import collections
import hashlib
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pyrage
from pyrage import x25519

from bot.errors import AtlasError, Damaged
from bot.store.base import ArtifactWriter, StoredObject

CHUNK = 1 << 20
QUEUE_CHUNKS = 4  # chunks in flight between the caller and the helper thread
KEY_FILE_ENV = "ATLAS_ENCRYPTION_KEY_FILE"
KEY_ENV = "ATLAS_ENCRYPTION_KEY"
SECRET_PREFIX = "AGE-SECRET-KEY-1"  # noqa: S105 - the format prefix, not a secret
SUFFIX = ".age"

DECRYPT_FAILED = "cannot decrypt: wrong key or damaged artifact"


class Identity:
    """The configured age X25519 identities (secret keys): the first is the current one,
    whose recipient (public key) new artifacts are encrypted to; older ones still decrypt."""

    __slots__ = ("_keys", "recipient")

    def __init__(self, keys: list[Any]) -> None:
        self._keys = keys
        self.recipient: str = str(keys[0].to_public())

    @property
    def retired(self) -> int:
        """How many older keys are kept for decryption only."""
        return len(self._keys) - 1

    def __repr__(self) -> str:
        return f"Identity(recipient={self.recipient!r}, retired={self.retired})"


def generate_identity() -> tuple[str, str]:
    """A new key pair for `atlas keygen`: (secret identity string, public recipient)."""
    key = x25519.Identity.generate()
    return str(key), str(key.to_public())


def parse_identity(text: str, source: str = KEY_ENV) -> Identity:
    """Parse age identity text: AGE-SECRET-KEY-1… lines, the current key first; blank and
    `#` lines are ignored."""
    lines = [ln.strip() for ln in text.splitlines()]
    keys = [ln for ln in lines if ln and not ln.startswith("#")]
    hint = (
        f"put a line made by `age-keygen` (or `atlas keygen`), {SECRET_PREFIX}…, in {source}; "
        "when rotating, the new key first and older ones below it"
    )
    if not keys:
        raise AtlasError(f"{source} holds no age identity.", hint)
    parsed = []
    for number, line in enumerate(keys, 1):
        where = source if len(keys) == 1 else f"{source} (key {number} of {len(keys)})"
        if not line.upper().startswith(SECRET_PREFIX):
            raise AtlasError(
                f"{where} is not an age identity (it must start {SECRET_PREFIX}).", hint
            )
        try:
            parsed.append(x25519.Identity.from_str(line))
        except Exception:
            # pyrage's message could quote the key: say nothing of it.
            raise AtlasError(f"{where} is not a valid age identity (bad encoding).", hint) from None
    return Identity(parsed)


def load_identity(env: Mapping[str, str]) -> Identity | None:
    """The encryption key from ATLAS_ENCRYPTION_KEY_FILE or ATLAS_ENCRYPTION_KEY; None if unset."""
    path = (env.get(KEY_FILE_ENV) or "").strip()
    inline = env.get(KEY_ENV) or ""
    if path and inline.strip():
        raise AtlasError(f"Both {KEY_FILE_ENV} and {KEY_ENV} are set.", "set only one of them")
    if path:
        try:
            text = Path(path).expanduser().read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "unreadable"
            raise AtlasError(
                f"Cannot read the age identity in {KEY_FILE_ENV}={path}: {reason}.",
                "point it at the file `atlas keygen -o FILE` wrote (or `age-keygen -o`), "
                "readable by Atlas",
            ) from None
        return parse_identity(text, f"{KEY_FILE_ENV}={path}")
    if inline.strip():
        return parse_identity(inline, KEY_ENV)
    return None


def _recipient(key: Identity | str) -> Any:
    if isinstance(key, Identity):
        return key._keys[0].to_public()
    try:
        return x25519.Recipient.from_str(key.strip())
    except Exception:
        raise AtlasError(f"Not an age recipient (public key age1…): {key!r}") from None


def seal(data: bytes, key: Identity | str) -> bytes:
    """A small document encrypted whole to `key`'s recipient (a sidecar's private part)."""
    return bytes(pyrage.encrypt(data, [_recipient(key)]))


def unseal(data: bytes, identity: Identity) -> bytes:
    """What `seal` made, read with any configured key; Damaged if none fits."""
    try:
        return bytes(pyrage.decrypt(data, identity._keys))
    except pyrage.DecryptError as exc:
        raise _decrypt_error(exc) from None


# -- the channel between the caller's thread and the pyrage thread ----------------------------


class _Cancelled(Exception):
    """The other side gave up: unwind the pyrage call."""


class _Channel:
    """A bounded FIFO of chunks; `finish` marks the end, `cancel` stops both sides."""

    def __init__(self, max_items: int = QUEUE_CHUNKS) -> None:
        self._items: collections.deque[bytes] = collections.deque()
        self._max = max_items
        self._cond = threading.Condition()
        self._finished = False
        self.cancelled = False

    def put(self, item: bytes) -> bool:
        """False when the channel was cancelled (the item was dropped)."""
        with self._cond:
            while len(self._items) >= self._max and not self.cancelled:
                self._cond.wait()
            if self.cancelled:
                return False
            self._items.append(item)
            self._cond.notify_all()
            return True

    def get(self) -> bytes | None:
        """The next chunk, or None at the end; raises _Cancelled once cancelled."""
        with self._cond:
            while not self._items and not self._finished and not self.cancelled:
                self._cond.wait()
            if self.cancelled:
                raise _Cancelled
            if not self._items:
                return None
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def finish(self) -> None:
        with self._cond:
            self._finished = True
            self._cond.notify_all()

    def cancel(self) -> None:
        with self._cond:
            self.cancelled = True
            self._items.clear()
            self._cond.notify_all()


class _Reader:
    """File-like `read(n)` over a stream of chunks, for pyrage to pull from."""

    def __init__(self, next_chunk: Any) -> None:
        self._next = next_chunk  # () -> bytes | None
        self._buf = b""
        self._pos = 0
        self._eof = False
        self.error: BaseException | None = None

    def read(self, n: int = -1) -> bytes:
        try:
            while self._pos >= len(self._buf):
                if self._eof:
                    return b""
                chunk = self._next()
                if chunk is None:
                    self._eof = True
                    return b""
                self._buf, self._pos = chunk, 0
            end = len(self._buf) if n is None or n < 0 else self._pos + n
            out = self._buf[self._pos : end]
            self._pos += len(out)
            return out
        except BaseException as exc:
            self.error = self.error or exc
            raise

    def readable(self) -> bool:
        return True


class _Writer:
    """File-like `write(b)` for pyrage to push to; gathers ~1 MiB before passing it on."""

    def __init__(self, emit: Any, stop: Any) -> None:
        self._emit = emit  # (bytes) -> None
        self._stop = stop  # () -> bool: raise _Cancelled on the next write
        self._buf = bytearray()
        self.error: BaseException | None = None

    def write(self, data: Any) -> int:
        try:
            if self.error is not None:
                raise self.error
            if self._stop():
                raise _Cancelled
            self._buf += data
            if len(self._buf) >= CHUNK:
                self.drain()
            return len(data)
        except BaseException as exc:
            self.error = self.error or exc
            raise

    def drain(self) -> None:
        if self._buf:
            chunk = bytes(self._buf)
            self._buf.clear()
            self._emit(chunk)

    def flush(self) -> None:
        """pyrage flushes when it finishes; the last bytes go on in `drain`."""

    def writable(self) -> bool:
        return True


# -- encryption ------------------------------------------------------------------------------


class EncryptingWriter:
    """An ArtifactWriter that age-encrypts everything written before the inner writer sees it.

    `commit()` ends the age stream and commits the inner writer; `abort()` aborts both.
    `size` and `sha256` are those of the ciphertext, i.e. of the stored object.
    """

    def __init__(self, inner: ArtifactWriter, key: Identity | str) -> None:
        self.inner = inner
        self.size = 0
        self._sha = hashlib.sha256()
        self._recipients = [_recipient(key)]
        self._chan = _Channel()
        self._closed = False
        self._failure: BaseException | None = None
        self._reader = _Reader(self._chan.get)
        self._writer = _Writer(self._emit, lambda: self._chan.cancelled)
        self._thread = threading.Thread(target=self._run, name="atlas-encrypt", daemon=True)
        self._thread.start()

    @property
    def pending_ref(self) -> str:
        return self.inner.pending_ref

    @property
    def sha256(self) -> str:
        """Hex sha256 of the ciphertext passed on so far (all of it once committed)."""
        return self._sha.hexdigest()

    def _emit(self, chunk: bytes) -> None:
        self.inner.write(chunk)
        self._sha.update(chunk)
        self.size += len(chunk)

    def _run(self) -> None:
        try:
            pyrage.encrypt_io(self._reader, self._writer, self._recipients)
            # pyrage drops (and so flushes) its buffer on return, ignoring write errors:
            # those were kept by `_writer`.
            if self._writer.error is not None:
                raise self._writer.error
            self._writer.drain()
        except BaseException as exc:
            self._failure = self._reader.error or self._writer.error or exc
            self._chan.cancel()  # a blocked `write` returns and reports it

    def write(self, data: bytes) -> None:
        if self._closed:
            raise AtlasError("This encrypted artifact was already committed or aborted.")
        if not data:
            return
        chunk = data if type(data) is bytes else bytes(data)  # the caller may reuse its buffer
        if not self._chan.put(chunk):
            self._fail()

    def commit(self) -> StoredObject:
        if self._closed:
            raise AtlasError("This encrypted artifact was already committed or aborted.")
        self._chan.finish()
        self._thread.join()
        if self._failure is not None:
            self._fail()
        self._closed = True
        return self.inner.commit()

    @property
    def cleaned(self) -> bool:
        return bool(self.inner.cleaned)

    def abort(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._chan.cancel()
        self._thread.join()
        self.inner.abort()

    def _fail(self) -> None:
        self._chan.cancel()
        self._thread.join()
        self._closed = True
        self.inner.abort()
        exc = self._failure
        if isinstance(exc, AtlasError):
            raise exc
        raise AtlasError(f"Encrypting the artifact failed: {exc}") from exc


# -- decryption ------------------------------------------------------------------------------


def decrypt_chunks(identity: Identity, chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Decrypt an age stream given in chunks; yields plaintext in chunks of about 1 MiB.

    Raises AtlasError(DECRYPT_FAILED) for a wrong key or a damaged, truncated or extended
    artifact (possibly after some plaintext was yielded); errors raised by `chunks` itself
    (a missing object, a storage failure) come through unchanged.
    """
    source = iter(chunks)
    out = _Channel()

    def next_chunk() -> bytes | None:
        if out.cancelled:
            raise _Cancelled
        return next(source, None)

    def emit(chunk: bytes) -> None:
        if not out.put(chunk):
            raise _Cancelled

    reader = _Reader(next_chunk)
    writer = _Writer(emit, lambda: out.cancelled)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            pyrage.decrypt_io(reader, writer, identity._keys)
            if writer.error is not None:
                raise writer.error
            writer.drain()
        except BaseException as exc:
            failure.append(reader.error or writer.error or exc)
        finally:
            out.finish()

    thread = threading.Thread(target=run, name="atlas-decrypt", daemon=True)
    thread.start()
    try:
        while (chunk := out.get()) is not None:
            yield chunk
        thread.join()
    finally:
        if thread.is_alive():  # the consumer stopped early
            out.cancel()
            thread.join()
        close = getattr(source, "close", None)
        if close is not None:
            close()
    if failure:
        raise _decrypt_error(failure[0])


def _decrypt_error(exc: BaseException) -> BaseException:
    if isinstance(exc, AtlasError) or not isinstance(exc, pyrage.DecryptError | OSError):
        return exc  # from the chunk source, not from age
    text = str(exc)
    if "No matching keys" in text:
        hint = (
            f"the artifact was encrypted to another key than {KEY_FILE_ENV}/{KEY_ENV}, "
            "or its header is damaged"
        )
    elif "header" in text.lower() or "fill whole buffer" in text:
        hint = "this is not an age-encrypted artifact, or its header is damaged"
    else:
        hint = "the ciphertext was truncated or modified; discard what was read"
    return Damaged(DECRYPT_FAILED, hint)
