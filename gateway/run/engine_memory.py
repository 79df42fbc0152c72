"""What an idle connection holds in the engine, made smaller (issue 22: memory per idle terminal).

Measured with tracemalloc across 500 idle TLS keep-alive connections (docs/PERFORMANCE.md), each
change below is a per-connection object that an idle connection keeps and never uses:

- ``Layer._paused_event_queue``: every mitmproxy layer made an empty ``collections.deque``
  (~380 bytes each, 14 per connection) for the events that arrive while it waits on a hook; only
  a layer that receives an event while it waits needs one. It is now made then.
- ``asyncio_utils.set_task_debug_info``: each of a connection's tasks got a ``__dict__`` with
  its creation time and the client address, read only by mitmproxy's debug dump of tasks (the
  task's name stays).
- ``server.TimeoutWatchdog`` (mitmproxy's ``tcp_timeout``, 600 s; the gateway's own client
  timeouts are addons/limits.py): a task, an ``asyncio.Event`` and a sleeping coroutine per
  connection. One timer of the process now looks at every connection's last activity every
  ``SWEEP_SECONDS`` (so the 600 s may be up to that much longer).

``install()`` checks that mitmproxy still has the shape these rely on and raises otherwise.
``GATEWAY_LEAN=0`` leaves mitmproxy as it is (for comparing in bench/idle.py).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import time
import weakref
from typing import Any, Callable, Iterator

from mitmproxy.proxy import layer as _layer
from mitmproxy.proxy import server as _server
from mitmproxy.utils import asyncio_utils

SWEEP_SECONDS = 5.0


class MitmproxyMoved(RuntimeError):
    """mitmproxy no longer looks as these trims expect."""


class _NoEventsYet:
    """What a layer's ``_paused_event_queue`` reads as until an event is queued: empty and false
    (mitmproxy tests it, iterates it, and the gateway's patches search it), and its ``append``
    gives the layer its real deque. Made per read and dropped at once: nothing stays."""

    __slots__ = ("layer",)

    def __init__(self, layer: Any) -> None:
        self.layer = layer

    def __bool__(self) -> bool:
        return False

    def __len__(self) -> int:
        return 0

    def __iter__(self) -> Any:
        return iter(())

    def append(self, event: Any) -> None:
        self.layer.__dict__["_paused_event_queue"] = collections.deque((event,))


class _QueueOnFirstUse:
    """A non-data descriptor: the instance's own ``_paused_event_queue``, once ``append`` made
    one, is found first on every later read (no descriptor call after that)."""

    def __get__(self, layer: Any, owner: type) -> Any:
        if layer is None:
            return self
        return _NoEventsYet(layer)


def _layer_init(self: Any, context: Any) -> None:
    self.context = context
    context.layers.append(self)
    self._paused = None
    if getattr(context.options, "proxy_debug", False):  # pragma: no cover - mitmproxy's debug aid
        self.debug = "  " * len(context.layers)


def _set_task_name(task: Any, *, name: str, client: tuple[Any, ...] | None = None) -> None:
    task.set_name(name)


class SweptWatchdog:
    """mitmproxy's TimeoutWatchdog, same interface, watched by the process's one sweep timer."""

    __slots__ = ("timeout", "callback", "last_activity", "blocker", "__weakref__")

    def __init__(self, timeout: float, callback: Callable[[], Any]) -> None:
        self.timeout = timeout
        self.callback = callback
        self.last_activity = time.time()
        self.blocker = 0

    def register_activity(self) -> None:
        self.last_activity = time.time()

    async def watch(self) -> None:
        # Returns at once: under mitmproxy's eager task factory the task is done before it is
        # scheduled, and mitmproxy's later cancel() of it is a no-op.
        _watched.add(self)
        _arm()

    @contextlib.contextmanager
    def disarm(self) -> Iterator[None]:
        self.blocker += 1
        try:
            yield
        finally:
            self.blocker -= 1
            if self.blocker == 0:
                self.register_activity()


# Weak: a connection that ended leaves the set with its handler (mitmproxy's on_timeout of an
# ended connection finds no transport and does nothing, should a sweep come first).
_watched: "weakref.WeakSet[SweptWatchdog]" = weakref.WeakSet()
_timer: asyncio.TimerHandle | None = None
_timer_loop: asyncio.AbstractEventLoop | None = None


def _arm() -> None:
    global _timer, _timer_loop
    loop = asyncio.get_running_loop()
    if _timer is None or _timer_loop is not loop:
        _timer_loop = loop
        _timer = loop.call_later(SWEEP_SECONDS, _sweep)


def _sweep() -> None:
    global _timer
    _timer = None
    now = time.time()
    for dog in list(_watched):
        if dog.blocker == 0 and dog.last_activity + dog.timeout < now:
            _watched.discard(dog)
            asyncio_utils.create_task(dog.callback(), name="timeout", keep_ref=True)
    if _watched:
        _arm()


_EXPECTED_LAYER_INIT = ["self.context = context", "self.context.layers.append(self)", "self._paused = None",
                        "self._paused_event_queue = collections.deque()"]
# How mitmproxy uses the queue (what _NoEventsYet must answer): test, append, popleft after a test.
_QUEUE_USES = ("self._paused_event_queue.append(event)", "while not self._paused and self._paused_event_queue:")
_installed = False


def _eager_tasks() -> bool:
    """mitmproxy runs its tasks eagerly (Master installs asyncio's eager task factory)."""
    from mitmproxy import master

    return "set_eager_task_factory" in inspect.getsource(master)


def install() -> None:
    global _installed
    if _installed:
        return
    source = inspect.getsource(_layer.Layer.__init__)
    statements = [line.strip() for line in source.splitlines()[1:] if line.strip() and not line.strip().startswith("#")]
    if statements[:4] != _EXPECTED_LAYER_INIT or len(statements) > 7 \
            or "_paused_event_queue" in vars(_layer.Layer) \
            or not all(use in inspect.getsource(_layer.Layer) for use in _QUEUE_USES):
        raise MitmproxyMoved("mitmproxy changed Layer.__init__; gateway/run/engine_memory.py must be updated")
    if list(inspect.signature(asyncio_utils.set_task_debug_info).parameters) != ["task", "name", "client"]:
        raise MitmproxyMoved("mitmproxy changed set_task_debug_info; gateway/run/engine_memory.py must be updated")
    watchdog = _server.TimeoutWatchdog
    if list(inspect.signature(watchdog).parameters) != ["timeout", "callback"] \
            or not all(callable(getattr(watchdog, name, None)) for name in ("watch", "register_activity", "disarm")) \
            or "self.timeout_watchdog.watch()" not in inspect.getsource(_server.ConnectionHandler.handle_client) \
            or not _eager_tasks():
        raise MitmproxyMoved("mitmproxy changed TimeoutWatchdog; gateway/run/engine_memory.py must be updated")
    _layer.Layer.__init__ = _layer_init  # type: ignore[method-assign]
    _layer.Layer._paused_event_queue = _QueueOnFirstUse()  # type: ignore[assignment]
    asyncio_utils.set_task_debug_info = _set_task_name
    _server.TimeoutWatchdog = SweptWatchdog  # type: ignore[misc, assignment]
    _installed = True
