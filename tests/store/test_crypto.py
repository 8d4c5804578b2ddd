"""bot.store.crypto: streaming age encryption of artifacts, keys from the environment, age interop."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.errors import AtlasError
from bot.store import crypto
from bot.store.base import StoredObject
from bot.store.local import LocalStorage

MiB = 1 << 20
AGE = shutil.which("age")
AGE_KEYGEN = shutil.which("age-keygen")
needs_age = pytest.mark.skipif(
    AGE is None, reason="the age CLI is not installed (Debian: apt-get install age)"
)


class MemWriter:
    """An in-memory ArtifactWriter."""

    def __init__(self) -> None:
        self.pending_ref = "mem://pending"
        self.chunks: list[bytes] = []
        self.state = "open"

    def write(self, data: bytes) -> None:
        assert self.state == "open"
        self.chunks.append(bytes(data))

    def commit(self) -> StoredObject:
        assert self.state == "open"
        self.state = "committed"
        return StoredObject(sum(map(len, self.chunks)))

    def abort(self) -> None:
        self.state = "aborted"

    @property
    def data(self) -> bytes:
        return b"".join(self.chunks)


class FileWriter(MemWriter):
    """Keeps the ciphertext on disk, not in memory, for the memory test."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.fh = path.open("wb")
        self.size = 0

    def write(self, data: bytes) -> None:
        self.fh.write(data)
        self.size += len(data)

    def commit(self) -> StoredObject:
        self.fh.close()
        self.state = "committed"
        return StoredObject(self.size)


class FailingWriter(MemWriter):
    def __init__(self, fail_after: int) -> None:
        super().__init__()
        self.fail_after = fail_after
        self.seen = 0

    def write(self, data: bytes) -> None:
        self.seen += len(data)
        if self.seen > self.fail_after:
            raise AtlasError("The disk is full while writing /backups (No space left on device).")
        super().write(data)


@pytest.fixture(scope="module")
def key() -> tuple[str, str]:
    return crypto.generate_identity()


@pytest.fixture(scope="module")
def ident(key: tuple[str, str]) -> crypto.Identity:
    return crypto.parse_identity(key[0])


@pytest.fixture(scope="module")
def plain() -> bytes:
    return random.Random(1).randbytes(20 * MiB + 12345)


@pytest.fixture(scope="module")
def cipher(ident: crypto.Identity, plain: bytes) -> bytes:
    return encrypt(ident, plain)


def encrypt(ident: crypto.Identity, data: bytes, sizes: tuple[int, ...] = (MiB,)) -> bytes:
    inner = MemWriter()
    w = crypto.EncryptingWriter(inner, ident)
    for chunk in rechunk(data, sizes):
        w.write(chunk)
    stored = w.commit()
    assert inner.state == "committed"
    assert stored.size == w.size == len(inner.data)
    assert w.sha256 == hashlib.sha256(inner.data).hexdigest()
    return inner.data


def rechunk(data: bytes, sizes: tuple[int, ...]) -> Iterator[bytes]:
    pos = i = 0
    while pos < len(data):
        n = sizes[i % len(sizes)]
        yield data[pos : pos + n]
        pos += n
        i += 1


def decrypt(ident: crypto.Identity, data: bytes, sizes: tuple[int, ...] = (MiB,)) -> bytes:
    return b"".join(crypto.decrypt_chunks(ident, rechunk(data, sizes)))


def no_helper_threads() -> bool:
    names = {t.name for t in threading.enumerate()}
    return not names & {"atlas-encrypt", "atlas-decrypt"}


# -- round trips ------------------------------------------------------------------------------


def test_round_trip_20mb_in_chunks_of_varying_sizes(ident, plain):
    sizes = (1, 7, 65535, 65536, 65537, MiB - 1, 3 * MiB + 5, 100, MiB)
    ct = encrypt(ident, plain, sizes)
    assert ct.startswith(b"age-encryption.org/v1\n")
    assert decrypt(ident, ct, (MiB,)) == plain
    assert decrypt(ident, ct, (4093, 2 * MiB + 1, 65552, 17)) == plain
    assert no_helper_threads()


def test_output_chunks_are_about_one_mib(ident, plain, cipher):
    inner = MemWriter()
    w = crypto.EncryptingWriter(inner, ident)
    for chunk in rechunk(plain, (MiB,)):
        w.write(chunk)
    w.commit()
    assert all(MiB <= len(c) < MiB + 70_000 for c in inner.chunks[:-1])
    out = list(crypto.decrypt_chunks(ident, rechunk(cipher, (MiB,))))
    assert all(MiB <= len(c) < MiB + 70_000 for c in out[:-1])


def test_tiny_and_empty_plaintexts(ident):
    for data in (b"", b"x", bytes(64 * 1024), bytes(64 * 1024 + 1)):
        ct = encrypt(ident, data)
        assert decrypt(ident, ct) == data
        assert decrypt(ident, ct, (1,)) == data


def test_ciphertext_hides_the_plaintext(ident, plain, cipher):
    assert cipher != plain
    assert len(cipher) > len(plain)
    assert plain[1000:1064] not in cipher
    text = b"COPY public.users (id, email) FROM stdin;\n" * 50_000
    ct = encrypt(ident, text)
    assert b"COPY public.users" not in ct
    assert encrypt(ident, text) != ct  # a fresh file key every time


def test_recipient_string_encrypts_too(key, ident):
    secret, public = key
    assert ident.recipient == public
    inner = MemWriter()
    w = crypto.EncryptingWriter(inner, public)
    w.write(b"hello")
    w.commit()
    assert decrypt(ident, inner.data) == b"hello"
    assert secret not in repr(ident)


def test_memory_stays_flat_while_streaming_64mb(ident, tmp_path):
    block = os.urandom(MiB)
    src_sha, out_sha = hashlib.sha256(), hashlib.sha256()
    path = tmp_path / "x.dump.zst.age"
    tracemalloc.start()
    try:
        inner = FileWriter(path)
        w = crypto.EncryptingWriter(inner, ident)
        for i in range(64):
            chunk = i.to_bytes(4, "big") + block[4:]
            src_sha.update(chunk)
            w.write(chunk)
        w.commit()
        enc_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        storage = LocalStorage(tmp_path)
        n = 0
        for out in crypto.decrypt_chunks(ident, storage.read(path.name)):
            out_sha.update(out)
            n += len(out)
        dec_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert n == 64 * MiB
    assert out_sha.digest() == src_sha.digest()
    assert enc_peak < 16 * MiB, enc_peak
    assert dec_peak < 16 * MiB, dec_peak


# -- failures ---------------------------------------------------------------------------------


def test_wrong_key_fails_clearly(cipher):
    other = crypto.parse_identity(crypto.generate_identity()[0])
    with pytest.raises(AtlasError, match="cannot decrypt: wrong key or damaged artifact") as e:
        decrypt(other, cipher)
    assert "another key" in str(e.value)


@pytest.mark.parametrize("cut", [1, 16, 65552, 100_000])
def test_truncated_ciphertext_fails(ident, cipher, cut):
    with pytest.raises(AtlasError, match="cannot decrypt: wrong key or damaged artifact"):
        decrypt(ident, cipher[:-cut])


def test_cut_on_a_chunk_boundary_fails(ident):
    ct = encrypt(ident, bytes(5 * 65536))
    header = len(ct) - 5 * 65552
    for chunks in (2, 4):
        with pytest.raises(AtlasError, match="cannot decrypt"):
            decrypt(ident, ct[: header + chunks * 65552])


@pytest.mark.parametrize("where", [30, 200, 5 * MiB, -1])
def test_tampered_byte_fails(ident, cipher, where):
    bad = bytearray(cipher)
    bad[where] ^= 0x01
    with pytest.raises(AtlasError, match="cannot decrypt: wrong key or damaged artifact"):
        decrypt(ident, bytes(bad))


def test_trailing_data_and_non_age_input_fail(ident, cipher):
    for bad in (cipher + b"\0", b"", b"(\xb5/\xfd not age", cipher[:40]):
        with pytest.raises(AtlasError, match="cannot decrypt"):
            decrypt(ident, bad)


def test_errors_from_the_chunk_source_come_through(ident, cipher):
    class Boom(Exception):
        pass

    def chunks() -> Iterator[bytes]:
        yield cipher[:MiB]
        raise Boom("S3 went away")

    with pytest.raises(Boom, match="S3 went away"):
        list(crypto.decrypt_chunks(ident, chunks()))
    assert no_helper_threads()


def test_consumer_stopping_early_stops_the_thread(ident, cipher):
    closed = []

    def chunks() -> Iterator[bytes]:
        try:
            yield from rechunk(cipher, (MiB,))
        finally:
            closed.append(True)

    gen = crypto.decrypt_chunks(ident, chunks())
    assert len(next(gen)) >= MiB
    gen.close()
    assert closed == [True]
    assert no_helper_threads()


def test_abort_aborts_the_inner_writer(ident):
    inner = MemWriter()
    w = crypto.EncryptingWriter(inner, ident)
    assert w.pending_ref == "mem://pending"
    w.write(os.urandom(3 * MiB))
    w.abort()
    w.abort()
    assert inner.state == "aborted"
    assert no_helper_threads()
    with pytest.raises(AtlasError, match="already committed or aborted"):
        w.write(b"x")


def test_inner_write_error_surfaces_and_aborts(ident):
    inner = FailingWriter(fail_after=2 * MiB)
    w = crypto.EncryptingWriter(inner, ident)
    with pytest.raises(AtlasError, match="disk is full"):
        for _ in range(64):
            w.write(os.urandom(MiB))
        w.commit()
    assert inner.state == "aborted"
    assert no_helper_threads()


def test_inner_write_error_in_the_last_bytes_is_not_lost(ident):
    inner = FailingWriter(fail_after=100)  # only the final flush writes anything
    w = crypto.EncryptingWriter(inner, ident)
    w.write(b"small")
    with pytest.raises(AtlasError, match="disk is full"):
        w.commit()
    assert inner.state == "aborted"


# -- keys -------------------------------------------------------------------------------------


def test_generate_identity():
    secret, public = crypto.generate_identity()
    assert secret.startswith("AGE-SECRET-KEY-1")
    assert public.startswith("age1")
    assert crypto.parse_identity(secret).recipient == public
    assert crypto.generate_identity()[0] != secret


def test_load_identity_from_env_and_file(key, tmp_path):
    secret, public = key
    assert crypto.load_identity({}) is None
    assert (
        crypto.load_identity({"ATLAS_ENCRYPTION_KEY": "", "ATLAS_ENCRYPTION_KEY_FILE": ""}) is None
    )
    assert crypto.load_identity({"ATLAS_ENCRYPTION_KEY": f"  {secret}\n"}).recipient == public
    keyfile = tmp_path / "key.txt"
    keyfile.write_text(f"# created: 2026-01-01T00:00:00Z\n# public key: {public}\n\n{secret}\n")
    ident = crypto.load_identity({"ATLAS_ENCRYPTION_KEY_FILE": str(keyfile)})
    assert ident is not None
    assert ident.recipient == public
    assert secret not in repr(ident)


def test_key_configuration_errors(key, tmp_path):
    secret, _ = key
    keyfile = tmp_path / "key.txt"
    keyfile.write_text(secret)
    with pytest.raises(AtlasError, match="Both"):
        crypto.load_identity(
            {"ATLAS_ENCRYPTION_KEY": secret, "ATLAS_ENCRYPTION_KEY_FILE": str(keyfile)}
        )
    with pytest.raises(AtlasError, match="Cannot read") as e:
        crypto.load_identity({"ATLAS_ENCRYPTION_KEY_FILE": str(tmp_path / "missing.txt")})
    assert "No such file" in str(e.value)
    keyfile.write_text(f"{secret}\nAGE-SECRET-KEY-1QQQQ\n")
    with pytest.raises(AtlasError, match=r"\(key 2 of 2\) is not a valid age identity") as e:
        crypto.load_identity({"ATLAS_ENCRYPTION_KEY_FILE": str(keyfile)})
    assert secret not in str(e.value) and "QQQQ" not in str(e.value)
    keyfile.write_text("# only a comment\n")
    with pytest.raises(AtlasError, match="holds no age identity"):
        crypto.load_identity({"ATLAS_ENCRYPTION_KEY_FILE": str(keyfile)})


@pytest.mark.parametrize(
    "bad",
    [
        "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ",
        "hunter2-not-a-key",
        "age1jkrvguusak8dvvhglfcpanqv3rekvczj5mllryqrequztwcny4tsckdkmw",
    ],
)
def test_invalid_key_message_does_not_echo_the_key(bad, key, tmp_path):
    flipped = key[0][:-3] + ("Q" if key[0][-3] != "Q" else "P") + key[0][-2:]  # bad checksum
    for text in (bad, flipped):
        with pytest.raises(AtlasError) as e:
            crypto.load_identity({"ATLAS_ENCRYPTION_KEY": text})
        assert "ATLAS_ENCRYPTION_KEY" in str(e.value)
        assert text not in str(e.value)
        assert len(text) < 40 or text[16:40] not in str(e.value)
        assert e.value.__cause__ is None  # pyrage's message is not chained
        assert e.value.__context__ is None or e.value.__suppress_context__
        keyfile = tmp_path / "key.txt"
        keyfile.write_text(text + "\n")
        with pytest.raises(AtlasError) as e:
            crypto.load_identity({"ATLAS_ENCRYPTION_KEY_FILE": str(keyfile)})
        assert str(keyfile) in str(e.value)
        assert text not in str(e.value)
        assert len(text) < 40 or text[16:40] not in str(e.value)


# -- key rotation ------------------------------------------------------------------------------


def test_rotated_key_file_encrypts_to_the_first_and_decrypts_with_any(key, ident, plain, cipher):
    new_secret, new_public = crypto.generate_identity()
    rotated = crypto.parse_identity(f"# new\n{new_secret}\n# retired\n{key[0]}\n")
    assert rotated.recipient == new_public and rotated.retired == 1
    assert key[0] not in repr(rotated) and new_secret not in repr(rotated)
    assert decrypt(rotated, cipher) == plain  # made with the old key

    fresh = encrypt(rotated, plain[: 2 * MiB])
    assert decrypt(crypto.parse_identity(new_secret), fresh) == plain[: 2 * MiB]
    with pytest.raises(AtlasError, match=crypto.DECRYPT_FAILED):
        decrypt(ident, fresh)  # not encrypted to the retired key any more


@needs_age
def test_age_cli_reads_a_rotated_key_file_too(key, plain, cipher, tmp_path):
    """The manual path keeps working with the same file: age tries every identity in it."""
    out = _age_decrypt(tmp_path, f"{crypto.generate_identity()[0]}\n{key[0]}\n", cipher)
    assert out.returncode == 0 and out.stdout == plain


# -- interop with the age CLI (the README's manual restore path) --------------------------------


def _age_decrypt(tmp_path: Path, key_text: str, cipher: bytes) -> subprocess.CompletedProcess:
    """`age -d -i KEYFILE ARTIFACT`, the README's manual path."""
    keyfile = tmp_path / "key.txt"
    keyfile.write_text(key_text)
    artifact = tmp_path / "x.dump.zst.age"
    artifact.write_bytes(cipher)
    return subprocess.run([AGE, "-d", "-i", str(keyfile), str(artifact)], capture_output=True)


@needs_age
def test_age_cli_decrypts_what_atlas_wrote(key, plain, cipher, tmp_path):
    out = _age_decrypt(tmp_path, key[0] + "\n", cipher)
    assert out.returncode == 0 and out.stdout == plain


@needs_age
def test_atlas_decrypts_what_age_cli_wrote(key, ident, plain, tmp_path):
    src = tmp_path / "x.dump.zst"
    src.write_bytes(plain[: 3 * MiB])
    out = subprocess.run(
        [AGE, "-e", "-r", key[1], "-o", str(tmp_path / "x.age"), str(src)], check=True
    )
    assert out.returncode == 0
    ct = (tmp_path / "x.age").read_bytes()
    assert decrypt(ident, ct) == plain[: 3 * MiB]


@needs_age
def test_age_cli_rejects_a_truncated_artifact(key, cipher, tmp_path):
    assert _age_decrypt(tmp_path, key[0] + "\n", cipher[:-20]).returncode != 0


@pytest.mark.skipif(AGE_KEYGEN is None, reason="age-keygen is not installed (Debian: age)")
def test_age_keygen_file_loads(tmp_path):
    keyfile = tmp_path / "key.txt"
    subprocess.run([AGE_KEYGEN, "-o", str(keyfile)], check=True, capture_output=True)
    public = subprocess.run(
        [AGE_KEYGEN, "-y", str(keyfile)], check=True, capture_output=True, text=True
    ).stdout.strip()
    ident = crypto.load_identity({"ATLAS_ENCRYPTION_KEY_FILE": str(keyfile)})
    assert ident is not None and ident.recipient == public
