"""All-pairs cases for the feature matrix: every value of each axis meets every value of
every other axis in at least one case, as long as some allowed case holds the two.

Greedy (the AETG idea, deterministic): among the allowed combinations, repeatedly take the
one that covers most pairs not yet covered. Cases are few, and none is dropped for cost:
an axis is never left out, only combined.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

Case = tuple[str, ...]
Pair = tuple[int, str, int, str]


def pairs_of(case: Case) -> set[Pair]:
    return {(i, case[i], j, case[j]) for i, j in itertools.combinations(range(len(case)), 2)}


def all_pairs(axes: Sequence[Sequence[str]], allowed: Callable[[Case], bool]) -> list[Case]:
    """Cases covering every pair that some allowed combination holds."""
    candidates = [c for c in itertools.product(*axes) if allowed(c)]
    wanted: set[Pair] = set().union(*(pairs_of(c) for c in candidates))
    cases: list[Case] = []
    while wanted:
        best = max(candidates, key=lambda c: len(pairs_of(c) & wanted))
        cases.append(best)
        wanted -= pairs_of(best)
    return cases
