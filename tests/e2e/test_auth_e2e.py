"""Authentication and throttling through a real gateway process, over real HTTPS.

Three gateway starts in all: one gateway, a second process on the same state folder, and a
restart of the first; the CLI runs against the same state folder while they serve.
"""

from __future__ import annotations

import base64
import re
import sqlite3
import ssl
from pathlib import Path
from typing import Any, Callable

import httpx

from tests.harness import RunningGateway, Standin, base_entry, cli_ok, gateway_config

PASSWORD, NEW_PASSWORD, ADMIN_PASSWORD, BARCODE = "Sklad2024x", "Novyi2025Y", "Admin0Secret", "4600000000017"
WRONG = "Wrong12345"
SECRETS = (PASSWORD, NEW_PASSWORD, ADMIN_PASSWORD, BARCODE, WRONG)


def b64(login: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{login}:{secret}".encode()).decode()}


def client(gw: RunningGateway, source: str = "127.0.0.1") -> httpx.Client:
    # a second process may share the first one's state folder, and so its CA
    ca = Path(gw.config["state_dir"]) if Path(gw.config["state_dir"]).is_absolute() else gw.state_dir
    transport = httpx.HTTPTransport(local_address=source,
                                    verify=ssl.create_default_context(cafile=str(ca / "certs" / "ca.pem")))
    return httpx.Client(transport=transport, base_url=gw.url("b1"), timeout=10)


def cli(gw: RunningGateway, *args: str, input: str | None = None) -> str:
    return cli_ok(gw.directory, *args, input=input, secrets=SECRETS)


def make_config(tmp_path: Path, standin: Standin) -> dict[str, Any]:
    base = base_entry(standin, "b1", "Склад 15", user_auth=True, login_by_barcode=False)
    return gateway_config(tmp_path, standin, bases=[base])


def test_auth_end_to_end(tmp_path: Path, standin: Standin,
                         gateway_factory: Callable[..., RunningGateway]) -> None:
    config = make_config(tmp_path, standin)
    whitelist = tmp_path / "gw0" / "bases" / "b1" / "Server" / "whitelist.dat"
    whitelist.parent.mkdir(parents=True)
    whitelist.write_text("127.0.0.4\r\n", encoding="utf-8")
    gw = gateway_factory(config, directory=tmp_path / "gw0")

    # --- the seed's users-and-groups page, from the CLI, with secrets on stdin ---
    cli(gw, "group", "add", "Операторы ТСД", "--role", "mobile", "--doc-type", "Поступление,Инвентаризация")
    cli(gw, "group", "add", "Учёт", "--role", "external", "--doc-type", "Поступление")
    cli(gw, "user", "add", "Иванов", "--group", "Операторы ТСД", "--password-stdin", "--barcode-stdin",
        input=f"{PASSWORD}\n{BARCODE}\n")
    cli(gw, "user", "add", "1c", "--group", "Учёт", "--password-stdin", input=ADMIN_PASSWORD + "\n")
    assert "Иванов" in cli(gw, "user", "list")

    with client(gw) as c:
        missing = c.get("/echo")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == 'Basic realm="Склад 15", charset="UTF-8"'
        ok = c.get("/echo", headers=b64("1c", ADMIN_PASSWORD))
        assert ok.status_code == 200 and ok.json()["path"] == "/echo"
        assert c.get("/echo", headers=b64("", PASSWORD)).status_code == 200  # password-only
        assert c.get("/echo", headers={"Authorization": f"Basic 1c:{ADMIN_PASSWORD}"}).status_code == 200
        assert c.get("/echo", headers=b64("", BARCODE)).status_code == 401  # login_by_barcode is off
        login = c.post("/.gateway/login", headers=b64("", PASSWORD))
        assert login.status_code == 200
        token = login.json()["token"]
        by_header = c.get("/echo", headers={"X-Gateway-Session": token})
        assert by_header.status_code == 200
        assert token not in by_header.text  # the token never reaches the back end
        c.cookies.set("gateway_session", token)
        assert c.get("/echo").status_code == 200
        c.cookies.clear()

    # --- the 11th failure in a minute from one address is throttled; others are not ---
    with client(gw, "127.0.0.2") as attacker, client(gw, "127.0.0.3") as other, \
            client(gw, "127.0.0.4") as trusted:
        for _ in range(10):
            assert attacker.get("/echo", headers=b64("", WRONG)).status_code == 401
        refused = attacker.get("/echo", headers=b64("", PASSWORD))
        assert refused.status_code == 429 and 1 <= int(refused.headers["retry-after"]) <= 60
        assert gw.log().count("lockout: address 127.0.0.2 reached 10 failed logins") == 1  # a security event, once
        # The event names the client that caused it (issue 23 point 15), not only the target.
        assert re.search(r"lockout: address 127\.0\.0\.2 .*\[event=lockout client=127\.0\.0\.2 ", gw.log())
        assert other.get("/echo", headers=b64("", PASSWORD)).status_code == 200
        for _ in range(12):
            assert trusted.get("/echo", headers=b64("", WRONG)).status_code == 401
        assert trusted.get("/echo", headers=b64("", PASSWORD)).status_code == 200

    # --- a second process on the same state folder sees the same count ---
    second_config = make_config(tmp_path, standin)
    second_config["state_dir"] = str(gw.state_dir)
    second = gateway_factory(second_config, directory=tmp_path / "gw1")
    with client(second, "127.0.0.2") as attacker:
        assert attacker.get("/echo", headers=b64("", PASSWORD)).status_code == 429

    # --- a password change in the CLI ends the cached login at once, in every process ---
    with client(second) as c:
        assert c.get("/echo", headers=b64("", PASSWORD)).status_code == 200
        cli(gw, "user", "passwd", "Иванов", "--password-stdin", input=NEW_PASSWORD + "\n")
        assert c.get("/echo", headers=b64("", PASSWORD)).status_code == 401
        assert c.get("/echo", headers={"X-Gateway-Session": token}).status_code == 401
        assert c.get("/echo", headers=b64("Иванов", NEW_PASSWORD)).status_code == 200
    second.stop()

    # --- a restart keeps the ban; the CLI lists and lifts it ---
    gw.stop()
    logs = [gw.log(), second.log()]  # the restart starts a new log file
    gw = gateway_factory(config, directory=tmp_path / "gw0")
    with client(gw, "127.0.0.2") as attacker:
        assert attacker.get("/echo", headers=b64("", NEW_PASSWORD)).status_code == 429
        assert "127.0.0.2" in cli(gw, "bans", "list")
        cli(gw, "bans", "lift", "127.0.0.2")
        assert attacker.get("/echo", headers=b64("", NEW_PASSWORD)).status_code == 200

    # --- a store that fails makes requests fail closed ---
    before = standin.log_path.read_text(encoding="utf-8", errors="replace").count("/echo")
    sqlite3.connect(gw.state_dir / "gateway.db").execute("DROP TABLE failures")
    with client(gw) as c:
        broken = c.get("/echo", headers=b64("", NEW_PASSWORD))
        assert broken.status_code == 503
    after = standin.log_path.read_text(encoding="utf-8", errors="replace").count("/echo")
    assert after == before  # never forwarded
    gw.stop()

    # --- no secret in any log ---
    logs.append(gw.log())
    assert "login failed from 127.0.0.2" in logs[0]
    for text in logs:
        for secret in SECRETS + (token,):
            assert secret not in text
