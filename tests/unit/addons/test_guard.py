"""Fail closed: a deny-capable hook that raises must deny, never let the flow on."""

from __future__ import annotations

import asyncio

from mitmproxy.test import taddons, tflow

from addons._guard import already_answered, deny, fail_closed


class Exploding:
    @fail_closed
    def requestheaders(self, flow):  # type: ignore[no-untyped-def]
        raise RuntimeError("store unavailable")

    @fail_closed
    async def request(self, flow):  # type: ignore[no-untyped-def]
        raise RuntimeError("policy file vanished")

    @fail_closed
    def client_connected(self, client):  # type: ignore[no-untyped-def]
        raise RuntimeError("list lookup failed")


def test_sync_hook_exception_denies_with_500() -> None:
    flow = tflow.tflow()
    with taddons.context():
        Exploding().requestheaders(flow)
    assert flow.response is not None and flow.response.status_code == 500
    assert b"store unavailable" not in flow.response.content  # no internals to the client
    assert flow.metadata["gateway_verdict"] == "gateway-error"


def test_async_hook_exception_denies() -> None:
    flow = tflow.tflow()
    asyncio.run(Exploding().request(flow))
    assert flow.response is not None and flow.response.status_code == 500


def test_connection_hook_exception_drops_the_connection() -> None:
    client = tflow.tclient_conn()
    Exploding().client_connected(client)
    assert client.error


def test_addon_manager_path_also_fails_closed() -> None:
    """Through mitmproxy's own addon manager, which on its own would log and continue."""
    flow = tflow.tflow()
    with taddons.context(Exploding()) as tctx:
        from mitmproxy.proxy.layers.http import HttpRequestHeadersHook

        tctx.master.addons.trigger(HttpRequestHeadersHook(flow))
    assert flow.response is not None and flow.response.status_code == 500


def test_deny_turns_off_streaming_and_answers_in_one_line() -> None:
    flow = tflow.tflow()
    flow.request.stream = True
    deny(flow, 401, "401 Unauthorized: credentials needed")
    assert flow.request.stream is False
    assert flow.response.content == b"401 Unauthorized: credentials needed\n"
    assert already_answered(flow)


def test_already_answered_guard() -> None:
    flow = tflow.tflow()
    assert not already_answered(flow)
    flow.live = False
    assert already_answered(flow)


class SlowPathExploding:
    """Synchronous on its fast path, handing back a coroutine for the slow one (as Auth does)."""

    @fail_closed
    def requestheaders(self, flow):  # type: ignore[no-untyped-def]
        async def slow() -> None:
            raise RuntimeError("argon2 pool gone")
        return slow()


def test_awaitable_returned_by_a_sync_hook_is_guarded_too() -> None:
    flow = tflow.tflow()
    pending = SlowPathExploding().requestheaders(flow)
    assert flow.response is None  # nothing decided yet
    asyncio.run(pending)
    assert flow.response is not None and flow.response.status_code == 500
