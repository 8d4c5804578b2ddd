"""The audit log's hash chain: each entry carries the hash of the one before, so an entry
changed, removed or slipped in after it was written shows. Pure: values in, values out.

The catalog's triggers already refuse UPDATE and DELETE, but whoever owns the catalog (or
its SQLite file) can drop a trigger. The chain makes that visible: `atlas audit --verify`
recomputes every hash, and a head noted earlier (in a report, a ticket) proves that what
came before it is as it was, even against someone who recomputes the rest.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from bot.records import AuditEntry

GENESIS = "0" * 64  # the `prev_hash` of the first chained entry


def entry_hash(prev: str, at: str, actor: str, action: str, subject: str, detail: str) -> str:
    """sha256 of the entry's fields (detail as the JSON text stored) and the hash before."""
    body = json.dumps([prev, at, actor, action, subject, detail], ensure_ascii=False)
    return hashlib.sha256(body.encode()).hexdigest()


def detail_text(detail: object) -> str:
    """The detail as the catalog stores it and the hash covers it."""
    return json.dumps(detail, default=str, sort_keys=True)


@dataclass(frozen=True)
class ChainCheck:
    """What verifying the chain found."""

    checked: int  # entries whose hash was recomputed
    unchained: int  # entries written before the chain began (no hash)
    head: str | None  # the newest entry's hash
    broken_at: AuditEntry | None = None  # the first entry that does not fit
    why: str = ""
    head_found: bool | None = None  # whether a head noted earlier is in the chain

    @property
    def ok(self) -> bool:
        return self.broken_at is None and self.head_found is not False


def noted(head: str) -> str:
    """A head as someone noted it: the whole hash, or a prefix of at least 12 hex digits,
    in either case. Anything else is a typo, not evidence of tampering."""
    text = head.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{12,64}", text):
        raise ValueError(
            f"{head.strip()[:70]!r} is no chain head: one is 64 hex digits (12 or more of its "
            "first ones will do), as a report or `atlas audit --verify` prints it"
        )
    return text


def verify(entries: Iterable[AuditEntry], noted_head: str | None = None) -> ChainCheck:
    """Recompute the chain over `entries` (oldest first); the first that does not fit is
    named. With `noted_head` (see `noted`), also whether it is still one of the chain's."""
    prev, checked, unchained, found = GENESIS, 0, 0, False
    latest: AuditEntry | None = None  # the newest entry written before the chain began
    for e in entries:
        if e.hash is None:
            if checked:  # an unchained entry after the chain began was slipped in
                return ChainCheck(checked, unchained, prev, e, "it carries no hash")
            unchained += 1
            latest = e if latest is None or e.at > latest.at else latest
            continue
        if not checked and latest is not None and latest.at > e.at:
            why = "it carries no hash, yet is dated after the chain began"
            return ChainCheck(checked, unchained, prev, latest, why)
        if e.prev_hash != prev:
            why = "the entry before it is not the one it was written after"
            return ChainCheck(checked, unchained, prev, e, why)
        want = entry_hash(prev, e.at, e.actor, e.action, e.subject, detail_text(e.detail))
        if e.hash != want:
            return ChainCheck(checked, unchained, prev, e, "its content changed after writing")
        prev, checked = e.hash, checked + 1
        found = found or (noted_head is not None and e.hash.startswith(noted_head))
    head = prev if checked else None
    return ChainCheck(checked, unchained, head, head_found=found if noted_head else None)
