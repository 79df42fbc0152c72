"""One background task of an addon: started in ``running``, cancelled in ``done``.

mitmproxy calls ``running`` once the event loop runs and ``done`` at shutdown; an addon that
watches files or cleans up on a timer keeps its loop here instead of its own task bookkeeping.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Coroutine


class BackgroundTask:
    def __init__(self, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._work = work
        self._task: asyncio.Task[None] | None = None

    @property
    def started(self) -> bool:
        return self._task is not None

    def start(self) -> None:
        """Start the work unless it already runs (a finished or failed task is started again)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._work())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
