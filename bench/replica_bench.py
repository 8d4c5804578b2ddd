"""What do replicas cost and how fast do they take over? Prints numbers; it is not a test.

    python -m bench.replica_bench                    # 5 hand-overs, 15 `atlas list` each
    python -m bench.replica_bench --kills 10 --failover 6 --replicas 3

It starts a throwaway PostgreSQL cluster holding the catalog (and a small database to
back up), then:

- times `atlas list` (200 snapshots in the catalog) on a SQLite catalog and on the
  PostgreSQL one, interleaved: what a shared catalog adds to every command;
- starts N `atlas serve --http` replicas (headless: no Slack) with ATLAS_FAILOVER_S,
  finds the leader on /metrics, SIGKILLs it, and times until a survivor reports that it
  leads; a new replica replaces the killed one before the next round. The bound is
  ATLAS_FAILOVER_S.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.snapshot_bench import REPO_ROOT, atlas_command, base_env, log
from bench.startup_bench import seed_catalog


def _spread(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def _leads(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return False
    found = re.search(r"^atlas_leader\{[^}]*\} (\S+)$", text, re.M)
    return found is not None and float(found.group(1)) == 1.0


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _serve(atlas: list[str], env: dict[str, str], port: int, logs: Path) -> subprocess.Popen:
    out = (logs / f"serve-{port}.log").open("wb")
    proc = subprocess.Popen(
        [*atlas, "serve", "--http", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 30
    while not _healthy(port):
        if proc.poll() is not None or time.time() > deadline:
            raise SystemExit(
                f"atlas serve did not start: {(logs / f'serve-{port}.log').read_text()}"
            )
        time.sleep(0.1)
    return proc


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.replica_bench", description=__doc__)
    p.add_argument("--replicas", type=int, default=3)
    p.add_argument("--kills", type=int, default=5)
    p.add_argument("--failover", type=int, default=6, help="ATLAS_FAILOVER_S")
    p.add_argument("--repeat", type=int, default=15, help="`atlas list` runs per catalog")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    sys.path.insert(0, str(REPO_ROOT))
    from tests.support import pick_free_port
    from tests.support.pg import PgCluster, fill_sample

    atlas = atlas_command()
    result: dict[str, object] = {}
    with (
        PgCluster(in_memory=False) as cluster,
        tempfile.TemporaryDirectory(prefix="atlas-replicas-") as tmp,
    ):
        folder = Path(tmp)
        cluster.create_database("app")
        fill_sample(cluster.url("app"), rows=200)
        cluster.create_database("atlas_catalog")
        common = {
            **base_env(),
            "DATABASE_URL": cluster.url("app"),
            "ATLAS_STORAGE": str(folder / "backups"),
            "PYTHONPATH": str(REPO_ROOT),
        }
        states = {"sqlite": str(folder / "atlas.db"), "postgresql": cluster.url("atlas_catalog")}
        for state in states.values():
            seed_catalog(state, common)
        times: dict[str, list[float]] = {name: [] for name in states}
        for _ in range(args.repeat + 1):  # the first round warms caches and is dropped
            for name, state in states.items():
                began = time.perf_counter()
                subprocess.run(
                    [*atlas, "list"],
                    env={**common, "ATLAS_STATE": state},
                    capture_output=True,
                    check=True,
                )
                times[name].append(time.perf_counter() - began)
        listing = {name: _spread(values[1:]) for name, values in times.items()}
        result["atlas list"] = listing
        log(
            "atlas list: "
            + ", ".join(
                f"{n} {v['median']:.3f}s ({v['min']:.3f}-{v['max']:.3f})"
                for n, v in listing.items()
            )
        )

        env = {
            **common,
            "ATLAS_STATE": states["postgresql"],
            "ATLAS_FAILOVER_S": str(args.failover),
        }
        env.pop("SLACK_BOT_TOKEN", None)
        running = {}
        for _ in range(args.replicas):
            port = pick_free_port()
            running[port] = _serve(atlas, env, port, folder)
        handovers = []
        try:
            for round_ in range(args.kills):
                deadline = time.time() + 3 * args.failover
                leaders = []
                while not leaders:
                    leaders = [port for port in running if _leads(port)]
                    if time.time() > deadline:
                        raise SystemExit("no leader")
                    time.sleep(0.1)
                leader = leaders[0]
                running[leader].send_signal(signal.SIGKILL)
                running[leader].wait()
                killed = time.perf_counter()
                del running[leader]
                while not any(_leads(port) for port in running):
                    if time.perf_counter() - killed > 5 * args.failover:
                        raise SystemExit("no new leader")
                    time.sleep(0.05)
                took = time.perf_counter() - killed
                handovers.append(took)
                log(f"round {round_ + 1}: new leader {took:.2f}s after SIGKILL")
                port = pick_free_port()
                running[port] = _serve(atlas, env, port, folder)
        finally:
            for proc in running.values():
                proc.terminate()
            for proc in running.values():
                proc.wait(timeout=10)
        result["handover_s"] = {**_spread(handovers), "bound": args.failover}
        result["replicas"] = args.replicas
        log(f"hand-over: {result['handover_s']}")
    if args.json:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
