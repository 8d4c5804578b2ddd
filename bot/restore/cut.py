"""A snapshot's archive cut down, as it streams, to a few of its tables.

The plain archive goes in chunk by chunk; out comes a custom-format archive of its own:
the header, a table of contents listing only the entries chosen (and any Atlas adds),
then only those entries' data blocks. Nothing goes out before the whole table of
contents is in and checked against the snapshot's record, and the last bytes are held
back until `release`: pg_restore cannot finish (nor commit) before the caller knows every
checksum of the artifact held.
"""

from __future__ import annotations

from collections.abc import Callable

from bot.backup import archive
from bot.errors import AtlasError, Damaged
from bot.restore.source import check_toc
from bot.restore.tables import Selection

Pick = Callable[[archive.Toc], tuple[Selection, list[archive.Extra]]]
HOLD = 64  # bytes held back: more than a data block's end marker


class TableCut:
    """Feed it the plain archive; it passes the cut-down archive to `out`."""

    def __init__(
        self,
        pick: Pick,
        out: Callable[[bytes], object],
        *,
        toc: tuple[int, str] | None,
        where: str,
    ) -> None:
        self.pick, self.out, self.toc_check, self.where = pick, out, toc, where
        self.splitter = archive.Splitter()
        self.segment = 0  # 0: the head; k: the k-th data block
        self.head = bytearray()
        self.selection: Selection | None = None
        self.wanted: set[int] = set()
        self.held = b""
        self.prefix = bytearray()  # the stream's start, until checked against `toc`
        self.checked = toc is None
        # reads the head and the blocks wanted itself (a segmented snapshot's): no need to
        # stream the whole artifact past
        self.own_read: Callable[[], None] | None = None

    def read_itself(self) -> bool:
        """Read what it needs on its own, if it can; False: feed it the whole archive."""
        if self.own_read is None:
            return False
        self.own_read()
        return True

    def __call__(self, chunk: bytes) -> None:
        if not self.checked and self.toc_check is not None:
            size = self.toc_check[0]
            self.prefix += chunk[: size - len(self.prefix)]
            if len(self.prefix) >= size:
                check_toc(self.prefix, self.toc_check, self.where)
                self.checked, self.prefix = True, bytearray()
        for piece, ends in self.splitter.feed(chunk):
            self._piece(piece, ends)
        self._check_split()

    def end(self) -> None:
        """The archive was read whole."""
        for piece, ends in self.splitter.end():
            self._piece(piece, ends)
        self._check_split()
        if not self.checked:
            raise Damaged(f"The archive {self.where} ends inside its table of contents.")
        if self.selection is None:
            self._head_done()  # an archive without data blocks: all of it is the head

    def release(self) -> None:
        """Every checksum held: pg_restore may have the end of it."""
        if self.held:
            self.out(self.held)
            self.held = b""

    def _piece(self, piece: bytes | memoryview, ends: bool) -> None:
        if self.segment == 0:
            self.head += piece
            if ends:
                self._head_done()
        elif self.segment in self.wanted:
            self._emit(bytes(piece))
        if ends:
            self.segment += 1

    def from_head(self, head: bytes) -> frozenset[int]:
        """The head read on its own, from a segment already checked against its sha256:
        the cut-down head goes out, and the dump ids of the blocks to send are returned
        (each then given to `block`, in the archive's order)."""
        try:
            toc = archive.read_toc(head)
        except (archive.Incomplete, archive.Unreadable) as exc:
            raise AtlasError(
                f"The table of contents of {self.where} cannot be read ({exc or 'short'}).",
                "restore the whole snapshot instead",
            ) from None
        self.checked = True
        return self._select(toc, head)

    def block(self, data: bytes) -> None:
        """Part of a data block `from_head` asked for."""
        self._emit(data)

    def _head_done(self) -> None:
        toc = self.splitter.toc
        if toc is None:
            raise AtlasError(
                f"The archive {self.where} cannot be read table by table "
                f"({self.splitter.failed or 'no table of contents'}).",
                "restore the whole snapshot instead",
            )
        ids = self._select(toc, bytes(self.head))
        self.wanted = {n for n, e in enumerate(toc.blocks, 1) if e.dump_id in ids}
        self.head = bytearray()

    def _select(self, toc: archive.Toc, head: bytes) -> frozenset[int]:
        self.selection, extras = self.pick(toc)
        self._emit(archive.head_of(head[: toc.size], toc, self.selection.keep, extras))
        return self.selection.dump_ids

    def _emit(self, data: bytes) -> None:
        joined = self.held + data
        if self.checked and len(joined) > HOLD:  # nothing goes out before the SQL is checked
            self.out(joined[:-HOLD])
            joined = joined[-HOLD:]
        self.held = joined

    def _check_split(self) -> None:
        if self.splitter.failed is not None:
            raise AtlasError(
                f"The archive {self.where} cannot be read table by table ({self.splitter.failed}).",
                "restore the whole snapshot instead",
            )
