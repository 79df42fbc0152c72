"""The Bases page and the Dashboard in a real browser (Debian's chromium through Playwright).

An admin adds a base, which then serves; moves a base's port (the old port closes, the new one
serves, another base's open keep-alive connection carries on); is refused a port another program
holds, with that program named and the form keeping what was typed; removes a base through its
confirmation page. The dashboard's charts are there and change after traffic (the gateway
flushes its per-minute numbers every second here, GATEWAY_MINUTES_FLUSH_SECONDS). With
``CONSOLE_SCREENSHOTS=1`` the screenshots go to docs/console/, at 1280 and 360 px.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Callable

import httpx
import pytest

from addons.minutes import FLUSH_ENV
from gateway.ops.journal import read_journal
from tests.e2e.test_console_browser import BROWSER_ARGS, DOCS
from tests.e2e.test_enrolment_browser import chromium_path
from tests.harness import RunningGateway, Standin, base_entry, cli_ok, free_port, gateway_config

PASSWORD = "Bazy-Adm1n-Пароль"


def _serves(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/echo/x", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


def _until(condition: Callable[[], bool], seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return condition()


def _keepalive_get(sock: socket.socket) -> bytes:
    """One GET on an open HTTP/1.1 connection; the answer's head and body (Content-Length)."""
    sock.sendall(b"GET /echo/keep HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "the connection was closed"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    while len(body) < length:
        body += sock.recv(65536)
    return head


def test_bases_are_managed_and_the_dashboard_draws_traffic(standin: Standin,
                                                           gateway_factory: Callable[..., RunningGateway],
                                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from playwright.sync_api import sync_playwright

    monkeypatch.setenv(FLUSH_ENV, "1")
    shots = DOCS if os.environ.get("CONSOLE_SCREENSHOTS") else tmp_path / "shots"
    shots.mkdir(parents=True, exist_ok=True)
    admin_port = free_port()
    b1 = base_entry(standin, "b1", "Склад Центральный", https=False)
    b2 = base_entry(standin, "b2", "Магазин 15", https=False)
    gw = gateway_factory(gateway_config(tmp_path, standin, bases=[b1, b2],
                                        admin={"enabled": True, "host": "127.0.0.1", "listen": admin_port}),
                         directory=tmp_path / "gw")
    (gw.config_path).write_text("# the operator's own note, kept by the console\n"
                                + gw.config_path.read_text(encoding="utf-8"), encoding="utf-8")
    cli_ok(gw.directory, "group", "add", "Админы", "--role", "admin", "--doc-type", "Поступление")
    cli_ok(gw.directory, "user", "add", "admin", "--group", "Админы", "--password-stdin", input=PASSWORD + "\n",
           secrets=(PASSWORD,))
    console = f"http://127.0.0.1:{admin_port}"
    old_port, b2_port = gw.port("b1"), gw.port("b2")
    new_port, added_port = free_port(), free_port()
    foreign = socket.socket()
    foreign.bind(("127.0.0.1", 0))
    foreign.listen()
    taken = foreign.getsockname()[1]

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=BROWSER_ARGS)
        try:
            context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.goto(f"{console}/console/login")
            page.fill("#username", "admin")
            page.fill("#password", PASSWORD)
            page.click("#login button")
            page.wait_for_url(f"{console}/console")

            # the dashboard is the first page: a chart per base and range, changing after traffic
            assert page.locator("header nav a, header a").first.inner_text() == "Dashboard"
            assert page.locator("#dash-b1 svg.chart").count() == 6
            before = page.inner_html("#traffic-b1-hour")
            assert page.inner_text("#dash-b1 .total-requests >> nth=0") == "0"
            for _ in range(5):
                assert _serves(old_port)
            httpx.get(f"http://127.0.0.1:{old_port}/echo/x", auth=("nobody", "wrong"), timeout=3)
            assert _until(lambda: (page.reload() or True) and
                          page.inner_text("#dash-b1 .total-requests >> nth=0") == "6", 15)
            assert page.inner_html("#traffic-b1-hour") != before
            assert page.locator("#traffic-b1-hour polyline").count() >= 1
            assert page.inner_text("#dash-b2 .total-requests >> nth=0") == "0"
            page.screenshot(path=str(shots / "dashboard.png"), full_page=True)

            # a base added from the form serves at once
            page.click("header >> text=Bases")
            page.click("#add-base")
            page.fill("#f-id", "b3")
            page.fill("#f-name", "Новая база")
            page.fill("#f-data_listen", str(added_port))
            page.fill("#f-data_backend", standin.data_url)
            page.uncheck("#f-https")
            page.check("#f-user_auth")
            assert page.locator("label[for=f-whitelist_only]").count() == 1
            page.screenshot(path=str(shots / "base-edit.png"), full_page=True)
            page.click("#base-save")
            flash = page.inner_text("#flash")
            assert "base 'b3' added" in flash and "applied" in flash, flash
            assert "Новая база" in page.inner_text("#bases")
            page.screenshot(path=str(shots / "bases-manage.png"), full_page=True)
            answer = httpx.get(f"http://127.0.0.1:{added_port}/echo/x", timeout=5)
            assert answer.status_code == 401  # user_auth is on for the new base

            # a port another program holds: refused with its owner named, the form keeps what was typed
            page.click('tr[data-base="b3"] .edit-base')
            page.fill("#f-name", "Новая база, переименованная")
            page.fill("#f-data_listen", str(taken))
            page.click("#base-save")
            flash = page.inner_text("#flash")
            assert f"port {taken} is taken by another program" in flash and f"pid {os.getpid()}" in flash, flash
            assert page.input_value("#f-name") == "Новая база, переименованная"
            assert page.input_value("#f-data_listen") == str(taken) and page.is_checked("#f-user_auth")
            page.screenshot(path=str(shots / "base-error.png"), full_page=True)
            assert "переименованная" not in gw.config_path.read_text(encoding="utf-8")

            # b1's port moved: the old one closes, the new one serves, b2's open connection carries on
            with socket.create_connection(("127.0.0.1", b2_port), timeout=5) as kept:
                assert b" 200 " in _keepalive_get(kept)
                page.goto(f"{console}/console/bases/edit?base=b1")
                assert page.input_value("#f-data_listen") == str(old_port)
                page.fill("#f-data_listen", str(new_port))
                page.click("#base-save")
                flash = page.inner_text("#flash")
                assert "base 'b1' changed" in flash and "applied" in flash, flash
                assert _until(lambda: _serves(new_port))
                assert _until(lambda: not _serves(old_port))
                assert b" 200 " in _keepalive_get(kept)  # the same connection, after the reload
            text = gw.config_path.read_text(encoding="utf-8")
            assert text.startswith("# the operator's own note") and f"listen: {new_port}" in text

            # removal asks first, on a page of its own
            page.click('tr[data-base="b3"] .remove-base')
            assert "Новая база" in page.inner_text("#base-remove")
            page.screenshot(path=str(shots / "base-remove.png"), full_page=True)
            page.click("#base-remove-confirm")
            assert "base 'b3' removed" in page.inner_text("#flash")
            assert "Новая база" not in page.inner_text("#bases")
            assert _until(lambda: not _serves(added_port))

            # the phone's width
            phone = browser.new_context(locale="ru-RU", viewport={"width": 360, "height": 780},
                                        storage_state=context.storage_state())
            small = phone.new_page()
            small.goto(f"{console}/console")
            assert small.locator("#dash-b1 svg.chart").count() == 6
            small.screenshot(path=str(shots / "dashboard-phone.png"), full_page=True)
            small.goto(f"{console}/console/bases/edit?base=b1")
            assert "Порт сервера данных" in small.inner_text("#base-form")
            small.screenshot(path=str(shots / "base-edit-phone.png"), full_page=True)
            phone.close()
        finally:
            browser.close()
            foreign.close()
    changes = [e.message for e in read_journal(gw.state_dir) if e.event == "console-change"]
    assert any("base 'b1' changed" in m and f"{old_port}→" in m and f"{new_port}→" in m for m in changes), changes
    assert any("base 'b3' added" in m for m in changes) and any("base 'b3' removed" in m for m in changes)
