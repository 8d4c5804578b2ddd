"""How long does a fleet take? Prints numbers; it is not a test.

    python -m bench.fleet_bench                      # 50 databases, parallel 1 and 2
    python -m bench.fleet_bench --databases 20 --parallel 1,2,4 --rows 2000

It starts a throwaway PostgreSQL cluster, creates N small application databases (the test
suite's sample schema: users, orders with a foreign key, a sequence, extensions, a view),
and times `atlas snapshot --all` with ATLAS_DATABASES selecting them, for each
ATLAS_MAX_PARALLEL given, to a local folder. It reports the wall time, the time per
database, atlas's peak memory, and, from those, what 500 such databases would take.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.snapshot_bench import REPO_ROOT, atlas_command, base_env, log, run_watched


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fleet_bench", description=__doc__)
    p.add_argument("--databases", type=int, default=50)
    p.add_argument("--rows", type=int, default=1000, help="users per database (orders: 2x)")
    p.add_argument("--parallel", default="1,2", help="comma-separated ATLAS_MAX_PARALLEL values")
    p.add_argument("--repeat", type=int, default=1)
    args = p.parse_args(argv)
    sys.path.insert(0, str(REPO_ROOT))
    from tests.support.pg import PgCluster, fill_sample

    atlas = atlas_command()
    results = []
    with PgCluster() as cluster, tempfile.TemporaryDirectory(prefix="atlas-fleet-") as tmp:
        log(f"creating {args.databases} databases of {args.rows} users each ...")
        began = time.perf_counter()
        for i in range(args.databases):
            name = f"fleet_{i:03d}"
            cluster.create_database(name)
            fill_sample(cluster.url(name), rows=args.rows)
        log(f"created in {time.perf_counter() - began:.1f}s")
        for parallel in [int(x) for x in args.parallel.split(",")]:
            walls, rss = [], []
            for n in range(args.repeat):
                folder = Path(tmp) / f"p{parallel}-{n}"
                env = {
                    **base_env(),
                    "DATABASE_URL": cluster.url("postgres"),
                    "ATLAS_DATABASES": "fleet_*",
                    "ATLAS_MAX_PARALLEL": str(parallel),
                    "ATLAS_STATE": str(folder / "atlas.db"),
                    "ATLAS_STORAGE": str(folder / "backups"),
                }
                folder.mkdir()
                out, err = folder / "stdout", folder / "stderr"
                with open(out, "wb") as o, open(err, "wb") as e:
                    wall, code, _, maxrss = run_watched(
                        [*atlas, "snapshot", "--all", "--json"],
                        env=env,
                        stdout=o,
                        stderr=e,
                        timeout=3600,
                        cwd=REPO_ROOT,
                    )
                doc = json.loads(out.read_text())
                if code != 0 or len(doc["snapshots"]) != args.databases:
                    raise SystemExit(f"snapshot --all failed ({code}): {err.read_text()[-2000:]}")
                walls.append(wall)
                rss.append(maxrss / 1024)
                stored = sum(s["size_bytes"] for s in doc["snapshots"])
                log(f"parallel {parallel}: {wall:.1f}s, {stored / 1e6:.1f} MB stored")
            median = statistics.median(walls)
            results.append(
                {
                    "parallel": parallel,
                    "wall_s": round(median, 2),
                    "range_s": [round(min(walls), 2), round(max(walls), 2)],
                    "per_database_s": round(median / args.databases, 3),
                    "peak_rss_mb": round(max(rss), 1),
                    "for_500_min": round(median / args.databases * 500 / 60, 1),
                }
            )
    print(f"{args.databases} databases of {args.rows} users; median of {args.repeat}")
    print(f"{'parallel':>8} {'wall s':>8} {'range':>13} {'s/db':>6} {'RSS MB':>7} {'500 dbs':>9}")
    for r in results:
        lo, hi = r["range_s"]
        print(
            f"{r['parallel']:>8} {r['wall_s']:>8.1f} {lo:>6.1f}-{hi:<6.1f} "
            f"{r['per_database_s']:>6.2f} {r['peak_rss_mb']:>7.1f} {r['for_500_min']:>6.1f} min"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
