from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, parse_config

BASE = {"id": "b1", "name": "Склад", "data": {"listen": 9443, "backend": "http://127.0.0.1:9706"}}


def _base(tls: dict, source: Path = Path("/tmp/gateway.yaml")):  # type: ignore[no-untyped-def]
    return parse_config({"bases": [{**BASE, "tls": tls}]}, source).bases[0]


def test_client_auth_modes(tmp_path: Path) -> None:
    assert _base({}).tls.client_auth == "off"
    assert _base({"client_auth": "required"}).tls.client_auth == "required"
    assert _base({"client_auth": False}).tls.client_auth == "off"  # YAML's bare `off`
    with pytest.raises(ConfigError, match=r"bases\[0\]\.tls\.client_auth.*off, optional or required"):
        _base({"client_auth": "yes please"})


def test_client_ca_must_be_a_file(tmp_path: Path) -> None:
    ca = tmp_path / "company-ca.pem"
    ca.write_text("x", encoding="utf-8")
    assert _base({"client_auth": "optional", "client_ca": str(ca)}).tls.client_ca == ca
    with pytest.raises(ConfigError, match="client_ca.*not a file"):
        _base({"client_auth": "optional", "client_ca": str(tmp_path / "missing.pem")})
