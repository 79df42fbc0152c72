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

- The memory BIOs mitmproxy drives each TLS connection through (``TLSLayer``): OpenSSL's memory
  BIO keeps the largest buffer it ever held, so a connection whose last answer was 60 KB stays
  ~60 KB larger while idle (86 against 22 KiB per connection with ``SSL_MODE_RELEASE_BUFFERS``,
  measured on pyOpenSSL alone). Once a BIO that carried ``FRESH_BIO_AFTER`` bytes or more in one
  go is empty again, it is replaced by a new one (``SSL_set_bio`` frees the old): a malloc and a
  free against the TLS work on those bytes.

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
from mitmproxy.proxy.layers import tls as _tls
from mitmproxy.utils import asyncio_utils
from OpenSSL import SSL
from OpenSSL._util import ffi as _ssl_ffi
from OpenSSL._util import lib as _ssl_lib  # pyOpenSSL's own binding: the BIOs it made are its

SWEEP_SECONDS = 5.0
FRESH_BIO_AFTER = 2048


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


_original_tls_interact = _tls.TLSLayer.tls_interact
_original_receive_data = _tls.TLSLayer.receive_data


def _tls_interact(self: Any) -> Any:
    carried = 0
    for command in _original_tls_interact(self):  # SendData only: nothing is sent back
        carried += len(command.data)
        yield command
    if carried >= FRESH_BIO_AFTER:
        fresh_bio(self.tls, write=True)  # drained: mitmproxy read it until WantReadError


def _receive_data(self: Any, data: bytes) -> Any:
    yield from _original_receive_data(self, data)
    if len(data) >= FRESH_BIO_AFTER and self.tls is not None:
        fresh_bio(self.tls, write=False)


def fresh_bio(conn: SSL.Connection, *, write: bool) -> bool:
    """Give an SSL.Connection a new, empty memory BIO for one direction if the old one is empty."""
    old = conn._from_ssl if write else conn._into_ssl
    if old is None or _ssl_lib.BIO_get_mem_data(old, _ssl_ffi.NULL) != 0:
        return False  # bytes still waiting: never dropped
    bio = _ssl_lib.BIO_new(_ssl_lib.BIO_s_mem())
    if bio == _ssl_ffi.NULL:
        return False
    if write:  # SSL_set_bio with the other BIO unchanged replaces (and frees) only this one
        _ssl_lib.SSL_set_bio(conn._ssl, conn._into_ssl, bio)
        conn._from_ssl = bio
    else:
        _ssl_lib.SSL_set_bio(conn._ssl, bio, conn._from_ssl)
        conn._into_ssl = bio
    return True


def _pyopenssl_bios_as_expected() -> bool:
    conn = SSL.Connection(SSL.Context(SSL.TLS_METHOD))
    return all(getattr(conn, name, None) is not None for name in ("_ssl", "_into_ssl", "_from_ssl")) \
        and fresh_bio(conn, write=True) and fresh_bio(conn, write=False)


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
    if list(inspect.signature(_original_receive_data).parameters) != ["self", "data"] \
            or "bio_read" not in inspect.getsource(_original_tls_interact) \
            or "self.tls.recv" not in inspect.getsource(_original_receive_data) \
            or not _pyopenssl_bios_as_expected():
        raise MitmproxyMoved("mitmproxy or pyOpenSSL changed the TLS layer's BIOs; "
                             "gateway/run/engine_memory.py must be updated")
    _layer.Layer.__init__ = _layer_init  # type: ignore[method-assign]
    _layer.Layer._paused_event_queue = _QueueOnFirstUse()  # type: ignore[assignment]
    asyncio_utils.set_task_debug_info = _set_task_name
    _server.TimeoutWatchdog = SweptWatchdog  # type: ignore[misc, assignment]
    _tls.TLSLayer.tls_interact = _tls_interact  # type: ignore[method-assign]
    _tls.TLSLayer.receive_data = _receive_data  # type: ignore[method-assign]
    _installed = True
