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


def test_export_is_readable_by_its_owner_only(config: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 23 point 5: the export holds every user's argon2id and keyed hashes, like a key file."""
    import os
    import stat

    assert run(config, monkeypatch, "group", "add", "Учёт", "--role", "external", "--doc-type", "Поступление") == 0
    assert run(config, monkeypatch, "user", "add", "1c", "--group", "Учёт", "--password-stdin",
               stdin=f"{PASSWORD}\n") == 0
    out = tmp_path / "users.yaml"
    out.write_text("old\n", encoding="utf-8")
    out.chmod(0o644)  # an earlier export, or a file made by hand: replaced, not reused with its mode
    previous = os.umask(0o022)
    try:
        assert run(config, monkeypatch, "users", "export", str(out)) == 0
    finally:
        os.umask(previous)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert "$argon2id$" in out.read_text(encoding="utf-8")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".users.yaml")] == []


def test_export_on_windows_cuts_the_acl_to_the_owner_by_sid_before_writing(tmp_path: Path) -> None:
    """The Windows branch, driven here with a recorded icacls (no Windows machine in CI): the
    current user's SID, never a name, and the ACL set while the file is still empty."""
    import subprocess

    from gateway.utils.private_files import write_private_text

    sid = "S-1-5-21-1004336348-1177238915-682003330-1001"
    calls: list[tuple[list[str], int]] = []

    def runner(answer: int):  # type: ignore[no-untyped-def]
        def run_(command):  # type: ignore[no-untyped-def]
            command = list(command)
            if command[0] == "whoami":
                return subprocess.CompletedProcess(command, 0, f'"склад\\админ","{sid}"\r\n', "")
            calls.append((command, Path(command[1]).stat().st_size))
            return subprocess.CompletedProcess(command, answer, "", "Access is denied." if answer else "")
        return run_

    target = tmp_path / "users.yaml"
    write_private_text(target, "hashes\n", windows=True, run=runner(0))
    assert target.read_text(encoding="utf-8") == "hashes\n"
    [(command, size_then)] = calls
    assert command[2:] == ["/inheritance:r", "/grant:r", f"*{sid}:F"] and size_then == 0
    calls.clear()
    with pytest.raises(OSError, match="owner only.*Access is denied"):
        write_private_text(tmp_path / "second.yaml", "hashes\n", windows=True, run=runner(5))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["users.yaml"]  # nothing half-protected left behind


def test_lists_stay_aligned_with_long_cyrillic_names_and_bans_show_names_as_stored(
        config: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 23 point 15."""
    import time

    from gateway.auth.throttle import account_key, ip_key
    from gateway.config import load_config
    from gateway.store import open_store

    long_name = "Константинопольская-Доброжелательница"
    assert run(config, monkeypatch, "group", "add", "Кладовщики центрального склада", "--role", "mobile",
               "--doc-type", "Поступление") == 0
    for name in (long_name, "Ли"):
        assert run(config, monkeypatch, "user", "add", name, "--group", "1", "--password-stdin",
                   stdin=f"{PASSWORD}{len(name)}\n") == 0
    capsys.readouterr()
    assert run(config, monkeypatch, "user", "list") == 0
    lines = capsys.readouterr().out.splitlines()
    # Every row's GROUP column starts where the header's does.
    column = lines[0].index("GROUP")
    assert all(line[column:].startswith("Кладовщики центрального склада") for line in lines[1:]), lines
    assert any(long_name in line for line in lines)

    cfg = load_config(config)
    store = open_store(cfg.state_dir)
    now = time.time()
    for _ in range(cfg.throttle.account_failures):
        store.add_failure(account_key(long_name), now, now - 3600)
    for _ in range(cfg.throttle.ip_failures):
        store.add_failure(ip_key("10.0.0.7"), now, now - 3600)
    store.close()
    assert run(config, monkeypatch, "bans", "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(long_name in line for line in lines), lines  # as stored, not folded to lower case
    column = lines[0].index("FAILURES") + len("FAILURES")
    assert all(line[column - 1].isdigit() for line in lines[1:]), lines
