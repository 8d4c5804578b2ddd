"""The installed Atlas version, for `--version`, /healthz and /metrics."""

from __future__ import annotations

PACKAGE = "atlas-backups"


def version() -> str:
    # importlib.metadata costs ~10 ms to import: only the commands that print it pay.
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed(PACKAGE)
    except PackageNotFoundError:
        return "unknown"
