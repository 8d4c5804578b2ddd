"""The installed Atlas version, for `--version`, /healthz and /metrics."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as installed

PACKAGE = "atlas-backups"


def version() -> str:
    try:
        return installed(PACKAGE)
    except PackageNotFoundError:
        return "unknown"
