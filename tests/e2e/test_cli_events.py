"""Issue 12 point 9: the console's events include what one-shot commands did (a ban lifted)."""

from __future__ import annotations

import base64
import ssl

import httpx

from gateway.ops.journal import read_journal
from tests.e2e.test_console import ConsoleClient
from tests.harness import base_entry, cli_ok, free_port, gateway_config

PASSWORD = "Adm1n-Console-Pass-42"


def test_ban_lifted_by_the_cli_shows_in_the_console_events(tmp_path, standin, gateway_factory):
    admin_port = free_port()
    gw = gateway_factory(gateway_config(tmp_path, standin, bases=[base_entry(standin, "b1", "Склад", user_auth=True)],
                                        admin={"enabled": True, "host": "127.0.0.1", "listen": admin_port}))
    d = gw.directory
    cli_ok(d, "group", "add", "Админы", "--role", "admin", "--doc-type", "Поступление")
    cli_ok(d, "user", "add", "админ", "--group", "Админы", "--password-stdin", input=PASSWORD + "\n",
           secrets=(PASSWORD,))
    wrong = {"Authorization": "Basic " + base64.b64encode("админ:wrong".encode()).decode()}
    assert httpx.get(gw.url("b1", path="/echo/x"), headers=wrong,
                     verify=ssl.create_default_context(cafile=gw.ca_file)).status_code == 401
    assert "lifted" in cli_ok(d, "bans", "lift", "127.0.0.1")
    # The command wrote the event to the journal every process shares, not to its own memory.
    lifted = [e for e in read_journal(gw.state_dir) if e.event == "ban-lifted"]
    assert lifted and "127.0.0.1" in lifted[0].message
    console = ConsoleClient(f"http://127.0.0.1:{admin_port}")
    try:
        assert console.login("админ", PASSWORD).status_code in (200, 303)
        events = console.http.get("/console/events", params={"kind": "ban-lifted"}).text
    finally:
        console.close()
    assert "ban-lifted" in events and "127.0.0.1" in events
