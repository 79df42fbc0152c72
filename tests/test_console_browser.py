"""The admin console in a real browser: log in as an admin, read the bases, follow the nav bar."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from tests.harness import RunningGateway, Standin, base_entry, cli_ok, free_port, gateway_config
from tests.test_enrolment_browser import chromium_path

PASSWORD = "Brauzer-Adm1n-Пароль"


def test_admin_sees_bases_and_navigates_to_users(standin: Standin, gateway_factory: Callable[..., RunningGateway],
                                                 tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    browser_path = chromium_path()
    admin_port = free_port()
    gw = gateway_factory(gateway_config(tmp_path, standin, bases=[base_entry(standin, "b1", "Склад Центральный")],
                                        admin={"enabled": True, "host": "127.0.0.1", "listen": admin_port}),
                         directory=tmp_path / "gw")
    cli_ok(gw.directory, "group", "add", "Админы", "--role", "admin", "--doc-type", "Поступление")
    cli_ok(gw.directory, "user", "add", "admin", "--group", "Админы", "--password-stdin", input=PASSWORD + "\n",
           secrets=(PASSWORD,))
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=browser_path, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-quic"])
        try:
            context = browser.new_context(http_credentials={"username": "admin", "password": PASSWORD})
            page = context.new_page()
            response = page.goto(f"http://127.0.0.1:{admin_port}/console")
            assert response is not None and response.status == 200
            assert "Склад Центральный" in page.inner_text("#bases")
            assert "days left" in page.inner_text("#bases")
            page.screenshot(path=str(tmp_path / "console-bases.png"), full_page=True)

            page.click("nav >> text=Пользователи / Users")
            page.wait_for_url("**/console/users")
            assert "Админы" in page.inner_text("#groups") and "admin" in page.inner_text("#users")
            page.screenshot(path=str(tmp_path / "console-users.png"), full_page=True)
            assert (tmp_path / "console-users.png").stat().st_size > 1000
        finally:
            browser.close()
