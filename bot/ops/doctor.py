"""`atlas doctor`: check a configuration before relying on it.

Every check does the real thing where it can (connects, writes and reads an object,
writes the catalog) and says what to fix. It never prints a secret: every message passes
the redaction step like any other error.
"""

from __future__ import annotations

import contextlib
import functools
import secrets
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.errors import AtlasError
from bot.ops.findings import FAIL, ICONS, OK, WARN, Check, fail, ok, warn
from bot.pg import Conn, find_tool, server_info
from bot.redaction import redact
from bot.words import count

if TYPE_CHECKING:
    from bot.config import DatabaseTarget, Settings
    from bot.services import Services
    from bot.store import Storage, StoredObject


def run_all(services: Services, *, slack: bool = True) -> list[Check]:
    """Every check, in the order a person would fix them."""
    checks: list[Check] = []
    for name, step in _steps(services, slack):
        try:
            checks.extend(step())
        except AtlasError as exc:
            checks.append(fail(name, str(exc)))
        except Exception as exc:  # a check that breaks is a finding, not a crash
            checks.append(fail(name, redact(f"{type(exc).__name__}: {exc}")))
    return [Check(c.name, c.status, redact(c.detail)) for c in checks]


def _steps(services: Services, slack: bool) -> Iterator[tuple[str, Callable[[], list[Check]]]]:
    st = services.settings
    yield "catalog", lambda: catalog_checks(services)
    yield "storage", lambda: storage_checks(services)
    for name in st.copies:
        yield f"copy {name}", functools.partial(copy_checks, services, name)
    yield "encryption", lambda: [key_check(services)]
    yield "schedule", lambda: [schedule_check(st)]
    if st.servers:  # lists them: the databases they have are checked below
        yield "servers", lambda: fleet_checks(services)
    if not st.databases:
        yield (
            "databases",
            lambda: [
                fail("databases", "none configured: set DATABASE_URL or list them in ATLAS_CONFIG")
            ],
        )
    for target in st.databases.values():
        yield f"database {target.name}", functools.partial(database_checks, st, target)
        yield f"staging {target.name}", functools.partial(staging_checks, st, target)
    yield "kept staging", lambda: kept_checks(services)
    if slack and st.slack_bot_token is not None:
        from bot.slack.checks import slack_checks

        yield "slack", lambda: slack_checks(services)


def worst(checks: list[Check]) -> str:
    statuses = {c.status for c in checks}
    return FAIL if FAIL in statuses else WARN if WARN in statuses else OK


# -- the checks ------------------------------------------------------------------------------


def fleet_checks(services: Services) -> list[Check]:
    """Each server listed, and what its selection takes from it."""
    fleet = services.fleets.listed()
    out = []
    for scan in fleet.scans:
        name = f"server {scan.server}"
        if scan.error:
            out.append(fail(name, f"{scan.error}: its databases cannot be found"))
            continue
        taken = sorted(scan.targets)
        shown = ", ".join(taken[:8]) + (f" and {len(taken) - 8} more" if len(taken) > 8 else "")
        selection = services.settings.servers[scan.server].selection.describe()
        if not taken:
            out.append(warn(name, f"'{selection}' matches none of its databases"))
        else:
            out.append(ok(name, f"'{selection}' takes {len(taken)}: {shown}"))
        out.extend(warn(name, msg) for msg in scan.skipped)
    for gone in fleet.gone:
        out.append(warn(f"database {gone}", "gone from its server; snapshots kept under retention"))
    return out


def catalog_checks(services: Services) -> list[Check]:
    """A real write: a lease taken and released; and who on the host can read a file."""
    catalog = services.catalog
    owner = f"doctor-{secrets.token_hex(3)}"
    if not catalog.acquire_lease("doctor", owner, 5):
        return [warn("catalog", "another `atlas doctor` is writing it right now; run again")]
    catalog.release_lease("doctor", owner)
    from bot.catalog import is_url

    state = services.settings.state
    where = str(state)
    if is_url(state):
        from bot.errors import Refused
        from bot.restore.guard import refuse_catalog_among_targets

        where = f"PostgreSQL {Conn.parse(str(state), 'ATLAS_STATE').describe()}"
        try:
            refuse_catalog_among_targets(services.settings)
        except Refused as exc:
            return [fail("catalog", str(exc))]
    found = ok("catalog", f"{where} is writable (schema version {catalog.schema_version()})")
    if is_url(state):
        return [found]
    return [found, _host_access("catalog file", Path(state), fatal=False)]


def _host_access(name: str, path: Path, *, fatal: bool) -> Check:
    """Whether every user of the host can read what Atlas keeps at `path`."""
    from bot.files import others_can_read

    if not others_can_read(path):
        return ok(name, f"{path} is private to its owner and group")
    detail = (
        f"{path} can be read by every user of this host (mode "
        f"{path.stat().st_mode & 0o777:o}): chmod o-rwx it (Atlas makes new ones 0700/0600; "
        "ATLAS_FILE_GROUP lets one group read them)"
    )
    return fail(name, detail) if fatal else warn(name, detail)


def _round_trip(name: str, storage: Storage) -> tuple[Check | None, StoredObject | None]:
    """Write, read back and delete a small object, as a snapshot's sidecar is written:
    (a failure, or None and the object's head as the store reported it)."""
    key = f".atlas-doctor-{secrets.token_hex(6)}.txt"  # no folder left behind
    body = f"atlas doctor {datetime.now(UTC).isoformat()}".encode()
    where = storage.location(key)
    storage.put_bytes(key, body)
    try:
        back = b"".join(storage.read(key))
        if back != body:
            return fail(name, f"{where} read back different bytes than were written"), None
        head = storage.stat(key)
    finally:
        with contextlib.suppress(AtlasError):
            storage.delete(key)
    if storage.stat(key) is not None:
        return fail(name, f"{where} could not be deleted; retention could not prune"), None
    return None, head


def copy_checks(services: Services, name: str) -> list[Check]:
    """A destination of ATLAS_COPIES: the same round trip as storage, and its standing."""
    from bot.ops import copies

    label = f"copy {name}"
    failed, _ = _round_trip(label, services.copier.storage(name))
    if failed is not None:
        return [failed]
    dest = services.settings.copies[name]
    standing = next(s for s in copies.standings(services) if s.destination == name)
    detail = f"{dest.url}: write, read back and delete work"
    if standing.complete:
        return [ok(label, f"{detail}; every copy made")]
    waiting = f"{count(standing.unfinished, 'copy')} still to make; `atlas copy` makes them now"
    return [(fail if standing.down else warn)(label, f"{detail}; {waiting}")]


def storage_checks(services: Services) -> list[Check]:
    """Write, read back and delete a small object, as a snapshot's sidecar is written."""
    st = services.settings
    storage = services.store.get()
    failed, head = _round_trip("storage", storage)
    if failed is not None:
        return [failed]
    checks = [ok("storage", f"{st.storage}: write, read back and delete work")]
    from bot.store.local import LocalStorage

    if isinstance(storage, LocalStorage):
        checks.append(_host_access("storage folder", storage.root, fatal=True))
    if st.s3_sse:
        applied = head.sse if head else None
        if applied != st.s3_sse:
            checks.append(
                fail(
                    "storage encryption",
                    f"ATLAS_S3_SSE={st.s3_sse}, but S3 stored the test object with "
                    f"{applied or 'no'} server-side encryption; check the bucket policy",
                )
            )
        else:
            checks.append(ok("storage encryption", f"S3 applies {applied} to uploads"))
    return checks


def key_check(services: Services) -> Check:
    identity = services.keys.current()
    if identity is None:
        return warn(
            "encryption",
            "no key: artifacts are stored unencrypted (`atlas keygen -o FILE`, then set "
            "ATLAS_ENCRYPTION_KEY_FILE)",
        )
    retired = f", {count(identity.retired, 'retired key')} for reading" if identity.retired else ""
    return ok("encryption", f"new artifacts are encrypted to {identity.recipient}{retired}")


def schedule_check(st: Settings) -> Check:
    if not st.snapshot_schedule:
        return warn(
            "schedule", "no scheduled snapshots (set ATLAS_SNAPSHOT_SCHEDULE, e.g. '0 3 * * *')"
        )
    from apscheduler.triggers.cron import CronTrigger

    trigger = CronTrigger.from_crontab(st.snapshot_schedule, timezone=st.timezone)
    nxt = trigger.get_next_fire_time(None, datetime.now(UTC))
    when = f"{nxt:%Y-%m-%d %H:%M %Z}" if nxt else "never"
    return ok("schedule", f"`{st.snapshot_schedule}` in {st.timezone}: next run {when}")


READABLE = """
SELECT
  (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg_toast%%'),
  (SELECT array_agg(quote_ident(n.nspname) || '.' || quote_ident(c.relname) ORDER BY 1)
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'm', 'S') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg_toast%%'
      AND NOT (CASE WHEN c.relkind = 'S' THEN has_sequence_privilege(c.oid, 'SELECT')
                    ELSE has_table_privilege(c.oid, 'SELECT') END
               AND has_schema_privilege(n.oid, 'USAGE')))
"""


def database_checks(st: Settings, target: DatabaseTarget) -> list[Check]:
    name = f"database {target.name}"
    conn = Conn.parse(target.url, target.url_setting)
    with conn.connect(autocommit=True) as c:
        info = server_info(c)
        row = c.execute(READABLE).fetchone()
    assert row is not None
    tables, unreadable = int(row[0]), list(row[1] or [])
    checks = []
    if unreadable:
        shown = ", ".join(unreadable[:5]) + (" …" if len(unreadable) > 5 else "")
        checks.append(
            fail(
                name,
                f"{conn.describe()} is reachable, but {count(len(unreadable), 'relation')} cannot be "
                f"read, so pg_dump would fail: {shown}; GRANT pg_read_all_data TO the role",
            )
        )
    else:
        checks.append(
            ok(name, f"{conn.describe()}: PostgreSQL {info.version}, {_readable(tables)}")
        )
    for tool in ("pg_dump", "pg_restore"):
        path, version = find_tool(tool, info.major, st.pg_bindir)
        checks.append(ok(f"{tool} for {target.name}", f"{path} {version} (server {info.major})"))
    return checks


PRIVILEGES = """
SELECT r.rolsuper, r.rolcreatedb, pg_has_role(current_user, d.datdba, 'MEMBER'),
       pg_has_role(current_user, 'pg_signal_backend', 'MEMBER'),
       EXISTS (SELECT 1 FROM pg_database m WHERE m.datname IN ('postgres', 'template1')
               AND m.datname <> current_database() AND m.datallowconn
               AND has_database_privilege(m.oid, 'CONNECT')),
       current_user, current_database(), pg_get_userbyid(d.datdba)
FROM pg_roles r, pg_database d
WHERE r.rolname = current_user AND d.datname = current_database()
"""


def _readable(tables: int) -> str:
    return "its one table readable" if tables == 1 else f"all {count(tables, 'table')} readable"


def staging_checks(st: Settings, target: DatabaseTarget) -> list[Check]:
    name = f"staging {target.name}"
    if target.staging_problem:
        return [fail(name, target.staging_problem)]
    if not target.staging_url:
        return [warn(name, "no STAGING_DATABASE_URL: drills and restores cannot run")]
    from bot.restore.guard import guard_not_production

    staging = Conn.parse(target.staging_url, target.staging_setting)
    production = Conn.parse(target.url, target.url_setting)
    with staging.connect(autocommit=True) as c:
        row = c.execute(PRIVILEGES).fetchone()
    assert row is not None
    superuser, createdb, owner, signal, maintenance = (bool(v) for v in row[:5])
    role, database, owned_by = (str(v) for v in row[5:])
    guard_not_production(production, staging)
    server = staging.describe().rsplit("/", 1)[0]
    who = f"as {role} ({target.staging_setting})"
    checks = [ok(name, f"{staging.describe()} is reachable and is not production")]
    if superuser or createdb:
        detail = f"create and drop scratch databases on {server} {who}, which has CREATEDB"
        checks.append(ok(f"drills of {target.name}", detail))
    else:
        detail = (
            f"cannot make their scratch database on {server} {who}, which lacks CREATEDB: "
            f"ALTER ROLE {role} CREATEDB"
        )
        checks.append(fail(f"drills of {target.name}", detail))
    checks.append(
        _refresh_check(
            st, target, role, server, database, owned_by,
            superuser=superuser, createdb=createdb, owner=owner,
            signal=signal, maintenance=maintenance,
        )
    )  # fmt: skip
    return checks


def _refresh_check(
    st: Settings,
    target: DatabaseTarget,
    role: str,
    server: str,
    database: str,
    owned_by: str,
    **can: bool,
) -> Check:
    """A refresh builds a new database beside staging (CREATEDB), renames both from
    `postgres` or `template1` (CONNECT there, and membership in staging's owner), and may
    end sessions on staging (its own roles', or any with pg_signal_backend)."""
    who = f"as {role} ({target.staging_setting})"
    missing = []
    if not (can["superuser"] or can["createdb"]):
        missing.append(f"ALTER ROLE {role} CREATEDB")
    if not (can["superuser"] or can["owner"]):
        missing.append(
            f"{owned_by} owns {database}: ALTER DATABASE {database} OWNER TO {role}, or name "
            f"a staging database {role} owns in {target.staging_setting}"
        )
    if not can["maintenance"]:
        missing.append(f"GRANT CONNECT ON DATABASE postgres TO {role}")
    title = f"refreshes of {target.name}"
    if missing:
        return warn(
            title, f"cannot swap a new {database} in on {server} {who}: " + "; ".join(missing)
        )
    detail = (
        f"build a new database beside {database} on {server} {who} and swap it in "
        f"(CREATEDB, and it owns {database})"
    )
    if st.swap_sessions == "end" and not (can["superuser"] or can["signal"]):
        detail += (
            f"; it can end only its own roles' sessions on {database} for the swap "
            f"(GRANT pg_signal_backend TO {role} to end others')"
        )
    return ok(title, detail)


def kept_checks(services: Services) -> list[Check]:
    """What refreshes kept for undo, and the space it takes."""
    from bot.ops import kept

    return [ok(f"kept staging of {k.database}", k.describe()) for k in kept.gather(services)]


def render(checks: list[Check]) -> str:
    return "\n".join(f"{ICONS[c.status]} {c.name}: {c.detail}" for c in checks)


def to_json(checks: list[Check]) -> dict[str, Any]:
    return {"ok": worst(checks) != FAIL, "checks": [c.to_json() for c in checks]}


__all__ = ["Check", "render", "run_all", "to_json", "worst"]
