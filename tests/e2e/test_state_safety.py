"""Issue 12 point 1: a lost or replaced state folder is noticed, never silently re-created, and
the local CA devices trust is never replaced without --new-ca. Plus `gateway reload`/`status`."""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from tests.harness import cli_ok, free_port, gateway_config, run_gateway_command


def _readyz(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _with_admin(tmp_path: Path, standin: Any, **extra: Any) -> dict[str, Any]:
    config = gateway_config(tmp_path, standin, admin={"enabled": True, "host": "127.0.0.1", "listen": free_port()})
    config["bases"][0]["user_auth"] = True
    config.update(extra)
    return config


def test_deleted_state_folder_is_noticed_and_never_recreated(tmp_path, standin, gateway_factory):
    config = _with_admin(tmp_path, standin)
    gw = gateway_factory(config)
    admin = config["admin"]["listen"]
    cli_ok(gw.directory, "group", "add", "Кладовщики", "--role", "mobile", "--doc-type", "Поступление")
    assert _readyz(admin)[0] == 200
    old_ca = (gw.state_dir / "certs" / "ca.pem").read_bytes()

    gw.mark_log()
    shutil.rmtree(gw.state_dir)
    gw.wait_for_log(r"ERROR.*state folder .* was deleted while the gateway runs", timeout=10)
    status, text = _readyz(admin)
    assert status == 503 and "state folder" in text

    # The CLI refuses to make a fresh empty store and key next to this configuration...
    refused = run_gateway_command(gw.directory, "user", "list")
    assert refused.returncode != 0
    assert "--init" in refused.stderr and "missing" in refused.stderr
    assert not (gw.state_dir / "gateway.db").exists()
    # ...and `check` says what happened instead of calling the gateway's own ports taken.
    check = run_gateway_command(gw.directory, "check")
    assert "missing" in check.stdout and "--init" in check.stdout
    assert "taken by another program" not in check.stdout
    gw.stop()

    # A restart refuses too: it would make a new CA every enrolled device rejects.
    restarted = run_gateway_command(gw.directory, "run", timeout=30)
    assert restarted.returncode != 0 and "--init" in restarted.stderr

    # The state comes back from a backup without its CA: still no silent new CA.
    (gw.state_dir).mkdir()
    cli_ok(gw.directory, "--init", "user", "list")
    no_ca = run_gateway_command(gw.directory, "cert", "self-signed")
    assert no_ca.returncode != 0 and "--new-ca" in no_ca.stderr
    assert not (gw.state_dir / "certs" / "ca.pem").exists()
    made = run_gateway_command(gw.directory, "cert", "self-signed", "--new-ca")
    assert made.returncode == 0, made.stderr
    assert "re-enrolled" in made.stderr
    assert (gw.state_dir / "certs" / "ca.pem").read_bytes() != old_ca


def test_replaced_hmac_key_is_an_error_event(tmp_path, standin, gateway_factory):
    config = _with_admin(tmp_path, standin)
    gw = gateway_factory(config)
    cli_ok(gw.directory, "group", "add", "Кладовщики", "--role", "mobile", "--doc-type", "Поступление")
    key = gw.state_dir / "auth-hmac.key"
    assert key.exists()
    gw.mark_log()
    key.write_text("ab" * 32)
    gw.wait_for_log(r"ERROR.*HMAC key\) changed while the gateway runs", timeout=10)
    assert _readyz(config["admin"]["listen"])[0] == 503
    gw.stop()
    refused = run_gateway_command(gw.directory, "user", "list")
    assert refused.returncode != 0 and "HMAC key" in refused.stderr


def test_reload_and_status_commands(tmp_path, standin, gateway_factory):
    config = _with_admin(tmp_path, standin)
    gw = gateway_factory(config)
    status = cli_ok(gw.directory, "status")
    assert f"pid {gw.process.pid}" in status and "uptime" in status and "listener" in status
    assert "last reload: none since start" in status

    data = json.loads(cli_ok(gw.directory, "status", "--json"))
    assert data["running"] and data["processes"][0]["pid"] == gw.process.pid

    done = run_gateway_command(gw.directory, "reload")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "new configuration applied" in done.stdout

    # A configuration the gateway refuses (the port of another program) is reported as refused.
    with __import__("socket").socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen(1)
        broken = dict(config, bases=[dict(config["bases"][0], data=dict(config["bases"][0]["data"],
                                                                         listen=blocker.getsockname()[1]))])
        gw.write_config(broken)
        time.sleep(0.05)
        done = run_gateway_command(gw.directory, "reload")
        assert done.returncode == 1
        assert "refused" in done.stdout and "previous configuration stays" in done.stdout
    assert "FAILED" in cli_ok(gw.directory, "status")
    gw.stop()
    stopped = run_gateway_command(gw.directory, "status")
    assert stopped.returncode == 3 and "not running" in stopped.stdout
    assert run_gateway_command(gw.directory, "reload").returncode == 3


def test_replaced_store_file_is_an_error_event(tmp_path, standin, gateway_factory):
    config = _with_admin(tmp_path, standin)
    gw = gateway_factory(config)
    cli_ok(gw.directory, "group", "add", "Кладовщики", "--role", "mobile", "--doc-type", "Поступление")
    db = gw.state_dir / "gateway.db"
    copy = gw.state_dir / "restored.db"
    shutil.copy(db, copy)
    gw.mark_log()
    copy.replace(db)  # a backup copied over the live file
    gw.wait_for_log(r"ERROR.*gateway\.db was replaced while the gateway runs", timeout=10)
    status, text = _readyz(config["admin"]["listen"])
    assert status == 503 and "Restart the gateway" in text
