"""`python -m bot.cli`: the same as `atlas`."""

from bot.cli import run

run()
