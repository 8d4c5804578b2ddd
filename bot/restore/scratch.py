"""A drill's scratch database: created for the drill, dropped after it, and dropped
later by housekeeping when a session the staging role may not end was still on it. The
same clean-up drops the new database of a refresh whose process died before its swap."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from bot.catalog import Catalog
from bot.config import Settings
from bot.errors import AtlasError
from bot.pg import Conn
from bot.records import DrillStatus, now
from bot.restore.databases import drop_database

log = logging.getLogger(__name__)


def scratch_name(drill_id: str) -> str:
    return f"atlas_drill_{drill_id.replace('-', '_')}"


class ScratchCreation:
    """A scratch database (or a refresh's new one) being created on a thread by `make`, so
    that the artifact's head can be read and checked meanwhile. `then` runs once it
    exists (the production guard on it)."""

    def __init__(self, make: Callable[[], None], then: Callable[[], object]) -> None:
        self.created = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(make, then), name="atlas-scratch", daemon=True
        )
        self._thread.start()

    def _run(self, make: Callable[[], None], then: Callable[[], object]) -> None:
        try:
            make()
            self.created = True
            then()
        except BaseException as exc:
            self._error = exc

    def wait(self) -> None:
        """Return once the database exists and passed `then`; raise what either raised."""
        self._thread.join()
        if self._error is not None:
            raise self._error


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
        """Drop scratch databases that earlier drills left behind (a drop that failed: a
        session of another role was still connected; or a drill whose process died), and
        the new databases of refreshes that died before their swap. Only databases this
        catalog created are touched."""
        dropped = self._clean_refreshes()
        for job in self.catalog.tables_restores_died():
            self.catalog.update_refresh(
                job.id,
                status=DrillStatus.INTERRUPTED,
                finished_at=now(),
                error=(
                    "Atlas stopped while it replaced these tables; pg_restore stopped with it, "
                    "so its transaction was rolled back: staging was not touched."
                ),
            )
            self.catalog.audit("atlas", "restore.interrupted", job.id)
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
                server = self._server_of(drill.database)
            except AtlasError as exc:
                log.warning("cannot clean up %s: %s", drill.scratch_db, exc)
                continue
            if self.drop(drill.id, server, drill.scratch_db):
                self.catalog.audit(
                    "atlas", "drill.scratch_dropped", drill.id, scratch_db=drill.scratch_db
                )
                dropped.append(drill.scratch_db)
        return dropped

    def _server_of(self, database: str) -> Conn:
        """Where the database's drills make their scratch databases."""
        target = self.settings.target(database)
        server = Conn.parse(target.staging_url or "", target.staging_setting)
        fleet_server = self.settings.servers.get(target.server or "")
        if fleet_server is not None:  # the scratch database is on its staging server
            from bot.fleet.discover import staging_server_conn

            server = staging_server_conn(fleet_server) or server
        return server

    def _clean_refreshes(self) -> list[str]:
        """Refreshes that died before their swap: recorded as interrupted, staging as it
        was, and the database each was restoring into dropped. One that died after its
        renames committed finds its new database gone (it is staging) and says so."""
        from bot.restore.refresh import settle_died

        dropped = []
        for job in self.catalog.refreshes_to_clean():
            assert job.new_db
            try:
                target = self.settings.target(job.database)
                server = Conn.parse(target.staging_url or "", target.staging_setting)
            except AtlasError as exc:
                log.warning("cannot clean up %s: %s", job.new_db, exc)
                continue
            if job.status == DrillStatus.RUNNING:
                settle_died(self.catalog, job, server)
            if drop_database(server, job.new_db) is None:
                self.catalog.update_refresh(job.id, new_db_dropped=True)
                self.catalog.audit("atlas", "restore.new_db_dropped", job.id, new_db=job.new_db)
                dropped.append(job.new_db)
        return dropped
