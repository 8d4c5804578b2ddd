"""One finding of a check: what `atlas doctor` and `atlas serve`'s start-up check report."""

from __future__ import annotations

from dataclasses import asdict, dataclass

OK, WARN, FAIL = "ok", "warn", "fail"
ICONS = {OK: "✅", WARN: "⚠️", FAIL: "❌"}


@dataclass(frozen=True)
class Check:
    """One finding: its name, ok/warn/fail, and what was found."""

    name: str
    status: str  # ok | warn | fail
    detail: str

    def to_json(self) -> dict[str, str]:
        return asdict(self)


def ok(name: str, detail: str) -> Check:
    return Check(name, OK, detail)


def warn(name: str, detail: str) -> Check:
    return Check(name, WARN, detail)


def fail(name: str, detail: str) -> Check:
    return Check(name, FAIL, detail)
