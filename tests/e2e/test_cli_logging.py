"""One-shot commands log their security events where the gateway logs."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.harness import run_gateway_command


def write_config(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "gateway.yaml").write_text(yaml.safe_dump({
        "admin": {"enabled": False},
        "log": {"format": "json", "file": "logs/gateway.log"},
        "bases": [{"id": "b1", "name": "Склад", "data": {"listen": 20811, "backend": "http://127.0.0.1:9706"}}],
    }, allow_unicode=True), encoding="utf-8")
    return directory / "logs" / "gateway.log"


def events(log: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]


def test_forced_weak_password_and_lifted_ban_are_logged_only_when_they_happen(tmp_path: Path) -> None:
    log = write_config(tmp_path)
    assert run_gateway_command(tmp_path, "group", "add", "Операторы", "--role", "mobile",
                               "--doc-type", "Поступление").returncode == 0
    assert run_gateway_command(tmp_path, "user", "add", "first", "--group", "Операторы", "--password-stdin",
                               "--force", input="weakpass1\n").returncode == 0
    # The same weak password again: refused as a duplicate, so nothing was "accepted".
    again = run_gateway_command(tmp_path, "user", "add", "second", "--group", "Операторы", "--password-stdin",
                                "--force", input="weakpass1\n")
    assert again.returncode != 0 and "accepted" not in again.stderr
    lifted = run_gateway_command(tmp_path, "bans", "lift", "127.0.0.9")
    assert lifted.returncode == 0

    logged = events(log)
    forced = [e for e in logged if e.get("event") == "weak-password-forced"]
    assert [e["user"] for e in forced] == ["first"]
    assert "weakpass1" not in log.read_text(encoding="utf-8")
    assert not any(e.get("event") == "ban-lifted" for e in logged)  # nothing was banned: nothing lifted


def test_lifting_a_real_ban_is_a_security_event(tmp_path: Path) -> None:
    from gateway.commands._accounts import open_state
    from gateway.auth.throttle import Throttle

    log = write_config(tmp_path)
    state = open_state(tmp_path / "gateway.yaml")
    throttle = Throttle(state.store, state.config.throttle)
    for _ in range(11):
        throttle.record_failure("127.0.0.9", None)
    assert run_gateway_command(tmp_path, "bans", "lift", "127.0.0.9").returncode == 0
    lifted = [e for e in events(log) if e.get("event") == "ban-lifted"]
    assert lifted and lifted[0]["target"] == "127.0.0.9"
