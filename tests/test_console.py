"""The admin console: pure page rendering and the event ring, then pages from a real gateway."""

from __future__ import annotations

import base64
import datetime
import logging
import ssl
from pathlib import Path
from typing import Callable

import httpx
import pytest

from gateway.console import (
    BaseView, CertificateFacts, EnrolmentView, EventRing, GroupView, IpListsView, UserView, render_error,
    render_page,
)
from gateway.console.pages import BanView
from tests.harness import RunningGateway, Standin, base_entry, cli_ok, free_port, gateway_config

ADMIN_PASSWORD = "Konsol-Adm1n-Пароль"
MOBILE_PASSWORD = "Mobil-Term1nal-Ключ"
BASE_NAME = "Магазин 15 Вещевой"


# --- pure: rendering ---------------------------------------------------------------------------


def _base(name: str = "Склад <b>№1</b>", days: int = 364) -> BaseView:
    cert = CertificateFacts("CN=склад.local", "local CA", datetime.datetime(2031, 5, 6), days)
    return BaseView("b1", name, "https://gw:10560", "https://gw:10561", True, True, False, (), cert)


def test_bases_page_escapes_names_and_shows_certificate_days() -> None:
    page = render_page("/console", bases=[_base()])
    assert "Склад &lt;b&gt;№1&lt;/b&gt;" in page and "<b>№1" not in page
    assert "CN=склад.local" in page and "2031-05-06" in page and "364 дн." in page
    assert "https://gw:10561" in page and "доступен / reachable" in page


@pytest.mark.parametrize("days, css", [(-2, "bad"), (10, "warn"), (200, "ok")])
def test_certificate_days_are_coloured_by_urgency(days: int, css: str) -> None:
    assert f'class="{css} days-left"' in render_page("/console", bases=[_base(days=days)])


def test_unreachable_back_end_and_certificate_problem_are_shown() -> None:
    base = BaseView("b2", "Касса", "http://gw:1", "", False, False, True, ("data http://10.0.0.5:80: refused",),
                    None, "")
    page = render_page("/console", bases=[base])
    assert "data http://10.0.0.5:80: refused" in page and "reachable" not in page


def test_users_page_lists_groups_and_users() -> None:
    page = render_page("/console/users", groups=[GroupView("1", "Операторы ТСД", "mobile", ("Приход", "Расход"))],
                       users=[UserView("Иванов", "Операторы ТСД", "mobile", True)])
    assert "Операторы ТСД" in page and "Приход, Расход" in page and "Иванов" in page and "есть / yes" in page


def test_iplists_page_shows_sizes_and_bans() -> None:
    lists = IpListsView((("/srv/b1/Server/whitelist.dat", 3),), (BanView("address", "10.0.0.7", 10, 42),))
    page = render_page("/console/iplists", lists=lists)
    assert "whitelist.dat" in page and ">3<" in page and "10.0.0.7" in page and ">42<" in page


def test_enrolment_page_inserts_the_qr_svg_and_escapes_the_rest() -> None:
    view = EnrolmentView(True, "http://gw:8079/", "AB:CD", "CN=<ca>", None, '<svg id="qr"></svg>')
    page = render_page("/console/enrolment", enrolment=view)
    assert '<svg id="qr"></svg>' in page and "CN=&lt;ca&gt;" in page and "http://gw:8079/" in page
    assert "выключена" in render_page("/console/enrolment", enrolment=EnrolmentView(False))


def test_error_page_escapes_text() -> None:
    assert "a&lt;script&gt;" in render_error("500", "a<script>")


# --- pure: the event ring ----------------------------------------------------------------------


def _logger_with(ring: EventRing) -> logging.Logger:
    log = logging.getLogger("gateway.test-console-ring")
    log.handlers[:] = [ring]
    log.propagate = False
    log.setLevel(logging.DEBUG)
    return log


def test_ring_keeps_only_security_events_newest_first() -> None:
    ring = EventRing()
    log = _logger_with(ring)
    log.info("plain line")
    log.info("user added", extra={"event": "user-added"})
    log.info("login failed from %s", "10.0.0.1", extra={"event": "login-failed", "client": "10.0.0.1", "base": "Склад"})
    log.warning("lockout", extra={"event": "lockout"})
    events = ring.recent()
    assert [e.event for e in events] == ["lockout", "login-failed"]
    assert events[1].message == "login failed from 10.0.0.1" and events[1].base == "Склад"
    assert events[1].client == "10.0.0.1" and events[0].level == "WARNING"


def test_ring_is_bounded() -> None:
    ring = EventRing(size=5)
    log = _logger_with(ring)
    for i in range(12):
        log.info("denied %d", i, extra={"event": "ip-denied"})
    assert [e.message for e in ring.recent()] == [f"denied {i}" for i in range(11, 6, -1)]


def test_events_page_renders_the_ring() -> None:
    ring = EventRing()
    _logger_with(ring).info("login failed <x>", extra={"event": "login-failed", "base": "Склад"})
    page = render_page("/console/events", events=ring.recent())
    assert "login failed &lt;x&gt;" in page and "Склад" in page


# --- end to end --------------------------------------------------------------------------------


def _basic(login: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode()}


@pytest.fixture
def console_gateway(standin: Standin, gateway_factory: Callable[..., RunningGateway],
                    tmp_path: Path) -> tuple[RunningGateway, str]:
    admin_port = free_port()
    bases = [base_entry(standin, "b1", BASE_NAME, user_auth=True)]
    gw = gateway_factory(gateway_config(tmp_path, standin, bases=bases,
                                        admin={"enabled": True, "host": "127.0.0.1", "listen": admin_port}),
                         directory=tmp_path / "gw")
    d = gw.directory
    cli_ok(d, "group", "add", "Администраторы", "--role", "admin", "--doc-type", "Поступление")
    cli_ok(d, "group", "add", "ТСД", "--role", "mobile", "--doc-type", "Поступление")
    cli_ok(d, "user", "add", "админ", "--group", "Администраторы", "--password-stdin",
           input=ADMIN_PASSWORD + "\n", secrets=(ADMIN_PASSWORD,))
    cli_ok(d, "user", "add", "terminal1", "--group", "ТСД", "--password-stdin",
           input=MOBILE_PASSWORD + "\n", secrets=(MOBILE_PASSWORD,))
    return gw, f"http://127.0.0.1:{admin_port}"


def test_console_end_to_end(console_gateway: tuple[RunningGateway, str]) -> None:
    gw, admin = console_gateway
    admin_auth = _basic("админ", ADMIN_PASSWORD)
    with httpx.Client(timeout=10) as http:
        refused = http.get(f"{admin}/console")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == 'Basic realm="gateway console", charset="UTF-8"'
        assert BASE_NAME not in refused.text
        assert http.get(f"{admin}/console", headers=_basic("админ", "wrong-password")).status_code == 401
        assert http.get(f"{admin}/console", headers=_basic("terminal1", MOBILE_PASSWORD)).status_code == 403
        assert http.post(f"{admin}/console", headers=admin_auth).status_code == 405
        # the old endpoints are untouched
        assert http.get(f"{admin}/healthz").text == "ok\n"
        assert http.get(f"{admin}/console-x").status_code == 404

        overview = http.get(f"{admin}/console", headers=admin_auth)
        assert overview.status_code == 200 and overview.headers["content-type"] == "text/html; charset=utf-8"
        assert overview.headers["content-security-policy"] == \
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
        assert overview.headers["x-frame-options"] == "DENY"
        assert overview.headers["x-content-type-options"] == "nosniff"
        assert overview.headers["cache-control"] == "no-store"
        assert BASE_NAME in overview.text and "дн. / days left" in overview.text
        assert "доступен / reachable" in overview.text

        # a failed login on the user_auth base shows up among the events
        wrong = _basic("terminal1", "not-the-password")
        assert httpx.get(gw.url("b1", path="/echo/x"), headers=wrong,
                         verify=ssl.create_default_context(cafile=gw.ca_file)).status_code == 401
        gw.wait_for_log("login failed")

        pages = {path: http.get(f"{admin}{path}", headers=admin_auth)
                 for path in ("/console", "/console/users", "/console/iplists", "/console/events",
                              "/console/enrolment")}
        assert all(answer.status_code == 200 for answer in pages.values()), \
            {p: a.status_code for p, a in pages.items()}
        users = pages["/console/users"].text
        assert "админ" in users and "terminal1" in users and "Администраторы" in users and ">admin<" in users
        events = pages["/console/events"].text
        assert "login-failed" in events and BASE_NAME in events
        assert "SHA-256" in pages["/console/enrolment"].text
        secret_key = (gw.state_dir / "auth-hmac.key").read_text().strip()
        for path, answer in pages.items():
            for secret in (ADMIN_PASSWORD, MOBILE_PASSWORD, "not-the-password", "$argon2", secret_key):
                assert secret not in answer.text, f"{path} shows a secret or a hash"
        head = http.head(f"{admin}/console/users", headers=admin_auth)
        assert head.status_code == 200 and head.content == b""


def test_console_throttles_failed_logins_per_address(console_gateway: tuple[RunningGateway, str]) -> None:
    _, admin = console_gateway
    other = httpx.HTTPTransport(local_address="127.0.0.3")
    with httpx.Client(transport=other, timeout=10) as http:
        for _ in range(10):
            assert http.get(f"{admin}/console", headers=_basic("админ", "guess")).status_code == 401
        throttled = http.get(f"{admin}/console", headers=_basic("админ", ADMIN_PASSWORD))
        assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) >= 1
    # another address is not affected; the ban and the lockout are on the console's pages
    with httpx.Client(timeout=10) as http:
        admin_auth = _basic("админ", ADMIN_PASSWORD)
        assert "127.0.0.3" in http.get(f"{admin}/console/iplists", headers=admin_auth).text
        assert "lockout" in http.get(f"{admin}/console/events", headers=admin_auth).text


def test_console_fails_closed_with_500_and_refuses_writes() -> None:
    import asyncio

    from addons.console import Console

    console = Console(list_sizes=dict)
    try:
        broken = asyncio.run(console.answer("GET", "/console", {}, "127.0.0.1"))  # no configuration applied
        assert broken.status == 500 and "<table" not in broken.body
        post = asyncio.run(console.answer("POST", "/console/users", {}, "127.0.0.1"))
        assert post.status == 405 and ("Allow", "GET, HEAD") in post.headers
    finally:
        console.done()
