"""Document backups: 2xx writes only, named to sort by time, never failing a request, with retention."""

from __future__ import annotations

import datetime
import json
import ssl
import time
from pathlib import Path
from typing import Any, Callable

import httpx
import pytest

from gateway.traffic.backups import BackupMeta, backup_name, description, expired_days, is_document_write, write_backup
from tests.harness import RunningGateway, Standin, base_entry, gateway_config

UTC = datetime.timezone.utc


@pytest.mark.parametrize(("method", "path", "expected"), [
    ("POST", "/api/v1/Docs", True),
    ("PUT", "/api/v1/Docs('abc')", True),
    ("PATCH", "/MobileSMARTS/api/v1/Docs('abc')?x=1", True),
    ("post", "/mobilesmarts/API/v1/docs/%D0%9F%D1%80%D0%B8%D1%85%D0%BE%D0%B4", True),
    ("GET", "/api/v1/Docs", False),
    ("DELETE", "/api/v1/Docs('abc')", False),
    ("POST", "/api/v1/Products", False),
    ("POST", "/api/v1/DocTypes", False),
    ("POST", "/api/v1/Docsx", False),
    ("POST", "/other/api/v1/Docs", False),
])
def test_which_requests_are_document_writes(method: str, path: str, expected: bool) -> None:
    assert is_document_write(method, path) is expected


def test_names_sort_by_time_and_are_safe_file_names() -> None:
    first = datetime.datetime(2026, 11, 27, 13, 45, 1, 123456, tzinfo=UTC)
    names = [backup_name(first + datetime.timedelta(microseconds=delta), "POST", "/api/v1/Docs/Поступление",
                         "application/json", unique=f"{9 - i:06x}") for i, delta in enumerate((0, 1, 999, 10**6))]
    assert names == sorted(names)
    assert names[0] == "20261127T134501.123456Z_POST_Docs_Поступление_000009.json"
    assert description("/api/v1/Docs('a/b:c*?')") == "Docs_a_b_c"
    for bad in '<>:"\\|?*':
        assert bad not in backup_name(first, "PUT", f"/api/v1/Docs('{bad}x')", "text/xml")


def test_expired_day_folders(tmp_path: Path) -> None:
    for name in ("2026-11-01", "2026-11-20", "2026-11-21", "2026-11-27", "notes", "2026-13-01"):
        (tmp_path / name).mkdir()
    # 7 days kept: today and the 6 before it.
    expired = expired_days(tmp_path, datetime.date(2026, 11, 27), 7)
    assert [p.name for p in expired] == ["2026-11-01", "2026-11-20"]


def test_write_backup_writes_body_and_meta(tmp_path: Path) -> None:
    meta = BackupMeta("t", "B", "Иванов", "POST", "/api/v1/Docs", 201, 3, "application/json", "")
    target = write_backup(tmp_path / "2026-11-27", "n.json", b"{}\n", meta)
    assert target.read_bytes() == b"{}\n"
    assert json.loads((tmp_path / "2026-11-27" / "n.json.meta.json").read_text(encoding="utf-8"))["user"] == "Иванов"
    assert sorted(p.name for p in target.parent.iterdir()) == ["n.json", "n.json.meta.json"]


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    return predicate()


def backups_of(gw: RunningGateway, base_id: str) -> list[Path]:
    root = gw.directory / "bases" / base_id / "backups"
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.endswith(".meta.json")) if root.exists() else []


def test_backups_through_the_gateway(standin: Standin, gateway_factory: Callable[..., RunningGateway],
                                     tmp_path: Path) -> None:
    directory = tmp_path / "gw"
    root = directory / "bases" / "b1" / "backups"
    for old in ("2000-01-01", "2000-01-02"):
        (root / old).mkdir(parents=True)
    recent = datetime.datetime.now(UTC).date().isoformat()
    (root / recent).mkdir()
    (root / "keep-me").mkdir()
    broken_folder = directory / "bases" / "b2"
    broken_folder.mkdir(parents=True)
    (broken_folder / "backups").write_text("a file where the backups folder should be", encoding="utf-8")
    bases = [base_entry(standin, "b1", "Склад", backups=True, backup_retention_days=3),
             base_entry(standin, "b2", "Сломанный диск", backups=True)]
    gw = gateway_factory(gateway_config(tmp_path, standin, bases=bases, proxy={"stream_threshold": "64k"},
                                        log={"format": "json"}), directory=directory)
    # retention ran at start: only what the gateway wrote, and only the old days
    assert wait_for(lambda: not (root / "2000-01-01").exists())
    assert not (root / "2000-01-02").exists() and (root / recent).exists() and (root / "keep-me").exists()

    document = {"documentTypeName": "Поступление", "name": "Приход 15", "rows": [1, 2, 3]}
    big = {"documentTypeName": "Поступление", "name": "Большой", "rows": ["x" * 100] * 3000}
    big_body = json.dumps(big, ensure_ascii=False).encode("utf-8")
    verify = ssl.create_default_context(cafile=gw.ca_file)
    with httpx.Client(verify=verify, timeout=30) as http:
        created = http.post(gw.url("b1", path="/api/v1/Docs"), json=document)
        assert created.status_code == 201
        doc_id = created.json()["id"]
        patched = http.patch(gw.url("b1", path=f"/MobileSMARTS/api/v1/Docs('{doc_id}')"), json={"finished": True})
        assert patched.status_code == 200
        assert http.post(gw.url("b1", path="/api/v1/Docs"), json={"documentTypeName": "Нет такого"}).status_code == 400
        assert http.put(gw.url("b1", path="/api/v1/Docs('missing')"), json=document).status_code == 404
        assert http.get(gw.url("b1", path="/api/v1/Docs")).status_code == 200
        streamed = http.post(gw.url("b1", path="/api/v1/Docs"), content=big_body,
                             headers={"Content-Type": "application/json; charset=utf-8"})
        assert streamed.status_code == 201
        # a disk that refuses the backup does not refuse the document
        assert http.post(gw.url("b2", path="/api/v1/Docs"), json=document).status_code == 201

    files = wait_for(lambda: len(backups_of(gw, "b1")) == 3 and backups_of(gw, "b1"))
    assert files, backups_of(gw, "b1")
    names = [p.name for p in files]
    assert names == sorted(names)
    assert "_POST_Docs_" in names[0] and "_PATCH_Docs_" in names[1] and "_POST_Docs_" in names[2]
    assert json.loads(files[0].read_bytes()) == document
    assert json.loads(files[1].read_bytes()) == {"finished": True}
    assert files[2].read_bytes() == big_body  # teed while streaming, byte for byte
    meta = json.loads(files[1].with_name(files[1].name + ".meta.json").read_text(encoding="utf-8"))
    assert (meta["method"], meta["status"], meta["path"], meta["base"]) == \
        ("PATCH", 200, f"/MobileSMARTS/api/v1/Docs('{doc_id}')", "Склад")
    assert meta["size"] == files[1].stat().st_size
    assert files[0].parent.name == datetime.datetime.now(UTC).date().isoformat()
    gw.wait_for_log(r'"event": "backup-failed", "base": "Сломанный диск"')


def test_a_body_streamed_past_the_memory_budget_is_still_backed_up_whole(
        standin: Standin, gateway_factory: Callable[..., RunningGateway], tmp_path: Path) -> None:
    """Below stream_threshold a body is buffered; past request_buffer_per_ip it is streamed after
    all, and the backup must still hold every byte (issue 24)."""
    directory = tmp_path / "gw"
    bases = [base_entry(standin, "b1", "Склад", backups=True)]
    gw = gateway_factory(gateway_config(tmp_path, standin, bases=bases,
                                        limits={"request_buffer": "64k", "request_buffer_per_ip": "64k"}),
                         directory=directory)
    big = {"documentTypeName": "Поступление", "name": "Большой", "rows": ["y" * 100] * 3000}
    body = json.dumps(big, ensure_ascii=False).encode("utf-8")
    assert 64 * 1024 < len(body) < 4 * 1024 * 1024
    with httpx.Client(verify=ssl.create_default_context(cafile=gw.ca_file), timeout=30) as http:
        created = http.post(gw.url("b1", path="/api/v1/Docs"), content=body,
                            headers={"Content-Type": "application/json; charset=utf-8"})
    assert created.status_code == 201
    files = wait_for(lambda: len(backups_of(gw, "b1")) == 1 and backups_of(gw, "b1"))
    assert files and files[0].read_bytes() == body
