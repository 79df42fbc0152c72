"""ErrorPages: the watchdog's mark on a client lasts no longer than the client."""

from __future__ import annotations

from mitmproxy.test import tflow

from addons import errorpages


def test_a_timed_out_client_that_leaves_is_forgotten() -> None:
    client = tflow.tclient_conn()
    other = tflow.tclient_conn()
    errorpages.mark_timed_out(client)
    errorpages.mark_timed_out(other)
    assert errorpages.is_timed_out(client)
    errorpages.ErrorPages().client_disconnected(client)
    assert not errorpages.is_timed_out(client)
    assert errorpages.is_timed_out(other)
    errorpages.ErrorPages().client_disconnected(other)
    assert not errorpages._TIMED_OUT_CLIENTS
