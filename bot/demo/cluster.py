"""A throwaway PostgreSQL cluster in a temporary folder: initdb, pg_ctl start, pg_ctl stop.

As root it runs initdb and pg_ctl as the `postgres` user (initdb refuses root), through
`runuser`, or `setpriv` where runuser is missing. The server listens on 127.0.0.1 on a
free port and on a socket in its own folder, with a password for TCP connections.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

from bot import files
from bot.errors import AtlasError

INSTALL_HINT = (
    "install the PostgreSQL server: `sudo apt-get install postgresql` (Debian, Ubuntu), "
    "`brew install postgresql@16` (macOS), `sudo dnf install postgresql-server` (Fedora); "
    "or point ATLAS_PG_BINDIR at the folder holding initdb"
)


def server_bindir(configured: str | None = None) -> Path:
    """The folder with initdb and pg_ctl: ATLAS_PG_BINDIR, `pg_config --bindir`, or the
    newest /usr/lib/postgresql/*/bin."""
    if configured:  # what the operator set is what is used, or said to be wrong
        folder = Path(configured)
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
        raise AtlasError(
            f"ATLAS_PG_BINDIR={configured} has no initdb and pg_ctl (the PostgreSQL server).",
            INSTALL_HINT,
        )
    candidates: list[str] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True)
        if out.returncode == 0:
            candidates.append(out.stdout.strip())
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0,
        reverse=True,
    )
    candidates += sorted(glob.glob("/opt/homebrew/opt/postgresql@*/bin"), reverse=True)
    candidates += sorted(glob.glob("/usr/local/opt/postgresql@*/bin"), reverse=True)
    candidates += sorted(glob.glob("/usr/pgsql-*/bin"), reverse=True)
    for candidate in candidates:
        if (Path(candidate) / "initdb").is_file() and (Path(candidate) / "pg_ctl").is_file():
            return Path(candidate)
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).parent
    raise AtlasError(
        "The PostgreSQL server binaries (initdb, pg_ctl) were not found.", INSTALL_HINT
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Cluster:
    """Started by `start`, gone after `stop` (which is safe to call twice)."""

    def __init__(self, bindir: Path, folder: Path) -> None:
        self.bindir = bindir
        self.folder = folder
        self.data = folder / "data"
        self.log = folder / "server.log"
        self.password = secrets.token_urlsafe(12)
        self.port = 0
        self._as_postgres = os.geteuid() == 0

    def _run(self, argv: list[str], timeout: float = 120, own_session: bool = False) -> None:
        cmd = argv
        if self._as_postgres:
            runner = shutil.which("runuser")
            if runner:
                cmd = [runner, "-u", "postgres", "--", *argv]
            else:
                user = pwd.getpwnam("postgres")
                cmd = [
                    "setpriv",
                    f"--reuid={user.pw_uid}",
                    f"--regid={user.pw_gid}",
                    "--init-groups",
                    *argv,
                ]
        # `own_session` (the stop): a Ctrl-C at the terminal never cuts pg_ctl half-way,
        # leaving the server running; the server itself stays in the terminal's group, so
        # a Ctrl-C reaches it too, as a fast shutdown
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, start_new_session=own_session
        )
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
            raise AtlasError(
                f"{Path(argv[0]).name} failed: {detail[0]}",
                f"the server's log is {self.log}" if self.log.exists() else None,
            )

    def start(self) -> Cluster:
        if self._as_postgres:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                raise AtlasError(
                    "Running as root, and there is no `postgres` user to run the server as "
                    "(initdb refuses root).",
                    "run `atlas demo` as a normal user, or install the postgresql package",
                ) from None
            os.chown(self.folder, user.pw_uid, user.pw_gid)
        pwfile = self.folder / "pw"
        files.write_new(pwfile, f"{self.password}\n".encode())
        if self._as_postgres:
            shutil.chown(pwfile, "postgres", "postgres")
        try:
            self._run(
                [
                    str(self.bindir / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    "postgres",
                    "--no-sync",
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--auth-local=trust",
                    "--auth-host=scram-sha-256",
                    f"--pwfile={pwfile}",
                ]
            )
        finally:
            pwfile.unlink(missing_ok=True)
        for _ in range(5):
            self.port = _free_port()
            opts = (
                f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
            )
            try:
                self._run(
                    [
                        str(self.bindir / "pg_ctl"),
                        "-D",
                        str(self.data),
                        "-l",
                        str(self.log),
                        "-w",
                        "-t",
                        "60",
                        "-o",
                        opts,
                        "start",
                    ]
                )
                return self
            except AtlasError:
                time.sleep(0.2)  # most likely the port was taken meanwhile
        raise AtlasError("The demo's PostgreSQL server did not start.", f"see {self.log}")

    def url(self, dbname: str, user: str = "postgres", password: str | None = None) -> str:
        return f"postgresql://{user}:{password or self.password}@127.0.0.1:{self.port}/{dbname}"

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(AtlasError, subprocess.TimeoutExpired):
                self._run(
                    [
                        str(self.bindir / "pg_ctl"),
                        "-D",
                        str(self.data),
                        "-m",
                        "immediate",
                        "-w",
                        "stop",
                    ],
                    timeout=60,
                    own_session=True,
                )


def work_folder(keep: Path | None) -> Path:
    """`--keep DIR` (created if needed, left in place) or a new temporary folder."""
    if keep is not None:
        files.make_dirs(keep)
        return keep.resolve()
    return files.private_folder(None, "atlas-demo-")
