"""pg_dump's custom-format archive, read without pg_restore: the header and table of
contents at its start, and where each data block begins in the stream that follows.

An uncompressed custom archive written to a pipe is: the header, the table of contents
(every entry's SQL, and whether a data block follows for it), then one data block per
such entry, in table-of-contents order. A block is a type byte (1: table data, 3: large
objects), the entry's dump id, then length-prefixed chunks ending in a zero length.
Table data is COPY text, which never holds a NUL byte, so the five zero bytes that end
one block followed by the next block's type and id mark a boundary that row data cannot
imitate. Large-object data is binary, so nothing is searched for after such a block.

Pure: bytes in, values out.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

MAGIC = b"PGDMP"
BLOCK_DATA, BLOCK_BLOBS = 1, 3
NO_DATA = 3  # the entry's offset flag when no data block follows for it
SUPPORTED = ((1, 12), (1, 13), (1, 14), (1, 15))  # PostgreSQL 11 to 16 write these
SECTION_PRE, SECTION_DATA, SECTION_POST = 2, 3, 4


class Incomplete(Exception):
    """The bytes end before the table of contents does."""


class Unreadable(Exception):
    """Not a custom archive this module knows how to read."""


@dataclass(frozen=True)
class Entry:
    """One entry of a custom-format archive's table of contents."""

    dump_id: int
    desc: str  # TABLE, TABLE DATA, INDEX, FK CONSTRAINT, ...
    tag: str
    namespace: str | None
    section: int  # 1 none (inherits the one before), 2 pre-data, 3 data, 4 post-data
    drop: str | None
    has_data: bool  # a data block follows the table of contents for this entry
    deps: tuple[int, ...] = ()  # the dump ids this entry depends on
    span: tuple[int, int] = (0, 0)  # where its bytes lie in the head (start, end)
    definition: str = ""  # the SQL that creates it

    @property
    def block_type(self) -> int:
        return BLOCK_BLOBS if self.desc in ("BLOBS", "LARGE OBJECTS") else BLOCK_DATA


@dataclass(frozen=True)
class Toc:
    """A custom-format archive's table of contents, as read from its head."""

    version: tuple[int, int, int]
    entries: tuple[Entry, ...]
    size: int  # bytes of header and table of contents: the first data block starts here
    count_at: int = 0  # where the entry count lies in the head (the entries follow it)
    int_size: int = 4
    off_size: int = 8
    blocks: tuple[Entry, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocks", tuple(e for e in self.entries if e.has_data))


class _Cursor:
    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self.data = memoryview(data)
        self.pos = 0
        self.int_size = 4
        self.off_size = 8

    def take(self, n: int) -> memoryview:
        end = self.pos + n
        if end > len(self.data):
            raise Incomplete
        out = self.data[self.pos : end]
        self.pos = end
        return out

    def byte(self) -> int:
        return self.take(1)[0]

    def int(self) -> int:
        sign = self.byte()
        value = int.from_bytes(self.take(self.int_size), "little")
        return -value if sign else value

    def str(self) -> str | None:
        length = self.int()
        if length < 0:
            return None
        if length > 1 << 30:  # no SQL statement is this long
            raise Unreadable(f"a string of {length} bytes at offset {self.pos}")
        return bytes(self.take(length)).decode("utf-8", "replace")


def read_toc(head: bytes | bytearray | memoryview) -> Toc:
    """Parse the header and table of contents at the start of an archive.

    Raises Incomplete when `head` ends too soon, Unreadable when it is not a custom
    archive of a known version.
    """
    c = _Cursor(head)
    if bytes(c.take(5)) != MAGIC:
        raise Unreadable("not a pg_dump custom archive")
    vmaj, vmin = c.byte(), c.byte()
    vrev = c.byte() if vmaj > 1 or (vmaj == 1 and vmin > 0) else 0
    if (vmaj, vmin) not in SUPPORTED:
        raise Unreadable(f"archive version {vmaj}.{vmin} is not one this reader knows")
    c.int_size, c.off_size = c.byte(), c.byte()
    if not (1 <= c.int_size <= 8 and 1 <= c.off_size <= 8):
        raise Unreadable("implausible integer sizes")
    if c.byte() != 1:  # archCustom
        raise Unreadable("not the custom format")
    # 1.15 names the algorithm in a byte; before, an int held the zlib level (-1: default)
    compression = c.byte() if (vmaj, vmin) >= (1, 15) else c.int()
    if compression != 0:
        raise Unreadable("the archive's data is compressed by pg_dump")
    for _ in range(7):  # creation time
        c.int()
    c.str()  # database name
    c.str()  # server version
    c.str()  # pg_dump version
    count_at = c.pos
    count = c.int()
    if not 0 <= count <= 10_000_000:
        raise Unreadable(f"implausible entry count {count}")
    entries = []
    for _ in range(count):
        start = c.pos
        dump_id = c.int()
        c.int()  # had a dumper
        c.str()  # table oid
        c.str()  # oid
        tag = c.str() or ""
        desc = c.str() or ""
        section = c.int()
        definition = c.str() or ""
        drop = c.str()
        c.str()  # COPY statement
        namespace = c.str()
        c.str()  # tablespace
        c.str()  # table access method
        c.str()  # owner
        c.str()  # "false": tables no longer have OIDs
        deps = []
        while (dep := c.str()) is not None:  # dependencies, ended by a null string
            if dep.isdigit():
                deps.append(int(dep))
        flag = c.byte()
        c.take(c.off_size)  # the data offset, unknown in a streamed archive
        entries.append(
            Entry(
                dump_id,
                desc,
                tag,
                namespace,
                section,
                drop,
                flag != NO_DATA,
                tuple(deps),
                (start, c.pos),
                definition,
            )
        )
    return Toc((vmaj, vmin, vrev), tuple(entries), c.pos, count_at, c.int_size, c.off_size)


def write_int(value: int, int_size: int = 4) -> bytes:
    """An integer as pg_dump writes one: a sign byte, then the magnitude little-endian."""
    return bytes([1 if value < 0 else 0]) + abs(value).to_bytes(int_size, "little")


def write_str(value: str | None, int_size: int = 4) -> bytes:
    """A string as pg_dump writes one: its length, then its bytes (-1: none)."""
    if value is None:
        return write_int(-1, int_size)
    data = value.encode()
    return write_int(len(data), int_size) + data


@dataclass(frozen=True)
class Extra:
    """An entry Atlas adds to a table of contents: SQL of its own (never read from
    storage) that pg_restore runs in its place, `drop` among the drops of --clean."""

    tag: str
    section: int
    definition: str
    drop: str = ""


def entry_bytes(toc: Toc, dump_id: int, extra: Extra) -> bytes:
    """`extra` as a table-of-contents entry of `toc`'s layout, with no data block."""
    i = toc.int_size
    out = write_int(dump_id, i) + write_int(0, i)  # no data: no dumper
    head: tuple[str, ...] = ("0", "0", extra.tag, "ATLAS")  # table oid, oid, tag, desc
    out += b"".join(write_str(v, i) for v in head) + write_int(extra.section, i)
    # definition, drop, copy; no schema, tablespace, access method or owner; no OIDs
    rest: tuple[str | None, ...] = (extra.definition, extra.drop, "", None, None, None, None)
    out += b"".join(write_str(v, i) for v in (*rest, "false"))
    out += write_str(None, i)  # no dependencies
    return out + bytes([NO_DATA]) + bytes(toc.off_size)


def head_of(head: bytes, toc: Toc, keep: Iterable[Entry], extras: Iterable[Extra] = ()) -> bytes:
    """The archive's header and a table of contents holding only `keep` (in the order
    they had), then `extras`, so pg_restore sees nothing else: the data blocks of the
    entries kept follow it as they were."""
    kept = sorted(keep, key=lambda e: e.span[0])
    body = b"".join(head[e.span[0] : e.span[1]] for e in kept)
    top = max((e.dump_id for e in toc.entries), default=0)
    added = [entry_bytes(toc, top + n, x) for n, x in enumerate(extras, 1)]
    count = write_int(len(kept) + len(added), toc.int_size)
    return head[: toc.count_at] + count + body + b"".join(added)


def block_header(entry: Entry) -> bytes:
    """The bytes a data block starts with: its type, then the dump id as pg_dump writes
    an integer (a sign byte, then four bytes little-endian)."""
    return bytes([entry.block_type, 0]) + entry.dump_id.to_bytes(4, "little")


END_OF_BLOCK = b"\x00" * 5  # a zero-length chunk: the block before has ended


class Splitter:
    """Finds, in the plain dump as it streams past, the end of the table of contents and
    the start of each data block, so the compressor can end a frame exactly there.

    `feed` returns the stream cut into pieces (bytes or views of the chunk fed); a piece
    marked True is the last of its segment. The last few bytes of each chunk are held
    back until the next, where a boundary may straddle the two; `end` returns them. If
    the stream is not one this module can split (an unknown version, blocks out of
    order, table data after large objects), `failed` says why and the rest passes
    through uncut: the snapshot is still whole, only not indexed.
    """

    HEAD_LIMIT = 256 << 20  # a table of contents larger than this is not indexed

    def __init__(self) -> None:
        self.toc: Toc | None = None
        self.failed: str | None = None
        self.starts: list[int] = [0]  # plain offsets where segments begin
        self._held = bytearray()  # the stream's start, until the TOC can be read from it
        self._pos = 0  # plain bytes handed out so far
        self._next = 0  # index into toc.blocks of the block looked for
        self._carry = b""  # held back: a boundary may start in it

    def feed(self, chunk: bytes) -> Iterator[tuple[bytes | memoryview, bool]]:
        if self.failed is not None:
            yield from self._out(chunk, False)
        elif self.toc is None or self._held:
            yield from self._read_head(chunk)
        else:
            yield from self._split(chunk)

    def end(self) -> Iterator[tuple[bytes | memoryview, bool]]:
        """What is still held back, once the stream has ended."""
        if self._held:
            if self.toc is None and self.failed is None:
                self.failed = "the stream ended inside its table of contents"
            yield from self._out(self._take_held(), False)
        yield from self._out(self._carry, False)
        self._carry = b""

    def _read_head(self, chunk: bytes) -> Iterator[tuple[bytes | memoryview, bool]]:
        self._held += chunk
        if self.toc is None:
            try:
                self.toc = read_toc(self._held)
            except Incomplete:
                if len(self._held) > self.HEAD_LIMIT:
                    self.failed = "its table of contents is too large"
                    yield from self._out(self._take_held(), False)
                return
            except Unreadable as exc:
                self.failed = str(exc)
                yield from self._out(self._take_held(), False)
                return
        toc = self.toc
        if not toc.blocks:
            yield from self._out(self._take_held(), False)
            return
        first = block_header(toc.blocks[0])
        if len(self._held) < toc.size + len(first):
            return  # the first block's header must be seen before the head is cut
        data = self._take_held()
        if data[toc.size : toc.size + len(first)] != first:
            self.failed = "the first data block does not follow the table of contents"
            yield from self._out(data, False)
            return
        yield from self._out(memoryview(data)[: toc.size], True)
        self._next = 1
        yield from self._split(data, toc.size)

    def _looking_for(self) -> bytes | None:
        """The bytes that mark the next block's start, or None when nothing is left to
        find (or it cannot be found safely)."""
        toc = self.toc
        if self.failed is not None or toc is None or self._next >= len(toc.blocks):
            return None
        if toc.blocks[self._next - 1].block_type == BLOCK_BLOBS:
            self.failed = "table data follows large objects"
            return None
        return END_OF_BLOCK + block_header(toc.blocks[self._next])

    def _split(self, buf: bytes, off: int = 0) -> Iterator[tuple[bytes | memoryview, bool]]:
        view = memoryview(buf)
        lead = len(END_OF_BLOCK)
        while (sign := self._looking_for()) is not None:
            k = len(sign) - 1
            if len(buf) - off < k:
                self._carry += bytes(view[off:])  # too short to decide: wait for more
                return
            if self._carry:
                joined = self._carry + bytes(view[off : off + k])
                if (i := joined.find(sign)) >= 0:
                    cut, held = i + lead, len(self._carry)
                    if cut <= held:
                        yield from self._out(self._carry[:cut], True)
                        self._carry = self._carry[cut:]
                    else:
                        yield from self._out(self._carry, False)
                        yield from self._out(view[off : off + cut - held], True)
                        self._carry, off = b"", off + cut - held
                    self._next += 1
                    continue
                yield from self._out(self._carry, False)
                self._carry = b""
            if (i := buf.find(sign, off)) >= 0:
                yield from self._out(view[off : i + lead], True)
                off = i + lead
                self._next += 1
                continue
            keep = max(off, len(buf) - k)  # a boundary may start in the last k bytes
            yield from self._out(view[off:keep], False)
            self._carry = bytes(view[keep:])
            return
        yield from self._out(self._carry, False)
        self._carry = b""
        yield from self._out(view[off:], False)

    def _out(
        self, piece: bytes | memoryview, ends_segment: bool
    ) -> Iterator[tuple[bytes | memoryview, bool]]:
        self._pos += len(piece)
        if ends_segment:
            self.starts.append(self._pos)
        if len(piece) or ends_segment:
            yield piece, ends_segment

    def _take_held(self) -> bytes:
        data, self._held = bytes(self._held), bytearray()
        return data

    def finish(self) -> list[int] | None:
        """Plain offsets where segments start (the head's 0 first), or None when the
        stream could not be indexed; call after `end`."""
        if self.failed is not None or self.toc is None:
            return None
        if self._next < len(self.toc.blocks):
            self.failed = f"data block {self.toc.blocks[self._next].dump_id} was not found"
            return None
        return self.starts
