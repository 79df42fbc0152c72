"""The engine under the gateway, made leaner: each step measured (docs/PERFORMANCE.md).

- ``run_loop``: asyncio's own loop. uvloop was measured and not kept: no gain by CPU time per
  request (0.96×–1.00× in bench/run.py --engine; the time goes to mitmproxy's Python layers,
  not to the loop). ``GATEWAY_EVENT_LOOP=uvloop`` runs on it where installed, for measuring.
- Tuning the garbage collector (``gc.freeze`` after start, young collections every 20,000
  allocations instead of 2,000) was measured and not kept: 0.98× by CPU time per request.
- ``skip_debug_type_checks``: mitmproxy's ``MessageData.__post_init__`` type-checks every field
  of every request and response it builds — a debug aid that only exists when Python runs
  without ``-O``, and the largest single cost of building a request. The gateway does not run
  under ``-O`` (that would also strip the ``@expect`` guards of mitmproxy's protocol state
  machines, the asserts of ``Flow.set_state`` in mitmproxy/flow.py, whose ``state.pop`` calls
  live inside the assert, and the gateway's own asserts); it drops this one check instead.
- mitmproxy's per-record log handler is removed in gateway/run/hooktable.py and options are read
  without a deep copy through gateway/run/engine_options.py.

``GATEWAY_LEAN=0`` turns all of these off (for comparing in bench/run.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import Any, Coroutine, TypeVar

from mitmproxy import http

T = TypeVar("T")
logger = logging.getLogger("gateway.engine")


def lean() -> bool:
    return os.environ.get("GATEWAY_LEAN", "1") != "0"


def loop_name() -> str:
    if os.environ.get("GATEWAY_EVENT_LOOP", "").lower() != "uvloop" or not sys.platform.startswith("linux"):
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    if loop_name() == "uvloop":
        with asyncio.Runner(loop_factory=_uvloop_loop()) as runner:
            return runner.run(main)
    return asyncio.run(main)


def _uvloop_loop() -> Any:
    import uvloop

    class Loop(uvloop.Loop):  # type: ignore[misc, name-defined]
        """uvloop passes ``eager_start=`` to a task factory; Python 3.13's
        ``asyncio.eager_task_factory``, which mitmproxy installs, does not take it (3.14 does)."""

        def set_task_factory(self, factory: Any) -> None:
            if factory is not None and sys.version_info < (3, 14):
                inner = factory

                def factory(loop: Any, coro: Any, *, eager_start: Any = None, **kwargs: Any) -> Any:
                    return inner(loop, coro, **kwargs)
            super().set_task_factory(factory)

    return Loop


def skip_debug_type_checks() -> None:
    if not lean() or not __debug__:
        return
    if "__post_init__" not in vars(http.MessageData):
        return  # mitmproxy no longer type-checks here: nothing to skip
    http.MessageData.__post_init__ = _no_check  # type: ignore[method-assign]


def _no_check(self: object) -> None:
    return None

