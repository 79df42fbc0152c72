"""The console's Devices page in Chromium (Playwright): an admin enrols a terminal, downloads its
PKCS#12 file with the password shown once, the terminal connects with it to a base that requires
device certificates, then the admin revokes it and the base refuses it within 2 s."""

from __future__ import annotations

import json
import ssl
import time
from pathlib import Path
from typing import Callable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from tests.e2e.test_console_browser import BROWSER_ARGS
from tests.e2e.test_devices import _refused
from tests.e2e.test_enrolment_browser import chromium_path
from tests.harness import RunningGateway, Standin, base_entry, cli_ok, free_port, gateway_config

PASSWORD = "Brauzer-Adm1n-Пароль"


def test_devices_page_enrols_and_revokes(standin: Standin, gateway_factory: Callable[..., RunningGateway],
                                         tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    admin_port = free_port()
    base = base_entry(standin, "b1", "Склад", tls={"client_auth": "required"})
    gw = gateway_factory(gateway_config(tmp_path, standin, bases=[base],
                                        admin={"enabled": True, "host": "127.0.0.1", "listen": admin_port}),
                         directory=tmp_path / "gw")
    cli_ok(gw.directory, "group", "add", "Админы", "--role", "admin", "--doc-type", "Поступление")
    cli_ok(gw.directory, "user", "add", "admin", "--group", "Админы", "--password-stdin", input=PASSWORD + "\n",
           secrets=(PASSWORD,))
    console = f"http://127.0.0.1:{admin_port}"

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=BROWSER_ARGS)
        try:
            context = browser.new_context(locale="en-US", accept_downloads=True)
            page = context.new_page()
            page.goto(f"{console}/console/login")
            page.fill("#username", "admin")
            page.fill("#password", PASSWORD)
            page.click("#login button")
            page.wait_for_url(f"{console}/console")
            page.click("header >> text=Devices")
            assert "No devices enrolled" in page.inner_text("#no-devices")

            page.fill("#device-add input[name=name]", "tsd-web")
            page.select_option("#device-add select[name=user]", "admin")
            page.click("#device-add button")
            assert "device tsd-web enrolled" in page.inner_text("#flash")
            password = page.inner_text("#issued-password")
            with page.expect_download() as download_info:
                page.click("#issued-file")
            p12 = tmp_path / "tsd-web.p12"
            download_info.value.save_as(p12)
            assert "admin" in page.inner_text('tr[data-device="tsd-web"]')

            # The file works: a real handshake with it gets through.
            key, cert, _chain = pkcs12.load_key_and_certificates(p12.read_bytes(), password.encode())
            assert key is not None and cert is not None
            (tmp_path / "tsd.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
            (tmp_path / "tsd.key").write_bytes(key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
            tls = ssl.create_default_context(cafile=gw.ca_file)
            tls.check_hostname = False
            tls.load_cert_chain(tmp_path / "tsd.crt", tmp_path / "tsd.key")
            assert _refused(gw, "b1", tls) == ""

            # Reloading the page shows the file and the password no more.
            page.goto(f"{console}/console/devices")
            assert page.locator("#issued").count() == 0 and password not in page.content()

            page.click('tr[data-device="tsd-web"] button.revoke')
            assert "device tsd-web revoked" in page.inner_text("#flash")
            revoked_at = time.monotonic()
            while _refused(gw, "b1", tls) == "":
                assert time.monotonic() - revoked_at < 2.0, "the revoked device still got in after 2 s"
                time.sleep(0.05)

            page.click("#lang-ru")
            assert "Устройства" in page.inner_text("h1") and "Отозван" in page.inner_text("#devices")
        finally:
            browser.close()
    events = [json.loads(line) for line in (gw.state_dir / "events.jsonl").read_text(encoding="utf-8").splitlines()]
    changes = [e["message"] for e in events if e.get("event") == "console-change"]
    assert any("enrolled device tsd-web" in m for m in changes) and any("revoked device tsd-web" in m for m in changes)
    assert not any(password in line for line in (gw.state_dir / "events.jsonl").read_text(encoding="utf-8").splitlines())
