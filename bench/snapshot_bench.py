"""Benchmark `atlas snapshot` against the runbook's pg_dump and a raw pg_dump | zstd pipeline.

Run from the repository root (see bench/README.md):

    python -m bench.snapshot_bench                      # ~300 MB database, 3 runs each
    python -m bench.snapshot_bench --size-mb 1000 --repeat 1
    python -m bench.snapshot_bench --sizes 300,1000     # is atlas's memory flat across sizes?
    python -m bench.snapshot_bench --json > results.json

It starts a throwaway PostgreSQL cluster (tests.support.pg.PgCluster), loads about N MB
of hard-to-compress rows, then times, interleaved and --repeat times each:

    seed         pg_dump --format=custom --no-owner --no-acl --file OUT URL   (gzip, the runbook)
    raw          pg_dump -Fc -Z0 --no-owner --no-acl URL | zstd -3 -T0 > OUT
    atlas-local  atlas snapshot --json --note bench   (ATLAS_STORAGE=<tmp folder>)
    atlas-s3     atlas snapshot --json --note bench   (ATLAS_STORAGE=s3://bucket/prefix, moto)

and the atlas Python process's peak memory (VmHWM/VmRSS from /proc, sampled every 50 ms;
its pg_dump/pg_restore children are reported separately). It is not a test: it prints
numbers and whether the targets hold. The database password only ever travels in the
environment (DATABASE_URL for atlas, PGPASSWORD for pg_dump), never in argv.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from tests.support.pg import PgCluster

REPO_ROOT = Path(__file__).resolve().parent.parent
MB = 1_000_000  # sizes and memory are reported in decimal megabytes

SEED, RAW, LOCAL, S3 = "seed", "raw", "atlas-local", "atlas-s3"
ALL_VARIANTS = (SEED, RAW, LOCAL, S3)
ATLAS_VARIANTS = (LOCAL, S3)

# Targets (see make_checks).
TARGET_LOCAL_VS_SEED_WALL = 0.35
TARGET_LOCAL_VS_SEED_SIZE = 1.0
TARGET_LOCAL_VS_RAW_WALL = 1.15  # issue 27's goal (it was 1.25)
TARGET_PEAK_RSS_MB = 150.0

LOAD_BATCH_ROWS = 25_000  # ~8.5 MB of rows per INSERT ... SELECT
POLL_INTERVAL_S = 0.05
S3_ACCESS_KEY = S3_SECRET_KEY = "testing"
S3_REGION = "us-east-1"

_T0 = time.monotonic()


class BenchError(RuntimeError):
    """A variant or the setup failed; the message is safe to print (no password)."""


def log(message: str) -> None:
    print(f"[bench {time.monotonic() - _T0:7.1f}s] {message}", file=sys.stderr, flush=True)


# -- results ---------------------------------------------------------------------------------


@dataclass
class Run:
    """One timed run of one variant."""

    wall_s: float
    size_bytes: int
    peak_rss_kb: int | None = None  # atlas only: max VmHWM of the atlas Python process
    sampled_rss_kb: int | None = None  # atlas only: max VmRSS seen while polling
    ru_maxrss_kb: int | None = None  # atlas only: wait4() ru_maxrss (includes its children)
    children_hwm_kb: dict[str, int] = field(default_factory=dict)  # e.g. pg_dump, pg_restore
    samples: int = 0
    atlas_duration_s: float | None = None  # atlas only: its own duration_s (no start-up/exit)
    cpu_s: float | None = None  # the whole machine's busy CPU-seconds during the run

    def to_json(self) -> dict[str, Any]:
        return {
            "wall_s": round(self.wall_s, 3),
            "size_bytes": self.size_bytes,
            "peak_rss_mb": _kb_to_mb(self.peak_rss_kb),
            "sampled_rss_mb": _kb_to_mb(self.sampled_rss_kb),
            "ru_maxrss_incl_children_mb": _kb_to_mb(self.ru_maxrss_kb),
            "children_peak_rss_mb": {k: _kb_to_mb(v) for k, v in self.children_hwm_kb.items()},
            "memory_samples": self.samples,
            "atlas_duration_s": self.atlas_duration_s,
            "machine_cpu_s": _round(self.cpu_s),
        }


@dataclass
class VariantResult:
    name: str
    label: str
    runs: list[Run] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.runs)

    @property
    def median_s(self) -> float | None:
        return statistics.median(r.wall_s for r in self.runs) if self.ok else None

    @property
    def median_cpu_s(self) -> float | None:
        cpu = [r.cpu_s for r in self.runs if r.cpu_s is not None]
        return statistics.median(cpu) if self.ok and cpu else None

    @property
    def median_atlas_duration_s(self) -> float | None:
        inner = [r.atlas_duration_s for r in self.runs if r.atlas_duration_s is not None]
        return statistics.median(inner) if self.ok and inner else None

    @property
    def size_bytes(self) -> int | None:
        return int(statistics.median(r.size_bytes for r in self.runs)) if self.ok else None

    @property
    def peak_rss_mb(self) -> float | None:
        peaks = [r.peak_rss_kb for r in self.runs if r.peak_rss_kb is not None]
        return _kb_to_mb(max(peaks)) if self.ok and peaks else None

    @property
    def children_peak_mb(self) -> dict[str, float]:
        out: dict[str, int] = {}
        for run in self.runs:
            for name, kb in run.children_hwm_kb.items():
                out[name] = max(out.get(name, 0), kb)
        return {k: _kb_to_mb(v) or 0.0 for k, v in sorted(out.items())}

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "ok": self.ok,
            "error": self.error,
            "median_wall_s": _round(self.median_s),
            "median_atlas_duration_s": _round(self.median_atlas_duration_s),
            "median_machine_cpu_s": _round(self.median_cpu_s),
            "min_wall_s": _round(min(r.wall_s for r in self.runs)) if self.runs else None,
            "size_bytes": self.size_bytes,
            "peak_rss_mb": self.peak_rss_mb,
            "children_peak_rss_mb": self.children_peak_mb,
            "runs": [r.to_json() for r in self.runs],
        }


@dataclass
class Check:
    name: str
    value: float | None
    limit: float | None  # None: informational only
    unit: str  # "x" for ratios, "MB" for memory
    strict: bool = False  # value < limit (instead of <=)

    @property
    def passed(self) -> bool | None:
        if self.limit is None or self.value is None:
            return None
        return self.value < self.limit if self.strict else self.value <= self.limit

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": _round(self.value),
            "limit": self.limit,
            "unit": self.unit,
            "comparison": "<" if self.strict else "<=",
            "passed": self.passed,
        }


@dataclass
class Dataset:
    requested_mb: int
    dbname: str
    rows: int
    db_size_bytes: int
    load_s: float
    raw_dump_bytes: int = 0
    raw_dump_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "requested_mb": self.requested_mb,
            "rows": self.rows,
            "db_size_bytes": self.db_size_bytes,
            "load_s": round(self.load_s, 3),
            "raw_dump_bytes": self.raw_dump_bytes,
            "raw_dump_s": round(self.raw_dump_s, 3),
        }


@dataclass
class SizeResult:
    dataset: Dataset
    variants: dict[str, VariantResult]
    checks: list[Check]
    atlas_startup_s: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset.to_json(),
            "atlas_startup_s": _round(self.atlas_startup_s),
            "variants": {k: v.to_json() for k, v in self.variants.items()},
            "checks": [c.to_json() for c in self.checks],
        }


def _kb_to_mb(kb: int | None) -> float | None:
    return None if kb is None else round(kb * 1024 / MB, 1)


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


# -- /proc polling ---------------------------------------------------------------------------


def _proc_status(pid: int) -> dict[str, str]:
    """Fields of /proc/<pid>/status ({} once the process is gone or a zombie)."""
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8", errors="replace") as fh:
            text = fh.read()
    except OSError:
        return {}
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def _kb(fields: dict[str, str], key: str) -> int | None:
    value = fields.get(key, "")
    return int(value.split()[0]) if value else None


def _child_pids(pid: int) -> list[int]:
    """Direct children of every thread of ``pid`` (Linux /proc/<pid>/task/<tid>/children)."""
    pids: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return pids
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", encoding="ascii") as fh:
                pids.extend(int(p) for p in fh.read().split())
        except (OSError, ValueError):
            continue
    return pids


def _exe(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


class MemoryWatch:
    """Samples a process's VmRSS/VmHWM (and its children's VmHWM by name) from /proc."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.max_rss_kb = 0
        self.max_hwm_kb = 0
        self.children_hwm_kb: dict[str, int] = {}
        self.samples = 0

    def sample(self) -> None:
        fields = _proc_status(self.pid)
        rss, hwm = _kb(fields, "VmRSS"), _kb(fields, "VmHWM")
        if rss is None:
            return
        self.samples += 1
        self.max_rss_kb = max(self.max_rss_kb, rss)
        self.max_hwm_kb = max(self.max_hwm_kb, hwm or rss)
        children = _child_pids(self.pid)
        if not children:
            return
        parent_name, parent_exe = fields.get("Name"), _exe(self.pid)
        for child in children:
            cf = _proc_status(child)
            name, chwm = cf.get("Name"), _kb(cf, "VmHWM")
            if not name or not chwm or name == parent_name:
                continue
            # Between (v)fork and exec a child is still the parent's image: skip it then.
            exe = _exe(child)
            if exe is not None and exe != parent_exe:
                self.children_hwm_kb[name] = max(self.children_hwm_kb.get(name, 0), chwm)


# -- subprocess helpers ----------------------------------------------------------------------


def _stop(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    """Make sure no child outlives the bench.

    Give it a moment (after a terminal Ctrl-C it got SIGINT too), then SIGINT (atlas then
    removes its partial artifact), SIGTERM, and finally SIGKILL.
    """
    for proc in procs:
        if proc.returncode is not None:
            continue
        steps: list[tuple[Callable[[], None] | None, float]] = [
            (None, 2),
            (lambda p=proc: p.send_signal(signal.SIGINT), 5),
            (proc.terminate, 5),
            (proc.kill, 30),
        ]
        for action, wait_s in steps:
            if action is not None:
                with contextlib.suppress(OSError):
                    action()
            try:
                proc.wait(timeout=wait_s)
                break
            except subprocess.TimeoutExpired:
                continue


def run_processes(
    start: Callable[[], list[subprocess.Popen[bytes]]], timeout: float
) -> tuple[float, list[int]]:
    """Start processes with ``start`` and wait for all; returns wall seconds and exit codes."""
    began = time.perf_counter()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs = start()
        deadline = began + timeout
        for proc in procs:
            proc.wait(timeout=max(0.1, deadline - time.perf_counter()))
        return time.perf_counter() - began, [p.returncode for p in procs]
    except subprocess.TimeoutExpired:
        raise BenchError(f"timed out after {timeout:.0f}s") from None
    finally:
        _stop(procs)


def run_watched(
    argv: Sequence[str],
    *,
    env: dict[str, str],
    stdout: IO[bytes],
    stderr: IO[bytes],
    timeout: float,
    cwd: Path | None = None,
) -> tuple[float, int, MemoryWatch, int]:
    """Run one process while a thread samples its memory every ~50 ms.

    Returns wall seconds, exit code, the memory samples, and wait4()'s ru_maxrss (KiB).
    The wall time ends when a blocking wait4 returns, exactly as for the other variants:
    polling for the exit would add up to a poll interval to atlas's time, and frequent
    sampling takes CPU from it. VmHWM is the kernel's own high-water mark, so sparse
    samples still see the peak.
    """
    began = time.perf_counter()
    proc = subprocess.Popen(list(argv), env=env, stdout=stdout, stderr=stderr, cwd=cwd)
    watch = MemoryWatch(proc.pid)
    done = threading.Event()
    timed_out = threading.Event()

    def sample() -> None:
        while not done.is_set():
            watch.sample()
            if time.perf_counter() - began > timeout:
                timed_out.set()
                with contextlib.suppress(OSError):
                    proc.kill()
                return
            done.wait(POLL_INTERVAL_S)

    sampler = threading.Thread(target=sample, name="memory-watch", daemon=True)
    sampler.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - began
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        done.set()
        sampler.join()
        _stop([proc])
    if timed_out.is_set():
        raise BenchError(f"timed out after {timeout:.0f}s")
    return wall, proc.returncode, watch, usage.ru_maxrss


def _tail(path: Path, limit: int = 2000) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace").strip()[-limit:]
    except OSError:
        return ""


def _version(argv: Sequence[str]) -> str:
    try:
        out = subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=False)
    except OSError as exc:
        return f"unavailable ({exc.strerror})"
    return (out.stdout or out.stderr).strip().splitlines()[0] if out.returncode == 0 else "?"


# -- environment and configuration -----------------------------------------------------------

_DROP_ENV_PREFIXES = ("PG", "ATLAS_", "AWS_", "SLACK_")
# PYTHONDONTWRITEBYTECODE (set in some CI images) would time Python's compiler: a user's
# install keeps compiled bytecode.
_DROP_ENV = ("DATABASE_URL", "STAGING_DATABASE_URL", "PORT", "PYTHONDONTWRITEBYTECODE")


def machine_cpu_s() -> float:
    """Busy CPU-seconds of the whole machine since boot: every CPU's time but idle and
    iowait, from the first line of /proc/stat. Steadier than wall time on a shared machine,
    and it counts the database server's work too."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    ticks = [int(x) for x in fields[:8]]  # user nice system idle iowait irq softirq steal
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def base_env() -> dict[str, str]:
    """The bench's environment minus anything that could redirect pg_dump, atlas or boto3,
    and with bytecode caching on, as on a user's machine."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_DROP_ENV_PREFIXES) and k not in _DROP_ENV
    }


def strip_password(url: str) -> str:
    """``postgresql://user:pw@host:port/db`` -> ``postgresql://user@host:port/db``."""
    parts = urlsplit(url)
    userinfo, sep, hostport = parts.netloc.rpartition("@")
    if not sep:
        return url
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}@{hostport}"))


def atlas_command() -> list[str]:
    """The installed ``atlas`` console script, else ``python -m bot.cli`` from this checkout.

    The script next to this interpreter wins over PATH, so a version-manager shim (pyenv)
    does not add its own start-up time to atlas's.
    """
    beside = Path(sys.executable).parent / "atlas"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    exe = shutil.which("atlas")
    return [exe] if exe else [sys.executable, "-m", "bot.cli"]


@dataclass
class S3Target:
    endpoint: str
    bucket: str
    access_key: str
    secret_key: str
    region: str
    kind: str  # "moto" or "external"
    client: Any = None

    def env(self, aws_dir: Path) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_EC2_METADATA_DISABLED": "true",
            # Ignore any ~/.aws profile on the machine.
            "AWS_CONFIG_FILE": str(aws_dir / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(aws_dir / "no-aws-credentials"),
        }

    def delete_prefix(self, prefix: str) -> None:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            keys = [{"Key": obj["Key"]} for obj in page.get("Contents", [])]
            if keys:
                self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys})


def _s3_client(endpoint: str, access_key: str, secret_key: str, region: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=region,
    )


@contextlib.contextmanager
def open_s3(external_endpoint: str | None, bucket: str | None) -> Iterator[S3Target]:
    """A bucket on an external S3-compatible endpoint, or on a moto server in this process."""
    if external_endpoint:
        target = S3Target(
            endpoint=external_endpoint.rstrip("/"),
            bucket=bucket or "atlas-bench",
            access_key=os.environ.get("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY),
            secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY),
            region=os.environ.get("AWS_REGION", S3_REGION),
            kind="external",
        )
        target.client = _s3_client(
            target.endpoint, target.access_key, target.secret_key, target.region
        )
        try:
            target.client.head_bucket(Bucket=target.bucket)
        except Exception:  # missing (or not ours to see): try to create it
            target.client.create_bucket(Bucket=target.bucket)
        yield target
        return

    from tests.support.s3 import moto_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no per-request access log
    with contextlib.ExitStack() as stack:
        try:
            endpoint = stack.enter_context(moto_server())
        except Exception as exc:
            raise BenchError(f"could not start the moto S3 server: {exc}") from None
        target = S3Target(
            endpoint=endpoint,
            bucket=bucket or f"atlas-bench-{uuid.uuid4().hex[:12]}",
            access_key=S3_ACCESS_KEY,
            secret_key=S3_SECRET_KEY,
            region=S3_REGION,
            kind="moto",
        )
        target.client = _s3_client(endpoint, S3_ACCESS_KEY, S3_SECRET_KEY, S3_REGION)
        target.client.create_bucket(Bucket=target.bucket)
        yield target


# -- the database ----------------------------------------------------------------------------

CREATE_TABLE = """
CREATE TABLE bench_events (
    id           bigint      NOT NULL,
    created_at   timestamptz NOT NULL,
    account_id   integer     NOT NULL,
    kind         smallint    NOT NULL,
    amount_cents bigint      NOT NULL,
    digest       text        NOT NULL,
    payload      text        NOT NULL
)
"""

# base64 of random bytes and md5 hex: compresses only ~25-45%, like real ids/tokens/blobs.
INSERT_BATCH = """
INSERT INTO bench_events (id, created_at, account_id, kind, amount_cents, digest, payload)
SELECT g,
       timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second',
       (random() * 1000000)::int,
       (g %% 16)::smallint,
       (random() * 1e12)::bigint,
       md5(random()::text),
       encode(gen_random_bytes(180), 'base64')
FROM generate_series(%s::bigint, %s::bigint) AS g
"""


def build_database(cluster: PgCluster, size_mb: int, workers: int) -> Dataset:
    """Create a database and fill it until pg_database_size reaches ``size_mb`` MB."""
    dbname = f"bench_{size_mb}mb_{uuid.uuid4().hex[:6]}"
    cluster.create_database(dbname)
    started = time.perf_counter()
    with cluster.connect(dbname) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pgcrypto")
        conn.execute(CREATE_TABLE)

    target = size_mb * MB
    lock = threading.Lock()
    done = threading.Event()
    state = {"next": 0, "rows": 0}
    errors: list[BaseException] = []

    def load() -> None:
        try:
            with cluster.connect(dbname) as conn:
                while not done.is_set():
                    with lock:
                        batch = state["next"]
                        state["next"] += 1
                    lo = batch * LOAD_BATCH_ROWS + 1
                    cur = conn.execute(INSERT_BATCH, (lo, lo + LOAD_BATCH_ROWS - 1))
                    row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
                    with lock:
                        state["rows"] += max(cur.rowcount, 0)
                    if row is not None and int(row[0]) >= target:
                        done.set()
        except BaseException as exc:
            errors.append(exc)
            done.set()

    threads = [threading.Thread(target=load, name=f"load-{i}", daemon=True) for i in range(workers)]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(timeout=0.5)
    except BaseException:
        done.set()
        raise
    if errors:
        raise BenchError(f"loading the database failed: {errors[0]}")
    with cluster.connect(dbname) as conn:
        # Set hint bits and freeze now, so the first timed dump does not pay for it.
        conn.execute("VACUUM (FREEZE, ANALYZE) bench_events")
        conn.execute("CHECKPOINT")
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    assert row is not None
    return Dataset(
        requested_mb=size_mb,
        dbname=dbname,
        rows=state["rows"],
        db_size_bytes=int(row[0]),
        load_s=time.perf_counter() - started,
    )


# -- the variants ----------------------------------------------------------------------------


@dataclass
class Context:
    url: str  # with password: only ever placed in DATABASE_URL
    password: str
    pg_dump: str
    zstd: str
    atlas: list[str]
    work: Path
    timeout: float
    s3: S3Target | None = None

    @property
    def url_nopw(self) -> str:
        return strip_password(self.url)

    def pg_env(self) -> dict[str, str]:
        return {**base_env(), "PGPASSWORD": self.password, "PGCONNECT_TIMEOUT": "10"}

    def redact(self, text: str) -> str:
        return text.replace(self.password, "***") if self.password else text


def measure_raw_dump(ctx: Context) -> tuple[int, float]:
    """Size and time of ``pg_dump -Fc -Z0`` alone, read and discarded (also warms the cache)."""
    err_path = ctx.work / "rawsize.stderr"
    argv = [ctx.pg_dump, "-Fc", "-Z0", "--no-owner", "--no-acl", ctx.url_nopw]
    began = time.perf_counter()
    with open(err_path, "wb") as err:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, env=ctx.pg_env())
        total = 0
        try:
            assert proc.stdout is not None
            while chunk := proc.stdout.read(1 << 20):
                total += len(chunk)
            proc.wait(timeout=ctx.timeout)
        finally:
            _stop([proc])
    if proc.returncode != 0:
        raise BenchError(f"pg_dump failed: {ctx.redact(_tail(err_path))}")
    return total, time.perf_counter() - began


def run_seed(ctx: Context) -> Run:
    out, err_path = ctx.work / "seed.dump", ctx.work / "seed.stderr"
    argv = [ctx.pg_dump, "--format=custom", "--no-owner", "--no-acl", "--file", str(out)]
    argv.append(ctx.url_nopw)
    with open(err_path, "wb") as err:
        wall, codes = run_processes(
            lambda: [
                subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, env=ctx.pg_env())
            ],
            ctx.timeout,
        )
    try:
        if codes != [0]:
            raise BenchError(f"pg_dump exited {codes[0]}: {ctx.redact(_tail(err_path))}")
        return Run(wall_s=wall, size_bytes=out.stat().st_size)
    finally:
        out.unlink(missing_ok=True)


def run_raw(ctx: Context) -> Run:
    out = ctx.work / "raw.dump.zst"
    dump_err, zstd_err = ctx.work / "raw-pg_dump.stderr", ctx.work / "raw-zstd.stderr"
    dump_argv = [ctx.pg_dump, "-Fc", "-Z0", "--no-owner", "--no-acl", ctx.url_nopw]
    zstd_argv = [ctx.zstd, "-3", "-T0", "-q"]
    with open(out, "wb") as fh, open(dump_err, "wb") as e1, open(zstd_err, "wb") as e2:

        def start() -> list[subprocess.Popen[bytes]]:
            dump = subprocess.Popen(dump_argv, stdout=subprocess.PIPE, stderr=e1, env=ctx.pg_env())
            assert dump.stdout is not None
            try:
                zstd = subprocess.Popen(zstd_argv, stdin=dump.stdout, stdout=fh, stderr=e2)
            except BaseException:
                _stop([dump])
                raise
            finally:
                dump.stdout.close()  # zstd owns the read end now; pg_dump sees EPIPE if it dies
            return [dump, zstd]

        wall, codes = run_processes(start, ctx.timeout)
    try:
        if codes[0] != 0:
            raise BenchError(f"pg_dump exited {codes[0]}: {ctx.redact(_tail(dump_err))}")
        if codes[1] != 0:
            raise BenchError(f"zstd exited {codes[1]}: {_tail(zstd_err)}")
        return Run(wall_s=wall, size_bytes=out.stat().st_size)
    finally:
        out.unlink(missing_ok=True)


def _run_atlas(
    ctx: Context, name: str, storage: str, extra_env: dict[str, str]
) -> tuple[Run, dict[str, Any]]:
    env = {
        **base_env(),
        **extra_env,
        "DATABASE_URL": ctx.url,
        "ATLAS_STORAGE": storage,
        "ATLAS_STATE": str(ctx.work / "atlas.db"),
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
        ),
    }
    out_path, err_path = ctx.work / f"{name}.stdout", ctx.work / f"{name}.stderr"
    argv = [*ctx.atlas, "snapshot", "--json", "--note", "bench"]
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        wall, code, watch, ru_maxrss = run_watched(
            argv, env=env, stdout=out, stderr=err, timeout=ctx.timeout, cwd=REPO_ROOT
        )
    doc = _last_json_object(_tail(out_path, 1_000_000))
    if code != 0 or doc.get("status") != "ok":
        detail = doc.get("error") or _tail(err_path) or _tail(out_path) or "no output"
        raise BenchError(f"atlas exited {code}: {ctx.redact(str(detail))}")
    missing = [
        k
        for k in ("id", "database", "status", "size_bytes", "sha256", "location", "note")
        if k not in doc
    ]
    if missing:
        raise BenchError(f"atlas --json output lacks {', '.join(missing)}")
    run = Run(
        wall_s=wall,
        size_bytes=int(doc["size_bytes"]),
        peak_rss_kb=watch.max_hwm_kb or None,
        sampled_rss_kb=watch.max_rss_kb or None,
        ru_maxrss_kb=ru_maxrss,
        children_hwm_kb=dict(watch.children_hwm_kb),
        samples=watch.samples,
        atlas_duration_s=_float(doc.get("duration_s")),
    )
    return run, doc


def _float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _last_json_object(text: str) -> dict[str, Any]:
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                doc = json.loads(line)
                if isinstance(doc, dict):
                    return doc
    return {}


def run_atlas_local(ctx: Context) -> Run:
    storage = ctx.work / "atlas-storage"
    try:
        run, doc = _run_atlas(ctx, LOCAL, str(storage), {})
        where = Path(str(doc["location"]).removeprefix("file://"))
        if where.is_file() and where.stat().st_size != run.size_bytes:
            raise BenchError(
                f"{where} is {where.stat().st_size} bytes, atlas reported {run.size_bytes}"
            )
        return run
    finally:
        shutil.rmtree(storage, ignore_errors=True)


def run_atlas_s3(ctx: Context) -> Run:
    s3 = ctx.s3
    assert s3 is not None
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        run, doc = _run_atlas(ctx, S3, f"s3://{s3.bucket}/{prefix}", s3.env(ctx.work))
        location = str(doc["location"])
        if location.startswith(f"s3://{s3.bucket}/"):
            key = location.removeprefix(f"s3://{s3.bucket}/")
            head = s3.client.head_object(Bucket=s3.bucket, Key=key)
            if int(head["ContentLength"]) != run.size_bytes:
                raise BenchError(
                    f"{location} is {head['ContentLength']} bytes, atlas reported {run.size_bytes}"
                )
        return run
    finally:
        with contextlib.suppress(Exception):
            s3.delete_prefix(prefix + "/")


RUNNERS: dict[str, Callable[[Context], Run]] = {
    SEED: run_seed,
    RAW: run_raw,
    LOCAL: run_atlas_local,
    S3: run_atlas_s3,
}


def labels(s3: S3Target | None) -> dict[str, str]:
    where = "moto" if s3 is None or s3.kind == "moto" else s3.endpoint
    return {
        SEED: "seed: pg_dump -Fc (gzip)",
        RAW: "raw: pg_dump -Z0 | zstd -3",
        LOCAL: "atlas snapshot -> folder",
        S3: f"atlas snapshot -> S3 ({where})",
    }


def check_atlas_ready(command: list[str]) -> tuple[str | None, float | None]:
    """(None, start-up seconds) when ``atlas snapshot --help`` works, else (why not, None).

    The start-up time (best of 3 warm runs) is the floor under every atlas wall time:
    interpreter start, imports and exit, without any work.
    """
    env = {**base_env(), "PYTHONPATH": str(REPO_ROOT)}
    times: list[float] = []
    for _ in range(4):  # the first run may compile .pyc files: not counted
        began = time.perf_counter()
        try:
            out = subprocess.run(
                [*command, "snapshot", "--help"],
                capture_output=True,
                text=True,
                timeout=120,
                cwd=REPO_ROOT,
                env=env,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"cannot run {' '.join(command)}: {exc}", None
        if out.returncode != 0 or "--json" not in out.stdout:
            return (
                f"`{' '.join(command)} snapshot --help` failed: {out.stderr.strip()[-500:]}",
                None,
            )
        times.append(time.perf_counter() - began)
    return None, min(times[1:])


def bench_size(
    cluster: PgCluster,
    size_mb: int,
    variants: Sequence[str],
    ctx_base: dict[str, Any],
    repeat: int,
    atlas_problem: str | None,
    data: str = "mixed",
) -> SizeResult:
    log(f"building a ~{size_mb} MB database of {data!r} data ...")
    if data == "mixed":
        dataset = build_database(cluster, size_mb, workers=max(1, min(2, os.cpu_count() or 1)))
    else:
        from bench import schemas

        dataset = (schemas.build_text if data == "text" else schemas.build_many)(cluster, size_mb)
    log(
        f"loaded {dataset.rows:,} rows, {dataset.db_size_bytes / MB:.1f} MB on disk "
        f"in {dataset.load_s:.1f}s"
    )
    try:
        ctx = Context(url=cluster.url(dataset.dbname), password=cluster.password or "", **ctx_base)
        dataset.raw_dump_bytes, dataset.raw_dump_s = measure_raw_dump(ctx)
        log(
            f"raw pg_dump -Fc -Z0: {dataset.raw_dump_bytes / MB:.1f} MB in "
            f"{dataset.raw_dump_s:.2f}s (warm-up)"
        )
        names = labels(ctx.s3)
        results = {v: VariantResult(v, names[v]) for v in variants}
        for v in variants:
            if v in ATLAS_VARIANTS and atlas_problem:
                results[v].error = atlas_problem
        for i in range(repeat):
            for v in variants:
                res = results[v]
                if res.error:
                    continue
                try:
                    before = machine_cpu_s()
                    run = RUNNERS[v](ctx)
                    run.cpu_s = machine_cpu_s() - before
                except BenchError as exc:
                    res.error = str(exc)
                    log(f"run {i + 1}/{repeat} {v}: FAILED: {exc}")
                    continue
                res.runs.append(run)
                mem = f", peak RSS {_kb_to_mb(run.peak_rss_kb)} MB" if run.peak_rss_kb else ""
                log(
                    f"run {i + 1}/{repeat} {v}: {run.wall_s:.2f}s, machine CPU {run.cpu_s:.2f}s, "
                    f"{run.size_bytes / MB:.1f} MB{mem}"
                )
    finally:
        with contextlib.suppress(Exception):
            cluster.drop_database(dataset.dbname)
    return SizeResult(dataset, results, make_checks(results))


def _ratio(a: float | int | None, b: float | int | None) -> float | None:
    return a / b if a is not None and b else None


def make_checks(results: dict[str, VariantResult]) -> list[Check]:
    def get(name: str) -> VariantResult:
        return results.get(name) or VariantResult(name, name, error="not run")

    seed, raw, local, s3 = get(SEED), get(RAW), get(LOCAL), get(S3)
    return [
        Check(
            "atlas-local / seed wall time",
            _ratio(local.median_s, seed.median_s),
            TARGET_LOCAL_VS_SEED_WALL,
            "x",
        ),
        Check(
            "atlas-local / seed artifact size",
            _ratio(local.size_bytes, seed.size_bytes),
            TARGET_LOCAL_VS_SEED_SIZE,
            "x",
        ),
        Check(
            "atlas-local / raw pipeline wall time",
            _ratio(local.median_s, raw.median_s),
            TARGET_LOCAL_VS_RAW_WALL,
            "x",
        ),
        Check("atlas-s3 / raw pipeline wall time", _ratio(s3.median_s, raw.median_s), None, "x"),
        Check(
            "atlas-local / raw machine CPU-seconds",
            _ratio(local.median_cpu_s, raw.median_cpu_s),
            None,
            "x",
        ),
        Check("atlas-local peak RSS", local.peak_rss_mb, TARGET_PEAK_RSS_MB, "MB", strict=True),
        Check("atlas-s3 peak RSS", s3.peak_rss_mb, TARGET_PEAK_RSS_MB, "MB", strict=True),
    ]


# -- report ----------------------------------------------------------------------------------


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def format_size_report(result: SizeResult, repeat: int) -> str:
    ds = result.dataset
    lines = [
        "",
        f"== ~{ds.requested_mb} MB: database {ds.db_size_bytes / MB:.1f} MB on disk "
        f"(pg_database_size), {ds.rows:,} rows; raw pg_dump -Fc -Z0 {ds.raw_dump_bytes / MB:.1f} MB "
        f"({ds.raw_dump_s:.2f}s); median of {repeat} run(s)",
        "",
        f"{'variant':<40} {'median s':>9} {'min s':>8} {'max s':>8} {'CPU s':>7} {'size MB':>9} "
        f"{'size/raw':>9} {'peak RSS MB':>12}  children peak RSS MB",
    ]
    for res in result.variants.values():
        if not res.ok:
            lines.append(f"{res.label:<40} FAILED: {res.error}")
            continue
        size = res.size_bytes or 0
        children = ", ".join(f"{k} {v:.1f}" for k, v in res.children_peak_mb.items())
        lines.append(
            f"{res.label:<40} {_fmt(res.median_s):>9} {min(r.wall_s for r in res.runs):>8.2f} "
            f"{max(r.wall_s for r in res.runs):>8.2f} {_fmt(res.median_cpu_s):>7} "
            f"{size / MB:>9.1f} {_fmt(_ratio(size, ds.raw_dump_bytes)):>9} "
            f"{_fmt(res.peak_rss_mb, '.1f'):>12}  {children}"
        )
    for res in result.variants.values():
        inner = res.median_atlas_duration_s
        if res.ok and inner is not None and res.median_s is not None:
            startup = (
                f"; `atlas snapshot --help` alone takes {result.atlas_startup_s:.2f}s"
                if result.atlas_startup_s is not None
                else ""
            )
            lines.append(
                f"  {res.name}: atlas's own duration_s {inner:.2f}s of {res.median_s:.2f}s wall "
                f"(the rest is process start-up and exit{startup})"
            )
    lines += ["", "targets:", *(format_check(c) for c in result.checks)]
    return "\n".join(lines)


def format_check(check: Check) -> str:
    """One line: the value, the limit, and PASS, MISS, n/a or (info)."""
    value = _fmt(check.value, ".3f" if check.unit == "x" else ".1f")
    value += check.unit if check.value is not None else ""
    if check.limit is None:
        verdict, limit = "(info)", ""
    else:
        op = "<" if check.strict else "<="
        limit = f"{op} {check.limit:g}{check.unit}"
        verdict = {True: "PASS", False: "MISS", None: "n/a"}[check.passed]
    return f"  {check.name:<40} {value:>10}  {limit:<10} {verdict}"


def format_memory_summary(results: Sequence[SizeResult]) -> str:
    lines = [
        "",
        "== atlas peak RSS across database sizes (flat = streaming works)",
        f"{'requested MB':>12} {'db MB':>9} {'raw dump MB':>12} {'local RSS MB':>13} "
        f"{'s3 RSS MB':>10}",
    ]
    for r in results:
        ds = r.dataset
        local = r.variants.get(LOCAL)
        s3 = r.variants.get(S3)
        lines.append(
            f"{ds.requested_mb:>12} {ds.db_size_bytes / MB:>9.1f} {ds.raw_dump_bytes / MB:>12.1f} "
            f"{_fmt(local.peak_rss_mb if local else None, '.1f'):>13} "
            f"{_fmt(s3.peak_rss_mb if s3 else None, '.1f'):>10}"
        )
    for name in ATLAS_VARIANTS:
        peaks = [
            (r.dataset.raw_dump_bytes, p)
            for r in results
            if (v := r.variants.get(name)) and (p := v.peak_rss_mb) is not None
        ]
        if len(peaks) >= 2:
            (d0, p0), (d1, p1) = min(peaks), max(peaks)
            lines.append(
                f"  {name}: dump grew {d1 / max(d0, 1):.1f}x, peak RSS {p0:.1f} -> {p1:.1f} MB "
                f"({p1 - p0:+.1f} MB)"
            )
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.snapshot_bench",
        description="Time atlas snapshot against pg_dump (gzip) and pg_dump -Z0 | zstd.",
    )
    p.add_argument("--size-mb", type=int, default=300, help="database size in MB (default 300)")
    p.add_argument(
        "--sizes",
        default=None,
        help="comma-separated sizes in MB, e.g. 300,1000: run at each and compare peak RSS",
    )
    p.add_argument("--repeat", type=int, default=3, help="runs per variant; median is reported")
    p.add_argument(
        "--data",
        choices=("mixed", "text", "many"),
        default="mixed",
        help="mixed: poorly compressible rows (default); text: hex text, ~2:1; "
        "many: bench.schemas' 49-table application schema",
    )
    p.add_argument(
        "--variants",
        default=",".join(ALL_VARIANTS),
        help=f"comma-separated subset of {','.join(ALL_VARIANTS)}",
    )
    p.add_argument("--json", action="store_true", help="print results as JSON on stdout")
    p.add_argument(
        "--s3-endpoint",
        default=None,
        help="use this S3-compatible endpoint (e.g. SeaweedFS) instead of an in-process moto; "
        "credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (default testing/testing)",
    )
    p.add_argument("--s3-bucket", default=None, help="bucket to use/create (default: generated)")
    p.add_argument(
        "--timeout", type=float, default=None, help="seconds per run (default: scales with size)"
    )
    p.add_argument(
        "--strict", action="store_true", help="exit 1 when a target is missed, not only on errors"
    )
    args = p.parse_args(argv)
    try:
        args.size_list = (
            [int(s) for s in args.sizes.split(",") if s.strip()] if args.sizes else [args.size_mb]
        )
    except ValueError:
        p.error("--sizes takes comma-separated integers, e.g. 300,1000")
    if not args.size_list or min(args.size_list) < 1:
        p.error("sizes must be positive")
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    args.variant_list = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(args.variant_list) - set(ALL_VARIANTS))
    if unknown or not args.variant_list:
        p.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(ALL_VARIANTS)}")
    return args


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if str(REPO_ROOT) not in sys.path:  # run as a file rather than with -m from the repo root
        sys.path.insert(0, str(REPO_ROOT))
    from tests.support.pg import PgCluster

    # Clean up on Ctrl-C and SIGTERM, even when started with SIGINT ignored (e.g. `cmd &`).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    pg_dump = shutil.which("pg_dump")
    zstd = shutil.which("zstd") or "/usr/bin/zstd"
    if not pg_dump:
        from tests.support.pg import pg_bindir

        pg_dump = os.path.join(pg_bindir(), "pg_dump")
    atlas = atlas_command()
    variants = args.variant_list
    results: list[SizeResult] = []
    meta: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "pg_dump": _version([pg_dump, "--version"]),
        "zstd": _version([zstd, "--version"]),
        "atlas_command": atlas,
        "repeat": args.repeat,
        "variants": variants,
    }
    try:
        atlas_problem: str | None = None
        atlas_startup_s: float | None = None
        if set(variants) & set(ATLAS_VARIANTS):
            atlas_problem, atlas_startup_s = check_atlas_ready(atlas)
            if atlas_problem:
                log(f"atlas is not usable, its variants will be skipped: {atlas_problem}")
            else:
                log(f"atlas: {' '.join(atlas)} (start-up alone: {atlas_startup_s:.2f}s)")
        meta["atlas_startup_s"] = _round(atlas_startup_s)
        with contextlib.ExitStack() as stack:
            work = Path(tempfile.mkdtemp(prefix="atlas-bench-"))
            stack.callback(shutil.rmtree, work, ignore_errors=True)
            log("starting a throwaway PostgreSQL cluster ...")
            cluster = PgCluster(password_auth=True, in_memory=False)
            cluster.start()
            stack.callback(cluster.stop)
            meta["server"] = cluster.execute("postgres", "SHOW server_version")[0][0]
            s3: S3Target | None = None
            if S3 in variants:
                s3 = stack.enter_context(open_s3(args.s3_endpoint, args.s3_bucket))
                meta["s3"] = {"kind": s3.kind, "endpoint": s3.endpoint, "bucket": s3.bucket}
                log(f"S3 ({s3.kind}) at {s3.endpoint}, bucket {s3.bucket}")
            for size_mb in args.size_list:
                ctx_base = {
                    "pg_dump": pg_dump,
                    "zstd": zstd,
                    "atlas": atlas,
                    "work": work,
                    "timeout": args.timeout or max(600.0, size_mb * 1.5),
                    "s3": s3,
                }
                result = bench_size(
                    cluster, size_mb, variants, ctx_base, args.repeat, atlas_problem, args.data
                )
                result.atlas_startup_s = atlas_startup_s
                results.append(result)
                report = format_size_report(result, args.repeat)
                print(report, file=sys.stderr if args.json else sys.stdout, flush=True)
            log("cleaning up ...")
    except KeyboardInterrupt:
        log("interrupted; cluster, temp files and S3 server were cleaned up")
        return 130
    except BenchError as exc:
        log(f"error: {exc}")
        return 1

    if len(results) > 1:
        print(format_memory_summary(results), file=sys.stderr if args.json else sys.stdout)
    if args.json:
        doc = {"meta": meta, "results": [r.to_json() for r in results]}
        print(json.dumps(doc, indent=2))
    failed = any(not v.ok for r in results for v in r.variants.values())
    missed = any(c.passed is False for r in results for c in r.checks)
    return 1 if failed or (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
