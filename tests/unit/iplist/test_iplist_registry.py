"""Per-base list sets built from the gateway configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.config import GatewayConfig, parse_config
from gateway.iplist.registry import IpLists


def config(tmp_path: Path, **extra: Any) -> GatewayConfig:
    data = {
        "bases": [
            {"id": "b1", "name": "Склад", "folder": "b1", "data": {"listen": 20001, "backend": "http://127.0.0.1:9706"}},
            {"id": "b2", "name": "Office", "folder": "b2", "whitelist_only": True,
             "data": {"listen": 20002, "backend": "http://127.0.0.1:9707"}},
        ],
        "admin": {"enabled": False},
        **extra,
    }
    return parse_config(data, tmp_path / "gateway.yaml")


def lists_file(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_each_base_reads_its_own_server_folder_and_the_global_lists(tmp_path: Path) -> None:
    lists_file(tmp_path / "b1" / "Server" / "blacklist.dat", "10.0.0.3\n")
    lists_file(tmp_path / "b2" / "Server" / "whitelist.dat", "10.0.0.4\n")
    lists_file(tmp_path / "global-white.dat", "10.0.0.5\n")
    lists_file(tmp_path / "global-black.dat", "10.0.0.6\n10.0.0.5\n")
    cfg = config(tmp_path, ip_lists={"whitelist": ["global-white.dat"], "blacklist": ["global-black.dat"]})
    lists = IpLists()
    lists.configure(cfg)

    assert not lists.decide("b1", "10.0.0.3").allowed
    assert lists.decide("b2", "10.0.0.3").verdict == "not-whitelisted"
    assert lists.decide("b2", "10.0.0.4").allowed and lists.decide("b1", "10.0.0.4").verdict == "not-listed"
    assert lists.decide("b1", "10.0.0.5").verdict == "whitelisted"          # global whitelist first
    assert str(lists.decide("b1", "10.0.0.6").match).endswith("global-black.dat:1")
    assert lists.is_whitelisted("b1", "10.0.0.5") and lists.is_whitelisted("b2", "::ffff:10.0.0.4")
    assert not lists.is_whitelisted("b1", "10.0.0.4") and not lists.is_whitelisted("nope", "10.0.0.5")
    assert not lists.is_whitelisted("b1", "not an address")

    sizes = lists.sizes()
    assert sizes[str(tmp_path / "global-black.dat")] == 2
    assert sizes[str(tmp_path / "b1" / "Server" / "whitelist.dat")] == 0     # absent: empty
    assert len(sizes) == 6


def test_global_files_are_compiled_once_for_all_bases(tmp_path: Path) -> None:
    lists_file(tmp_path / "global-black.dat", "10.0.0.6\n")
    cfg = config(tmp_path, ip_lists={"blacklist": ["global-black.dat"]})
    lists = IpLists()
    lists.configure(cfg)
    assert sum(1 for c in lists.watcher.all() if c.path.name == "global-black.dat") == 1
    assert not lists.decide("b1", "10.0.0.6").allowed and not lists.decide("b2", "10.0.0.6").allowed


def test_a_missing_global_list_refuses_the_configuration(tmp_path: Path) -> None:
    """A typo in ip_lists must not quietly drop a blacklist; a base's own absent .dat is fine."""
    import pytest

    from gateway.iplist import ListUnreadable

    lists = IpLists()
    lists.configure(config(tmp_path))  # no Server/*.dat anywhere: empty lists, accepted
    with pytest.raises(ListUnreadable, match=r"ip_lists\.blacklist\[0\]: .*missing\.dat: file not found"):
        lists.configure(config(tmp_path, ip_lists={"blacklist": ["missing.dat"]}))
    assert lists.decide("b1", "10.0.0.9").allowed  # the configuration in force is unchanged
