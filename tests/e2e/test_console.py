"""The admin console: pure pieces (rendering, language, sessions, journal, list editing), then
a real gateway driven over HTTP: form login, CSRF and Origin checks, every action, the audit
events, and the changes taking effect at once (a user logs in to a base, a list refuses)."""

from __future__ import annotations

import codecs
import html
import datetime
import logging
import re
import ssl
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest

from gateway.auth import totp

from gateway.console.i18n import choose_language
from gateway.ops.journal import EventFilter, JournalHandler, filter_page, read_journal
from gateway.console.pages import (
    BaseView, CertificateFacts, CheckView, GroupView, UserView, render_error, render_page,
)
from gateway.console.sessions import ConsoleSessions
from gateway.iplist.edit import check_text, read_list_file, save_list_file
from tests.harness import RunningGateway, Standin, base_entry, cli_ok, free_port, gateway_config

ADMIN_PASSWORD = "Konsol-Adm1n-Пароль"
MOBILE_PASSWORD = "Mobil-Term1nal-Ключ"
BASE_NAME = "Магазин 15 Вещевой"


# --- pure --------------------------------------------------------------------------------------


def _base(name: str = "Склад <b>№1</b>", days: int = 364) -> BaseView:
    cert = CertificateFacts("CN=склад.local", "local CA", datetime.datetime(2031, 5, 6), days)
    return BaseView("b1", name, "https://gw:10560", "https://gw:10561", True, True, False, (), cert)


def test_bases_page_escapes_names_shows_certificate_days_and_check_problems() -> None:
    checks = [CheckView("Касса", "http://gw:1", ("data http://10.0.0.5:80: connection refused; start the server",))]
    page = render_page("/console/bases", lang="ru", who="админ", csrf="t", bases=[_base()], checks=checks)
    assert "Склад &lt;b&gt;№1&lt;/b&gt;" in page and "<b>№1" not in page
    assert "CN=склад.local" in page and "2031-05-06" in page and "364 дн. осталось" in page
    assert "connection refused; start the server" in page and "Проблемы" in page
    english = render_page("/console/bases", lang="en", who="admin", csrf="t", bases=[_base()], checks=[])
    assert "364 days left" in english and "No problems" in english and "дн." not in english


def test_users_page_has_a_form_per_action_each_with_the_csrf_token() -> None:
    page = render_page("/console/users", lang="en", who="a", csrf="TOKEN-123",
                       groups=[GroupView("1", "Операторы ТСД", "mobile", ("Приход", "Расход"), 1)],
                       users=[UserView("7", "Иванов", "Операторы ТСД", "mobile", True, "1")])
    forms = re.findall(r'<form method="post" action="([^"]+)"', page)
    assert {"/console/groups/add", "/console/groups/edit", "/console/groups/remove", "/console/users/add",
            "/console/users/password", "/console/users/barcode", "/console/users/move", "/console/users/remove",
            "/console/logout"} <= set(forms)
    assert page.count('name="csrf" value="TOKEN-123"') == len(forms)
    assert "<script" not in page and "style=" not in page


def test_language_from_cookie_then_accept_language() -> None:
    assert choose_language("en-US,en;q=0.9,ru;q=0.8") == "en"
    assert choose_language("de-DE,ru;q=0.5,en;q=0.4") == "ru"
    assert choose_language("fr") == "ru"
    assert choose_language("ru", cookie="en") == "en"


def test_error_page_escapes_text() -> None:
    assert "a&lt;script&gt;" in render_error("500", "a<script>")


def test_sessions_end_after_idle_timeout() -> None:
    now = [1000.0]
    sessions = ConsoleSessions(idle_timeout=60, clock=lambda: now[0])
    token, session = sessions.create("1", "admin", 1)
    now[0] += 59
    assert sessions.get(token) is session
    now[0] += 59  # the last request restarted the idle clock
    assert sessions.get(token) is session
    now[0] += 61
    assert sessions.get(token) is None and sessions.get("forged") is None


def test_idle_timeout_key_is_checked(tmp_path: Path) -> None:
    from gateway.config import ConfigError, parse_config

    assert parse_config({"admin": {"console_idle_timeout": 300}}, tmp_path / "g.yaml").admin.console_idle_timeout \
        == 300
    assert parse_config({}, tmp_path / "g.yaml").admin.console_idle_timeout == 900
    with pytest.raises(ConfigError, match=r"admin\.console_idle_timeout.*10–86400"):
        parse_config({"admin": {"console_idle_timeout": 5}}, tmp_path / "g.yaml")


def test_journal_is_shared_through_the_state_folder_and_filters(tmp_path: Path) -> None:
    writer = JournalHandler(tmp_path)
    log = logging.getLogger("gateway.test-console-journal")
    log.handlers[:] = [writer]
    log.propagate = False
    log.setLevel(logging.DEBUG)
    log.info("plain line")
    log.info("login failed", extra={"event": "login-failed", "client": "10.0.0.1", "base": "Склад"})
    log.info("ban lifted for 10.0.0.1", extra={"event": "ban-lifted", "target": "10.0.0.1"})
    for i in range(5):
        log.info("denied %d", i, extra={"event": "ip-denied", "client": "10.0.0.9", "base": "Касса"})
    events = read_journal(tmp_path)  # another process reads the same file
    assert len(events) == 7 and events[0].message == "denied 4"
    assert [e.message for e in filter_page(events, EventFilter(kind="ban-lifted"), 1, 10).events] == \
        ["ban lifted for 10.0.0.1"]
    assert len(filter_page(events, EventFilter(address="10.0.0.1"), 1, 10).events) == 2
    assert len(filter_page(events, EventFilter(base="склад"), 1, 10).events) == 1
    log.info("login failed from 10.0.0.2: user 'Иванов': wrong password", extra={"event": "login-failed"})
    assert [e.client for e in filter_page(read_journal(tmp_path), EventFilter(user="иванов"), 1, 10).events] == [""]
    events = [e for e in read_journal(tmp_path) if "Иванов" not in e.message]
    page = filter_page(events, EventFilter(), 2, 3)
    assert page.pages == 3 and page.total == 7 and [e.message for e in page.events] == ["denied 1", "denied 0",
                                                                                       "ban lifted for 10.0.0.1"]


def test_journal_rotates_and_stays_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.ops import journal

    monkeypatch.setattr(journal, "MAX_BYTES", 2000)
    monkeypatch.setattr(journal, "CHECK_INTERVAL", 0.0)
    writer = journal.JournalHandler(tmp_path)
    log = logging.getLogger("gateway.test-console-rotation")
    log.handlers[:] = [writer]
    log.propagate = False
    log.setLevel(logging.INFO)
    for i in range(200):
        log.warning("refused 10.0.0.1 (%d)", i, extra={"event": "ip-denied", "client": "10.0.0.1"})
    writer.close()
    assert (tmp_path / "events.jsonl").stat().st_size <= 2200
    assert (tmp_path / "events.jsonl.1").stat().st_size <= 2200
    events = read_journal(tmp_path)
    assert events[0].message == "refused 10.0.0.1 (199)" and 10 < len(events) < 60


@pytest.mark.parametrize("encoding, bom, newline", [
    ("utf-8", b"", "\r\n"), ("utf-8", codecs.BOM_UTF8, "\n"), ("utf-16-le", codecs.BOM_UTF16_LE, "\r\n"),
    ("cp1251", b"", "\r\n"),
])
def test_list_edit_keeps_encoding_and_line_ends(tmp_path: Path, encoding: str, bom: bytes, newline: str) -> None:
    path = tmp_path / "whitelist.dat"
    original = newline.join(["# склад", "10.0.0.1", "192.168.1.0/24", ""])
    path.write_bytes(bom + original.encode(encoding))
    current = read_list_file(path)
    assert current.text == "# склад\n10.0.0.1\n192.168.1.0/24\n"
    save_list_file(current, current.text + "10.0.0.2\n")
    assert path.read_bytes() == bom + newline.join(["# склад", "10.0.0.1", "192.168.1.0/24", "10.0.0.2", ""]).encode(
        encoding)
    assert [e.line for e in check_text("10.0.0.1\r\nnot-an-address\r\n10.0.0.300\n")] == [2, 3]
    assert not list(tmp_path.glob(".*.tmp"))


def test_console_fails_closed_with_500_and_changes_need_post() -> None:
    import asyncio

    from gateway.web.console import Console

    console = Console()
    try:
        broken = asyncio.run(console.answer("GET", "/console", {}, "127.0.0.1"))  # no configuration applied
        assert broken.status == 500 and "<table" not in broken.data.decode()
    finally:
        console.done()


@pytest.mark.parametrize("headers, allowed", [
    ({"origin": "http://127.0.0.1:9400"}, True),
    ({"origin": "null", "sec-fetch-site": "same-origin"}, True),  # a form under Referrer-Policy: no-referrer
    ({"referer": "http://127.0.0.1:9400/console/users"}, True),
    ({}, True),  # not a browser: the CSRF token still decides
    ({"origin": "http://evil.example"}, False),
    ({"origin": "null"}, False),
    ({"origin": "null", "sec-fetch-site": "cross-site"}, False),
    ({"referer": "http://127.0.0.1:9400.evil.example/console"}, False),
    ({"sec-fetch-site": "same-site"}, False),
])
def test_changes_must_come_from_the_console_itself(headers: dict[str, str], allowed: bool) -> None:
    from gateway.web.console import _cross_site, _Request

    request = _Request("POST", "/console/users/add", {}, {"host": "127.0.0.1:9400", **headers}, "127.0.0.1", b"",
                       False, "en", {}, [])
    assert (_cross_site(request) is None) == allowed


# --- end to end --------------------------------------------------------------------------------


class ConsoleClient:
    """A browser-like client: cookies, the form's CSRF token, Origin of the console."""

    def __init__(self, base: str, local_address: str | None = None) -> None:
        transport = httpx.HTTPTransport(local_address=local_address) if local_address else None
        self.base = base
        self.http = httpx.Client(base_url=base, timeout=20, transport=transport,
                                 headers={"Accept-Language": "en"})

    def login(self, user: str, password: str) -> httpx.Response:
        return self.http.post("/console/login", data={"username": user, "password": password},
                              headers={"Origin": self.base})

    def csrf(self, page: str = "/console/users") -> str:
        match = re.search(r'name="csrf" value="([^"]+)"', self.http.get(page).text)
        assert match, "no CSRF token on the page"
        return match.group(1)

    def post(self, path: str, data: dict[str, str], files: Any = None, page: str = "/console/users"
             ) -> httpx.Response:
        """POST with the token, then follow the redirect to the page showing the outcome."""
        answer = self.http.post(path, data={**data, "csrf": self.csrf(page)}, files=files,
                                headers={"Origin": self.base})
        if answer.status_code == 303:
            return self.http.get(answer.headers["location"])
        return answer

    def close(self) -> None:
        self.http.close()


def _refused_within(url: str, local_address: str, verify: ssl.SSLContext, seconds: float) -> bool:
    """Whether connections from ``local_address`` are dropped (the IP filter) within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with httpx.Client(transport=httpx.HTTPTransport(local_address=local_address, verify=verify),
                          timeout=5) as client:
            try:
                client.get(url)
            except httpx.HTTPError:
                return True
        time.sleep(0.2)
    return False


def _flash(page: httpx.Response) -> str:
    match = re.search(r'<div class="flash (ok|bad)" id="flash">(.*?)</div>', page.text, re.S)
    assert match, f"no outcome shown on the page: {page.text[:2000]}"
    return match.group(1) + ": " + html.unescape(match.group(2))


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
    cli_ok(d, "user", "add", "админ", "--group", "Администраторы", "--password-stdin",
           input=ADMIN_PASSWORD + "\n", secrets=(ADMIN_PASSWORD,))
    return gw, f"http://127.0.0.1:{admin_port}"


def test_console_login_session_headers_and_refusals(console_gateway: tuple[RunningGateway, str]) -> None:
    gw, admin = console_gateway
    cli_ok(gw.directory, "group", "add", "ТСД", "--role", "mobile", "--doc-type", "Поступление")
    # the group's Save button and `gateway group edit` are one core function
    assert "document types: Поступление, Продажа" in cli_ok(gw.directory, "group", "edit", "ТСД", "--doc-type",
                                                      "Поступление,Продажа")
    cli_ok(gw.directory, "user", "add", "terminal1", "--group", "ТСД", "--password-stdin",
           input=MOBILE_PASSWORD + "\n")
    assert "moved to group 'Администраторы'" in cli_ok(gw.directory, "user", "move", "terminal1", "--group",
                                                        "Администраторы")
    cli_ok(gw.directory, "user", "move", "terminal1", "--group", "ТСД")
    console = ConsoleClient(admin)
    try:
        first = console.http.get("/console")
        assert first.status_code == 303 and first.headers["location"] == "/console/login"
        login_page = console.http.get("/console/login")
        assert login_page.status_code == 200 and 'name="password"' in login_page.text
        assert BASE_NAME not in login_page.text
        headers = login_page.headers
        assert "script-src" not in headers["content-security-policy"] and \
            "default-src 'none'" in headers["content-security-policy"]
        assert headers["x-frame-options"] == "DENY" and headers["referrer-policy"] == "no-referrer"
        assert console.login("terminal1", MOBILE_PASSWORD).status_code == 403
        assert console.login("админ", "wrong-password").status_code == 401
        # a login from another site is refused before the password is even looked at
        forged = console.http.post("/console/login", data={"username": "админ", "password": ADMIN_PASSWORD},
                                   headers={"Origin": "http://evil.example"})
        assert forged.status_code == 403 and "gw_console" not in forged.headers.get("set-cookie", "")

        answer = console.login("админ", ADMIN_PASSWORD)
        assert answer.status_code == 303
        cookie = answer.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
        dashboard = console.http.get("/console")
        assert dashboard.status_code == 200 and BASE_NAME in dashboard.text and "<svg" in dashboard.text
        overview = console.http.get("/console/bases")
        assert overview.status_code == 200 and BASE_NAME in overview.text and "days left" in overview.text
        assert overview.headers["cache-control"] == "no-store"
        assert "Problems found by gateway check" in overview.text
        russian = console.http.get("/console/bases?lang=ru")
        assert "Базы" in russian.text and "Проблемы" in russian.text and "Bases</a>" not in russian.text
        assert "gw_console_lang=ru" in russian.headers["set-cookie"]
        console.http.cookies.delete("gw_console_lang")

        # no change without the token, by GET, or from another origin
        no_token = console.http.post("/console/groups/add", data={"name": "X", "role": "mobile", "doc_types": "A"},
                                     headers={"Origin": admin})
        assert no_token.status_code == 403 and "CSRF" in no_token.text
        assert console.http.get("/console/groups/add?name=X&role=mobile&doc_types=A").status_code == 405
        other_site = console.http.post("/console/groups/add", headers={"Origin": "http://127.0.0.1:1"},
                                       data={"name": "X", "role": "mobile", "doc_types": "A",
                                             "csrf": console.csrf()})
        assert other_site.status_code == 403
        assert "X" not in [g.split()[1] for g in cli_ok(gw.directory, "group", "list").splitlines()[1:]]

        pages = {p: console.http.get(p) for p in ("/console", "/console/bases", "/console/users", "/console/iplists",
                                                 "/console/certificates", "/console/events", "/console/enrolment")}
        assert all(a.status_code == 200 for a in pages.values()), {p: a.status_code for p, a in pages.items()}
        secret_key = (gw.state_dir / "auth-hmac.key").read_text().strip()
        for path, page in pages.items():
            for secret in (ADMIN_PASSWORD, MOBILE_PASSWORD, "$argon2", secret_key):
                assert secret not in page.text, f"{path} shows a secret or a hash"
        ca = console.http.get("/console/ca.pem")
        assert ca.status_code == 200 and ca.content == (gw.state_dir / "certs" / "ca.pem").read_bytes()
        assert console.http.get("/console/ca.der").content.startswith(b"\x30")

        out = console.http.post("/console/logout", data={"csrf": console.csrf()}, headers={"Origin": admin})
        assert out.status_code == 303 and console.http.get("/console").status_code == 303
    finally:
        console.close()
    events = read_journal(gw.state_dir)
    assert any(e.event == "console-login" and e.admin == "админ" for e in events)


def test_console_actions_take_effect_and_are_audited(console_gateway: tuple[RunningGateway, str]) -> None:
    gw, admin = console_gateway
    console = ConsoleClient(admin)
    verify = ssl.create_default_context(cafile=gw.ca_file)
    try:
        assert console.login("админ", ADMIN_PASSWORD).status_code == 303
        # groups: the "at least one operation" rule, then add, edit
        refused = console.post("/console/groups/add", {"name": "Кладовщики", "role": "mobile", "doc_types": ""})
        assert _flash(refused).startswith("bad") and "at least one operation" in _flash(refused)
        # the back end's own names, checked as `gateway group add` checks them: an alias is refused
        alias = console.post("/console/groups/add", {"name": "Кладовщики", "role": "mobile", "doc_types": "Приход"})
        assert _flash(alias).startswith("bad") and "use 'Поступление'" in _flash(alias), _flash(alias)
        added = console.post("/console/groups/add", {"name": "Кладовщики", "role": "mobile", "doc_types": "Поступление"})
        assert _flash(added).startswith("ok") and "Кладовщики" in added.text
        group_id = re.search(r'<tr data-group="Кладовщики"><td>([^<]+)</td>', added.text).group(1)
        edited = console.post("/console/groups/edit", {"group": group_id, "role": "mobile",
                                                       "doc_types": "Поступление, Продажа"})
        assert "Поступление → Поступление, Продажа" in _flash(edited)

        # users: the CLI's password rules and messages, then a user that logs in to the base at once
        differ = console.post("/console/users/add", {"name": "иван", "group": group_id, "password": "Aa1aaaaaaa",
                                                     "password2": "Aa1aaaaaab"})
        assert "the two passwords differ; nothing was changed" in _flash(differ)
        weak = console.post("/console/users/add", {"name": "иван", "group": group_id, "password": "short",
                                                   "password2": "short"})
        assert "the password is weak" in _flash(weak)
        password = "Sklad-Ivan-2024"
        created = console.post("/console/users/add", {"name": "иван", "group": group_id, "password": password,
                                                      "password2": password})
        assert _flash(created).startswith("ok") and password not in created.text
        duplicate = console.post("/console/users/add", {"name": "Иван", "group": group_id, "password": password + "x",
                                                        "password2": password + "x"})
        assert "already" in _flash(duplicate)
        through = httpx.get(gw.url("b1", path="/echo/x"), auth=("иван", password), verify=verify, timeout=10)
        assert through.status_code == 200

        user_id = re.search(r'<tr data-user="иван"><td>([^<]+)</td>', created.text).group(1)
        asked = console.post("/console/groups/remove", {"group": group_id})
        assert 'id="question"' in asked.text and "Кладовщики" in asked.text  # a removal asks first
        busy = console.post("/console/groups/remove", {"group": group_id, "confirm": "yes"})
        assert "the group still has 1 user(s)" in _flash(busy)
        new_password = "Sklad-Ivan-2025"
        console.post("/console/users/password", {"user": user_id, "password": new_password,
                                                 "password2": new_password})
        assert httpx.get(gw.url("b1", path="/echo/x"), auth=("иван", password), verify=verify,
                         timeout=10).status_code == 401
        barcode = console.post("/console/users/barcode", {"user": user_id, "barcode": "4600000000017",
                                                          "barcode2": "4600000000017"})
        assert "barcode of 'иван' set" in _flash(barcode) and "4600000000017" not in barcode.text
        removed_barcode = console.post("/console/users/barcode", {"user": user_id, "remove": "on", "confirm": "yes"})
        assert "barcode of 'иван' removed" in _flash(removed_barcode)
        moved = console.post("/console/users/move", {"user": user_id, "group": "Администраторы"})
        assert "moved to group 'Администраторы'" in _flash(moved)
        gone = console.post("/console/users/remove", {"user": user_id, "confirm": "yes"})
        assert "removed" in _flash(gone)
        assert httpx.get(gw.url("b1", path="/echo/x"), auth=("иван", new_password), verify=verify,
                         timeout=10).status_code == 401
        assert _flash(console.post("/console/groups/remove", {"group": group_id, "confirm": "yes"})).startswith("ok")

        # bans: the failed logins above banned nobody; a ban from another address is listed and lifted
        other = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.4", verify=verify), timeout=10)
        for _ in range(10):
            other.get(gw.url("b1", path="/echo/x"), auth=("nobody", "guess"))
        assert other.get(gw.url("b1", path="/echo/x"), auth=("nobody", "guess")).status_code == 429
        bans = console.http.get("/console/iplists")
        assert 'data-target="127.0.0.4"' in bans.text and "time-left" in bans.text
        lifted = console.post("/console/bans/lift", {"target": "127.0.0.4"}, page="/console/iplists")
        assert "lifted" in _flash(lifted) and 'data-target="127.0.0.4"' not in lifted.text
        assert other.get(gw.url("b1", path="/echo/x"), auth=("nobody", "guess")).status_code == 401
        other.close()

        # an IP list: a list the configuration does not name is said so, not a 500
        unknown = console.http.get("/console/iplists/edit", params={"list": "no-such-list"})
        assert unknown.status_code == 200 and "no list &#39;no-such-list&#39; in the configuration" in unknown.text
        # bad lines shown and saved only when confirmed; the address refused within seconds
        key = "base-b1-blacklist"
        save = {"list": key, "text": "# banned\r\n127.0.0.5\r\nnot-an-address\r\n"}
        pending = console.post("/console/iplists/save", save, page="/console/iplists")
        assert pending.status_code == 200 and 'id="unsaved"' in pending.text and "not-an-address" in pending.text
        blacklist = gw.directory / "bases" / "b1" / "Server" / "blacklist.dat"
        assert not blacklist.exists() or "127.0.0.5" not in blacklist.read_text()
        saved = console.post("/console/iplists/save", {**save, "confirm": "yes"}, page="/console/iplists")
        assert _flash(saved).startswith("ok") and 'class="bad-line" data-line="3"' in saved.text
        assert _refused_within(gw.url("b1", path="/echo/x"), "127.0.0.5", verify, seconds=10)
    finally:
        console.close()

    events = console_events = read_journal(gw.state_dir)
    changes = [e.message for e in events if e.event == "console-change"]
    assert any("added group 'Кладовщики'" in m and "from 127.0.0.1" in m for m in changes)
    assert any("added user 'иван'" in m for m in changes)
    assert any("lifted the ban of 127.0.0.4" in m for m in changes)
    assert any("edited" in m and "blacklist.dat" in m for m in changes)
    assert any(e.event == "ban-lifted" for e in console_events)
    for secret in (ADMIN_PASSWORD, "Sklad-Ivan-2024", "Sklad-Ivan-2025", "4600000000017"):
        assert secret not in (gw.state_dir / "events.jsonl").read_text(encoding="utf-8")
        assert secret not in gw.log()


def _ban_lifted_by_the_cli_shows_on_the_events_page(gw: RunningGateway, admin: str) -> None:
    console = ConsoleClient(admin, local_address="127.0.0.6")
    try:
        for _ in range(10):
            assert console.login("админ", "guess").status_code == 401
        throttled = console.login("админ", ADMIN_PASSWORD)
        assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) >= 1
        cli_ok(gw.directory, "bans", "lift", "127.0.0.6")
        assert console.login("админ", ADMIN_PASSWORD).status_code == 303
        events = console.http.get("/console/events", params={"kind": "ban-lifted"})
        assert "ban lifted for 127.0.0.6" in events.text and '<tr class="login-failed">' not in events.text
        failed = console.http.get("/console/events", params={"kind": "login-failed", "address": "127.0.0.6"})
        assert failed.text.count('<tr class="login-failed">') == 10
        assert '<tr class="lockout">' in console.http.get("/console/events", params={"kind": "lockout"}).text
    finally:
        console.close()


def test_console_off_loopback_is_served_over_tls_only(standin: Standin,
                                                     gateway_factory: Callable[..., RunningGateway],
                                                     tmp_path: Path) -> None:
    admin_port = free_port("0.0.0.0")  # free on every address, not only on 127.0.0.1
    gw = gateway_factory(gateway_config(tmp_path, standin, admin={"enabled": True, "host": "0.0.0.0",
                                                                  "listen": admin_port,
                                                                  "console_idle_timeout": 60}),
                         directory=tmp_path / "gw")
    assert gw.wait_for_log(r"admin listener on https://0\.0\.0\.0:\d+/.*served over TLS only")
    cli_ok(gw.directory, "group", "add", "Администраторы", "--role", "admin", "--doc-type", "Поступление")
    cli_ok(gw.directory, "user", "add", "админ", "--group", "Администраторы", "--password-stdin",
           input=ADMIN_PASSWORD + "\n")
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{admin_port}/healthz", timeout=5)
    verify = ssl.create_default_context(cafile=gw.ca_file)
    base = f"https://127.0.0.1:{admin_port}"
    with httpx.Client(base_url=base, verify=verify, timeout=10) as http:
        assert http.get("/healthz").text == "ok\n"
        answer = http.post("/console/login", data={"username": "админ", "password": ADMIN_PASSWORD},
                           headers={"Origin": base})
        assert answer.status_code == 303
        cookie = answer.headers["set-cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        # Reachable off loopback: two-step login is required, so the admin enrols before anything else.
        assert answer.headers["location"] == "/console/2fa"
        assert http.get("/console").headers["location"] == "/console/2fa"
        enrol = http.get("/console/2fa", headers={"Accept-Language": "en"}).text
        assert "required for every admin" in enrol
        secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', enrol).group(1)
        csrf = re.search(r'name="csrf" value="([^"]+)"', enrol).group(1)
        done = http.post("/console/2fa/confirm", data={"code": totp.code_at(secret, time.time()), "csrf": csrf},
                         headers={"Origin": base, "Accept-Language": "en"})
        assert done.status_code == 200 and "Recovery codes" in done.text
        assert "Bases" in http.get("/console", headers={"Accept-Language": "en"}).text


def test_certificate_upload_checks_before_installing(console_gateway: tuple[RunningGateway, str],
                                                    tmp_path: Path) -> None:
    """(Shares its gateway with the ban test below: starting one costs more than either test.)"""
    from tests.e2e.test_tls import make_pair

    gw, admin = console_gateway
    _ban_lifted_by_the_cli_shows_on_the_events_page(gw, admin)
    cert, key, _ = make_pair(tmp_path / "pem", "localhost")
    other_cert, _, _ = make_pair(tmp_path / "other", "localhost")
    console = ConsoleClient(admin)
    try:
        assert console.login("админ", ADMIN_PASSWORD).status_code == 303
        page = console.http.get("/console/certificates")
        assert "Default certificate" in page.text and "Expires:" in page.text and "SHA-256" in page.text
        mismatched = console.post("/console/certificates/upload", {"base": "b1"},
                                  files={"cert": ("server.pem", other_cert.read_bytes()),
                                         "key": ("server.key", key.read_bytes())}, page="/console/certificates")
        assert _flash(mismatched).startswith("bad") and "server.pem" in _flash(mismatched)
        assert not (gw.state_dir / "certs" / "base-b1").exists()
        garbage = console.post("/console/certificates/upload", {"base": "b1", "password": "x"},
                               files={"cert": ("store.pfx", b"\x30\x82garbage")}, page="/console/certificates")
        assert _flash(garbage).startswith("bad") and "store.pfx" in _flash(garbage)
        installed = console.post("/console/certificates/upload", {"base": "b1"},
                                 files={"cert": ("server.pem", cert.read_bytes()),
                                        "key": ("server.key", key.read_bytes())}, page="/console/certificates")
        text = _flash(installed)
        assert text.startswith("ok") and "CN=localhost" in text and "tls:" in text  # the config names no file yet
        assert (gw.state_dir / "certs" / "base-b1" / "imported.pem").read_bytes().startswith(b"-----BEGIN CERT")
        assert not list(gw.state_dir.glob(".upload-*"))
    finally:
        console.close()
    changes = [e.message for e in read_journal(gw.state_dir) if e.event == "console-change"]
    assert any("installed certificate CN=localhost" in m and "base b1" in m for m in changes)
