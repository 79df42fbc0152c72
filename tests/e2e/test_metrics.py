"""Metrics and health on the admin listener, after known traffic through a real gateway."""

from __future__ import annotations

import base64
import copy
import ssl
import time
from pathlib import Path
from typing import Callable

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.harness import RunningGateway, Standin, base_entry, free_port, gateway_config

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(admin: str) -> Samples:
    answer = httpx.get(f"{admin}/metrics", timeout=10)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, l), v in samples.items() if n == name and wanted <= set(l))


def test_metrics_and_health_after_known_traffic(standin: Standin, gateway_factory: Callable[..., RunningGateway],
                                                tmp_path: Path) -> None:
    directory = tmp_path / "gw"
    whitelist = directory / "bases" / "b1" / "Server" / "whitelist.dat"
    whitelist.parent.mkdir(parents=True)
    whitelist.write_text("10.0.0.1\r\n10.1.0.0/16\r\n192.168.5.1-192.168.5.9\r\n", encoding="utf-8")
    blacklist = directory / "bases" / "b2" / "Server" / "blacklist.dat"
    blacklist.parent.mkdir(parents=True)
    blacklist.write_text("127.0.0.9\n", encoding="utf-8")
    admin_port = free_port()
    bases = [base_entry(standin, "b1", "Склад", user_auth=True), base_entry(standin, "b2", "Открытая")]
    config = gateway_config(tmp_path, standin, bases=bases,
                            admin={"enabled": True, "host": "127.0.0.1", "listen": admin_port})
    gw = gateway_factory(config, directory=directory)
    admin = f"http://127.0.0.1:{admin_port}"

    assert httpx.get(f"{admin}/healthz").status_code == 200
    assert httpx.get(f"{admin}/readyz").status_code == 200
    assert httpx.get(f"{admin}/").status_code == 404
    assert httpx.get(f"{admin}/metrics/../admin").status_code == 404
    assert httpx.post(f"{admin}/metrics").status_code == 405

    banned = httpx.HTTPTransport(local_address="127.0.0.9", verify=ssl.create_default_context(cafile=gw.ca_file))
    with httpx.Client(transport=banned, timeout=10) as http:
        try:
            http.get(gw.url("b2", path="/echo/x"))
            raise AssertionError("a blacklisted address got an answer")
        except httpx.TransportError:
            pass

    wrong = {"Authorization": "Basic " + base64.b64encode(b":Wrong12345").decode()}
    verify = ssl.create_default_context(cafile=gw.ca_file)
    with httpx.Client(verify=verify, timeout=10) as http:
        for _ in range(3):
            assert http.get(gw.url("b2", path="/echo/x")).status_code == 200
        assert http.get(gw.url("b2", path="/nothing-here")).status_code == 404
        assert http.get(gw.url("b1", path="/echo/x")).status_code == 401  # no credentials: not a failed login
        for _ in range(10):
            assert http.get(gw.url("b1", path="/echo/x"), headers=wrong).status_code == 401
        assert http.get(gw.url("b1", path="/echo/x"), headers=wrong).status_code == 429
        # this client's keep-alive connection to the open base is still open while we look
        # (denials close theirs: they answer with Connection: close)
        samples = scrape(admin)
        assert value(samples, "gateway_open_connections", base="Открытая") == 1

    assert value(samples, "gateway_requests_total", base="Открытая", status="200", verdict="allowed") == 3
    assert value(samples, "gateway_requests_total", base="Открытая", status="404", verdict="allowed") == 1
    assert value(samples, "gateway_requests_total", base="Склад", status="401", verdict="denied-auth") == 11
    assert value(samples, "gateway_requests_total", base="Склад", status="429", verdict="throttled") == 1
    assert value(samples, "gateway_failed_logins_total", base="Склад") == 10
    assert value(samples, "gateway_refused_connections_total", base="Открытая") == 1
    assert value(samples, "gateway_active_bans", kind="address") == 1
    assert total(samples, "gateway_request_duration_seconds_count") == 16
    assert value(samples, "gateway_ip_list_entries", file=str(whitelist.resolve())) == 3
    expiry = [v for (n, _), v in samples.items() if n == "gateway_certificate_expiry_timestamp_seconds"]
    assert len(expiry) == 1 and expiry[0] > time.time() + 30 * 86400

    # config reloads are counted, applied and refused; a dead back end makes /readyz fail
    dead_url = f"http://127.0.0.1:{free_port()}"
    changed = copy.deepcopy(config)
    changed["bases"].append(base_entry(standin, "b3", "Нет связи",
                                       data={"listen": free_port(), "backend": dead_url}))
    changed["bases"][-1].pop("print")
    gw.reload(changed)
    gw.mark_log()
    gw.config_path.write_text("bases: [unclosed\n", encoding="utf-8")
    gw.wait_for_log("configuration reload refused")
    samples = scrape(admin)
    assert value(samples, "gateway_config_reloads_total", result="ok") == 1
    assert value(samples, "gateway_config_reloads_total", result="refused") == 1
    ready = httpx.get(f"{admin}/readyz", timeout=10)
    assert ready.status_code == 503 and dead_url in ready.text and "connection refused" in ready.text

    with httpx.Client(verify=verify, timeout=10) as http:
        assert http.get(gw.url("b3", path="/api/v1/Docs")).status_code == 502
    samples = scrape(admin)
    assert value(samples, "gateway_requests_total", base="Нет связи", status="502", verdict="backend-error") == 1
    assert value(samples, "gateway_open_connections", base="Открытая") == 0
