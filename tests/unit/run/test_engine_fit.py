"""The pieces of mitmproxy the gateway replaces or relies on: a mitmproxy upgrade that moves them
stops the gateway at start instead of silently serving without SO_REUSEPORT or PROXY protocol.
In-process checks, no sockets."""

from __future__ import annotations

import pytest

from addons import _listen
from gateway.config import scale as scale_config
from gateway.run.engine_options import GatewayOptions


@pytest.fixture
def fresh_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from mitmproxy.proxy import mode_servers
    monkeypatch.setattr(_listen, "_installed", False)
    monkeypatch.setattr(mode_servers.ReverseInstance, "listen", mode_servers.AsyncioServerInstance.listen)


def test_install_replaces_reverse_listen(fresh_install: None) -> None:
    from mitmproxy.proxy import mode_servers
    _listen.install()
    assert mode_servers.ReverseInstance.listen is _listen._listen
    assert mode_servers.RegularInstance.listen is not _listen._listen  # only the reverse mode


def test_a_moved_listen_fails_at_start(fresh_install: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from mitmproxy.proxy import mode_servers

    async def listen(self: object, host: str, port: int, reuse_port: bool) -> list[object]:
        return []

    monkeypatch.setattr(mode_servers.ReverseInstance, "listen", listen)
    with pytest.raises(_listen.MitmproxyMoved, match=r"listen\(self, host, port\) is gone or changed"):
        _listen.install()


def test_a_start_that_no_longer_calls_listen_fails_at_start(fresh_install: None,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from mitmproxy.proxy import mode_servers

    async def _start(self: object) -> None:
        self._servers = []  # type: ignore[attr-defined]

    monkeypatch.setattr(mode_servers.AsyncioServerInstance, "_start", _start)
    with pytest.raises(_listen.MitmproxyMoved, match=r"no longer opens its sockets through self\.listen"):
        _listen.install()


def test_the_gateway_refuses_to_start_when_mitmproxy_moved(fresh_install: None, monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: object) -> None:
    import asyncio

    from gateway.run.runner import Gateway, StartupError

    monkeypatch.setattr(_listen, "install", lambda: (_ for _ in ()).throw(_listen.MitmproxyMoved("moved")))
    with pytest.raises(StartupError, match="moved"):
        asyncio.run(Gateway(tmp_path / "gateway.yaml", addons=[]).start())  # type: ignore[operator]


def test_workers_auto_and_the_windows_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scale_config, "can_share_ports", lambda: True)
    count, why = scale_config.resolve_workers("auto")
    assert count >= 1 and why is None
    assert scale_config.resolve_workers(3) == (3, None)
    monkeypatch.setattr(scale_config, "can_share_ports", lambda: False)
    count, why = scale_config.resolve_workers(4)
    assert count == 1 and why is not None and "cannot share a listening port" in why


def test_options_read_without_copies_still_follow_every_change() -> None:
    opts = GatewayOptions()
    seen: list[object] = []
    # A receiver of the change (subscribers, configure hooks) already reads the new value.
    def receiver(updated: set[str]) -> None:
        seen.append(getattr(opts, "gateway_test", None))

    opts.changed.connect(receiver)  # held weakly by the signal: kept alive by this name
    opts.add_option("gateway_test", str, "a", "test")
    assert opts.gateway_test == "a"
    opts.update(gateway_test="b")
    assert opts.gateway_test == "b" and "gateway_test" in vars(opts)  # a plain attribute now
    assert seen[-2:] == ["a", "b"]
    opts.update(mode=["reverse:http://127.0.0.1:1@2"])
    assert opts.mode == ["reverse:http://127.0.0.1:1@2"] and "mode" not in vars(opts)  # a list: copied
    opts.mode.append("x")
    assert opts.mode == ["reverse:http://127.0.0.1:1@2"]  # the copy protects the stored value
    opts.reset()
    assert opts.gateway_test == "a"
