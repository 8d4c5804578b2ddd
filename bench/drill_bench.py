"""Benchmark `atlas drill` against a bare `pg_restore -j 2` of the same dump.

Run from the repository root (see bench/README.md):

    python -m bench.drill_bench                      # ~300 MB database, median of 3 runs
    python -m bench.drill_bench --repeat 1           # quick check
    python -m bench.drill_bench --json > drill.json

It starts a throwaway PostgreSQL cluster (tests.support.pg.PgCluster) and loads about N MB
with bench.snapshot_bench's loader. It then adds a primary key and a secondary index, so
that a restore has to build indexes too. It takes one `atlas snapshot` and fetches the
plain dump once with `atlas fetch`. Then it times, interleaved and --repeat times each:

    raw    pg_restore -j 2 --no-owner --no-acl --exit-on-error -d <fresh empty db> DUMP
           (CREATE/DROP DATABASE are outside the timing)
    drill  atlas drill ID --yes --json   (fetch + checksum + decompress, restore -j 2,
           verify against the manifest, drop; wall time around the whole process)

For the drill it also reports the phase times that atlas records itself (download_s,
restore_s, verify_s, total_s). The password only travels in DATABASE_URL,
STAGING_DATABASE_URL (atlas) and PGPASSWORD (pg_restore). It never appears in argv.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.snapshot_bench import (
    MB,
    REPO_ROOT,
    BenchError,
    Check,
    Context,
    Dataset,
    _fmt,
    _kb_to_mb,
    _last_json_object,
    _raise_interrupt,
    _ratio,
    _round,
    _run_atlas,
    _tail,
    _version,
    atlas_command,
    base_env,
    build_database,
    check_atlas_ready,
    format_check,
    log,
    run_processes,
    run_watched,
    strip_password,
)

if TYPE_CHECKING:
    from tests.support.pg import PgCluster

TARGET_DRILL_VS_RAW = 1.3
RESTORE_JOBS = 2  # the default ATLAS_RESTORE_JOBS; the raw pg_restore uses the same
PHASES = ("download_s", "restore_s", "verify_s", "total_s")

ADD_INDEXES = (
    "ALTER TABLE bench_events ADD PRIMARY KEY (id)",
    "CREATE INDEX bench_events_account_created_idx ON bench_events (account_id, created_at)",
)


@dataclass
class Series:
    """The timed runs of one variant."""

    label: str
    walls: list[float] = field(default_factory=list)
    phases: list[dict[str, float]] = field(default_factory=list)  # drill only
    peak_rss_kb: list[int] = field(default_factory=list)  # drill only: the atlas process
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.walls)

    @property
    def median_s(self) -> float | None:
        return statistics.median(self.walls) if self.ok else None

    def median_phase(self, name: str) -> float | None:
        values = [p[name] for p in self.phases if p.get(name) is not None]
        return statistics.median(values) if self.ok and values else None

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "ok": self.ok,
            "error": self.error,
            "median_wall_s": _round(self.median_s),
            "min_wall_s": _round(min(self.walls)) if self.walls else None,
            "median_phases_s": {k: _round(self.median_phase(k)) for k in PHASES}
            if self.phases
            else None,
            "peak_rss_mb": _kb_to_mb(max(self.peak_rss_kb)) if self.peak_rss_kb else None,
            "runs": [
                {"wall_s": round(w, 3), **({"phases_s": p} if p else {})}
                for w, p in zip(self.walls, self.phases or [{}] * len(self.walls), strict=False)
            ],
        }


# -- setup -----------------------------------------------------------------------------------


def add_indexes(cluster: PgCluster, dataset: Dataset) -> float:
    """Primary key plus one secondary index, so the restore builds indexes; returns seconds."""
    began = time.perf_counter()
    with cluster.connect(dataset.dbname) as conn:
        for stmt in ADD_INDEXES:
            conn.execute(stmt)
        conn.execute("VACUUM (ANALYZE) bench_events")
        conn.execute("CHECKPOINT")
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    assert row is not None
    dataset.db_size_bytes = int(row[0])
    return time.perf_counter() - began


def atlas_env(ctx: Context, storage: Path, staging_url: str) -> dict[str, str]:
    """The same environment bench.snapshot_bench gives atlas, plus staging and a work dir."""
    return {
        **base_env(),
        "DATABASE_URL": ctx.url,
        "STAGING_DATABASE_URL": staging_url,
        "ATLAS_STORAGE": str(storage),
        "ATLAS_STATE": str(ctx.work / "atlas.db"),
        "ATLAS_WORK_DIR": str(ctx.work),  # the drill's temp dump lands in our temp folder
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
        ),
    }


def atlas_fetch(ctx: Context, env: dict[str, str], snap_id: str, out: Path) -> None:
    err = ctx.work / "fetch.stderr"
    with open(err, "wb") as fh:
        proc = subprocess.run(
            [*ctx.atlas, "fetch", snap_id, "-o", str(out)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=fh,
            cwd=REPO_ROOT,
            timeout=ctx.timeout,
            check=False,
        )
    if proc.returncode != 0 or not out.is_file():
        raise BenchError(f"atlas fetch exited {proc.returncode}: {ctx.redact(_tail(err))}")


# -- the variants ----------------------------------------------------------------------------


def run_raw(ctx: Context, cluster: PgCluster, pg_restore: str, dump: Path, n: int) -> float:
    """pg_restore -j 2 into a fresh database; CREATE/DROP DATABASE are not timed."""
    dbname = f"raw_restore_{n}"
    cluster.create_database(dbname)
    err_path = ctx.work / "raw-pg_restore.stderr"
    argv = [
        pg_restore,
        f"-j{RESTORE_JOBS}",
        "--no-owner",
        "--no-acl",
        "--exit-on-error",
        "-d",
        strip_password(cluster.url(dbname)),
        str(dump),
    ]
    try:
        with open(err_path, "wb") as err:
            wall, codes = run_processes(
                lambda: [
                    subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=ctx.pg_env())
                ],
                ctx.timeout,
            )
        if codes != [0]:
            raise BenchError(f"pg_restore exited {codes[0]}: {ctx.redact(_tail(err_path))}")
        return wall
    finally:
        with contextlib.suppress(Exception):
            cluster.drop_database(dbname)


def run_drill(
    ctx: Context, env: dict[str, str], snap_id: str, n: int
) -> tuple[float, dict[str, float], int]:
    """`atlas drill ID --yes --json`: wall seconds, atlas's phase seconds, peak RSS (KiB)."""
    out_path, err_path = ctx.work / f"drill-{n}.stdout", ctx.work / f"drill-{n}.stderr"
    argv = [*ctx.atlas, "drill", snap_id, "--yes", "--json"]
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        wall, code, watch, _ = run_watched(
            argv, env=env, stdout=out, stderr=err, timeout=ctx.timeout, cwd=REPO_ROOT
        )
    doc = _last_json_object(_tail(out_path, 1_000_000))
    if code != 0 or doc.get("status") != "passed":
        detail = doc.get("error") or doc.get("problems") or _tail(err_path) or "no output"
        raise BenchError(
            f"atlas drill exited {code} ({doc.get('status')}): {ctx.redact(str(detail))}"
        )
    phases: dict[str, float] = {}
    for key in PHASES:
        with contextlib.suppress(TypeError, ValueError):
            phases[key] = float(doc[key])
    missing = [k for k in PHASES if k not in phases]
    if missing:
        raise BenchError(f"atlas drill --json output lacks {', '.join(missing)}")
    return wall, phases, watch.max_hwm_kb


# -- report ----------------------------------------------------------------------------------


def make_checks(raw: Series, drill: Series) -> list[Check]:
    return [
        Check(
            "atlas drill wall / raw pg_restore",
            _ratio(drill.median_s, raw.median_s),
            TARGET_DRILL_VS_RAW,
            "x",
        ),
        Check(
            "atlas drill total_s / raw pg_restore",
            _ratio(drill.median_phase("total_s"), raw.median_s),
            TARGET_DRILL_VS_RAW,
            "x",
        ),
        Check(
            "atlas restore_s / raw pg_restore",
            _ratio(drill.median_phase("restore_s"), raw.median_s),
            None,
            "x",
        ),
    ]


def format_report(
    dataset: Dataset,
    info: dict[str, Any],
    raw: Series,
    drill: Series,
    checks: list[Check],
    repeat: int,
    startup_s: float | None,
) -> str:
    lines = [
        "",
        f"== ~{dataset.requested_mb} MB: database {dataset.db_size_bytes / MB:.1f} MB on disk "
        f"with PK + 1 index, {dataset.rows:,} rows; snapshot {info['snapshot_bytes'] / MB:.1f} MB, "
        f"plain dump {info['dump_bytes'] / MB:.1f} MB; median of {repeat} run(s)",
        "",
        f"{'variant':<34} {'median s':>9} {'min s':>8} {'download':>9} {'restore':>8} "
        f"{'verify':>7} {'total_s':>8} {'RSS MB':>7}",
    ]
    for res in (raw, drill):
        if not res.ok:
            lines.append(f"{res.label:<34} FAILED: {res.error}")
            continue
        ph = [_fmt(res.median_phase(k)) for k in PHASES]
        rss = _kb_to_mb(max(res.peak_rss_kb)) if res.peak_rss_kb else None
        lines.append(
            f"{res.label:<34} {_fmt(res.median_s):>9} {min(res.walls):>8.2f} {ph[0]:>9} "
            f"{ph[1]:>8} {ph[2]:>7} {ph[3]:>8} {_fmt(rss, '.1f'):>7}"
        )
    if startup_s is not None:
        lines.append(
            f"  total_s is atlas's own clock (create db to verify); the rest of the wall time is "
            f"start-up, the scratch drop and exit (`atlas snapshot --help` alone: {startup_s:.2f}s)"
        )
    lines += ["", "targets:", *(format_check(c) for c in checks)]
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.drill_bench",
        description="Time atlas drill against a bare pg_restore -j 2 of the same dump.",
    )
    p.add_argument("--size-mb", type=int, default=300, help="database size in MB (default 300)")
    p.add_argument("--repeat", type=int, default=3, help="runs per variant; median is reported")
    p.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="untimed rounds of both variants first (default 1): a fresh cluster creates "
        "its WAL files during the first restores, which would tax whichever runs first",
    )
    p.add_argument(
        "--spool",
        action="store_true",
        help="time drills with ATLAS_RESTORE_SPOOL=true (plain dump to disk, then -j for data)",
    )
    p.add_argument("--json", action="store_true", help="print results as JSON on stdout")
    p.add_argument(
        "--timeout", type=float, default=None, help="seconds per run (default: scales with size)"
    )
    p.add_argument(
        "--strict", action="store_true", help="exit 1 when a target is missed, not only on errors"
    )
    args = p.parse_args(argv)
    if args.size_mb < 1:
        p.error("--size-mb must be positive")
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    if args.warmup < 0:
        p.error("--warmup must be 0 or more")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from tests.support.pg import PgCluster

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    atlas = atlas_command()
    raw = Series(f"raw: pg_restore -j {RESTORE_JOBS}")
    drill = Series("atlas drill, spooled (wall)" if args.spool else "atlas drill (wall)")
    meta: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "atlas_command": atlas,
        "repeat": args.repeat,
        "restore_jobs": RESTORE_JOBS,
    }
    try:
        problem, startup_s = check_atlas_ready(atlas)
        if problem:
            raise BenchError(f"atlas is not usable: {problem}")
        meta["atlas_startup_s"] = _round(startup_s)
        log(f"atlas: {' '.join(atlas)} (start-up alone: {startup_s:.2f}s)")
        with contextlib.ExitStack() as stack:
            work = Path(tempfile.mkdtemp(prefix="atlas-drill-bench-"))
            stack.callback(shutil.rmtree, work, ignore_errors=True)
            log("starting a throwaway PostgreSQL cluster ...")
            cluster = PgCluster(password_auth=True)
            cluster.start()
            stack.callback(cluster.stop)  # also removes every database, scratch ones included
            pg_restore = os.path.join(cluster.bindir, "pg_restore")
            meta["server"] = cluster.execute("postgres", "SHOW server_version")[0][0]
            meta["pg_restore"] = _version([pg_restore, "--version"])

            log(f"building a ~{args.size_mb} MB database ...")
            dataset = build_database(
                cluster, args.size_mb, workers=max(1, min(2, os.cpu_count() or 1))
            )
            index_s = add_indexes(cluster, dataset)
            log(
                f"loaded {dataset.rows:,} rows in {dataset.load_s:.1f}s, indexes in "
                f"{index_s:.1f}s: {dataset.db_size_bytes / MB:.1f} MB on disk"
            )
            staging = cluster.create_database("atlas_staging")
            ctx = Context(
                url=cluster.url(dataset.dbname),
                password=cluster.password or "",
                pg_dump="",
                zstd="",
                atlas=atlas,
                work=work,
                timeout=args.timeout or max(600.0, args.size_mb * 1.5),
            )
            storage = work / "atlas-storage"
            env = atlas_env(ctx, storage, cluster.url(staging))
            if args.spool:
                env["ATLAS_RESTORE_SPOOL"] = "true"

            log("atlas snapshot ...")
            snap_run, snap = _run_atlas(
                ctx, "snapshot", str(storage), {"STAGING_DATABASE_URL": cluster.url(staging)}
            )
            dump = work / "plain.dump"
            atlas_fetch(ctx, env, str(snap["id"]), dump)
            info = {
                "snapshot_id": snap["id"],
                "snapshot_bytes": snap_run.size_bytes,
                "snapshot_s": round(snap_run.wall_s, 3),
                "dump_bytes": dump.stat().st_size,
                "index_s": round(index_s, 3),
            }
            log(
                f"snapshot {snap['id']}: {snap_run.size_bytes / MB:.1f} MB in "
                f"{snap_run.wall_s:.1f}s; plain dump {info['dump_bytes'] / MB:.1f} MB"
            )

            for i in range(args.warmup):  # fills the server's WAL files and caches for both
                log(f"warm-up {i + 1}/{args.warmup} (not counted) ...")
                run_raw(ctx, cluster, pg_restore, dump, 1000 + i)
                run_drill(ctx, env, str(snap["id"]), 1000 + i)

            for i in range(args.repeat):
                if raw.error is None:
                    try:
                        wall = run_raw(ctx, cluster, pg_restore, dump, i)
                        raw.walls.append(wall)
                        log(f"run {i + 1}/{args.repeat} raw: {wall:.2f}s")
                    except BenchError as exc:
                        raw.error = str(exc)
                        log(f"run {i + 1}/{args.repeat} raw: FAILED: {exc}")
                if drill.error is None:
                    try:
                        wall, phases, rss = run_drill(ctx, env, str(snap["id"]), i)
                        drill.walls.append(wall)
                        drill.phases.append(phases)
                        drill.peak_rss_kb.append(rss)
                        shown = ", ".join(f"{k} {v:.2f}" for k, v in phases.items())
                        log(f"run {i + 1}/{args.repeat} drill: {wall:.2f}s wall ({shown})")
                    except BenchError as exc:
                        drill.error = str(exc)
                        log(f"run {i + 1}/{args.repeat} drill: FAILED: {exc}")
            checks = make_checks(raw, drill)
            report = format_report(dataset, info, raw, drill, checks, args.repeat, startup_s)
            print(report, file=sys.stderr if args.json else sys.stdout, flush=True)
            log("cleaning up ...")
    except KeyboardInterrupt:
        log("interrupted; cluster and temp files were cleaned up")
        return 130
    except BenchError as exc:
        log(f"error: {exc}")
        return 1

    if args.json:
        doc = {
            "meta": meta,
            "dataset": {
                "requested_mb": dataset.requested_mb,
                "rows": dataset.rows,
                "db_size_bytes": dataset.db_size_bytes,
                "load_s": round(dataset.load_s, 3),
                **info,
            },
            "variants": {"raw": raw.to_json(), "drill": drill.to_json()},
            "checks": [c.to_json() for c in checks],
        }
        print(json.dumps(doc, indent=2))
    missed = any(c.passed is False for c in checks)
    return 1 if not (raw.ok and drill.ok) or (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
