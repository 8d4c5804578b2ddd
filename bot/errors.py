"""One exception type that carries a message fit for a human and a hint for what to do next."""

from __future__ import annotations

from bot.redaction import redact


def _one_stop(message: str) -> str:
    """A message that ends in "…", "?" or "!" before its full stop keeps just the first."""
    for end in ("….", "?.", "!.", ".."):
        if message.endswith(end) and not message.endswith("..."):
            return message[:-1]
    return message


class AtlasError(Exception):
    """A failure we can explain: `str()` is the plain-words reason, `hint` the next step."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        # Redacted where it is made: an error may quote a mistyped URL back, and from
        # here it goes to the terminal, the catalog, the log and Slack.
        message = _one_stop(redact(message))
        hint = redact(hint) if hint else hint
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class CatalogAway(AtlasError):
    """The catalog could not be reached, or its connection broke: an outage that may pass,
    so a write whose work is already safe (an artifact in storage) is tried again."""


class NotFound(AtlasError):
    """An id that the catalog does not know."""


class Busy(AtlasError):
    """Another job already holds the resource."""


class IdTaken(AtlasError):
    """A new snapshot's id is another's already (two of one second drew the same suffix)."""


class Refused(AtlasError):
    """A policy or safety check said no."""


class Damaged(AtlasError):
    """A stored artifact is not what its snapshot recorded: a checksum, size or frame
    mismatch. Whoever finds one, the snapshot is marked corrupt (`Snapshots.mark_damaged`)."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) stopped a job, which cleaned up and recorded it: `message` says
    truthfully what state it left things in."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
