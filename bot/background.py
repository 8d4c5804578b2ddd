"""Atlas's worker threads for what follows a quick answer: Slack wants a reply within
three seconds, and a snapshot or a restore takes longer."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from bot.errors import AtlasError

log = logging.getLogger(__name__)
T = TypeVar("T")


class Background(ThreadPoolExecutor):
    """A pool of worker threads that also hands a job's result, or its error, on."""

    def __init__(self, workers: int = 4) -> None:
        super().__init__(max_workers=workers, thread_name_prefix="atlas-job")

    def later(
        self,
        work: Callable[[], T],
        done: Callable[[T], object],
        failed: Callable[[AtlasError], object],
    ) -> Future[None]:
        """Run `work` on a worker and hand on its result, or its AtlasError (any other
        error becomes one, and is logged: a thread nobody watches must not lose it)."""

        def run() -> None:
            try:
                result = work()
            except AtlasError as exc:
                failed(exc)
                return
            except Exception as exc:
                log.exception("background work failed")
                failed(AtlasError(f"Unexpected error: {type(exc).__name__}: {exc}"))
                return
            done(result)

        return self.submit(run)
