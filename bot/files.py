"""Every file and folder Atlas makes on the host is made here, one way.

- Private: files 0600 in folders 0700, whatever the umask, because an unencrypted dump
  is production data. `ATLAS_FILE_GROUP` lets one group read them (0640 in 0750).
- Never through a link: a file is created with O_EXCL and O_NOFOLLOW, so a symbolic
  link another user planted at a predictable name fails the create instead of
  redirecting it onto a file of theirs choosing (or of root's).
- Scratch files live in a folder made for the run (`private_folder`), never under a
  predictable name in a shared folder such as /tmp.

`tests/test_hostile.py` checks that no other module creates files.
"""

from __future__ import annotations

import contextlib
import errno
import grp
import io
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from bot.errors import AtlasError

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class Access:
    """Who may read what Atlas writes: its owner only, or also one group's members."""

    gid: int | None = None

    @property
    def file_mode(self) -> int:
        return 0o640 if self.gid is not None else 0o600

    @property
    def dir_mode(self) -> int:
        return 0o750 if self.gid is not None else 0o700

    @classmethod
    def for_group(cls, name: str | None) -> Access:
        """`ATLAS_FILE_GROUP`'s group (a name or a number), or owner-only when unset."""
        if not name:
            return PRIVATE
        try:
            gid = int(name) if name.isdigit() else grp.getgrnam(name).gr_gid
        except KeyError:
            raise AtlasError(
                f"ATLAS_FILE_GROUP names no group on this host: {name!r}.",
                "create the group (groupadd), or unset ATLAS_FILE_GROUP to keep files private",
            ) from None
        return cls(gid)

    def apply(self, fd: int, *, folder: bool = False) -> None:
        """The exact mode (the umask only ever takes bits away) and the group."""
        os.fchmod(fd, self.dir_mode if folder else self.file_mode)
        if self.gid is not None:
            os.fchown(fd, -1, self.gid)


PRIVATE = Access()


def make_dirs(path: Path, access: Access = PRIVATE) -> None:
    """`mkdir -p` whose new folders are private; folders that exist are left as they are."""
    missing = []
    here = path
    while not here.exists() and here != here.parent:
        missing.append(here)
        here = here.parent
    if missing:  # new folders under a link of another user's would be theirs to place
        refuse_foreign_links(here, *here.parents)
    for folder in reversed(missing):
        try:
            os.mkdir(folder, access.dir_mode)
        except FileExistsError:
            continue  # made by another process meanwhile
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            access.apply(fd, folder=True)
        finally:
            os.close(fd)


def create(path: Path, access: Access = PRIVATE) -> BinaryIO:
    """A new file opened for writing, unbuffered. Raises FileExistsError if anything, a
    link included, is already at `path`; never writes through a link."""
    try:
        fd = os.open(path, _CREATE, access.file_mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # some platforms say this for O_NOFOLLOW on a link
            raise FileExistsError(exc.errno, "a symbolic link is in the way", str(path)) from None
        raise
    try:
        access.apply(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    return _WholeWrites(fd, "wb", closefd=True)


class _WholeWrites(io.FileIO):
    """An unbuffered file whose `write` writes every byte or raises: a disk that fills
    makes a raw write return short, and a caller that ignored the count renamed a cut
    file into place (fetch and report said "wrote …" of a file missing its end)."""

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):
            wrote = super().write(view[done:])
            if not wrote:  # 0 (or None) bytes taken: no room, and no error said so
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.name)
            done += wrote
        return done


def create_beside(final: Path, access: Access = PRIVATE) -> tuple[Path, BinaryIO]:
    """A new hidden file next to `final` under an unguessable name, to be renamed onto
    `final` once whole (`os.replace`, which replaces a link, never follows it)."""
    for _ in range(8):
        tmp = final.with_name(f".{final.name}.{os.urandom(4).hex()}.partial")
        try:
            return tmp, create(tmp, access)
        except FileExistsError:
            continue
    raise AtlasError(f"Cannot create a temporary file beside {final}: every name was taken.")


def write_new(path: Path, data: bytes, access: Access = PRIVATE) -> None:
    """A small file written whole (a config, a list, a password file)."""
    with create(path, access) as fh:
        fh.write(data)


def replace_with(path: Path, data: bytes, access: Access = PRIVATE) -> None:
    """`path` holds `data` afterwards, whole or not at all (a file Atlas rewrites)."""
    tmp, fh = create_beside(path, access)
    try:
        with fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def anonymous_file(folder: Path) -> BinaryIO:
    """A scratch file with no name at all: no other process can open it."""
    return tempfile.TemporaryFile(dir=folder)


def private_folder(parent: Path | None, prefix: str) -> Path:
    """A folder of this run's own (0700, unguessable name) for its scratch files."""
    if parent is not None:
        make_dirs(parent)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))


def temp_file(folder: Path, prefix: str, suffix: str) -> tuple[int, str]:
    """An open scratch file (0600, unguessable name, never through a link): mkstemp's."""
    return tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)


def refuse_foreign_links(*paths: Path) -> None:
    """A symbolic link at a path Atlas opens by name (the SQLite catalog and its journal,
    a folder it makes folders in) that another user owns could point Atlas's writes at
    any file: refuse it. Links of Atlas's own user or of root are trusted."""
    for path in paths:
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode) and st.st_uid not in (os.geteuid(), 0):
            raise AtlasError(
                f"{path} is a symbolic link owned by another user (uid {st.st_uid}).",
                "remove it, and keep Atlas's files in a folder only Atlas can write",
            )


def others_can_read(path: Path) -> bool:
    """Whether users outside the owner and group can list or read `path`."""
    return bool(path.stat().st_mode & (stat.S_IROTH | stat.S_IXOTH))
