"""The audit log's hash chain, on SQLite and PostgreSQL: entries written by racing
writers chain in one line, `atlas audit --verify` finds an entry changed, removed or
slipped in by someone who got past the append-only trigger, and a head noted earlier
catches a chain written again from the changed entry on."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest

from bot.catalog import is_url
from bot.chain import GENESIS, detail_text, entry_hash, verify
from bot.records import AuditEntry
from tests.support.helpers import cli_env, run_cli, services_for, settings_for

NO_SERVER = "postgresql://atlas@127.0.0.1:1/app?connect_timeout=1"


def _entry(
    i: int, at: str, subject: str, detail: dict[str, Any], prev: str | None, h: str | None
) -> AuditEntry:
    return AuditEntry(
        id=i, at=at, actor="U1", action="snapshot.ok", subject=subject, detail=detail,
        prev_hash=prev, hash=h,
    )  # fmt: skip


def _chained(n: int) -> list[AuditEntry]:
    out, prev = [], GENESIS
    for i in range(n):
        detail = {"n": i, "size": 1.5, "who": "Zoë <@U1>"}
        h = entry_hash(prev, f"t{i}", "U1", "snapshot.ok", f"s{i}", detail_text(detail))
        out.append(_entry(i + 1, f"t{i}", f"s{i}", detail, prev, h))
        prev = h
    return out


def test_the_chain_names_the_first_entry_that_does_not_fit():
    good = _chained(5)
    assert verify(good).ok and verify(good).checked == 5 and verify(good).head == good[-1].hash
    changed = _chained(5)
    changed[2].detail = {**changed[2].detail, "size": 2.5}
    assert verify(changed).broken_at is changed[2]
    assert "content changed" in verify(changed).why
    removed = [e for e in _chained(5) if e.id != 3]
    assert verify(removed).broken_at is removed[2] and "not the one" in verify(removed).why
    slipped = _chained(5)
    slipped.insert(3, _entry(99, "t", "d", {}, None, None))
    assert verify(slipped).broken_at is slipped[3]
    older = [_entry(0, "t", "o", {}, None, None), *_chained(2)]
    assert verify(older).ok and verify(older).unchained == 1
    assert verify(_chained(3), noted_head=good[1].hash).head_found is True
    assert verify(_chained(3), noted_head="f" * 64).ok is False


def _tamper(state: str, sql: str, args: list[Any]) -> None:
    """What someone who owns the catalog can do: get past the append-only trigger."""
    if is_url(state):
        with psycopg.connect(state, autocommit=True) as conn:
            conn.execute("ALTER TABLE audit DISABLE TRIGGER USER")
            conn.execute(sql.replace("?", "%s"), args)
            conn.execute("ALTER TABLE audit ENABLE TRIGGER USER")
    else:
        with sqlite3.connect(state) as conn:
            for op in ("update", "delete"):
                conn.execute(f"DROP TRIGGER IF EXISTS audit_no_{op}")
            conn.execute(sql, args)


def _verify(env: dict[str, str], tmp_path: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    done = run_cli(["audit", "--verify", "--json", *extra], env, tmp_path, text=True)
    return done.returncode, json.loads(done.stdout)


def test_racing_writers_chain_in_one_line_and_tampering_shows(tmp_path):
    settings = settings_for(NO_SERVER, tmp_path)
    first = services_for(settings)
    first.catalog.audit("U1", "snapshot.ok", "s0", size=1.25, note="Zoë ✓")
    catalogs = [services_for(settings).catalog for _ in range(4)]

    def write(i: int) -> None:
        for j in range(15):
            catalogs[i].audit(f"U{i}", "drill.passed", f"d{i}-{j}", n=j)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    env = cli_env(tmp_path, DATABASE_URL=NO_SERVER, ATLAS_STATE=str(settings.state))
    code, said = _verify(env, tmp_path)
    assert code == 0 and said["checked"] == 61 and said["unchained"] == 0, said
    head = said["head"]
    plain = run_cli(["audit", "--verify"], env, tmp_path, text=True)
    assert plain.returncode == 0 and f"ok: 61 entries chained; head {head}" in plain.stdout

    state = str(settings.state)
    _tamper(state, "UPDATE audit SET detail = ? WHERE subject = ?", ['{"n": 99}', "d1-3"])
    code, said = _verify(env, tmp_path)
    assert code == 1 and said["status"] == "failed" and "content changed" in said["why"]
    line = run_cli(["audit", "--verify"], env, tmp_path, text=True)
    assert line.returncode == 1 and len(line.stderr.strip().splitlines()) == 1, line.stderr
    assert f"audit entry {said['broken_at']} " in line.stderr and "Traceback" not in line.stderr

    # written again from the changed entry on, the chain checks out alone, but the head
    # noted before no longer is in it
    entries = list(first.catalog.audit_chain())
    prev = GENESIS
    for e in entries:
        h = entry_hash(prev, e.at, e.actor, e.action, e.subject, detail_text(e.detail))
        _tamper(state, "UPDATE audit SET prev_hash = ?, hash = ? WHERE id = ?", [prev, h, e.id])
        prev = h
    assert _verify(env, tmp_path)[0] == 0
    code, said = _verify(env, tmp_path, "--head", head)
    assert code == 1 and said["head_found"] is False, said
    assert _verify(env, tmp_path, "--head", prev) == (
        0,
        {**said, "status": "ok", "head_found": True},
    )


@pytest.mark.parametrize("what", ["delete"])
def test_an_entry_removed_from_the_middle_shows(tmp_path, what):
    settings = settings_for(NO_SERVER, tmp_path)
    catalog = services_for(settings).catalog
    for i in range(5):
        catalog.audit("U1", "snapshot.ok", f"s{i}")
    _tamper(str(settings.state), "DELETE FROM audit WHERE subject = ?", ["s2"])
    env = cli_env(tmp_path, DATABASE_URL=NO_SERVER, ATLAS_STATE=str(settings.state))
    code, said = _verify(env, tmp_path)
    assert code == 1 and "not the one it was written after" in said["why"], said


def test_an_entry_forged_below_the_first_id_shows(tmp_path):
    """INSERT is what the triggers allow: a row forged with id -1 and no hash was never
    read (paging began after id 0), and one with an old id but a date after the chain
    began passed as an entry from before it."""
    settings = settings_for(NO_SERVER, tmp_path)
    catalog = services_for(settings).catalog
    for i in range(3):
        catalog.audit("U1", "snapshot.ok", f"s{i}")
    [first] = [e for e in catalog.audit_chain()][:1]
    _tamper(
        str(settings.state),
        "INSERT INTO audit (id, at, actor, action, subject, detail) VALUES (?, ?, ?, ?, ?, ?)",
        [-1, "2099-01-01T00:00:00+00:00", "mallory", "drill.passed", "d-forged", "{}"],
    )
    env = cli_env(tmp_path, DATABASE_URL=NO_SERVER, ATLAS_STATE=str(settings.state))
    code, said = _verify(env, tmp_path)
    assert code == 1 and "dated after the chain began" in said["why"], said
    assert first.at < "2099"


def test_a_mistyped_head_is_refused_as_such_and_a_short_one_is_found(tmp_path):
    """A typo in --head is no accusation of tampering; the first 12 digits of a head, in
    either case, are as good as the whole."""
    settings = settings_for(NO_SERVER, tmp_path)
    catalog = services_for(settings).catalog
    for i in range(3):
        catalog.audit("U1", "snapshot.ok", f"s{i}")
    head = [e for e in catalog.audit_chain()][-1].hash or ""
    env = cli_env(tmp_path, DATABASE_URL=NO_SERVER, ATLAS_STATE=str(settings.state))
    assert _verify(env, tmp_path, "--head", head[:12].upper())[1]["head_found"] is True
    done = run_cli(["audit", "--verify", "--head", "not-a-hash"], env, tmp_path, text=True)
    said = " ".join(done.stderr.split())
    assert done.returncode == 1 and "is no chain head" in said and "changed" not in said


def test_a_report_of_a_broken_chain_exits_one_and_says_so(tmp_path):
    """The report shows a broken chain in its last section; the command said only
    "wrote …, chain head …" and exited 0, so a cron job filing reports never heard."""
    settings = settings_for(NO_SERVER, tmp_path)
    catalog = services_for(settings).catalog
    for i in range(3):
        catalog.audit("U1", "snapshot.ok", f"s{i}")
    _tamper(str(settings.state), "UPDATE audit SET actor = ? WHERE subject = ?", ["mallory", "s1"])
    env = cli_env(tmp_path, DATABASE_URL=NO_SERVER, ATLAS_STATE=str(settings.state))
    out = tmp_path / "r.html"
    done = run_cli(["report", "-o", str(out)], env, tmp_path, text=True)
    assert done.returncode == 1 and out.exists(), done.stderr
    assert "The audit chain is BROKEN" in " ".join(done.stderr.split())
