"""Which of a server's databases Atlas backs up: names and glob patterns, `!` to exclude.

Pure: names in, names out. `*` matches every database the server lists (templates and
databases that refuse connections are never listed); an exclusion always wins.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase


@dataclass(frozen=True)
class Selection:
    """Patterns to include and to exclude, as the operator wrote them."""

    include: tuple[str, ...]
    exclude: tuple[str, ...] = ()

    @classmethod
    def parse(cls, patterns: Iterable[str], exclude: Iterable[str] = ()) -> Selection:
        """`a, b*, !b_test` -> include (a, b*), exclude (b_test). Raises ValueError on an
        empty pattern or a selection that includes nothing."""
        inc: list[str] = []
        exc: list[str] = [p.strip() for p in exclude]
        for raw in patterns:
            p = raw.strip()
            if p.startswith("!"):
                exc.append(p[1:].strip())
            else:
                inc.append(p)
        if any(not p for p in (*inc, *exc)):
            raise ValueError("a pattern is empty (look for ',,' or a lone '!')")
        if not inc:
            raise ValueError("nothing is included: name databases or patterns, or '*' for all")
        return cls(tuple(inc), tuple(exc))

    def matches(self, name: str) -> bool:
        if any(fnmatchcase(name, p) for p in self.exclude):
            return False
        return any(fnmatchcase(name, p) for p in self.include)

    def select(self, names: Iterable[str]) -> list[str]:
        """The names this selection takes, sorted, each once."""
        return sorted({n for n in names if self.matches(n)})

    def describe(self) -> str:
        return ", ".join([*self.include, *(f"!{p}" for p in self.exclude)])
