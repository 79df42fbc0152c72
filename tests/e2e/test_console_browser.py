"""The admin console in a real browser (Debian's chromium through Playwright): an admin logs
in through the form and manages the gateway — adds a group and a user who then logs in to a
base, lifts a ban, edits a list that then refuses an address, uploads a PFX that the base then
serves — and the console refuses a POST without its CSRF token and throttles wrong passwords.

One browser for the whole story (starting chromium is the slow part). With
``CONSOLE_SCREENSHOTS=1`` the screenshots go to docs/console/ (the console guide, docs/guides/console.md, shows them).
"""

from __future__ import annotations

import datetime
import hashlib
import os
import socket
import ssl
import time
from pathlib import Path
from typing import Callable

import httpx
from cryptography.hazmat.primitives.serialization import BestAvailableEncryption, Encoding, pkcs12

from gateway.certs.authority import create_ca, issue_server_certificate
from tests.harness import RunningGateway, Standin, base_entry, cli_ok, free_port, gateway_config
from tests.e2e.test_console import _refused_within
from tests.e2e.test_enrolment_browser import chromium_path
from tests.e2e.test_tls import LOOPBACK, make_pair
from tests.unit.docs.test_screenshots import guide_screenshots

PASSWORD = "Brauzer-Adm1n-Пароль"
USER_PASSWORD = "Kladovshik-2024"
PFX_PASSWORD = "pfx-Пароль-1"
BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
DOCS = Path(__file__).resolve().parents[2] / "docs" / "console"


def _served_sha256(port: int) -> str:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).hexdigest()


def _pfx(folder: Path) -> tuple[Path, str]:
    """A PFX (key, certificate, CA) for localhost/127.0.0.1 under a password; returns it and its SHA-256."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = create_ca(folder, common_name="Uploaded Test CA")
    cert, key = issue_server_certificate(ca, ["localhost"], LOOPBACK, days=60,
                                         now=datetime.datetime.now(datetime.timezone.utc))
    path = folder / "склад.pfx"
    path.write_bytes(pkcs12.serialize_key_and_certificates(
        b"gateway", key, cert, [ca.certificate], BestAvailableEncryption(PFX_PASSWORD.encode())))  # type: ignore[arg-type]
    return path, hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest()


def test_admin_manages_the_gateway_from_the_browser(standin: Standin,
                                                    gateway_factory: Callable[..., RunningGateway],
                                                    tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    browser_path = chromium_path()
    shots = DOCS if os.environ.get("CONSOLE_SCREENSHOTS") else tmp_path / "shots"
    shots.mkdir(parents=True, exist_ok=True)
    shots_started = time.time() - 1
    admin_port = free_port()
    old_cert, old_key, old_sha = make_pair(tmp_path / "old-cert", "localhost")
    base = base_entry(standin, "b1", "Склад Центральный", user_auth=True,
                      tls={"cert": str(old_cert), "key": str(old_key)})
    gw = gateway_factory(gateway_config(tmp_path, standin, bases=[base],
                                        admin={"enabled": True, "host": "127.0.0.1", "listen": admin_port}),
                         directory=tmp_path / "gw")
    cli_ok(gw.directory, "group", "add", "Админы", "--role", "admin", "--doc-type", "Поступление")
    cli_ok(gw.directory, "user", "add", "admin", "--group", "Админы", "--password-stdin", input=PASSWORD + "\n",
           secrets=(PASSWORD,))
    console = f"http://127.0.0.1:{admin_port}"
    base_port = gw.port("b1")
    assert _served_sha256(base_port) == old_sha
    no_verify = ssl.create_default_context()
    no_verify.check_hostname = False
    no_verify.verify_mode = ssl.CERT_NONE
    pfx, new_sha = _pfx(tmp_path / "upload")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=browser_path, headless=True, args=BROWSER_ARGS)
        try:
            context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.goto(f"{console}/console")
            page.wait_for_url("**/console/login")
            page.screenshot(path=str(shots / "login.png"))
            page.fill("#username", "admin")
            page.fill("#password", PASSWORD)
            page.click("#login button")
            page.wait_for_url(f"{console}/console")
            page.click("header >> text=Bases")
            assert "Склад Центральный" in page.inner_text("#bases") and "days left" in page.inner_text("#bases")
            assert page.inner_text("#who") == "admin"
            page.screenshot(path=str(shots / "bases.png"), full_page=True)

            # a group and a user, then that user logs in to the base through the gateway
            page.click("header >> text=Users")
            page.fill("#add-group input[name=name]", "Кладовщики")
            page.select_option("#add-group select[name=role]", "mobile")
            page.fill("#add-group input[name=doc_types]", "Поступление, Продажа")
            page.click("#add-group button")
            assert "group 'Кладовщики' added" in page.inner_text("#flash")
            page.fill("#add-user input[name=name]", "петров")
            page.select_option("#add-user select[name=group]", label="Кладовщики")
            page.fill("#add-user input[name=password]", USER_PASSWORD)
            page.fill("#add-user input[name=password2]", USER_PASSWORD)
            page.click("#add-user button")
            assert "user 'петров' added" in page.inner_text("#flash")
            assert "Кладовщики" in page.inner_text('tr[data-user="петров"]')
            assert USER_PASSWORD not in page.content()
            page.screenshot(path=str(shots / "users.png"), full_page=True)
            answer = httpx.get(f"https://127.0.0.1:{base_port}/echo/x", auth=("петров", USER_PASSWORD),
                               verify=no_verify, timeout=10)
            assert answer.status_code == 200

            # a ban made by failed logins from 127.0.0.7, lifted with its button
            with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.7", verify=no_verify),
                              timeout=10) as guesser:
                for _ in range(10):
                    guesser.get(f"https://127.0.0.1:{base_port}/echo/x", auth=("петров", "guess"))
                assert guesser.get(f"https://127.0.0.1:{base_port}/echo/x",
                                   auth=("петров", USER_PASSWORD)).status_code == 429
                page.click("header >> text=IP lists")
                assert "127.0.0.7" in page.inner_text("#bans")
                page.screenshot(path=str(shots / "iplists.png"), full_page=True)
                page.click('tr[data-target="127.0.0.7"] button')
                assert "lifted" in page.inner_text("#flash")
                assert guesser.get(f"https://127.0.0.1:{base_port}/echo/x",
                                   auth=("петров", USER_PASSWORD)).status_code == 200

            # the base's blacklist edited: a bad line is shown and needs a confirmation
            page.click('tr[data-list="base-b1-blacklist"] a')
            page.fill("#list-text", "# закрыто\n127.0.0.8\n127.0.0.300\n")
            page.click("#save-list button")
            assert "127.0.0.300" in page.inner_text("#unsaved")
            page.click("#confirm-save button")
            assert "saved" in page.inner_text("#flash")
            assert page.get_attribute('tr[data-line="3"]', "class") == "bad-line"
            page.screenshot(path=str(shots / "iplist-edit.png"), full_page=True)
            assert _refused_within(f"https://127.0.0.1:{base_port}/echo/x", "127.0.0.8", no_verify, seconds=10)

            # a PFX uploaded for the base: the base serves it within seconds
            page.click("header >> text=Certificates")
            page.select_option("#upload select[name=base]", "b1")
            page.set_input_files("#upload input[name=cert]", str(pfx))
            page.fill("#upload input[name=password]", PFX_PASSWORD)
            page.click("#upload button")
            assert "installed" in page.inner_text("#flash"), page.inner_text("#flash")
            page.screenshot(path=str(shots / "certificates.png"), full_page=True)
            deadline = time.monotonic() + 10
            while _served_sha256(base_port) != new_sha and time.monotonic() < deadline:
                time.sleep(0.2)
            assert _served_sha256(base_port) == new_sha
            with page.expect_download() as download:
                page.click("#ca-pem")
            assert download.value.suggested_filename == "ca.pem"

            page.click("header >> text=Events")
            page.select_option("#filter select[name=kind]", "console-change")
            page.click("#filter button")
            events = page.inner_text("#events")
            assert "added user 'петров'" in events and "lifted the ban of 127.0.0.7" in events
            assert PFX_PASSWORD not in page.content() and USER_PASSWORD not in page.content()
            page.screenshot(path=str(shots / "events.png"), full_page=True)
            page.click("#language a")
            assert "События безопасности" in page.inner_text("h1")
            page.click("header >> text=Подключение")
            page.screenshot(path=str(shots / "enrolment.png"), full_page=True)
            # Every shot this run took is one the guides show (docs/console/ with CONSOLE_SCREENSHOTS=1).
            taken = {p.name for p in shots.glob("*.png") if p.stat().st_mtime >= shots_started}
            assert len(taken) >= 8 and taken <= guide_screenshots(), (sorted(taken), sorted(guide_screenshots()))

            # a POST without the form's CSRF token, with the session cookie: refused, nothing made
            forged = context.request.post(f"{console}/console/groups/add",
                                          form={"name": "Взлом", "role": "admin", "doc_types": "X"},
                                          headers={"Origin": console}, max_redirects=0)
            assert forged.status == 403
            assert "Взлом" not in cli_ok(gw.directory, "group", "list")

            # wrong console passwords: the eleventh attempt from this address is throttled
            page.click("#logout")
            page.wait_for_url("**/console/login")
            for _ in range(10):
                page.fill("#username", "admin")
                page.fill("#password", "wrong-guess")
                page.click("#login button")
                assert "Wrong user name or password" in page.inner_text("#flash") or \
                    "Неверное" in page.inner_text("#flash")
            page.fill("#username", "admin")
            page.fill("#password", PASSWORD)
            with page.expect_response(lambda r: r.url.endswith("/console/login") and r.request.method == "POST") \
                    as response:
                page.click("#login button")
            assert response.value.status == 429
            assert "429" in page.inner_text("#flash")
        finally:
            browser.close()
    assert old_sha != new_sha
