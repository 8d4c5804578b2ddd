"""What a listener answers through: Bolt's `Ack` and `Respond`, or any callable that takes
`text=…` (the console's printer, a test's Mock)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Reply = Callable[..., Any]
