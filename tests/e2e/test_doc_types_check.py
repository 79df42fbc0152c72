"""Issue 12 point 3: `group add/edit --doc-type` names checked against the back end's DocTypes."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.harness import cli_ok, free_port, run_gateway_command


def write(tmp_path: Path, backend: str) -> Path:
    (tmp_path / "gateway.yaml").write_text(yaml.safe_dump({
        "state_dir": "./state", "listen_host": "127.0.0.1", "admin": {"enabled": False},
        "bases": [{"id": "b1", "name": "Склад", "user_auth": True,
                   "data": {"listen": free_port(), "backend": backend}}],
    }, allow_unicode=True), encoding="utf-8")
    return tmp_path


def test_alias_and_typo_are_refused_with_the_right_name(tmp_path: Path, standin) -> None:
    d = write(tmp_path, standin.data_url)
    alias = run_gateway_command(d, "group", "add", "Кладовщики", "--role", "mobile", "--doc-type", "Приход")
    assert alias.returncode == 1
    assert "alias" in alias.stderr and "--doc-type 'Поступление'" in alias.stderr
    typo = run_gateway_command(d, "group", "add", "Кладовщики", "--role", "mobile", "--doc-type", "Инвентаризацыя")
    assert typo.returncode == 1 and "did you mean 'Инвентаризация'" in typo.stderr
    assert "no groups" in cli_ok(d, "group", "list")

    cli_ok(d, "group", "add", "Кладовщики", "--role", "mobile", "--doc-type", "Поступление")
    bad_edit = run_gateway_command(d, "group", "edit", "Кладовщики", "--doc-type", "Приход")
    assert bad_edit.returncode == 1 and "Поступление" in bad_edit.stderr
    cli_ok(d, "group", "edit", "Кладовщики", "--doc-type", "Поступление,Списание")
    assert "Поступление, Списание" in cli_ok(d, "group", "show", "Кладовщики")
    forced = run_gateway_command(d, "group", "edit", "Кладовщики", "--doc-type", "Приход", "--no-doc-type-check")
    assert forced.returncode == 0


def test_offline_back_end_is_a_warning_not_an_error(tmp_path: Path) -> None:
    d = write(tmp_path, f"http://127.0.0.1:{free_port()}")
    done = run_gateway_command(d, "group", "add", "Кладовщики", "--role", "mobile", "--doc-type", "Приход")
    assert done.returncode == 0, done.stderr
    assert "warning: could not check the document types" in done.stderr
