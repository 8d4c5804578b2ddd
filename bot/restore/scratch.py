"""A drill's scratch database: created for the drill, dropped after it, and dropped
later by housekeeping when a session the staging role may not end was still on it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg
from psycopg import sql

from bot.catalog import Catalog
from bot.config import Settings
from bot.errors import AtlasError
from bot.pg import Conn, first_line
from bot.records import DrillStatus, now

log = logging.getLogger(__name__)


def scratch_name(drill_id: str) -> str:
    return f"atlas_drill_{drill_id.replace('-', '_')}"


def create_database(server: Conn, name: str) -> None:
    with server.connect(autocommit=True) as c:
        try:
            c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.Error as exc:
            raise AtlasError(
                f"Cannot create the scratch database {name} on {server.describe()}: "
                f"{first_line(str(exc))}",
                "the staging user needs CREATEDB",
            ) from None


class ScratchCreation:
    """A scratch database being created on a thread, so that the artifact's head can be
    read and checked meanwhile. `then` runs once it exists (the production guard on it)."""

    def __init__(self, server: Conn, name: str, then: Callable[[], object]) -> None:
        self.created = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(server, name, then), name="atlas-scratch", daemon=True
        )
        self._thread.start()

    def _run(self, server: Conn, name: str, then: Callable[[], object]) -> None:
        try:
            create_database(server, name)
            self.created = True
            then()
        except BaseException as exc:
            self._error = exc

    def wait(self) -> None:
        """Return once the database exists and passed `then`; raise what either raised."""
        self._thread.join()
        if self._error is not None:
            raise self._error


def drop_database(server: Conn, name: str | None) -> str | None:
    """Drop a scratch database; None when it is gone, else why it is not.

    A staging role without superuser cannot use `WITH (FORCE)` while a session it may
    not signal is connected: an autovacuum worker, which a fresh restore attracts, or
    another role's session. So: end the role's own leftover sessions (pg_restore
    workers), then a plain DROP, which asks autovacuum to leave and waits for it; FORCE
    only as the last resort, for roles allowed to use it.
    """
    if not name:
        return None
    drop = sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name))
    try:
        with server.connect(autocommit=True) as c:
            c.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid() AND usename = current_user",
                [name],
            )
            try:
                c.execute(drop)  # the server waits up to 5 s for autovacuum to leave
                return None
            except psycopg.errors.ObjectInUse as exc:
                error = first_line(str(exc))
            try:
                c.execute(sql.SQL("{} WITH (FORCE)").format(drop))
                return None
            except psycopg.Error as exc:
                error = f"{error}; {first_line(str(exc))}"
    except (psycopg.Error, AtlasError) as exc:
        error = first_line(str(exc))
    log.error("could not drop scratch database %s: %s", name, error)
    return error


class Scratch:
    """Scratch databases owed a drop, recorded on their drill until they are gone."""

    def __init__(self, settings: Settings, catalog: Catalog) -> None:
        self.settings, self.catalog = settings, catalog

    def drop(self, drill_id: str, server: Conn, name: str, *, in_report: bool = False) -> bool:
        """Drop a drill's scratch database and record that it is gone; when it cannot be
        dropped now, record why (in the drill's report too, with `in_report`), so that
        housekeeping tries again."""
        error = drop_database(server, name)
        if error is None:
            self.catalog.update_drill(drill_id, scratch_dropped=True, cleanup_error=None)
            return True
        if in_report:
            problems = self.catalog.get_drill(drill_id).problems + [
                f"warning: the scratch database {name} could not be dropped yet ({error}); "
                "housekeeping drops it later"
            ]
            self.catalog.update_drill(drill_id, cleanup_error=error, problems=problems)
        else:
            self.catalog.update_drill(drill_id, cleanup_error=error)
        return False

    def clean_up(self) -> list[str]:
        """Drop scratch databases that earlier drills left behind: a drop that failed (a
        session of another role was still connected), or a drill whose process died.
        Only databases this catalog created are touched."""
        dropped = []
        for drill in self.catalog.drills_to_clean():
            assert drill.scratch_db
            if drill.status == DrillStatus.RUNNING:
                self.catalog.update_drill(
                    drill.id,
                    status=DrillStatus.INTERRUPTED,
                    finished_at=now(),
                    error="Atlas stopped while this drill ran",
                )
                self.catalog.audit("atlas", f"{drill.kind}.interrupted", drill.id)
            try:
                target = self.settings.target(drill.database)
                server = Conn.parse(target.staging_url or "", target.staging_setting)
                fleet_server = self.settings.servers.get(target.server or "")
                if fleet_server is not None:  # the scratch database is on its staging server
                    from bot.fleet.discover import staging_server_conn

                    server = staging_server_conn(fleet_server) or server
            except AtlasError as exc:
                log.warning("cannot clean up %s: %s", drill.scratch_db, exc)
                continue
            if self.drop(drill.id, server, drill.scratch_db):
                self.catalog.audit(
                    "atlas", "drill.scratch_dropped", drill.id, scratch_db=drill.scratch_db
                )
                dropped.append(drill.scratch_db)
        return dropped
