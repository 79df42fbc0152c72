"""How the base ports are opened: the one place the gateway replaces a piece of mitmproxy.

mitmproxy's ``AsyncioServerInstance.listen`` calls ``asyncio.start_server(handler, host, port)``
with no way to pass ``reuse_port``, and hands every accepted connection straight to the proxy.
``install()`` replaces ``ReverseInstance.listen`` (the ``reverse:`` listeners, the only mode the
gateway uses) with ``_listen`` below, which

- opens the socket with ``SO_REUSEPORT`` when several worker processes share the port
  (``configure(reuse_port=True)``, set by the runner in a worker), so the kernel spreads
  connections over the workers;
- reads little at a time from each accepted socket until a request body is allowed
  (``addons/_reads.py``, issue 24): a StreamReader limit of 1 KiB and 8 KiB reads, instead of
  asyncio's 64 KiB limit and 256 KiB reads, so a stalled upload pins no memory while its head is
  decided;
- reads the PROXY protocol header first on listeners with ``proxy_protocol`` enabled, before
  the TLS ClientHello and before mitmproxy builds its ``Client``: the address in the header
  becomes the connection's ``peername``, so ``client_connected`` and every later hook (IP lists,
  connection limits, throttling, X-Forwarded-For, logs, metrics) see the real client. A
  connection from an untrusted address, without a valid header, or silent for 5 s is closed
  and logged — never served with the balancer's address.

``install()`` checks the shape of the code it replaces and raises ``MitmproxyMoved`` when an
upgrade of mitmproxy changed it, so the gateway refuses to start instead of silently serving
without ``SO_REUSEPORT`` or without reading the PROXY header.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import socket
from typing import Any, Callable

from addons import _reads
from addons._context import current_config
from gateway.traffic.proxy_protocol import HEADER_TIMEOUT, ProxyHeaderError, read_header
from gateway.traffic.readsizes import READ_SIZES

logger = logging.getLogger("gateway.listen")

_reuse_port = False
_installed = False


class MitmproxyMoved(RuntimeError):
    """mitmproxy's listener code is not what addons/_listen.py was written against."""


def configure(*, reuse_port: bool) -> None:
    global _reuse_port
    if reuse_port and not hasattr(socket, "SO_REUSEPORT"):
        raise MitmproxyMoved("SO_REUSEPORT is not available on this system; run with workers: 1")
    _reuse_port = reuse_port


def install() -> None:
    """Put ``_listen`` in place of mitmproxy's; raises MitmproxyMoved if mitmproxy changed."""
    global _installed
    if _installed:
        return
    # Imported here, not at the top: a mitmproxy that moved these modules must become
    # MitmproxyMoved (a refusal to start that names what moved), not an ImportError at import time.
    try:
        from mitmproxy.proxy import mode_servers, mode_specs
    except ImportError as e:
        raise MitmproxyMoved(f"mitmproxy.proxy.mode_servers cannot be imported ({e})") from None
    reverse = getattr(mode_servers, "ReverseInstance", None)
    base = getattr(mode_servers, "AsyncioServerInstance", None)
    problems = []
    if reverse is None or base is None or not issubclass(reverse, base):
        problems.append("ReverseInstance is no longer an AsyncioServerInstance")
    else:
        listen = getattr(reverse, "listen", None)
        if listen is None or not inspect.iscoroutinefunction(listen) \
                or list(inspect.signature(listen).parameters) != ["self", "host", "port"]:
            problems.append("ReverseInstance.listen(self, host, port) is gone or changed")
        if not callable(getattr(reverse, "handle_stream", None)):
            problems.append("ServerInstance.handle_stream is gone")
        try:
            start_source = inspect.getsource(base._start)
        except (OSError, TypeError, AttributeError):
            start_source = ""
        if "self.listen(host, port)" not in start_source:
            problems.append("AsyncioServerInstance._start no longer opens its sockets through self.listen(host, port)")
        try:
            made = mode_servers.ServerInstance.make(mode_specs.ProxyMode.parse("reverse:http://127.0.0.1:1@1"), None)
            if type(made) is not reverse:
                problems.append("reverse: specs no longer make a ReverseInstance")
        except Exception as e:
            problems.append(f"ServerInstance.make('reverse:…') fails ({e})")
    if problems:
        raise MitmproxyMoved("this mitmproxy version does not fit addons/_listen.py (SO_REUSEPORT and PROXY "
                             "protocol would be lost): " + "; ".join(problems) + ". Update addons/_listen.py "
                             "or install the mitmproxy version in pyproject.toml")
    reverse.listen = _listen  # type: ignore[method-assign]
    _installed = True


async def _listen(self: Any, host: str, port: int) -> list[asyncio.Server]:
    if self.mode.transport_protocol != "tcp":
        raise OSError(f"{self.mode.description}: the gateway serves TCP only")

    def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Any:
        # The coroutine asyncio makes the connection's task of: mitmproxy's own where no PROXY
        # header is read, so an idle connection keeps no frame of ours waiting in its stack.
        _reads.prepare(writer)  # before the connection's first read, which follows this call
        settings = _proxy_protocol_for(writer)
        if settings is not None and settings.enabled:
            return _accept(self.handle_stream, settings, reader, writer)
        return self.handle_stream(reader, writer)

    # host "" is every interface, IPv4 and IPv6 alike (asyncio binds one socket per family).
    server = await asyncio.start_server(accept, host, port, reuse_port=_reuse_port or None,
                                        limit=READ_SIZES.reader_limit)
    return [server]


async def _accept(handle_stream: Callable[..., Any], settings: Any, reader: asyncio.StreamReader,
                  writer: asyncio.StreamWriter) -> None:
    real_peer = await _read_proxy_header(settings, reader, writer)
    if real_peer is False:
        writer.close()
        return
    if real_peer is not None:
        plain = writer.get_extra_info

        def get_extra_info(name: str, default: Any = None) -> Any:
            return real_peer if name == "peername" else plain(name, default)

        writer.get_extra_info = get_extra_info  # type: ignore[method-assign]
    await handle_stream(reader, writer)


def _proxy_protocol_for(writer: asyncio.StreamWriter) -> Any:
    try:
        cfg = current_config()
    except RuntimeError:
        return None
    sockname = writer.get_extra_info("sockname")
    listener = cfg.listener_for_port(sockname[1]) if sockname else None
    own = listener.endpoint.proxy_protocol if listener is not None else None
    return own if own is not None else cfg.proxy_protocol


async def _read_proxy_header(settings: Any, reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter) -> tuple[str, int] | None | bool:
    """The client's address from the header; None for LOCAL (keep the balancer's); False: close."""
    peer = writer.get_extra_info("peername") or ("?", 0)
    sockname = writer.get_extra_info("sockname") or ("?", 0)
    where = {"event": "proxy-protocol-refused", "client": str(peer[0]), "port": sockname[1]}
    if not settings.trusts(str(peer[0])):
        logger.warning("closed a connection from %s on port %s: not a trusted balancer (proxy_protocol.trusted)",
                       peer[0], sockname[1], extra={**where, "reason": "untrusted"})
        return False
    try:
        header = await asyncio.wait_for(read_header(reader), HEADER_TIMEOUT)
    except asyncio.TimeoutError:
        logger.warning("closed a connection from %s on port %s: no PROXY protocol header within %g s",
                       peer[0], sockname[1], HEADER_TIMEOUT, extra={**where, "reason": "timeout"})
        return False
    except ProxyHeaderError as e:
        logger.warning("closed a connection from %s on port %s: %s", peer[0], sockname[1], e,
                       extra={**where, "reason": "malformed"})
        return False
    except (ConnectionError, OSError):
        return False
    if header.local or header.source is None:
        return None
    return header.source
