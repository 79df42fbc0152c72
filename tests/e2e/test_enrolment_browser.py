"""The enrolment page in a real browser: what a person setting up a terminal sees and downloads."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from tests.harness import RunningGateway, Standin, free_port, gateway_config


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: scripts/system-deps.sh installs it")
        pytest.skip("chromium is not installed (scripts/system-deps.sh installs it)")
    return path


def test_enrolment_page_shows_fingerprint_qr_and_downloads_the_ca(
        standin: Standin, gateway_factory: Callable[..., RunningGateway], tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    browser_path = chromium_path()
    port = free_port()
    gw = gateway_factory(gateway_config(tmp_path, standin, enrolment={"enabled": True, "host": "127.0.0.1",
                                                                        "listen": port}))
    ca = x509.load_pem_x509_certificate(Path(gw.ca_file).read_bytes())
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=browser_path, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic"])
        try:
            page = browser.new_page(accept_downloads=True)
            response = page.goto(f"http://127.0.0.1:{port}/")
            assert response is not None and response.status == 200
            assert "Сертификат шлюза" in page.title()
            assert ca.fingerprint(hashes.SHA256()).hex(":").upper() in page.inner_text("body")
            qr = page.locator(".qr svg")
            box = qr.bounding_box()
            assert box is not None and box["width"] > 100 and box["height"] > 100, "the QR code is not visible"
            page.screenshot(path=str(tmp_path / "enrolment.png"), full_page=True)

            with page.expect_download() as download_info:
                page.click("text=ca.pem")
            downloaded = Path(download_info.value.path())
            assert x509.load_pem_x509_certificate(downloaded.read_bytes()) == ca
        finally:
            browser.close()
