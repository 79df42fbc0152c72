"""The engine's per-connection objects an idle connection does not need (gateway/run/engine_memory.py)."""

from __future__ import annotations

import asyncio
import time

from mitmproxy import options
from mitmproxy.connection import Client
from mitmproxy.proxy import layer, server
from mitmproxy.proxy.context import Context

from gateway.run import engine_memory


def make_layer() -> layer.Layer:
    client = Client(peername=("127.0.0.2", 5000), sockname=("127.0.0.1", 443), timestamp_start=time.time())
    return layer.NextLayer(Context(client, options.Options()))


def test_a_layer_gets_its_event_queue_only_when_an_event_waits() -> None:
    engine_memory.install()
    idle = make_layer()
    assert "_paused_event_queue" not in vars(idle)
    assert not idle._paused_event_queue and len(idle._paused_event_queue) == 0
    assert list(idle._paused_event_queue) == []
    assert "_paused_event_queue" not in vars(idle)  # reading made nothing that stays
    paused = make_layer()
    paused._paused_event_queue.append("first")
    paused._paused_event_queue.append("second")
    assert list(vars(paused)["_paused_event_queue"]) == ["first", "second"]
    assert paused._paused_event_queue.popleft() == "first"
    assert idle._paused is None


def test_the_swept_watchdog_closes_an_idle_connection_and_spares_a_busy_one(monkeypatch) -> None:
    engine_memory.install()
    assert server.TimeoutWatchdog is engine_memory.SweptWatchdog
    monkeypatch.setattr(engine_memory, "SWEEP_SECONDS", 0.05)
    fired: list[str] = []

    async def scenario() -> None:
        def on_timeout(name: str):
            async def callback() -> None:
                fired.append(name)
            return callback

        idle = server.TimeoutWatchdog(0.2, on_timeout("idle"))
        busy = server.TimeoutWatchdog(0.2, on_timeout("busy"))
        held = server.TimeoutWatchdog(0.2, on_timeout("held"))
        for dog in (idle, busy, held):
            await dog.watch()
        with held.disarm():  # a hook is running: never a timeout meanwhile
            for _ in range(8):
                busy.register_activity()
                await asyncio.sleep(0.06)
        assert fired == ["idle"]
        await asyncio.sleep(0.4)  # held and busy are now idle past their timeout too
        assert sorted(fired) == ["busy", "held", "idle"]

    asyncio.run(scenario())
