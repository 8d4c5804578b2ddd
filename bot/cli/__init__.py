"""`atlas`: the same operations as the Slack bot, for terminals and deploy pipelines.

One module per group of commands; each registers its commands on `main` when imported.
Each command imports what it needs when it runs: `atlas --help` loads click and little
else, and `atlas list` never loads libpq, zstd or the restore code."""

import signal

from bot.cli import (  # noqa: F401  (they register their commands)
    copies,
    operate,
    proof,
    restores,
    snapshots,
)
from bot.cli.app import main

__all__ = ["main", "run"]


def run() -> None:
    """The `atlas` command. Once the command has said how it ended, a Ctrl-C that comes
    while the interpreter shuts down is ignored: it would print a traceback from the
    interpreter's own exit handlers, not change the outcome."""
    try:
        main()
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
