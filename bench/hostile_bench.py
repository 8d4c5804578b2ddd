"""What does `atlas serve --http` hold under an attacker's load? Prints numbers; not a test.

    python -m bench.hostile_bench                 # 3 rounds
    python -m bench.hostile_bench --rounds 5 --slow 250,500,900
    python -m bench.hostile_bench --checkout /tmp/atlas-old   # another version, to compare

Each round starts a fresh `atlas serve --http` (Slack configured against a local fake Web
API, a throwaway PostgreSQL behind it) and reads its peak resident memory (VmHWM):

- at rest;
- after three unsigned 100 MB bodies at once (two with Content-Length, one chunked);
- after 200 signed `/atlas help` commands sent over 10 s (20 a second, 4 at a time);

then opens slow connections (each sends a header byte every 2 s) in steps, and at each
step times `/healthz` and a signed command. Medians of the rounds, with their range.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.snapshot_bench import atlas_command, base_env, log

SECRET = "bench-signing-secret"


def vm_hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM")


def flood(port: int, size: int, chunked: bool) -> None:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
    forged = f"X-Slack-Request-Timestamp: {int(time.time())}\r\nX-Slack-Signature: v0=00"
    head = f"POST /slack/events HTTP/1.1\r\nHost: x\r\n{framing}\r\n{forged}\r\n\r\n".encode()
    piece = b"x" * (1 << 20)
    try:
        sock.sendall(head)
        for _ in range(size // len(piece)):
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        sock.recv(100)
    except OSError:
        pass
    finally:
        sock.close()


def timed(call: Any) -> float | None:
    """Seconds `call` took, or None when it failed or gave up (30 s)."""
    began = time.monotonic()
    try:
        call()
    except (OSError, AssertionError):
        return None
    return round(time.monotonic() - began, 3)


def health(port: int) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=30) as r:
        assert r.status == 200


def command(port: int, response_url: str) -> None:
    from tests.support.slack import post_slash_command

    code, _ = post_slash_command(
        f"http://127.0.0.1:{port}", SECRET, text="help", response_url=response_url, timeout=30
    )
    assert code == 200, code


def slow_steps(port: int, steps: list[int], response_url: str) -> list[dict[str, Any]]:
    socks: list[socket.socket] = []
    stop = threading.Event()

    def drip() -> None:
        while not stop.wait(2):
            for s in list(socks):
                with contextlib.suppress(OSError):
                    s.send(b"X")

    threading.Thread(target=drip, daemon=True).start()
    out = []
    try:
        for n in steps:
            while len(socks) < n:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                s.sendall(b"POST /slack/events HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                socks.append(s)
            time.sleep(2.5)
            out.append(
                {
                    "slow": n,
                    "healthz_s": timed(lambda: health(port)),
                    "command_s": timed(lambda: command(port, response_url)),
                }
            )
    finally:
        stop.set()
        for s in socks:
            s.close()
    return out


def one_round(
    url: str, slack: Any, folder: Path, steps: list[int], checkout: Path | None
) -> dict[str, Any]:
    from tests.support import pick_free_port

    port = pick_free_port()
    env = {
        **base_env(),
        "DATABASE_URL": url,
        "ATLAS_STORAGE": str(folder / "backups"),
        "ATLAS_STATE": str(folder / "atlas.db"),
        "SLACK_BOT_TOKEN": "xoxb-bench-token",
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": slack.url,
        "ATLAS_CHANNEL": "CBENCH",
    }
    atlas = atlas_command()
    if checkout is not None:  # another version of Atlas, for a before-and-after
        atlas = [sys.executable, "-m", "bot.cli"]
        env["PYTHONPATH"] = str(checkout)
    argv = [*atlas, "serve", "--http", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(
        argv, env=env, cwd=checkout, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.time() + 30
        while True:
            try:
                health(port)
                break
            except (OSError, AssertionError):
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError("atlas serve did not start") from None
                time.sleep(0.1)
        rest = vm_hwm_mib(proc.pid)
        floods = [
            threading.Thread(target=flood, args=(port, 100 << 20, chunked))
            for chunked in (False, False, True)
        ]
        for t in floods:
            t.start()
        for t in floods:
            t.join()
        after_floods = vm_hwm_mib(proc.pid)
        began = time.monotonic()
        with ThreadPoolExecutor(4) as pool:
            for i in range(200):
                time.sleep(max(0.0, began + i / 20 - time.monotonic()))
                pool.submit(command, port, slack.response_url)
        commands_s = time.monotonic() - began
        after_commands = vm_hwm_mib(proc.pid)
        slow = slow_steps(port, steps, slack.response_url)
        return {
            "rest_mib": round(rest, 1),
            "after_floods_mib": round(after_floods, 1),
            "after_200_commands_mib": round(after_commands, 1),
            "commands_took_s": round(commands_s, 2),
            "slow": slow,
        }
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def spread(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    if len(known) < len(values):
        return f"{len(values) - len(known)} of {len(values)} gave up"
    return f"{statistics.median(known):.2f} ({min(known):.2f}-{max(known):.2f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--slow", default="250,500,900", help="slow connections, in steps")
    parser.add_argument("--checkout", type=Path, help="run the Atlas of another checkout")
    args = parser.parse_args()
    steps = [int(n) for n in args.slow.split(",")]
    from tests.support.pg import PgCluster, fill_sample
    from tests.support.slack import FakeSlackApi

    rounds = []
    with (
        PgCluster(in_memory=False) as cluster,
        FakeSlackApi() as slack,
        tempfile.TemporaryDirectory() as tmp,
    ):
        cluster.create_database("app")
        fill_sample(cluster.url("app"), rows=100)
        for n in range(args.rounds):
            log(f"round {n + 1} of {args.rounds}")
            folder = Path(tmp) / str(n)
            rounds.append(one_round(cluster.url("app"), slack, folder, steps, args.checkout))
    print(json.dumps(rounds, indent=2))
    for key in ("rest_mib", "after_floods_mib", "after_200_commands_mib", "commands_took_s"):
        print(f"{key:>24}: {spread([r[key] for r in rounds])}")
    for i, n in enumerate(steps):
        hz = [r["slow"][i]["healthz_s"] for r in rounds]
        cmd = [r["slow"][i]["command_s"] for r in rounds]
        print(f"{n:>5} slow connections: /healthz {spread(hz)} s, signed command {spread(cmd)} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
