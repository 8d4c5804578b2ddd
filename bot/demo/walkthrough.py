"""The demo itself: the same `atlas` commands a team runs, against a throwaway shop.

Each step runs the real CLI as a child process on this terminal, so the progress bar,
the tables and the drill report look exactly as they will on a real database. Whatever
happens, Ctrl-C included, the server is stopped and the temporary folders removed.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
from psycopg import sql

from bot import files, interrupts
from bot.demo import sample
from bot.demo.cluster import Cluster, server_bindir, work_folder
from bot.errors import AtlasError

Say = Callable[[str], None]

# Settings of the user's shell that must not leak into the demo's commands (nor every
# PG* variable libpq reads, PGSERVICE included, which the demo drops from its own process).
FOREIGN = ("DATABASE_URL", "STAGING_DATABASE_URL")
STEPS = 7


def run(keep: Path | None, say: Say) -> int:
    """Run the demo; 0 when the drill passed. Raises AtlasError for what stops it early."""
    bindir = server_bindir(os.environ.get("ATLAS_PG_BINDIR"))
    for name in [k for k in os.environ if k.startswith("PG")]:
        del os.environ[name]  # the demo's server is the only one it talks to
    folder = work_folder(keep)
    pg_folder = files.private_folder(None, "atlas-demo-pg-")
    cluster = Cluster(bindir, pg_folder)
    started = time.monotonic()
    try:
        say(f"[1/{STEPS}] Starting a throwaway PostgreSQL ({bindir}) with a small shop in it …")
        cluster.start()
        env = _prepare(cluster, folder)
        steps: list[tuple[str, list[str]]] = [
            (
                "A snapshot, as before a risky migration:",
                ["snapshot", "--note", "before migration 0042"],
            ),
            ("What the catalog holds:", ["list"]),
            ("Read back and check end to end:", ["verify", "latest"]),
            ("A restore drill into a new scratch database, verified:", ["drill", "--yes"]),
            ("The backup checklist:", ["status", "--no-provider"]),
        ]
        drill_ok = True
        for n, (title, args) in enumerate(steps, start=2):
            say("")
            say(f"[{n}/{STEPS}] {title}  $ {shlex.join(['atlas', *args])}")
            # in a session of its own: Ctrl-C reaches the demo alone, which stops the
            # command, rather than a Python still starting up (a KeyboardInterrupt traceback)
            code = subprocess.run(
                [sys.executable, "-m", "bot.cli", *args], env=env, start_new_session=True
            ).returncode
            if args[0] == "drill":
                drill_ok = code == 0
            elif code != 0 and args[0] != "status":  # status exits 1 on a ❌, and says why
                raise AtlasError(f"`atlas {' '.join(args)}` failed in the demo (exit {code}).")
        say("")
        say(_explain(folder, env if keep is not None else None, time.monotonic() - started))
        return 0 if drill_ok else 1
    finally:
        with interrupts.held():  # a Ctrl-C here would leave the server running, unsaid
            cluster.stop()
            shutil.rmtree(pg_folder, ignore_errors=True)
            if keep is None:
                shutil.rmtree(folder, ignore_errors=True)


def _prepare(cluster: Cluster, folder: Path) -> dict[str, str]:
    """The shop, least-privilege roles, an encryption key and checks; the commands' env."""
    reader_pw, staging_pw = os.urandom(9).hex(), os.urandom(9).hex()
    with psycopg.connect(cluster.url("postgres"), autocommit=True) as conn:
        conn.execute("CREATE DATABASE shop")
        for role, password, flags in (
            ("atlas_reader", reader_pw, "LOGIN"),
            ("atlas_staging", staging_pw, "LOGIN CREATEDB"),
        ):
            conn.execute(
                sql.SQL("CREATE ROLE {} " + flags + " PASSWORD {}").format(
                    sql.Identifier(role), sql.Literal(password)
                )
            )
        conn.execute("GRANT pg_read_all_data TO atlas_reader")
        conn.execute("CREATE DATABASE shop_staging OWNER atlas_staging")
    with psycopg.connect(cluster.url("shop"), autocommit=True) as conn:
        conn.execute(sample.SCHEMA)
        conn.execute(sample.DATA)
    config = folder / "atlas.toml"
    files.replace_with(config, sample.CHECKS.encode())
    key = folder / "age.key"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATLAS_", "SLACK_"))}
    for name in FOREIGN:
        env.pop(name, None)
    env.update(
        DATABASE_URL=cluster.url("shop", "atlas_reader", reader_pw),
        STAGING_DATABASE_URL=cluster.url("shop_staging", "atlas_staging", staging_pw),
        ATLAS_DATABASE_NAME="shop",
        ATLAS_STORAGE=str(folder / "backups"),
        ATLAS_STATE=str(folder / "atlas.db"),
        ATLAS_CONFIG=str(config),
        ATLAS_ENCRYPTION_KEY_FILE=str(key),
        ATLAS_PG_BINDIR=str(cluster.bindir),
    )
    if not key.exists():
        made = subprocess.run(
            [sys.executable, "-m", "bot.cli", "keygen", "-o", str(key)],
            env=env,
            capture_output=True,
            text=True,
            start_new_session=True,
        )
        if made.returncode != 0:
            raise AtlasError(f"Could not make the demo's encryption key: {made.stderr.strip()}")
    return env


def _explain(folder: Path, kept: dict[str, str] | None, seconds: float) -> str:
    where = (
        "The demo's folders are gone again (`atlas demo --keep DIR` keeps them)."
        if kept is None
        else f"Everything is kept in {folder}. To look at it (the demo's server is gone):\n"
        + "".join(
            f"    export {name}={shlex.quote(kept[name])}\n"
            for name in ("ATLAS_STATE", "ATLAS_STORAGE", "ATLAS_ENCRYPTION_KEY_FILE")
        )
        + "    export ATLAS_DATABASE_NAME=shop\n"
        + f"    atlas list && atlas verify latest && atlas fetch latest -o {folder}/shop.dump"
    )
    return f"""[{STEPS}/{STEPS}] What just happened ({seconds:.0f} s)
  • Atlas dumped `shop` as a role that may only read (pg_read_all_data), compressed the
    stream with zstd, encrypted it with age, checksummed it and stored it, with a sidecar
    that lets anyone restore it by hand (see `Manual restore path` in README.md).
  • `verify` read it back and checked every checksum and the archive to its end.
  • The drill restored it as a role that may create databases and owns the staging one,
    into a database of its own, compared every table's row count, every sequence and
    extension with the snapshot, ran the team's app-flow checks, timed it all and dropped
    the database.
  {where}

Point Atlas at your own database (the roles: README.md, Privileges):
  export DATABASE_URL='postgresql://atlas_reader@HOST:5432/DBNAME'     # password in ~/.pgpass
  export STAGING_DATABASE_URL='postgresql://atlas_staging@STAGING:5432/DBNAME_staging'
  export ATLAS_STORAGE=s3://BUCKET/atlas                                # or a folder
  atlas doctor        # checks every setting, privilege and the storage, before a drill
  atlas snapshot && atlas drill
Then Slack: create the app from manifest.yml, and try `atlas console` first."""
