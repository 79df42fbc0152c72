"""The account commands in-process: exit codes, one-line errors, secrets only from stdin or a prompt."""

import io
import sys
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from gateway.accounts import AccountError
from gateway.store import keys
from gateway.commands._accounts import SecretReader
from gateway.cli import main

PASSWORD = "Secret123"


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keys, "_hasher", PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1))


@pytest.fixture
def config(tmp_path: Path) -> str:
    path = tmp_path / "gateway.yaml"
    path.write_text("state_dir: ./state\nbases: []\n", encoding="utf-8")
    return str(path)


def run(config: str, monkeypatch: pytest.MonkeyPatch, *args: str, stdin: str = "") -> int:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return main(["-c", config, *args])


def test_seed_flow_from_the_cli(config: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(config, monkeypatch, "group", "add", "Операторы ТСД", "--role", "mobile") == 1
    assert "хотя бы одну операцию" in capsys.readouterr().err
    assert run(config, monkeypatch, "group", "add", "Операторы ТСД", "--role", "mobile", "--doc-type", "Поступление") == 0
    assert run(config, monkeypatch, "user", "add", "Иванов", "--group", "операторы тсд", "--password-stdin",
               stdin="weak\n") == 1
    err = capsys.readouterr().err
    assert err.startswith("error: the password is weak") and "Traceback" not in err and "weak\n" not in err
    assert run(config, monkeypatch, "user", "add", "Иванов", "--group", "1", "--password-stdin",
               "--barcode-stdin", stdin=f"{PASSWORD}\n4600000000017\n") == 0
    assert run(config, monkeypatch, "user", "add", "Петров", "--group", "1", "--password-stdin",
               stdin=f"{PASSWORD}\n") == 1
    assert "already in use" in capsys.readouterr().err
    assert run(config, monkeypatch, "user", "add", "Петров", "--group", "nope", "--password-stdin",
               stdin=f"{PASSWORD}\n") == 1
    assert "no group 'nope'" in capsys.readouterr().err
    assert run(config, monkeypatch, "user", "show", "иванов") == 0
    shown = capsys.readouterr().out
    assert "barcode:     set" in shown and PASSWORD not in shown
    assert run(config, monkeypatch, "group", "remove", "1") == 1
    assert "still has 1 user" in capsys.readouterr().err
    assert run(config, monkeypatch, "user", "remove", "Иванов") == 0
    assert run(config, monkeypatch, "group", "remove", "1") == 0
    assert run(config, monkeypatch, "bans", "list") == 0
    assert "no address or user is locked out" in capsys.readouterr().out


def test_export_import_via_cli(config: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert run(config, monkeypatch, "group", "add", "Учёт", "--role", "external", "--doc-type", "Поступление") == 0
    assert run(config, monkeypatch, "user", "add", "1c", "--group", "Учёт", "--password-stdin",
               stdin=f"{PASSWORD}\n") == 0
    out = tmp_path / "users.yaml"
    assert run(config, monkeypatch, "users", "export", str(out)) == 0
    assert PASSWORD not in out.read_text(encoding="utf-8")
    assert run(config, monkeypatch, "users", "import", str(out)) == 0


def test_prompt_asks_twice() -> None:
    answers = iter(["Secret123", "Secret124"])
    with pytest.raises(AccountError, match="differ"):
        SecretReader(prompt=lambda _: next(answers)).read("password", use_stdin=False)
    answers = iter(["Secret123", "Secret123"])
    assert SecretReader(prompt=lambda _: next(answers)).read("password", use_stdin=False) == "Secret123"
    with pytest.raises(AccountError, match="ended before the barcode"):
        SecretReader(stdin=io.StringIO("")).read("barcode", use_stdin=True)
