"""The two pipes between the supervisor and each worker that say "still alive", both ways.

- Heartbeat, worker → supervisor: the "ready" pipe stays open after "ready" and the worker's
  event loop writes one byte to it every HEARTBEAT_INTERVAL. A worker stopped by SIGSTOP or
  stuck in a blocking call inside a hook keeps its process and its share of SO_REUSEPORT
  connections, but stops beating; the supervisor kills it after HEARTBEAT_TIMEOUT and starts a
  new one. The exit status alone would never show it.
- Lifeline, supervisor → worker: the worker inherits the read end of a pipe whose only write end
  the supervisor holds. When the supervisor dies — even by SIGKILL — the kernel closes that end
  and the worker reads EOF at once, then stops, so a restarted gateway can bind the ports and no
  orphan serves an old configuration. Portable (any POSIX pipe); on Linux PR_SET_PDEATHSIG is
  added as well, for a worker whose own event loop is wedged at that moment.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import time
from typing import Callable

logger = logging.getLogger("gateway.supervisor")

LIFELINE_FD_ENV = "GATEWAY_LIFELINE_FD"
HEARTBEAT_INTERVAL = 1.0
# Well inside the 10 s the supervisor must notice a wedged worker in, well above a busy loop's lag.
HEARTBEAT_TIMEOUT = 6.0
# A worker told its supervisor is gone stops its proxy; if that does not end the process quickly
# (a stuck hook), it exits hard: its ports must be free for the next gateway within 2 s.
ORPHAN_EXIT_SECONDS = 1.5
_PR_SET_PDEATHSIG = 1


# --- worker side ---------------------------------------------------------------------------------

async def beat(fd: int) -> None:
    """Write one heartbeat byte per interval on the ready pipe, from the event loop itself."""
    os.set_blocking(fd, False)
    try:
        while True:
            try:
                os.write(fd, b".")
            except BlockingIOError:
                pass  # a supervisor not reading (itself stopped) must not block the worker
            except OSError:
                return  # the supervisor is gone; the lifeline says so
            await asyncio.sleep(HEARTBEAT_INTERVAL)
    finally:
        try:
            os.close(fd)
        except OSError:
            pass


def watch_supervisor(on_gone: Callable[[], None]) -> bool:
    """Call ``on_gone`` when the supervisor's end of the lifeline closes; False without a lifeline."""
    raw = os.environ.pop(LIFELINE_FD_ENV, None)
    if raw is None or not raw.isdigit():
        return False
    fd = int(raw)
    _die_with_parent()
    loop = asyncio.get_running_loop()

    def readable() -> None:
        try:
            data = os.read(fd, 64)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            return  # nobody writes to it; ignore anything that arrives
        loop.remove_reader(fd)
        os.close(fd)
        on_gone()
        # Whatever on_gone left running must not keep the ports past ORPHAN_EXIT_SECONDS.
        loop.call_later(ORPHAN_EXIT_SECONDS, os._exit, 1)

    os.set_blocking(fd, False)
    try:
        loop.add_reader(fd, readable)
    except (NotImplementedError, ValueError):
        os.close(fd)
        return False
    return True


def _die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # the pipe still tells


# --- supervisor side -----------------------------------------------------------------------------

def lifeline_pipe() -> tuple[int, int]:
    """(the worker's inherited read end, the supervisor's write end; never inherited by others)."""
    read_end, write_end = os.pipe()
    return read_end, write_end


class ReadyPipe:
    """Reads a worker's ready pipe: "ready [admin port]\\n", then heartbeat bytes."""

    def __init__(self, fd: int, on_ready: Callable[[int | None], None]) -> None:
        self.fd = fd
        self._on_ready = on_ready
        self._buffer = b""
        self.ready = False
        self.last_beat = time.monotonic()
        self.closed = asyncio.Event()
        os.set_blocking(fd, False)
        asyncio.get_running_loop().add_reader(fd, self._readable)

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            return
        self.last_beat = time.monotonic()
        if self.ready:
            return
        self._buffer += data
        if b"\n" not in self._buffer:
            return
        line, _, _ = self._buffer.partition(b"\n")
        self._buffer = b""
        if line.startswith(b"ready"):
            self.ready = True
            port = line[len(b"ready"):].strip()
            self._on_ready(int(port) if port.isdigit() else None)

    def silent_for(self) -> float:
        return time.monotonic() - self.last_beat

    def close(self) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        try:
            asyncio.get_running_loop().remove_reader(self.fd)
        except RuntimeError:
            pass
        try:
            os.close(self.fd)
        except OSError:
            pass
