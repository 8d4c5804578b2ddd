"""How long `atlas report` takes, and how much memory, on a catalog with a year of history.

Builds a SQLite catalog (no PostgreSQL needed) holding, for each of `--databases`
databases, a year of daily snapshots (one in 20 failed) and a drill each month, through
the catalog's own API; then runs `atlas report` for the year in each format, interleaved,
`--repeat` rounds, and prints the median wall time with its range, the peak RSS, and the
file size.

    python -m bench.report_bench                      # 50 databases, 3 rounds
    python -m bench.report_bench --databases 500 --repeat 1
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.catalog import open_catalog
from bot.records import Drill, DrillStatus, Snapshot, SnapshotStatus

REPO = Path(__file__).resolve().parent.parent
YEAR = 2025


def fill(state: Path, databases: int) -> int:
    catalog = open_catalog(str(state))
    start = datetime(YEAR, 1, 1, 3, tzinfo=UTC)
    made = 0
    for d in range(databases):
        name = f"db{d:03d}"
        for day in range(365):
            at = start + timedelta(days=day)
            bad = (day + d) % 20 == 0
            catalog.add_snapshot(
                Snapshot(
                    id=f"{at:%Y%m%d-%H%M%S}-{d:04x}",
                    database=name,
                    dbname=name,
                    status=SnapshotStatus.FAILED if bad else SnapshotStatus.OK,
                    started_at=at.isoformat(timespec="milliseconds"),
                    finished_at=(at + timedelta(seconds=40)).isoformat(timespec="milliseconds"),
                    duration_s=40.0 + day % 7,
                    size_bytes=10_000_000 + day * 1000,
                    manifest={"tables": {f"public.t{t}": 1000 for t in range(20)}},
                    source="schedule",
                )
            )
            made += 1
            if day % 30 == 10:
                snap_id = f"{at - timedelta(days=1):%Y%m%d-%H%M%S}-{d:04x}"
                catalog.add_job(
                    Drill(
                        id=f"d-{at:%Y%m%d}-{d:04x}",
                        snapshot_id=snap_id,
                        database=name,
                        status=DrillStatus.PASSED,
                        started_at=(at + timedelta(hours=7)).isoformat(timespec="milliseconds"),
                        total_s=120.0 + day,
                        verify_s=3.0,
                        approved_by=["U_ANN"],
                        requested_by="U_REQ",
                    )
                )
    return made


def run(env: dict[str, str], fmt: str, out: Path) -> tuple[float, int]:
    """(wall seconds, peak RSS in KiB) of one `atlas report`."""
    cmd = [sys.executable, "-m", "bot.cli", "report", "--since", f"{YEAR}-01-01"]
    cmd += ["--until", f"{YEAR}-12-31", "-o", str(out / f"r.{fmt}")]
    began = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    took = time.monotonic() - began
    if status != 0:
        raise SystemExit(
            f"atlas report failed: {proc.stderr.read().decode() if proc.stderr else ''}"
        )
    return took, usage.ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--databases", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        made = fill(folder / "atlas.db", args.databases)
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": str(REPO),
            "ATLAS_STATE": str(folder / "atlas.db"),
            "ATLAS_STORAGE": str(folder / "backups"),
            "ATLAS_SNAPSHOT_SCHEDULE": "0 3 * * *",
        }
        times: dict[str, list[float]] = {f: [] for f in ("html", "json", "csv")}
        rss: dict[str, int] = dict.fromkeys(times, 0)
        for _ in range(args.repeat):
            for fmt in times:  # interleaved
                took, peak = run(env, fmt, folder)
                times[fmt].append(took)
                rss[fmt] = max(rss[fmt], peak)
        print(f"{args.databases} databases, {made} snapshots, {args.repeat} rounds")
        print(f"{'format':<6} {'median s':>9} {'range s':>13} {'peak RSS MB':>12} {'file MB':>8}")
        for fmt, values in times.items():
            size = (folder / f"r.{fmt}").stat().st_size / 1e6
            spread = f"{min(values):.2f}-{max(values):.2f}"
            median = statistics.median(values)
            print(f"{fmt:<6} {median:>9.2f} {spread:>13} {rss[fmt] / 1024:>12.0f} {size:>8.1f}")


if __name__ == "__main__":
    main()
