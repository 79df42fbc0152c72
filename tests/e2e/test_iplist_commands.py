"""``gateway iplist check FILE`` and ``gateway iplist test ADDRESS [--base ID]``."""

from __future__ import annotations

import codecs
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gateway.cli import main


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_check_counts_entries_and_passes_a_clean_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "whitelist.dat"
    path.write_bytes(codecs.BOM_UTF16_LE + "192.168.1.1\r\n192.198.0.0/16\r\n192.198.0.1-192.198.0.100\r\n".encode("utf-16-le"))
    code, out, err = run(capsys, "iplist", "check", str(path))
    assert code == 0 and "3 entries" in out and not err


def test_check_lists_every_bad_line_and_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "blacklist.dat"
    path.write_text("10.0.0.1\n10.0.0.256\n# ok\n10.0.0.9-10.0.0.1\n", encoding="utf-8")
    code, out, _ = run(capsys, "iplist", "check", str(path))
    assert code == 1
    assert "1 entry, 2 bad line(s)" in out
    assert f"{path}:2: " in out and "256" in out
    assert f"{path}:4: " in out and "backwards" in out


def test_check_of_a_missing_file_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "iplist", "check", str(tmp_path / "nope.dat"))
    assert code == 2 and "no such file" in err and "Traceback" not in err


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    (tmp_path / "b1" / "Server").mkdir(parents=True)
    (tmp_path / "b1" / "Server" / "blacklist.dat").write_text("10.0.0.0/8\n", encoding="utf-8")
    (tmp_path / "b1" / "Server" / "whitelist.dat").write_text("# boss\n10.1.1.1\n", encoding="utf-8")
    data = {
        "admin": {"enabled": False},
        "bases": [
            {"id": "b1", "name": "Склад", "folder": "b1", "data": {"listen": 20011, "backend": "http://127.0.0.1:9706"}},
            {"id": "b2", "name": "Office", "folder": "b2", "whitelist_only": True,
             "data": {"listen": 20012, "backend": "http://127.0.0.1:9707"}},
        ],
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_test_prints_the_decision_and_the_deciding_line_for_every_base(
        config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "-c", str(config_file), "iplist", "test", "10.2.3.4")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == (f"base 'Склад' (b1): 10.2.3.4 refused: on the blacklist "
                        f"({config_file.parent / 'b1' / 'Server' / 'blacklist.dat'}:1)")
    assert lines[1].startswith("base 'Office' (b2): 10.2.3.4 refused: on no whitelist")


def test_test_one_base_whitelisted_through_mapped_ipv6(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "-c", str(config_file), "iplist", "test", "::ffff:10.1.1.1", "--base", "b1")
    assert code == 0 and out.count("\n") == 1
    assert "allowed: on the whitelist" in out and "whitelist.dat:2" in out


@pytest.mark.parametrize(("argv", "words"), [
    (["iplist", "test", "10.0.0.1", "--base", "zz"], "no base with id 'zz'"),
    (["iplist", "test", "10.0.0.0/8"], "not an IP address"),
])
def test_test_user_errors(config_file: Path, capsys: pytest.CaptureFixture[str], argv: list[str], words: str) -> None:
    code, _, err = run(capsys, "-c", str(config_file), *argv)
    assert code == 2 and words in err and "Traceback" not in err


def test_test_without_a_config_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "-c", str(tmp_path / "missing.yaml"), "iplist", "test", "10.0.0.1")
    assert code == 2 and "missing.yaml" in err


def test_entry_point_runs_as_a_process(tmp_path: Path) -> None:
    path = tmp_path / "list.dat"
    path.write_text("10.0.0.1\nbad\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "gateway", "iplist", "check", str(path)],
                          capture_output=True, text=True, encoding="utf-8", timeout=60)
    assert done.returncode == 1 and f"{path}:2:" in done.stdout
