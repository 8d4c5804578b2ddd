"""Atlas under hostile conditions: an attacker on the network, another user on the same
host, a mistyped URL, a reader that leaves early. Each class of attack has its test here,
so the next one found has a home."""

from __future__ import annotations

import ast
import contextlib
import http.client
import json
import logging
import os
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bot import files
from bot.cli import main
from bot.errors import AtlasError
from bot.report.home import HOME_ACTION
from bot.report.messages import DRILL_ACTION
from bot.report.modal import RESTORE_MODAL, SHORTCUT
from bot.slack import http as endpoint
from tests.support import pick_free_port
from tests.support.bot import SECRET as BOT_SECRET
from tests.support.catalogs import state_for
from tests.support.helpers import REPO, cli_env, run_cli, serve_command, wait_healthy
from tests.support.pg import fill_sample
from tests.support.slack import (
    block_actions_payload,
    post_event,
    post_interaction,
    reaction_event,
    sign,
)

SECRET = "hostile-signing-secret"
NOBODY = 65534  # another user of the host
# These attacks are on the endpoint and the host, not on the catalog: each runs once.
pytestmark = pytest.mark.sqlite_only

# -- the HTTP endpoint -----------------------------------------------------------------------


@pytest.fixture
def served(pg_url: str, tmp_path: Path, slack_api: Any) -> Iterator[tuple[int, subprocess.Popen]]:
    """`atlas serve --http` as its own process, so its memory can be read."""
    env = cli_env(
        tmp_path,
        DATABASE_URL=pg_url,
        SLACK_BOT_TOKEN="xoxb-hostile-token",
        SLACK_SIGNING_SECRET=SECRET,
        SLACK_API_URL=slack_api.url,
        ATLAS_CHANNEL="CATLAS",
    )
    port = pick_free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(serve_command(port), env=env, stdout=out, stderr=out)
    try:
        wait_healthy(port, proc, time.time() + 30, log.read_text)
        yield port, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def peak_rss_mib(pid: int) -> float:
    """The process's high-water mark of resident memory (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def _flood(port: int, size: int, *, chunked: bool) -> bytes:
    """An unsigned POST of `size` bytes; what the server answered (b'' if it hung up)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
    forged = f"X-Slack-Request-Timestamp: {int(time.time())}\r\nX-Slack-Signature: v0=00\r\n"
    head = (
        f"POST /slack/events HTTP/1.1\r\nHost: x\r\n{framing}\r\n{forged}"
        "Content-Type: application/json\r\n\r\n"
    )
    piece = b"x" * (1 << 20)
    try:
        sock.sendall(head.encode())
        for _ in range(size // len(piece)):
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        if chunked:
            sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass  # the server stopped reading: refused, as it should
    try:
        return sock.recv(200)
    except OSError:
        return b""
    finally:
        sock.close()


def test_an_oversized_unsigned_body_is_refused_before_it_is_read(
    served: tuple[int, subprocess.Popen],
) -> None:
    port, proc = served
    before = peak_rss_mib(proc.pid)
    threads = [
        threading.Thread(target=_flood, args=(port, 100 << 20), kwargs={"chunked": chunked})
        for chunked in (False, True)
    ]
    for t in threads:
        t.start()
    answer = _flood(port, 100 << 20, chunked=False)
    for t in threads:
        t.join(60)
    assert answer.startswith(b"HTTP/1.1 413"), answer
    grown = peak_rss_mib(proc.pid) - before
    assert grown < 32, f"three 100 MB bodies raised peak memory by {grown:.0f} MiB"
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
        assert r.status == 200


def _drip(socks: list[socket.socket], stop: threading.Event) -> None:
    while not stop.wait(2):
        for s in socks:
            with contextlib.suppress(OSError):
                s.send(b"X")


def _timed(call: Any) -> tuple[float, Any]:
    began = time.monotonic()
    result = call()
    return time.monotonic() - began, result


def test_slow_clients_hold_no_slot_and_health_and_commands_answer(bot: Any) -> None:
    port = int(bot.url.rsplit(":", 1)[1])
    socks = []
    for _ in range(300):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"POST /slack/events HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        socks.append(s)
    stop = threading.Event()
    dripper = threading.Thread(target=_drip, args=(socks, stop), daemon=True)
    dripper.start()
    try:
        time.sleep(2.5)  # every slow connection is open and has dripped
        took, status = _timed(
            lambda: urllib.request.urlopen(f"{bot.url}/healthz", timeout=5).status
        )
        assert status == 200 and took < 1, f"/healthz took {took:.2f} s"
        took, (code, _) = _timed(lambda: bot.command("help"))
        assert code == 200 and took < 1, f"a signed command took {took:.2f} s"
        # none may take longer than the deadline to arrive: the server hangs up on them
        deadline = time.monotonic() + endpoint.REQUEST_DEADLINE_S + 5
        for s in socks:
            s.settimeout(max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ConnectionResetError):  # closed with bytes unread
                assert s.recv(100) == b"", "a request still arriving after the deadline"
    finally:
        stop.set()
        for s in socks:
            s.close()


def _request(url: str, body: bytes, content_type: str, signed: bool, method: str = "POST") -> int:
    conn = http.client.HTTPConnection(url.removeprefix("http://"), timeout=10)
    headers = {"Content-Type": content_type}
    headers.update(sign(BOT_SECRET if signed else "not-the-secret", body))
    conn.request(method, "/slack/events", body=body if method == "POST" else None, headers=headers)
    status = conn.getresponse().status
    conn.close()
    return status


MALFORMED = [
    ("unsigned form", b"payload={bad", "application/x-www-form-urlencoded", False, 401),
    ("unsigned JSON array", b"[]", "application/json", False, 401),
    ("signed payload=null", b"payload=null", "application/x-www-form-urlencoded", True, 400),
    ("signed bad payload", b"payload=%7Bbad", "application/x-www-form-urlencoded", True, 400),
    ("signed JSON array", b"[]", "application/json", True, 400),
    ("signed JSON garbage", b"{nope", "application/json", True, 400),
    ("signed bytes", b"\xff\xfe\x00", "application/x-www-form-urlencoded", True, 400),
    ("signed plain text", b"hello", "text/plain", True, 400),
    ("signed JSON nested past Python's depth", b"[" * 200_000, "application/json", True, 400),
    (
        "signed payload nested so",
        b"payload=" + b"%5B" * 100_000,
        "application/x-www-form-urlencoded",
        True,
        400,
    ),
]


def test_malformed_requests_get_a_4xx_and_one_log_line(
    bot: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    for name, body, kind, signed, want in MALFORMED:
        caplog.clear()
        assert _request(bot.url, body, kind, signed) == want, name
        ours = [r for r in caplog.records if r.name == endpoint.__name__]
        assert len(ours) == 1 and "\n" not in ours[0].getMessage(), name
        assert not any(r.exc_info for r in caplog.records), name
        assert "Traceback" not in caplog.text, name
    assert _request(bot.url, b"", "text/plain", True, method="GET") == 405
    assert bot.command("help")[0] == 200  # and Slack's own requests still pass


@pytest.mark.parametrize(
    ("stamp", "signature"),
    [
        ("1" * 5000, "v0=00"),  # int() of it raises past 4,300 digits
        (None, "v0=\u00e9\u00e9"),  # compare_digest raises on non-ASCII text
    ],
)
def test_hostile_signature_headers_are_a_401_and_one_log_line(
    bot: Any, caplog: pytest.LogCaptureFixture, stamp: str | None, signature: str
) -> None:
    """Unsigned requests whose headers would make the check itself raise: a 401 like any
    bad signature, never a 500 with a traceback."""
    caplog.set_level(logging.INFO)
    conn = http.client.HTTPConnection(bot.url.removeprefix("http://"), timeout=10)
    headers = {
        "Content-Type": "application/json",
        "X-Slack-Request-Timestamp": stamp or str(int(time.time())),
        "X-Slack-Signature": signature,
    }
    conn.putrequest("POST", "/slack/events")
    for name, value in headers.items():
        conn.putheader(name, value.encode("latin-1", "replace") if not value.isascii() else value)
    conn.putheader("Content-Length", "2")
    conn.endheaders(b"{}")
    assert conn.getresponse().status == 401
    conn.close()
    assert "Traceback" not in caplog.text and not any(r.exc_info for r in caplog.records)
    assert bot.command("help")[0] == 200


def _view(values: Any, **over: Any) -> dict[str, Any]:
    view = {"id": "V1", "type": "modal", "callback_id": RESTORE_MODAL}
    view |= {"private_metadata": '{"channel": "C1"}', "state": {"values": values}}
    return {
        "type": "view_submission",
        "team": {"id": "T1"},
        "user": {"id": "U1"},
        "view": view,
        **over,
    }


GOOD_FORM = {"target": {"target": {"selected_option": {"value": "drill"}}}}
OVERFLOW = {"action_id": HOME_ACTION, "type": "overflow", "block_id": "b", "selected_option": "x"}
SIGNED_ODD_SHAPES = [
    ("interaction", block_actions_payload(DRILL_ACTION, "app") | {"actions": "x"}),
    ("interaction", block_actions_payload(DRILL_ACTION, "app") | {"user": "U1"}),
    ("interaction", block_actions_payload(HOME_ACTION) | {"actions": [OVERFLOW]}),
    ("interaction", _view({**GOOD_FORM, "snapshot": "x"})),
    ("interaction", _view({**GOOD_FORM, "snapshot": {"snapshot": {}}}, user="U1")),
    (
        "interaction",
        {"type": "message_action", "callback_id": SHORTCUT, "user": {"id": "U1"}, "message": "x"},
    ),
    ("event", reaction_event("added", "U1", "white_check_mark", "C1", "1.2") | {"item": "x"}),
    ("event", reaction_event("added", "U1", "white_check_mark", "C1", "1.2") | {"user": 7}),
]


def test_signed_requests_of_shapes_slack_never_sends_log_one_line(
    bot: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Signed, so from Slack or someone holding the secret, but with a field of another
    type than Slack sends: a 4xx or a one-line warning, never a 500 or a traceback."""
    from concurrent.futures import ThreadPoolExecutor

    caplog.set_level(logging.INFO)

    def send(case: tuple[str, dict[str, Any]]) -> int:
        kind, payload = case
        if kind == "event":
            return post_event(bot.url, BOT_SECRET, payload)[0]
        return post_interaction(bot.url, BOT_SECRET, payload)[0]

    with ThreadPoolExecutor(len(SIGNED_ODD_SHAPES)) as pool:  # some wait out Bolt's 3 s
        statuses = list(pool.map(send, SIGNED_ODD_SHAPES))
    time.sleep(0.3)  # a listener that acked first logs just after
    assert 500 not in statuses and "Traceback" not in caplog.text, (statuses, caplog.text)
    assert not any(r.exc_info for r in caplog.records if r.levelno > logging.DEBUG)
    assert caplog.text.count("could not be handled") >= 3  # each said, in one line
    assert bot.command("help")[0] == 200


def test_shapes_slack_sends_pass_the_gate() -> None:
    form = "application/x-www-form-urlencoded"
    assert endpoint.malformed(b"command=%2Fatlas&text=help", form) is None
    assert endpoint.malformed(b'payload={"type":"block_actions"}', form) is None
    assert (
        endpoint.malformed(b'{"type":"event_callback"}', "application/json; charset=utf-8") is None
    )


# -- files on the host -----------------------------------------------------------------------

# Calls that make a file or folder, and the module allowed to make them.
CREATING = {"mkdir", "makedirs", "mkstemp", "mkdtemp", "TemporaryFile", "NamedTemporaryFile"}
CREATING |= {"SpooledTemporaryFile", "write_text", "write_bytes", "touch", "copyfile", "copy"}
CREATING |= {"copy2", "copytree", "symlink_to", "hardlink_to", "link", "symlink"}


def _creates(call: ast.Call) -> bool:
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    if name in CREATING:
        return True
    text = ast.unparse(call)
    if name == "open" and isinstance(func, ast.Attribute) and ast.unparse(func.value) == "os":
        return "O_CREAT" in text
    if name in ("open", "fdopen") and len(call.args) > 1:
        mode = call.args[1]
        return isinstance(mode, ast.Constant) and any(c in str(mode.value) for c in "wxa+")
    return name == "connect" and "sqlite3" in text


def test_only_the_files_module_creates_files() -> None:
    """Every place Atlas makes a file goes through `bot/files.py`, which makes them private
    and never through a link: a new place elsewhere fails here."""
    allowed = {("bot/files.py", "*"), ("bot/catalog/sqlite/connection.py", "connect")}
    found = []
    for path in sorted([*REPO.glob("bot/**/*.py"), *REPO.glob("handlers/**/*.py")]):
        rel = path.relative_to(REPO).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and _creates(node):
                name = getattr(node.func, "attr", getattr(node.func, "id", ""))
                if (rel, "*") not in allowed and (rel, name) not in allowed:
                    found.append(f"{rel}:{node.lineno}: {ast.unparse(node)[:80]}")
    # bytes read back through fdopen of a descriptor files.temp_file made are no new file
    found = [f for f in found if "os.fdopen(fd, 'wb')" not in f]
    assert not found, "files made outside bot/files.py:\n" + "\n".join(found)


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file of root's that another user would like Atlas to overwrite."""
    path = tmp_path / "victim"
    path.write_text("precious\n")
    return path


def plant(link: Path, target: Path, uid: int = NOBODY) -> None:
    link.symlink_to(target)
    os.lchown(link, uid, uid)


def test_files_never_follow_a_planted_link(tmp_path: Path, victim: Path) -> None:
    """Each way `bot/files.py` makes a file, against a link planted where it makes it."""
    for make in (files.create, lambda p: files.write_new(p, b"x")):
        plant(tmp_path / "named", victim)
        with pytest.raises(FileExistsError):
            make(tmp_path / "named")
        (tmp_path / "named").unlink()
    plant(tmp_path / "folder", tmp_path)
    with pytest.raises(AtlasError, match="symbolic link owned by another user"):
        files.make_dirs(tmp_path / "folder" / "sub")
    assert not (tmp_path / "sub").exists()
    # names made beside a file, in a folder of the run's, and scratch files: unguessable
    names = {files.create_beside(tmp_path / "out")[0].name for _ in range(3)}
    names |= {files.private_folder(tmp_path, "run-").name for _ in range(3)}
    names |= {Path(files.temp_file(tmp_path, "t-", ".x")[1]).name for _ in range(3)}
    assert len(names) == 9
    # replacing a file replaces a link planted there, never writes through it
    plant(tmp_path / "config", victim)
    files.replace_with(tmp_path / "config", b"new\n")
    assert (tmp_path / "config").read_bytes() == b"new\n"
    assert not (tmp_path / "config").is_symlink() and victim.read_text() == "precious\n"


@pytest.fixture
def snapped(pg_url: str, tmp_path: Path) -> tuple[dict[str, str], str]:
    fill_sample(pg_url, rows=300)
    env = cli_env(tmp_path, DATABASE_URL=pg_url)
    run = run_cli(["snapshot", "--json"], env, tmp_path, text=True)
    assert run.returncode == 0, run.stderr
    return env, json.loads(run.stdout)["id"]


def test_fetch_never_writes_through_a_planted_link(
    snapped: tuple[dict[str, str], str], tmp_path: Path, victim: Path
) -> None:
    env, snap_id = snapped
    out = tmp_path / "shared" / "app.dump"
    out.parent.mkdir()
    plant(out.parent / ".app.dump.partial", victim)  # the name fetch once wrote under
    assert run_cli(["fetch", snap_id, "-o", str(out)], env, tmp_path).returncode == 0
    assert victim.read_text() == "precious\n" and out.read_bytes()[:5] == b"PGDMP"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    out.unlink()
    plant(out, victim)  # a link at the output itself: refused, then replaced with --force
    refused = run_cli(["fetch", snap_id, "-o", str(out)], env, tmp_path, text=True)
    assert refused.returncode == 1 and "already exists" in refused.stderr
    assert run_cli(["fetch", snap_id, "-o", str(out), "--force"], env, tmp_path).returncode == 0
    assert victim.read_text() == "precious\n" and not out.is_symlink()


def test_fetch_force_never_replaces_a_device_or_a_pipe(
    snapped: tuple[dict[str, str], str], tmp_path: Path
) -> None:
    """`-o /dev/null --force` once renamed a file over the device itself."""
    env, snap_id = snapped
    null, pipe = tmp_path / "null", tmp_path / "pipe"
    os.mknod(null, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # as /dev/null
    os.mkfifo(pipe)
    for node, kind in ((null, stat.S_ISCHR), (pipe, stat.S_ISFIFO)):
        refused = run_cli(["fetch", snap_id, "-o", str(node), "--force"], env, tmp_path, text=True)
        assert refused.returncode == 1 and "not a regular file" in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr and kind(node.lstat().st_mode)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # nothing half-made


def test_a_catalog_link_planted_by_another_user_is_refused(
    pg_url: str, tmp_path: Path, victim: Path
) -> None:
    victim.write_bytes(b"")  # SQLite would take an empty file for a new database
    catalog = tmp_path / "shared" / "atlas.db"
    catalog.parent.mkdir()
    for name in ("atlas.db", "atlas.db-wal"):
        plant(catalog.parent / name, victim)
        env = cli_env(tmp_path, DATABASE_URL=pg_url, ATLAS_STATE=str(catalog))
        run = run_cli(["list"], env, tmp_path, text=True)
        assert run.returncode == 1 and "symbolic link owned by another user" in run.stderr
        assert len(run.stderr.strip().splitlines()) == 1
        assert victim.read_bytes() == b""
        (catalog.parent / name).unlink()


def _modes(root: Path) -> dict[str, int]:
    return {
        str(p.relative_to(root)): stat.S_IMODE(p.lstat().st_mode) for p in [root, *root.rglob("*")]
    }


def _umask_022() -> None:
    os.umask(0o022)


def _atlas(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_umask_022,
        check=False,
    )


@pytest.mark.parametrize("group", [None, "nogroup"])
def test_every_kind_of_file_is_private_under_umask_022(
    pg: Any, pg_db: str, pg_url: str, tmp_path: Path, group: str | None
) -> None:
    fill_sample(pg_url, rows=100)
    home = tmp_path / "var"
    extra = {"ATLAS_FILE_GROUP": group} if group else {}
    env = cli_env(
        tmp_path,
        DATABASE_URL=pg.url("postgres"),
        ATLAS_DATABASES=pg_db,
        ATLAS_STORAGE=str(home / "backups"),
        ATLAS_STATE=str(home / "state" / "atlas.db"),
        **extra,
    )
    keyed = {**env, "ATLAS_ENCRYPTION_KEY_FILE": str(tmp_path / "age.key")}
    assert _atlas(["keygen", "-o", str(tmp_path / "age.key")], env, tmp_path).returncode == 0
    for run_env in (env, keyed):  # plain and encrypted: artifacts, sidecars, globals
        run = _atlas(["snapshot", "--all", "--json"], run_env, tmp_path)
        assert run.returncode == 0, run.stderr
    snap = json.loads(run.stdout)["snapshots"][0]["id"]
    assert (
        _atlas(["fetch", snap, "-o", str(tmp_path / "out.dump")], keyed, tmp_path).returncode == 0
    )
    want_file, want_dir = (0o640, 0o750) if group else (0o600, 0o700)
    modes = _modes(home)
    kinds = {Path(name).suffixes[-1] if Path(name).suffix else "folder" for name in modes}
    assert {".zst", ".age", ".json", ".db", "folder"} <= kinds, sorted(modes)
    for name, mode in modes.items():
        is_dir = (home / name).is_dir()
        assert mode == (want_dir if is_dir else want_file), f"{name}: {mode:o}"
        if group:
            assert (home / name).stat().st_gid == files.Access.for_group(group).gid, name
    assert stat.S_IMODE((tmp_path / "out.dump").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "age.key").stat().st_mode) == 0o600


def test_doctor_flags_a_storage_folder_every_user_can_read(
    snapped: tuple[dict[str, str], str], tmp_path: Path
) -> None:
    env, _ = snapped
    backups = tmp_path / "backups"
    backups.chmod(0o755)
    run = run_cli(["doctor"], env, tmp_path, text=True)
    assert run.returncode == 1
    [line] = [ln for ln in run.stdout.splitlines() if "storage folder" in ln]
    assert "❌" in line and "every user of this host" in line and "chmod o-rwx" in line
    backups.chmod(0o700)
    run = run_cli(["doctor"], env, tmp_path, text=True)
    [line] = [ln for ln in run.stdout.splitlines() if "storage folder" in ln]
    assert "✅" in line, line


# -- what an encrypted snapshot leaves readable ---------------------------------------------

TABLES = ("users", "orders")


def _leaks(text: str, counts: dict[str, int], note: str) -> list[str]:
    found = [t for t in TABLES if t in text]
    found += [f"rows {n}" for n in counts.values() if f": {n}" in text or f":{n}," in text]
    return found + [w for w in (note, "U_REQUESTER", "rows", "sequences") if w in text]


@pytest.mark.parametrize("where", ["folder", "s3"])
def test_an_encrypted_snapshot_names_no_table_and_counts_no_row_in_the_clear(
    pg_url: str,
    tmp_path: Path,
    key_file: tuple[Path, str],
    where: str,
    request: pytest.FixtureRequest,
) -> None:
    counts = fill_sample(pg_url, rows=321)
    note = "before migration 0042"
    storage, aws = str(tmp_path / "backups"), {}
    if where == "s3":
        bucket = request.getfixturevalue("s3_env")
        storage = f"s3://{bucket}/atlas"
        aws = {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    env = cli_env(
        tmp_path,
        DATABASE_URL=pg_url,
        ATLAS_STORAGE=storage,
        ATLAS_ENCRYPTION_KEY_FILE=str(key_file[0]),
        **aws,
    )
    env["USER"] = env["LOGNAME"] = "U_REQUESTER"
    run = run_cli(["snapshot", "--json", "--note", note], env, tmp_path, text=True)
    assert run.returncode == 0, run.stderr
    snap = json.loads(run.stdout)
    sidecar, metadata = _stored_sidecar(snap, where, request)
    assert not _leaks(sidecar + metadata, counts, note), sidecar
    doc = json.loads(sidecar)
    assert doc["sealed"] and doc["recipient"] == key_file[1] and doc["sha256"] == snap["sha256"]

    # a lost catalog comes back from storage with the key, manifest and note included
    fresh = {**env, "ATLAS_STATE": state_for(tmp_path / "new")}
    assert run_cli(["rescan"], fresh, tmp_path).returncode == 0
    shown = json.loads(run_cli(["show", snap["id"], "--json"], fresh, tmp_path, text=True).stdout)
    assert shown["manifest"] == snap["manifest"] and shown["note"] == note
    # without it, rescan says why it cannot adopt the snapshot
    keyless = {k: v for k, v in fresh.items() if k != "ATLAS_ENCRYPTION_KEY_FILE"}
    keyless["ATLAS_STATE"] = state_for(tmp_path / "keyless")
    found = json.loads(run_cli(["rescan", "--json"], keyless, tmp_path, text=True).stdout)
    reasons = json.dumps(found)
    assert "no key is configured" in reasons and "imported" not in reasons


def _stored_sidecar(snap: dict[str, Any], where: str, request: Any) -> tuple[str, str]:
    """The sidecar's text, and every piece of S3 object metadata next to it."""
    sidecar_key = snap["storage_key"].split(".", 1)[0] + ".json"
    if where == "folder":
        return Path(snap["location"]).with_name(Path(sidecar_key).name).read_text(), ""
    client, bucket = request.getfixturevalue("s3_client"), request.getfixturevalue("s3_env")
    key = f"atlas/{sidecar_key}"
    text = client.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    heads = [
        client.head_object(Bucket=bucket, Key=k) for k in (key, f"atlas/{snap['storage_key']}")
    ]
    return text, json.dumps([h.get("Metadata", {}) for h in heads])


def test_the_documented_opt_out_keeps_the_manifest_readable(
    pg_url: str, tmp_path: Path, key_file: tuple[Path, str]
) -> None:
    fill_sample(pg_url, rows=50)
    env = cli_env(
        tmp_path,
        DATABASE_URL=pg_url,
        ATLAS_ENCRYPTION_KEY_FILE=str(key_file[0]),
        ATLAS_SIDECAR_PLAIN="true",
    )
    snap = json.loads(run_cli(["snapshot", "--json"], env, tmp_path, text=True).stdout)
    doc = json.loads(Path(snap["location"]).with_name(f"{snap['id']}.json").read_text())
    assert "sealed" not in doc and doc["manifest"] == snap["manifest"]


# -- mistyped URLs ---------------------------------------------------------------------------

PASSWORD = "Typo-Pw-93"
MISTYPED = {
    "ATLAS_STORAGE": [
        "s3:/acme-backups/atlas",
        "S3://acme-backups/atlas",
        "s3//acme-backups/atlas",
        "s3:acme-backups/atlas",
        "s3://Bad_Bucket/atlas",
        "s3 ://acme-backups/atlas",  # a space before the colon: no folder of that name
        f"AKIAKEY:{PASSWORD}@acme-backups/atlas",  # credentials, and no scheme
    ],
    "ATLAS_STATE": [
        f"postgres:/atlas:{PASSWORD}@db/catalog",
        f"postgresql:/atlas:{PASSWORD}@db/catalog",
        f"postgresql//atlas:{PASSWORD}@db/catalog",
        f"postgresq://atlas:{PASSWORD}@db/catalog",
        f"postgres ://atlas:{PASSWORD}@db/catalog",
    ],
    "ATLAS_WORK_DIR": ["s3://acme-scratch/tmp"],
    "ATLAS_CONFIG": [f"https://atlas:{PASSWORD}@config.example/atlas.toml"],
    "SLACK_API_URL": ["slack.com/api/"],
    "AWS_ENDPOINT_URL": ["127.0.0.1:9000"],
    "ATLAS_COPIES": [
        f"offsite=s3:/atlas:{PASSWORD}@acme-offsite/db",
        f"s3//atlas:{PASSWORD}@acme-offsite/db",
        f"nas=S3://{PASSWORD}/db",
    ],
}
# Commands with the arguments they need to get as far as reading their settings.
ARGS = {
    "audit": [],
    "copy": [],
    "catalog": ["migrate", "--to", "postgresql://atlas@db/catalog"],
    "doctor": [],
    "drill": ["--yes"],
    "drills": [],
    "fetch": ["latest", "-o", "out.dump"],
    "keep": ["latest"],
    "list": [],
    "prune": [],
    "report": ["-o", "report.html"],
    "rescan": [],
    "restore": ["latest", "--yes"],
    "show": ["latest"],
    "snapshot": [],
    "status": [],
    "unkeep": ["latest"],
    "verify": ["latest"],
}
SEPARATE = {"serve": ["--http", "--port", "9"], "console": []}  # they would keep running
READ_NO_SETTINGS = {"demo", "keygen"}  # the demo makes its own; keygen writes a key


def test_every_command_is_listed_here() -> None:
    assert set(main.commands) == set(ARGS) | set(SEPARATE) | READ_NO_SETTINGS


def _refused(code: int, output: str, setting: str, where: Path) -> None:
    lines = [ln for ln in output.splitlines() if ln.strip()]
    said = lines[0] if len(lines) == 1 else ""
    assert code == 1 and said.startswith(("error: ", "❌ configuration: ")), output
    assert setting in lines[0] and PASSWORD not in output
    assert list(where.iterdir()) == [], "a mistyped URL made a file"


@pytest.mark.parametrize("setting", sorted(MISTYPED))
def test_every_mistyped_url_is_refused_by_every_command(tmp_path: Path, setting: str) -> None:
    runner = CliRunner()
    base = {k: None for k in os.environ if k.startswith(("ATLAS_", "SLACK_", "AWS_", "PG"))}
    base |= {"DATABASE_URL": "postgresql://app@127.0.0.1:1/app", "ATLAS_STATE": "atlas.db"}
    for value in MISTYPED[setting]:
        for command, args in ARGS.items():
            with runner.isolated_filesystem(temp_dir=tmp_path) as cwd:
                done = runner.invoke(main, [command, *args], env={**base, setting: value})
                _refused(done.exit_code, done.output, setting, Path(cwd))
    value = MISTYPED[setting][0]
    for command, args in SEPARATE.items():
        cwd = tmp_path / command
        cwd.mkdir()
        env = cli_env(cwd, DATABASE_URL="postgresql://app@127.0.0.1:1/app")
        env.update({"ATLAS_STATE": "atlas.db", "ATLAS_STORAGE": "backups", setting: value})
        run = run_cli([command, *args], env, cwd, text=True, timeout=30)
        _refused(run.returncode, run.stdout + run.stderr, setting, cwd)


# -- a reader that leaves early --------------------------------------------------------------


def test_a_reader_that_leaves_early_ends_atlas_quietly(
    snapped: tuple[dict[str, str], str], tmp_path: Path
) -> None:
    env, snap_id = snapped
    for args in (
        ["show", snap_id],
        ["fetch", snap_id, "-o", "-"],
        ["list", "--json"],
        ["report", "-o", "-"],
    ):
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", *args],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # `| head -0`: gone before Atlas writes a byte
        said = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == 141 and said == "", (args, said)


def test_scratch_files_and_folders_are_private_under_umask_022(tmp_path: Path) -> None:
    """What a run writes for itself (a restore's lane lists and table of contents, the
    demo's files) is made by the same functions: each checked here under umask 022."""
    old = os.umask(0o022)
    try:
        folder = files.private_folder(tmp_path, "run-")
        files.write_new(folder / "lane0.list", b"1\n")
        fd, name = files.temp_file(folder, ".atlas-", ".toc")
        os.close(fd)
        files.replace_with(folder / "atlas.toml", b"[checks]\n")
        files.make_dirs(tmp_path / "a" / "b")
        with files.anonymous_file(folder) as fh:
            assert stat.S_IMODE(os.fstat(fh.fileno()).st_mode) == 0o600
    finally:
        os.umask(old)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for made in ("lane0.list", Path(name).name, "atlas.toml"):
        assert stat.S_IMODE((folder / made).stat().st_mode) == 0o600, made
    for made in (tmp_path / "a", tmp_path / "a" / "b"):
        assert stat.S_IMODE(made.stat().st_mode) == 0o700, made
