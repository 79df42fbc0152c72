"""Fail-closed wrappers for addon hooks, and the one way addons answer a denied request.

mitmproxy's addon manager logs an exception raised in a hook and lets the flow go on to the
back end. For a security gateway that is fail-open, so every hook that can deny is wrapped:
an exception becomes a denial (an error response, or a dropped connection).
"""

from __future__ import annotations

import functools
import inspect
import logging
from typing import Any, Callable, TypeVar

from mitmproxy import connection, http

logger = logging.getLogger("gateway.guard")

Hook = TypeVar("Hook", bound=Callable[..., Any])

PLAIN_TEXT = "text/plain; charset=utf-8"


def deny(flow: http.HTTPFlow, status: int, text: str, headers: dict[str, str] | None = None) -> None:
    """Answer the flow here instead of forwarding it. The body is one line of text for people."""
    # mitmproxy refuses a response on a flow whose body is set to stream; the request must not
    # reach the back end either way, so streaming is switched off first.
    flow.request.stream = False
    all_headers = {"Content-Type": PLAIN_TEXT, "Cache-Control": "no-store", "Connection": "close"}
    all_headers.update(headers or {})
    flow.response = http.Response.make(status, (text.rstrip("\n") + "\n").encode("utf-8"), all_headers)
    flow.metadata.setdefault("gateway_denied", status)


def _deny_after_crash(hook_name: str, args: tuple[Any, ...]) -> None:
    for arg in args:
        if isinstance(arg, http.HTTPFlow):
            if arg.live and not arg.response:
                deny(arg, 500, "500 Internal Server Error: the gateway could not check this request.")
                arg.metadata["gateway_verdict"] = "gateway-error"
            elif arg.live and arg.killable:
                arg.kill()
            return
        if isinstance(arg, connection.Client):
            arg.error = f"refused: gateway check {hook_name} failed"
            return
        client = getattr(arg, "client", None)  # ClientConnectedHook data, TlsData
        if isinstance(client, connection.Client):
            client.error = f"refused: gateway check {hook_name} failed"
            return
        conn = getattr(arg, "conn", None)
        if isinstance(conn, connection.Client):
            conn.error = f"refused: gateway check {hook_name} failed"
            return


def fail_closed(hook: Hook) -> Hook:
    """Turn an exception in a deny-capable hook into a denial instead of a pass."""
    name = hook.__qualname__

    if inspect.iscoroutinefunction(hook):
        @functools.wraps(hook)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return await hook(*args, **kwargs)
            except Exception:
                logger.exception("%s failed; denying", name)
                _deny_after_crash(name, args)
                return None
        return async_wrapper  # type: ignore[return-value]

    async def guard_rest(pending: Any, args: tuple[Any, ...]) -> Any:
        try:
            return await pending
        except Exception:
            logger.exception("%s failed; denying", name)
            _deny_after_crash(name, args)
            return None

    @functools.wraps(hook)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = hook(*args, **kwargs)
        except Exception:
            logger.exception("%s failed; denying", name)
            _deny_after_crash(name, args)
            return None
        # A hook that is synchronous on its fast path may hand the rest of its work back as an
        # awaitable; what fails in there must deny just the same.
        if result is not None and inspect.isawaitable(result):
            return guard_rest(result, args)
        return result
    return wrapper  # type: ignore[return-value]


def already_answered(flow: http.HTTPFlow) -> bool:
    """The guard every request hook starts with: someone earlier already decided."""
    return bool(flow.response or flow.error or not flow.live)
