"""The operations of the feature matrix: how each is asked for at each entry point, and what
must be true afterwards. What an entry point doesn't offer is listed in OFFERED."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bot.records import DrillStatus, Kind, SnapshotStatus
from tests.matrix.world import ROWS, World, rows

OK = r"(?::white_check_mark:|✅)"


@dataclass
class Case:
    """What an operation needs from its world, prepared before it runs."""

    snap: str = ""  # the snapshot it acts on
    aged: str = ""  # prune: a snapshot past retention
    before: set[str] = field(default_factory=set)  # snapshot ids there were before it
    env: dict[str, str] = field(default_factory=dict)  # rescan: the environment of a new catalog


@dataclass(frozen=True)
class Operation:
    name: str
    cli: Callable[[World, Case], list[str]]
    chat: Callable[[World, Case], str] | None  # `/atlas …` text, where Slack offers it
    done: str  # a regex for the answer that says it is done, in Slack or the console
    check: Callable[[World, Case, str], None]  # the state afterwards, and what was said
    approval: bool = False
    posts: bool = False  # leaves its verdict in the channel, from wherever it was asked


def _aim(w: World) -> list[str]:
    return ["--db", w.target] if w.topology == "fleet" else []


def _db(w: World) -> str:
    return f" db:{w.target}" if w.topology == "fleet" else ""


def prepare(op: str, w: World) -> Case:
    case = Case(snap=w.snapshots()[0].id, before={s.id for s in w.snapshots(None)})
    if op == "prune":
        newer = w.take()
        w.catalog().update_snapshot(
            case.snap,
            started_at=(datetime.now(UTC) - timedelta(days=30)).isoformat(),
            finished_at=(datetime.now(UTC) - timedelta(days=30)).isoformat(),
        )
        case.aged, case.snap = case.snap, newer.id
    if op == "rescan":  # the catalog is lost; a new, empty one takes its place
        case.env = dict(w.env, ATLAS_STATE=_new_state(w))
    return case


def _new_state(w: World) -> str:
    if w.env["ATLAS_STATE"].startswith("postgresql"):
        return w.catalogs.new_url()[1]
    return str(w.tmp / "rebuilt.db")


# -- checks -----------------------------------------------------------------------------------


def _snapshotted(w: World, case: Case, said: str) -> None:
    new = [s for s in w.snapshots() if s.id not in case.before]
    assert len(new) >= 1, (said, w.snapshots(None))
    assert new[0].database == w.target and new[0].sha256


def _listed(w: World, case: Case, said: str) -> None:
    assert case.snap in said, said


def _shown(w: World, case: Case, said: str) -> None:
    assert case.snap in said and w.target in said and "sha256" in said, said


def _verified(w: World, case: Case, said: str) -> None:
    assert re.search(rf"{OK} Snapshot `{case.snap}` verified", said) or re.search(
        rf"^ok {case.snap}: .* sha256 [0-9a-f]{{64}}", said, re.M
    ), said


def _fetched(w: World, case: Case, said: str) -> None:
    out = w.tmp / "fetched.dump"
    assert out.stat().st_mode & 0o777 == 0o600
    listing = subprocess.run(
        ["pg_restore", "-l", str(out)], capture_output=True, text=True, check=False
    )
    assert listing.returncode == 0 and "TABLE DATA public orders" in listing.stdout, listing


def _drilled(kind: Kind) -> Callable[[World, Case, str], None]:
    def check(w: World, case: Case, said: str) -> None:
        [job] = [d for d in w.catalog().list_jobs(limit=20) if d.kind == kind]
        assert job.status == DrillStatus.PASSED and job.database == w.target, job
        assert job.snapshot_id == case.snap, job
        if kind == Kind.RESTORE:
            assert rows(w.staging_url) == rows(w.production) == 2 * ROWS
        else:
            assert job.scratch_dropped, job

    return check


def _status(w: World, case: Case, said: str) -> None:
    assert w.target in said or "Atlas status" in said, said
    assert case.snap in said or "restore drill" in said.lower(), said


def _pruned(w: World, case: Case, said: str) -> None:
    status = {s.id: s.status for s in w.snapshots(None)}
    assert status[case.aged] == SnapshotStatus.DELETED, (said, status)
    assert status[case.snap] == SnapshotStatus.OK, (said, status)


def _rescanned(w: World, case: Case, said: str) -> None:
    from bot.catalog import open_catalog

    found = open_catalog(case.env["ATLAS_STATE"]).list_snapshots(database=w.target, limit=10)
    assert case.snap in {s.id for s in found}, (said, found)


OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        Operation(
            "snapshot",
            lambda w, c: ["snapshot", *_aim(w), "--note", "before migration 7"],
            lambda w, c: f"snapshot{_db(w)} before migration 7",
            rf"{OK} Snapshot `\S+` of \S+ is stored and verified",
            _snapshotted,
            posts=True,
        ),
        Operation(
            "list", lambda w, c: ["list"], lambda w, c: "list", r"Snapshot|snapshot", _listed
        ),
        Operation("show", lambda w, c: ["show", c.snap], None, "", _shown),
        Operation(
            "verify",
            lambda w, c: ["verify", c.snap],
            lambda w, c: f"verify {c.snap}",
            rf"{OK} Snapshot `\S+` verified",
            _verified,
        ),
        Operation(
            "fetch",
            lambda w, c: ["fetch", c.snap, "-o", str(w.tmp / "fetched.dump")],
            None,
            "",
            _fetched,
        ),
        Operation(
            "drill",
            lambda w, c: ["drill", "--yes", *_aim(w), c.snap],
            lambda w, c: f"drill {c.snap}{_db(w)}",
            rf"{OK} Restore drill `\S+` passed",
            _drilled(Kind.DRILL),
            approval=True,
            posts=True,
        ),
        Operation(
            "refresh",
            lambda w, c: ["restore", "--yes", c.snap],
            lambda w, c: f"restore {c.snap}",
            rf"{OK} \S.* `\S+` passed",
            _drilled(Kind.RESTORE),
            approval=True,
            posts=True,
        ),
        Operation(
            "status", lambda w, c: ["status"], lambda w, c: "status", r"Atlas status", _status
        ),
        Operation("prune", lambda w, c: ["prune"], None, "", _pruned),
        Operation("rescan", lambda w, c: ["rescan"], None, "", _rescanned),
    )
}

ENTRIES = ("cli", "slack", "console", "schedule")
TOPOLOGIES = ("one", "fleet", "replicas")
STORAGES = ("folder", "s3", "encrypted")

# What each entry point offers; the rest is the CLI's (and Slack says so).
OFFERED = {
    "cli": set(OPERATIONS),
    "slack": {"snapshot", "list", "verify", "drill", "refresh", "status"},
    "console": {"snapshot", "list", "verify", "drill", "refresh", "status", "prune"},
    "schedule": {"snapshot", "prune", "status"},
}


def allowed(case: tuple[str, ...]) -> bool:
    op, entry, topology, _storage = case
    # the replicas' snapshot schedule is a cron minute away; their schedule is tested
    # through the housekeeping a restart runs (prune, reminders), the snapshot job on the
    # other topologies
    return op in OFFERED[entry] and not (
        entry == "schedule" and op == "snapshot" and topology == "replicas"
    )
