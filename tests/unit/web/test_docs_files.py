"""The /docs file server's decisions on a small site folder: only regular files inside it, the
right content types, nothing through ``..``, encoded dots, backslashes or a symbolic link out."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.web import docs


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text("<h1>Документация</h1>", encoding="utf-8")
    (root / "assets" / "app.js").write_text("1", encoding="utf-8")
    (root / "search_index.json").write_text("{}", encoding="utf-8")
    (tmp_path / "secret.txt").write_text("outside", encoding="utf-8")
    (root / "link.txt").symlink_to(tmp_path / "secret.txt")
    return root


@pytest.mark.parametrize(("path", "content_type"), [
    ("/docs/", "text/html; charset=utf-8"),
    ("/docs/index.html", "text/html; charset=utf-8"),
    ("/docs/assets/app.js", "text/javascript; charset=utf-8"),
    ("/docs/search_index.json", "application/json"),
])
def test_files_inside_the_site_are_served_with_their_type(site: Path, path: str, content_type: str) -> None:
    answer = docs.answer(site, "GET", path)
    assert (answer.status, answer.content_type) == (200, content_type)
    assert dict(answer.headers)["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("path", [
    "/docs/../secret.txt", "/docs/%2e%2e/secret.txt", "/docs/assets/..%2f..%2fsecret.txt",
    "/docs/..%5csecret.txt", "/docs/link.txt", "/docs/%00index.html", "/docs/missing.html",
    "/docs/./index.html",
])
def test_nothing_outside_the_site_or_missing_is_served(site: Path, path: str) -> None:
    answer = docs.answer(site, "GET", path)
    assert answer.status == 404 and b"outside" not in answer.body


def test_read_only_and_a_missing_site_says_how_to_build_it(site: Path, tmp_path: Path) -> None:
    assert docs.answer(site, "POST", "/docs/index.html").status == 405
    missing = docs.answer(tmp_path / "nothing", "GET", "/docs/")
    assert missing.status == 404 and b"make docs" in missing.body and b"admin.docs_dir" in missing.body
    moved = docs.answer(site, "GET", "/docs")
    assert moved.status == 301 and ("Location", "/docs/") in moved.headers
