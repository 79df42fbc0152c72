"""One-time enrolment links, end to end: `gateway device add NAME --link` makes a link and a
code; a terminal opens it over HTTPS on the enrolment listener, types the code and gets its
PKCS#12 file (the code is its password), which then passes a `required` base's handshake. The
link works once and expires; guessing codes is throttled like logins; `device list` shows when
the device was last seen."""

from __future__ import annotations

import re
import ssl
import time
from pathlib import Path
from typing import Callable

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12

from tests.e2e.test_devices import _refused
from tests.harness import RunningGateway, Standin, base_entry, cli_ok, free_port, gateway_config

Factory = Callable[..., RunningGateway]
IP_FAILURES = 3


def _gateway(standin: Standin, factory: Factory, tmp_path: Path, **extra: object) -> tuple[RunningGateway, int]:
    port = free_port()
    base = base_entry(standin, "b1", "Склад", tls={"client_auth": "required"})
    gw = factory(gateway_config(tmp_path, standin, bases=[base],
                                enrolment={"enabled": True, "host": "127.0.0.1", "listen": port, "https": True},
                                throttle={"ip_failures": IP_FAILURES, "ip_window": 60}, **extra),
                 directory=tmp_path / "gw")
    return gw, port


def _link(gw: RunningGateway, name: str, *flags: str) -> tuple[str, str]:
    """(path of the link, code) as `device add --link` prints them."""
    output = cli_ok(gw.directory, "device", "add", name, "--link", *flags)
    url = re.search(r"^link: (https://\S+)$", output, re.M)
    code = re.search(r"^code \(.*\): (\w+)$", output, re.M)
    assert url and code, output
    return "/" + url.group(1).split("/", 3)[3], code.group(1)


def _client(gw: RunningGateway, source: str) -> httpx.Client:
    # Each test case from its own loopback address: the throttle counts failures per address.
    verify = ssl.create_default_context(cafile=gw.ca_file)
    return httpx.Client(timeout=10, transport=httpx.HTTPTransport(local_address=source, verify=verify))


def _tls_with(gw: RunningGateway, p12: bytes, code: str, folder: Path) -> ssl.SSLContext:
    key, cert, _chain = pkcs12.load_key_and_certificates(p12, code.encode())
    assert key is not None and cert is not None
    (folder / "dev.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "dev.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    context = ssl.create_default_context(cafile=gw.ca_file)
    context.check_hostname = False
    context.load_cert_chain(folder / "dev.crt", folder / "dev.key")
    return context


def test_link_enrols_once_and_the_file_passes_a_required_base(standin: Standin, gateway_factory: Factory,
                                                              tmp_path: Path) -> None:
    gw, port = _gateway(standin, gateway_factory, tmp_path)
    path, code = _link(gw, "tsd-link")
    site = f"https://127.0.0.1:{port}"
    with _client(gw, "127.0.0.2") as client:
        form = client.get(site + path)
        assert form.status_code == 200 and 'name="code"' in form.text
        got = client.post(site + path, data={"code": code})
        assert got.status_code == 200 and got.headers["content-type"] == "application/x-pkcs12"
        again = client.post(site + path, data={"code": code})
        assert again.status_code == 410, "a used link must be refused"
        assert client.get(site + path).status_code == 410
    # Plain HTTP on the same port is not spoken at all: the file never crosses in clear.
    try:
        plain = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)
        assert plain.status_code != 200
    except httpx.HTTPError:
        pass

    context = _tls_with(gw, got.content, code, tmp_path)
    assert _refused(gw, "b1", context) == ""
    no_cert = ssl.create_default_context(cafile=gw.ca_file)
    no_cert.check_hostname = False
    assert _refused(gw, "b1", no_cert) != ""

    listing = cli_ok(gw.directory, "device", "list")
    row = next(line for line in listing.splitlines() if line.startswith("tsd-link"))
    assert "LAST SEEN" in listing and re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d\s*$", row), listing
    assert code not in gw.log_path.read_text(encoding="utf-8")


def test_expired_link_and_code_guessing_are_refused(standin: Standin, gateway_factory: Factory,
                                                    tmp_path: Path) -> None:
    gw, port = _gateway(standin, gateway_factory, tmp_path)
    site = f"https://127.0.0.1:{port}"

    short_path, short_code = _link(gw, "tsd-short", "--link-seconds", "1")
    time.sleep(1.5)
    with _client(gw, "127.0.0.3") as client:
        assert client.post(site + short_path, data={"code": short_code}).status_code == 410

    path, code = _link(gw, "tsd-guess")
    with _client(gw, "127.0.0.4") as client:
        for attempt in range(IP_FAILURES):
            assert client.post(site + path, data={"code": f"wrong{attempt}"}).status_code == 403
        throttled = client.post(site + path, data={"code": code})
        assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) >= 1
        assert client.get(site + path).status_code == 429
    # Another address is not held back by this one's failures, and the link still works once.
    with _client(gw, "127.0.0.5") as client:
        got = client.post(site + path, data={"code": code})
        assert got.status_code == 200 and got.headers["content-type"] == "application/x-pkcs12"


def test_console_enrol_by_link_shows_qr_and_code(standin: Standin, gateway_factory: Factory, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    from tests.e2e.test_console_browser import BROWSER_ARGS
    from tests.e2e.test_enrolment_browser import chromium_path

    admin_port = free_port()
    gw, port = _gateway(standin, gateway_factory, tmp_path,
                        admin={"enabled": True, "host": "127.0.0.1", "listen": admin_port})
    password = "Brauzer-Adm1n-Ссылка"
    cli_ok(gw.directory, "group", "add", "Админы", "--role", "admin", "--doc-type", "Поступление")
    cli_ok(gw.directory, "user", "add", "admin", "--group", "Админы", "--password-stdin", input=password + "\n",
           secrets=(password,))
    console = f"http://127.0.0.1:{admin_port}"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=BROWSER_ARGS)
        try:
            page = browser.new_context(locale="en-US").new_page()
            page.goto(f"{console}/console/login")
            page.fill("#username", "admin")
            page.fill("#password", password)
            page.click("#login button")
            page.wait_for_url(f"{console}/console")
            page.goto(f"{console}/console/devices")
            page.fill("#device-add input[name=name]", "tsd-qr")
            page.check("#device-link")
            page.click("#device-add button")
            assert "one-time link for device tsd-qr" in page.inner_text("#flash")
            assert page.locator("#enrol-qr svg path").count() >= 1
            url = page.inner_text("#enrol-url")
            code = page.inner_text("#enrol-code")
            assert url.startswith("https://") and "/device/" in url and len(code) == 8
            page.goto(f"{console}/console/devices")
            assert page.locator("#enrol-link").count() == 0 and code not in page.content()
        finally:
            browser.close()
    # The link the page showed works, from the terminal's side.
    path = "/" + url.split("/", 3)[3]
    with _client(gw, "127.0.0.6") as client:
        got = client.post(f"https://127.0.0.1:{port}{path}", data={"code": code})
        assert got.status_code == 200 and got.headers["content-type"] == "application/x-pkcs12"
