"""The event loop the gateway runs on: uvloop on Linux where installed, asyncio elsewhere.

``GATEWAY_EVENT_LOOP=asyncio`` forces the standard loop (for comparing the two in bench/).
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any, Coroutine, TypeVar

T = TypeVar("T")


def loop_name() -> str:
    if os.environ.get("GATEWAY_EVENT_LOOP", "").lower() == "asyncio" or not sys.platform.startswith("linux"):
        return "asyncio"
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    if loop_name() == "uvloop":
        import uvloop
        return uvloop.run(main)
    return asyncio.run(main)
