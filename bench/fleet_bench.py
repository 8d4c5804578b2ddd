"""How long does a fleet take, against a shell loop of the raw tools? Prints numbers; it is
not a test.

    python -m bench.fleet_bench                      # 50 databases, parallel 1 and 2
    python -m bench.fleet_bench --databases 100 --rows 20000 --repeat 5

It starts a throwaway PostgreSQL cluster, creates N small application databases (the test
suite's sample schema: users, orders with a foreign key, a sequence, extensions, a view),
then times, in interleaved rounds (each round in a new random order):

- `raw`: a serial loop of `pg_dump -Fc -Z0 --no-owner --no-acl URL | zstd -3 -T0 > FILE`
  per database (two Popens, no shell; the password in PGPASSWORD), what a cron script does;
- `atlas pN`: `atlas snapshot --all` with ATLAS_DATABASES selecting them, for each
  ATLAS_MAX_PARALLEL given, to a local folder.

It reports each variant's median wall time with its range, its ratio to `raw`, the
CPU-seconds the whole machine spent (from /proc/stat, steadier than wall time on a shared
machine), Atlas's own time per database beyond the raw loop's, atlas's peak memory, and
what 500 such databases would take.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.snapshot_bench import (
    REPO_ROOT,
    atlas_command,
    base_env,
    log,
    machine_cpu_s,
    run_watched,
)

RAW = "raw"


@dataclass(frozen=True)
class Run:
    wall_s: float
    cpu_s: float  # the whole machine's busy CPU-seconds while it ran
    rss_mb: float | None = None


def measured(run: Callable[[], tuple[float, float | None]]) -> Run:
    """Run `run` (which returns its wall seconds and atlas's peak RSS in MB, if any) and
    add what the machine spent meanwhile."""
    before = machine_cpu_s()
    wall, rss = run()
    return Run(wall, machine_cpu_s() - before, rss)


def raw_loop(urls: list[str], password: str, folder: Path) -> tuple[float, None]:
    """The shell loop's work, one database after another; its wall seconds."""
    pg_dump = shutil.which("pg_dump") or "pg_dump"
    zstd = shutil.which("zstd") or "zstd"
    env = {**base_env(), "PGPASSWORD": password}
    folder.mkdir()
    began = time.perf_counter()
    for n, url in enumerate(urls):
        with open(folder / f"{n}.dump.zst", "wb") as out:
            dump = subprocess.Popen(
                [pg_dump, "-Fc", "-Z0", "--no-owner", "--no-acl", url],
                stdout=subprocess.PIPE,
                env=env,
            )
            assert dump.stdout is not None
            zst = subprocess.Popen([zstd, "-3", "-T0", "-q"], stdin=dump.stdout, stdout=out)
            dump.stdout.close()
            if (dump.wait(), zst.wait()) != (0, 0):
                raise SystemExit(f"the raw loop failed on database {n}")
    wall = time.perf_counter() - began
    shutil.rmtree(folder)
    return wall, None


def atlas_run(url: str, databases: int, parallel: int, folder: Path) -> tuple[float, float | None]:
    """One `atlas snapshot --all`; its wall seconds and peak RSS in MB."""
    env = {
        **base_env(),
        "DATABASE_URL": url,
        "ATLAS_DATABASES": "fleet_*",
        "ATLAS_MAX_PARALLEL": str(parallel),
        "ATLAS_STATE": str(folder / "atlas.db"),
        "ATLAS_STORAGE": str(folder / "backups"),
        "PYTHONPATH": str(REPO_ROOT),  # this checkout's atlas, as the other benches
    }
    folder.mkdir()
    out, err = folder / "stdout", folder / "stderr"
    with open(out, "wb") as o, open(err, "wb") as e:
        wall, code, _, maxrss = run_watched(
            [*atlas_command(), "snapshot", "--all", "--json"],
            env=env,
            stdout=o,
            stderr=e,
            timeout=3600,
            cwd=REPO_ROOT,
        )
    try:
        doc = json.loads(out.read_text())
    except ValueError:
        raise SystemExit(
            f"snapshot --all printed no JSON ({code}): {err.read_text()[-2000:]}"
        ) from None
    taken = [s for s in doc["snapshots"] if s.get("kind", "database") == "database"]
    if code != 0 or len(taken) != databases:
        raise SystemExit(f"snapshot --all failed ({code}): {err.read_text()[-2000:]}")
    shutil.rmtree(folder)
    return wall, maxrss / 1024


def summarize(runs: dict[str, list[Run]], databases: int) -> list[dict[str, object]]:
    raw_wall = statistics.median(r.wall_s for r in runs[RAW])
    raw_cpu = statistics.median(r.cpu_s for r in runs[RAW])
    rows: list[dict[str, object]] = []
    for name, values in runs.items():
        walls = [r.wall_s for r in values]
        wall, cpu = statistics.median(walls), statistics.median(r.cpu_s for r in values)
        rss = [r.rss_mb for r in values if r.rss_mb is not None]
        rows.append(
            {
                "variant": name,
                "wall_s": round(wall, 2),
                "range_s": [round(min(walls), 2), round(max(walls), 2)],
                "ratio_to_raw": round(wall / raw_wall, 2),
                "ratios_range": [round(min(walls) / raw_wall, 2), round(max(walls) / raw_wall, 2)],
                "cpu_s": round(cpu, 2),
                "cpu_ratio_to_raw": round(cpu / raw_cpu, 2),
                "per_database_s": round(wall / databases, 3),
                "beyond_raw_per_database_s": round((wall - raw_wall) / databases, 3),
                "peak_rss_mb": round(max(rss), 1) if rss else None,
                "for_500_min": round(wall / databases * 500 / 60, 1),
            }
        )
    return rows


def show(rows: list[dict[str, object]], args: argparse.Namespace) -> None:
    out = sys.stderr if args.json else sys.stdout
    print(
        f"{args.databases} databases of {args.rows} users; {os.cpu_count()} cores; "
        f"median of {args.repeat} interleaved round(s)",
        file=out,
    )
    print(
        f"{'variant':>8} {'wall s':>7} {'range':>12} {'x raw':>6} {'CPU s':>6} {'x raw':>6} "
        f"{'s/db':>6} {'+s/db':>6} {'RSS MB':>7} {'500 dbs':>9}",
        file=out,
    )
    for r in rows:
        lo, hi = r["range_s"]  # type: ignore[misc]
        rss = "-" if r["peak_rss_mb"] is None else f"{r['peak_rss_mb']:.1f}"
        print(
            f"{r['variant']:>8} {r['wall_s']:>7.2f} {lo:>5.2f}-{hi:<6.2f} "
            f"{r['ratio_to_raw']:>6.2f} {r['cpu_s']:>6.2f} {r['cpu_ratio_to_raw']:>6.2f} "
            f"{r['per_database_s']:>6.3f} {r['beyond_raw_per_database_s']:>6.3f} {rss:>7} "
            f"{r['for_500_min']:>5.1f} min",
            file=out,
        )
    if args.json:
        print(json.dumps({"databases": args.databases, "rows": args.rows, "variants": rows}))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fleet_bench", description=__doc__)
    p.add_argument("--databases", type=int, default=50)
    p.add_argument("--rows", type=int, default=1000, help="users per database (orders: 2x)")
    p.add_argument("--parallel", default="1,2", help="comma-separated ATLAS_MAX_PARALLEL values")
    p.add_argument("--repeat", type=int, default=3, help="interleaved rounds; medians reported")
    p.add_argument("--seed", type=int, default=1, help="of each round's random order")
    p.add_argument("--json", action="store_true", help="JSON on stdout, the table on stderr")
    args = p.parse_args(argv)
    sys.path.insert(0, str(REPO_ROOT))
    from tests.support.pg import PgCluster, fill_sample

    order = random.Random(args.seed)
    parallels = [int(x) for x in args.parallel.split(",")]
    with (
        PgCluster(in_memory=False) as cluster,
        tempfile.TemporaryDirectory(prefix="atlas-fleet-") as tmp,
    ):
        log(f"creating {args.databases} databases of {args.rows} users each ...")
        began = time.perf_counter()
        names = [f"fleet_{i:03d}" for i in range(args.databases)]
        for name in names:
            cluster.create_database(name)
            fill_sample(cluster.url(name), rows=args.rows)
        log(f"created in {time.perf_counter() - began:.1f}s")
        urls = [cluster.url(n).replace(f":{cluster.password}@", "@") for n in names]
        assert cluster.password is not None
        password = cluster.password
        variants: dict[str, Callable[[Path], Run]] = {
            RAW: lambda f: measured(lambda: raw_loop(urls, password, f)),
        }
        for par in parallels:
            variants[f"atlas p{par}"] = lambda f, par=par: measured(
                lambda: atlas_run(cluster.url("postgres"), args.databases, par, f)
            )
        runs: dict[str, list[Run]] = {name: [] for name in variants}
        for n in range(args.repeat):
            names_now = list(variants)
            order.shuffle(names_now)
            for name in names_now:
                run = variants[name](Path(tmp) / f"{name.replace(' ', '-')}-{n}")
                runs[name].append(run)
                log(f"round {n + 1}: {name} {run.wall_s:.2f}s, machine CPU {run.cpu_s:.2f}s")
    show(summarize(runs, args.databases), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
