"""How fast do `atlas` commands start? Prints medians; it is not a test.

    python -m bench.startup_bench              # 15 runs of each
    python -m bench.startup_bench --repeat 40 --json

It times, interleaved, a bare `python -c pass`, `atlas --help`, `atlas --version` and
`atlas list` against a catalog of 200 snapshots (no database is contacted), with bytecode
caching on as on a user's machine (the untimed first run writes the cache), and reports
each command's median above the bare interpreter's, with the spread. The targets are
`atlas --help` <= 0.15 s and `atlas list` <= 0.25 s above bare start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.snapshot_bench import REPO_ROOT, atlas_command, base_env

TARGETS = {"atlas --help": 0.15, "atlas list": 0.25}


SEED = (
    "import sys\n"
    "from bot.catalog import open_catalog\n"
    "from bot.records import Snapshot, SnapshotStatus\n"
    "cat = open_catalog(sys.argv[1])\n"
    "for i in range(200):\n"
    "    cat.add_snapshot(Snapshot(id=f'20260101-{i:06d}-abcd', database='app',\n"
    "        status=SnapshotStatus.OK, started_at=f'2026-01-01T00:{i // 60:02d}:{i % 60:02d}',\n"
    "        size_bytes=1000 + i, sha256='0' * 64))\n"
)


def seed_catalog(state: str, env: dict[str, str]) -> None:
    """200 snapshots in the catalog ATLAS_STATE would name, so `list` has rows to show."""
    subprocess.run([sys.executable, "-c", SEED, state], env=env, check=True)


def _catalog(folder: Path) -> dict[str, str]:
    """An environment whose catalog holds 200 snapshots."""
    env = {
        **base_env(),
        "DATABASE_URL": "postgresql://atlas:unused@db.example:5432/app",
        "ATLAS_STATE": str(folder / "atlas.db"),
        "ATLAS_STORAGE": str(folder / "backups"),
        "PYTHONPATH": str(REPO_ROOT),
    }
    seed_catalog(env["ATLAS_STATE"], env)
    return env


def _time(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    began = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, check=False)
    elapsed = time.perf_counter() - began
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr.decode()[-500:]}")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.startup_bench", description=__doc__)
    p.add_argument("--repeat", type=int, default=15)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    atlas = atlas_command()
    with tempfile.TemporaryDirectory(prefix="atlas-startup-") as tmp:
        folder = Path(tmp)
        env = _catalog(folder)
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "atlas --help": [*atlas, "--help"],
            "atlas --version": [*atlas, "--version"],
            "atlas list": [*atlas, "list"],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for cmd in commands.values():  # one untimed run each: the page cache
            _time(cmd, env, folder)
        for _ in range(args.repeat):
            for name, cmd in commands.items():
                times[name].append(_time(cmd, env, folder))
    bare = statistics.median(times["python -c pass"])
    rows = []
    for name, values in times.items():
        median = statistics.median(values)
        above = median - bare
        target = TARGETS.get(name)
        verdict = "" if target is None else ("PASS" if above <= target else "MISS")
        rows.append(
            {
                "command": name,
                "median_s": round(median, 3),
                "min_s": round(min(values), 3),
                "max_s": round(max(values), 3),
                "above_bare_s": round(above, 3),
                "target_above_bare_s": target,
                "verdict": verdict,
            }
        )
    out = sys.stderr if args.json else sys.stdout
    print(f"{os.cpu_count()} cores, {args.repeat} runs each, atlas = {' '.join(atlas)}", file=out)
    print(f"{'command':<18} {'median s':>9} {'min':>7} {'max':>7} {'above bare':>11}", file=out)
    for r in rows:
        target = f"<= {r['target_above_bare_s']}" if r["target_above_bare_s"] else ""
        print(
            f"{r['command']:<18} {r['median_s']:>9.3f} {r['min_s']:>7.3f} {r['max_s']:>7.3f} "
            f"{r['above_bare_s']:>11.3f}  {target} {r['verdict']}",
            file=out,
        )
    if args.json:
        print(json.dumps({"repeat": args.repeat, "commands": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
