"""The console as a warehouse administrator uses it, in a real browser (Debian's chromium):
on a 1280-px desk and a 360-px phone no page is wider than the screen; a refused form keeps
what was typed (never a password); a removal asks first; the Russian pages carry no English
catalogue text; an uploaded certificate's YAML is a pasteable block, or is installed into the
configuration; and an admin enrols a two-step login (TOTP) and logs in with it, a wrong code
refused and throttled like a wrong password.

One browser and one gateway for the whole story. With ``CONSOLE_SCREENSHOTS=1`` the
screenshots (phone ones too) go to docs/console/.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

from gateway.auth import totp
from gateway.config import load_config
from gateway.utils import messages
from tests.e2e.test_console_browser import BROWSER_ARGS, DOCS, _pfx, PFX_PASSWORD
from tests.e2e.test_enrolment_browser import chromium_path
from tests.harness import RunningGateway, Standin, base_entry, cli_ok, free_port, gateway_config, run_gateway_command

PASSWORD = "Telefon-Adm1n-Пароль"
PAGES = ("/console", "/console/users", "/console/iplists", "/console/certificates", "/console/events",
         "/console/enrolment", "/console/2fa")


def _english_texts() -> list[str]:
    """English catalogue texts that would give an untranslated message away: whole phrases (two
    words or more, no fields), whose Russian differs."""
    found = []
    for english, russian in messages.catalogue("ru").items():
        if "{" in english or "%" in english or english == russian or len(english.split()) < 2:
            continue
        found.append(english)
    return found


def _assert_fits(page: Any, where: str) -> None:
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"{where}: the page is {widths[0]} px wide on a {widths[1]}-px screen"


def _assert_no_english(page: Any, english: list[str], where: str) -> None:
    text = page.inner_text("body")
    leaked = [e for e in english if e in text]
    assert not leaked, f"{where}: English on the Russian page: {leaked[:5]}"


def _choose_group(page: Any, name: str) -> None:
    value = page.eval_on_selector("#add-user select[name=group]",
                                  "(s, n) => [...s.options].find(o => o.text.startsWith(n)).value", name)
    page.select_option("#add-user select[name=group]", value)


def _login(page: Any, console: str, code: str = "", password: str = PASSWORD) -> int:
    page.goto(f"{console}/console/login")
    page.fill("#username", "admin")
    page.fill("#password", password)
    if code:
        page.fill("#code", code)
    with page.expect_response(lambda r: r.url.endswith("/console/login") and r.request.method == "POST") as answer:
        page.click("#login button")
    return int(answer.value.status)


def test_console_on_a_phone_in_russian_with_two_step_login(standin: Standin,
                                                           gateway_factory: Callable[..., RunningGateway],
                                                           tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    shots = DOCS if os.environ.get("CONSOLE_SCREENSHOTS") else tmp_path / "shots"
    shots.mkdir(parents=True, exist_ok=True)
    admin_port = free_port()
    base = base_entry(standin, "b1", "Склад Центральный с очень длинным названием для телефона", user_auth=True)
    gw = gateway_factory(gateway_config(tmp_path, standin, bases=[base],
                                        admin={"enabled": True, "host": "127.0.0.1", "listen": admin_port}),
                         directory=tmp_path / "gw")
    config_text = gw.config_path.read_text(encoding="utf-8")
    gw.config_path.write_text("# склад: настроено вручную\n" + config_text, encoding="utf-8")
    cli_ok(gw.directory, "group", "add", "Админы", "--role", "admin", "--doc-type", "Поступление")
    cli_ok(gw.directory, "group", "add", "Кладовщики", "--role", "mobile", "--doc-type", "Поступление")
    cli_ok(gw.directory, "user", "add", "admin", "--group", "Админы", "--password-stdin", input=PASSWORD + "\n",
           secrets=(PASSWORD,))
    console = f"http://127.0.0.1:{admin_port}"
    pfx, _sha = _pfx(tmp_path / "upload")
    english = _english_texts()
    assert len(english) > 100

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=BROWSER_ARGS)
        try:
            context = browser.new_context(locale="en-US", viewport={"width": 1280, "height": 900})
            page = context.new_page()
            assert _login(page, console) == 303 or page.url.endswith("/console")

            # "Add a user": no group chosen beforehand; the admin group says what it is
            page.goto(f"{console}/console/users")
            assert page.eval_on_selector("#add-user select[name=group]", "s => s.value") == ""
            assert "admin role" in page.inner_text('#add-user option:has-text("Админы")')
            # a refused form keeps what was typed, never the passwords
            page.fill("#add-user input[name=name]", "сидоров")
            _choose_group(page, "Кладовщики")
            page.fill("#add-user input[name=password]", "Sklad-Parol-2024")
            page.fill("#add-user input[name=password2]", "Sklad-Parol-2025")
            page.fill("#add-user input[name=description]", "смена Б")
            page.click("#add-user button")
            assert "differ" in page.inner_text("#flash")
            assert page.input_value("#add-user input[name=name]") == "сидоров"
            assert page.input_value("#add-user input[name=description]") == "смена Б"
            assert page.input_value("#add-user input[name=password]") == ""
            assert "Sklad-Parol-2024" not in page.content()
            page.fill("#add-user input[name=password]", "Sklad-Parol-2024")
            page.fill("#add-user input[name=password2]", "Sklad-Parol-2024")
            page.click("#add-user button")
            assert "user 'сидоров' added" in page.inner_text("#flash")
            # the last non-admin group is offered next time
            assert page.eval_on_selector("#add-user select[name=group]", "s => s.selectedOptions[0].text") \
                == "Кладовщики"

            # a removal asks first: nothing goes until "Yes"
            page.click('tr[data-user="сидоров"] form.remove-user button')
            assert "сидоров" in page.inner_text("#question")
            page.screenshot(path=str(shots / "confirm.png"))
            assert "сидоров" in cli_ok(gw.directory, "user", "list")
            page.click("#confirm-no")
            assert "сидоров" in page.inner_text("#users")
            page.click('tr[data-user="сидоров"] form.remove-user button')
            page.click("#confirm-yes")
            assert "removed" in page.inner_text("#flash")
            assert "сидоров" not in cli_ok(gw.directory, "user", "list")
            page.click('tr[data-group="Кладовщики"] form.remove-group button')
            assert "Кладовщики" in page.inner_text("#question")
            page.click("#confirm-no")

            # an uploaded certificate: the YAML as a pasteable block, or installed into the configuration
            page.goto(f"{console}/console/certificates")
            page.select_option("#upload select[name=base]", "b1")
            page.set_input_files("#upload input[name=cert]", str(pfx))
            page.fill("#upload input[name=password]", PFX_PASSWORD)
            page.click("#upload button")
            block = page.inner_text("#flash-block")
            assert len(block.strip().splitlines()) >= 2 and "cert:" in block, block
            page.select_option("#upload select[name=base]", "b1")
            page.set_input_files("#upload input[name=cert]", str(pfx))
            page.fill("#upload input[name=password]", PFX_PASSWORD)
            page.check("#upload input[name=install]")
            page.click("#upload button")
            assert "wrote the tls: lines" in page.inner_text("#flash"), page.inner_text("#flash")
            written = gw.config_path.read_text(encoding="utf-8")
            assert written.startswith("# склад: настроено вручную\n"), "the editor dropped the comment"
            installed = load_config(gw.config_path).base_by_id("b1")
            assert installed is not None and installed.tls is not None and installed.tls.cert is not None
            assert installed.tls.cert.name == "imported.pem", installed.tls.cert

            # two-step login: enrolled with the QR code's secret, confirmed by a first code
            page.goto(f"{console}/console/2fa")
            assert page.locator("#totp-qr svg").count() == 1
            secret = page.inner_text("#totp-secret")
            page.fill("#enrol-2fa input[name=code]", "000000" if totp.code_at(secret, time.time()) != "000000"
                      else "111111")
            page.click("#enrol-2fa button")
            assert "does not match" in page.inner_text("#flash")
            page.fill("#enrol-2fa input[name=code]", totp.code_at(secret, time.time()))
            page.click("#enrol-2fa button")
            recovery = page.inner_text("#recovery-codes").split()
            assert len(recovery) == 8
            # the codes are secrets, even of a throwaway gateway: masked in the picture
            page.screenshot(path=str(shots / "two-step.png"), full_page=True,
                            mask=[page.locator("#recovery-codes")])
            page.click("#logout")

            # the password alone no longer logs in; a recovery code does, once; the next step's code does
            assert _login(page, console) == 401
            assert "one-time code" in page.inner_text("#flash")
            assert page.input_value("#username") == "admin"
            assert _login(page, console, code=recovery[0]) == 303
            page.click("#logout")
            assert _login(page, console, code=recovery[0]) == 401
            assert _login(page, console, code=totp.code_at(secret, time.time() + totp.STEP)) == 303
            page.click("#logout")
            # wrong codes count as failed logins: the throttle refuses even the right code after them
            for _ in range(8):
                assert _login(page, console, code="123456") in (401, 429)
            assert _login(page, console, code=recovery[1]) == 429
            assert "429" in page.inner_text("#flash")
            cli_ok(gw.directory, "bans", "lift", "admin")
            cli_ok(gw.directory, "bans", "lift", "127.0.0.1")
            assert _login(page, console, code=recovery[2]) == 303

            # every page at 1280 px and at 360 px fits the screen; in Russian, no English catalogue text
            for width, height, suffix in ((1280, 900, ""), (360, 740, "-phone")):
                page.set_viewport_size({"width": width, "height": height})
                for lang in ("en", "ru"):
                    for path in PAGES:
                        page.goto(f"{console}{path}?lang={lang}")
                        _assert_fits(page, f"{path} at {width} px ({lang})")
                        if lang == "ru":
                            _assert_no_english(page, english, f"{path} ({lang})")
                        if suffix and lang == "ru":
                            name = (path.rsplit("/", 1)[-1] if path != "/console" else "bases")
                            page.screenshot(path=str(shots / f"{name}{suffix}.png"), full_page=True)
                # action results in Russian: a refusal, a confirmation, a success
                page.goto(f"{console}/console/users?lang=ru")
                page.fill("#add-user input[name=name]", "иванов")
                _choose_group(page, "Кладовщики")
                page.fill("#add-user input[name=password]", "Sklad-Parol-2024")
                page.fill("#add-user input[name=password2]", "другой")
                page.click("#add-user button")
                assert "пароли не совпадают" in page.inner_text("#flash")
                _assert_no_english(page, english, "refused add-user (ru)")
                _assert_fits(page, f"refused form at {width} px")
                page.fill("#add-user input[name=password]", "Sklad-Parol-2024")
                page.fill("#add-user input[name=password2]", "Sklad-Parol-2024")
                page.click("#add-user button")
                assert "пользователь 'иванов' добавлен" in page.inner_text("#flash")
                page.click('tr[data-user="иванов"] form.remove-user button')
                _assert_no_english(page, english, "confirmation (ru)")
                _assert_fits(page, f"confirmation at {width} px")
                page.click("#confirm-yes")
                assert "пользователь 'иванов' удалён" in page.inner_text("#flash")
                _assert_no_english(page, english, "removal done (ru)")
                page.goto(f"{console}/console/login?lang=ru")
            page.goto(f"{console}/console/users?lang=ru")
            page.set_viewport_size({"width": 360, "height": 740})
            page.screenshot(path=str(shots / "users-phone.png"), full_page=True)
        finally:
            browser.close()

    # a lost phone: the CLI forgets the second factor; the password alone logs in again (loopback)
    assert "reset" in cli_ok(gw.directory, "user", "reset-2fa", "admin")
    assert "nothing to reset" in cli_ok(gw.directory, "user", "reset-2fa", "admin")


def test_cli_help_follows_the_system_locale(tmp_path: Path) -> None:
    env_ru = {**os.environ, "LANG": "ru_RU.UTF-8"}
    env_ru.pop("LC_ALL", None)
    env_ru.pop("LC_MESSAGES", None)
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    env_ru["PYTHONPATH"] = str(repo)
    ru = subprocess.run([sys.executable, "-m", "gateway", "--help"], capture_output=True, text=True,
                        encoding="utf-8", env=env_ru, timeout=60)
    assert ru.returncode == 0
    assert "использование:" in ru.stdout and "запустить шлюз" in ru.stdout and "usage:" not in ru.stdout
    sub = subprocess.run([sys.executable, "-m", "gateway", "user", "reset-2fa", "--help"], capture_output=True,
                         text=True, encoding="utf-8", env=env_ru, timeout=60)
    assert "id или имя" in sub.stdout and "показать эту справку" in sub.stdout
    wrong = subprocess.run([sys.executable, "-m", "gateway", "user", "remove"], capture_output=True, text=True,
                           encoding="utf-8", env=env_ru, timeout=60)
    assert wrong.returncode == 2 and "обязательные аргументы не указаны" in wrong.stderr
    en = run_gateway_command(tmp_path, "--help")
    assert "usage:" in en.stdout and "start the gateway" in en.stdout
