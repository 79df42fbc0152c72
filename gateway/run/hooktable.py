"""Dispatch each mitmproxy event only to the addons that handle it.

mitmproxy's AddonManager walks every addon for every event and asks each one, with getattr,
whether it has that hook — about 145 calls per request for the gateway's addons, most of them
answering "no". The gateway's addon set is fixed once built, so the handlers for each event
are looked up once and kept in a table (rebuilt whenever addons are added or removed).

Behaviour is mitmproxy's: handlers run in chain order; an exception is logged and the next
handler runs (deny-capable hooks fail closed on their own, see addons/_guard.py); AddonHalt
stops the event.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import operator
from typing import Any, Callable

from mitmproxy import addonmanager, exceptions, flow, hooks
from mitmproxy.master import Master
from gateway.run.engine import lean

logger = logging.getLogger("gateway.hooks")


# An ``update`` event with no flow: only its name is read when looking up its handlers.
_UPDATE = hooks.UpdateHook([])
_arg_getters: dict[type, Callable[[Any], list[Any]]] = {}


def hook_args(event: hooks.Hook) -> list[Any]:
    """``Hook.args`` without ``dataclasses.fields`` on every call (about 17 hooks per connection):
    the field names of each hook class are read once."""
    getter = _arg_getters.get(type(event))
    if getter is None:
        names = tuple(field.name for field in dataclasses.fields(event))  # type: ignore[arg-type]
        many = operator.attrgetter(*names) if names else None

        def getter(e: Any, many: Any = many, count: int = len(names)) -> list[Any]:
            if count == 1:
                return [many(e)]
            return list(many(e)) if many is not None else []
        _arg_getters[type(event)] = getter
    return getter(event)


class HookTable(addonmanager.AddonManager):
    def __init__(self, master: Master) -> None:
        super().__init__(master)
        self._table: dict[str, list[tuple[Callable[..., Any], bool]]] = {}

    def add(self, *addons: Any) -> None:
        super().add(*addons)
        self._table.clear()

    def remove(self, addon: Any) -> None:
        super().remove(addon)
        self._table.clear()

    def clear(self) -> None:
        super().clear()
        self._table.clear()

    def _handlers(self, event: hooks.Hook) -> list[tuple[Callable[..., Any], bool]]:
        handlers = self._table.get(event.name)
        if handlers is None:
            handlers = [(func, inspect.iscoroutinefunction(func))
                        for top in self.chain for _, func in self._iter_hooks(top, event)]
            self._table[event.name] = handlers
        return handlers

    async def handle_lifecycle(self, event: hooks.Hook) -> None:
        """mitmproxy's: the event, then ``update`` for a flow — built only when an addon
        listens to ``update`` (none of the gateway's does; it came four times per request)."""
        await self.trigger_event(event)
        if self._handlers(_UPDATE):
            message = hook_args(event)[0]
            if isinstance(message, flow.Flow):
                await self.trigger_event(hooks.UpdateHook([message]))

    async def trigger_event(self, event: hooks.Hook) -> None:
        handlers = self._handlers(event)
        if not handlers:
            return
        args = hook_args(event)
        for func, _ in handlers:
            try:
                result = func(*args)
                if result is not None and inspect.isawaitable(result):
                    await result
            except exceptions.AddonHalt:
                return
            except (exceptions.OptionsError, exceptions.AddonManagerError):
                raise
            except Exception as e:
                logger.error("addon error in %s: %s", getattr(func, "__qualname__", func), e, exc_info=True)

    def trigger(self, event: hooks.Hook) -> None:
        handlers = self._handlers(event)
        if not handlers:
            return
        args = hook_args(event)
        for func, is_async in handlers:
            if is_async:
                raise exceptions.AddonManagerError(
                    f"Async handler {event.name} ({func}) cannot be called from sync context")
            try:
                func(*args)
            except exceptions.AddonHalt:
                return
            except (exceptions.OptionsError, exceptions.AddonManagerError):
                raise
            except Exception as e:
                logger.error("addon error in %s: %s", getattr(func, "__qualname__", func), e, exc_info=True)


class GatewayMaster(Master):
    """A mitmproxy Master whose addon manager dispatches through a HookTable."""

    def __init__(self, opts: Any) -> None:
        super().__init__(opts, with_termlog=False)
        # mitmproxy's handler for its deprecated add_log event formats every log record and
        # schedules an event-loop callback for it (a self-pipe write): ~50 us per access-log line,
        # for an event no gateway addon uses. Off the request path.
        if lean():
            self._legacy_log_events.uninstall()
            # The proxy core reads each hook's arguments too (ProxyConnectionHandler.handle_hook).
            hooks.Hook.args = hook_args  # type: ignore[method-assign, assignment]
        self.options.changed.disconnect(self.addons._configure_all)
        self.addons = HookTable(self)
