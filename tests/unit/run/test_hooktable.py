"""The gateway's addon dispatch: same semantics as mitmproxy's AddonManager, fewer calls."""

from __future__ import annotations

import asyncio
import logging

import pytest
from mitmproxy import exceptions, options
from mitmproxy.proxy.layers.http import HttpRequestHeadersHook
from mitmproxy.test import tflow

from gateway.run.hooktable import GatewayMaster, HookTable


class Recorder:
    def __init__(self, name: str, calls: list[str]) -> None:
        self.name = name
        self.calls = calls

    def requestheaders(self, flow):  # type: ignore[no-untyped-def]
        self.calls.append(self.name)


class AsyncRecorder(Recorder):
    async def requestheaders(self, flow):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0)
        self.calls.append(self.name)


class Exploding:
    name = "exploding"

    def requestheaders(self, flow):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom")


class Halting:
    name = "halting"

    def requestheaders(self, flow):  # type: ignore[no-untyped-def]
        raise exceptions.AddonHalt()


class Silent:
    """Has no hooks at all: never called."""

    name = "silent"


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


async def _master_with(*addons: object) -> GatewayMaster:
    master = GatewayMaster(options.Options())
    master.addons.add(*addons)
    return master


def test_handlers_run_in_chain_order_sync_and_async() -> None:
    calls: list[str] = []

    async def scenario() -> None:
        master = await _master_with(Recorder("a", calls), Silent(), AsyncRecorder("b", calls), Recorder("c", calls))
        assert isinstance(master.addons, HookTable)
        await master.addons.handle_lifecycle(HttpRequestHeadersHook(tflow.tflow()))
    run(scenario())
    assert calls == ["a", "b", "c"]


def test_an_exception_is_logged_and_the_next_handler_runs(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []

    async def scenario() -> None:
        master = await _master_with(Exploding(), Recorder("after", calls))
        with caplog.at_level(logging.ERROR):
            await master.addons.trigger_event(HttpRequestHeadersHook(tflow.tflow()))
    run(scenario())
    assert calls == ["after"]
    assert "boom" in caplog.text


def test_addon_halt_stops_the_event() -> None:
    calls: list[str] = []

    async def scenario() -> None:
        master = await _master_with(Halting(), Recorder("never", calls))
        await master.addons.trigger_event(HttpRequestHeadersHook(tflow.tflow()))
    run(scenario())
    assert calls == []


def test_table_is_rebuilt_when_addons_change() -> None:
    calls: list[str] = []

    async def scenario() -> None:
        master = await _master_with(Recorder("first", calls))
        await master.addons.trigger_event(HttpRequestHeadersHook(tflow.tflow()))
        late = Recorder("late", calls)
        master.addons.add(late)
        await master.addons.trigger_event(HttpRequestHeadersHook(tflow.tflow()))
        master.addons.remove(late)
        await master.addons.trigger_event(HttpRequestHeadersHook(tflow.tflow()))
    run(scenario())
    assert calls == ["first", "first", "late", "first"]


def test_option_errors_still_reach_the_caller() -> None:
    class Strict:
        name = "strict"

        def configure(self, updated):  # type: ignore[no-untyped-def]
            if "listen_host" in updated:
                raise exceptions.OptionsError("bad listen_host")

    async def scenario() -> None:
        master = await _master_with(Strict())
        with pytest.raises(exceptions.OptionsError):
            master.options.update(listen_host="x")
    run(scenario())


class Updates:
    name = "updates"

    def __init__(self) -> None:
        self.seen: list[object] = []

    def update(self, flows):  # type: ignore[no-untyped-def]
        self.seen.extend(flows)


def test_lifecycle_sends_update_only_when_an_addon_listens() -> None:
    """handle_lifecycle skips building ``update`` for nobody (issue 22), and still sends it to
    an addon that has the hook."""
    from mitmproxy import hooks

    from gateway.run.hooktable import hook_args

    async def scenario() -> tuple[list[str], list[object]]:
        calls: list[str] = []
        listener = Updates()
        master = await _master_with(Recorder("a", calls))
        flow = tflow.tflow()
        await master.addons.handle_lifecycle(HttpRequestHeadersHook(flow))
        master.addons.add(listener)
        await master.addons.handle_lifecycle(HttpRequestHeadersHook(flow))
        return calls, listener.seen

    calls, seen = run(scenario())
    assert calls == ["a", "a"] and len(seen) == 1
    for event in (HttpRequestHeadersHook(tflow.tflow()), hooks.UpdateHook([1, 2])):
        assert hook_args(event) == hooks.Hook.args(event) == [getattr(event, f) for f in event.__dataclass_fields__]
