"""The documentation site as an administrator without internet gets it: `mkdocs build --strict`
into a temporary folder, then opened from file:// in a real browser (Debian's chromium through
Playwright) — navigation between the languages and the search work, and nothing is fetched
from the network. (The drift test that holds the reference to the code comes with issue 25's
second part.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.test_enrolment_browser import chromium_path

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def site(built_site: Path) -> Path:
    return built_site


def test_every_guide_and_reference_page_exists_in_russian_and_english() -> None:
    docs = ROOT / "docs"
    for folder in ("guides", "reference"):
        russian = {p.name[:-3] for p in (docs / folder).glob("*.md") if not p.name.endswith(".en.md")}
        english = {p.name[:-6] for p in (docs / folder).glob("*.en.md")}
        assert russian and russian == english, (folder, russian ^ english)


def test_the_built_site_is_in_both_languages_and_needs_no_network(site: Path) -> None:
    assert (site / "index.html").is_file() and (site / "en" / "index.html").is_file()
    assert (site / "en" / "reference" / "config.html").is_file()
    for page in (site / "index.html", site / "en" / "guides" / "https.html"):
        html = page.read_text(encoding="utf-8")
        # Only plain links may point outside (the theme's credit); no script, style or font does.
        for attribute in ('src="http', 'href="https://fonts', 'href="https://unpkg'):
            assert attribute not in html, (page, attribute)


@pytest.mark.parametrize(("start", "word", "expected"), [
    ("index.html", "штрихкод", "штрихкод"),
    ("en/guides/https.html", "barcode", "barcode"),
])
def test_search_works_from_the_file_system(site: Path, start: str, word: str, expected: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"], headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            outside: list[str] = []
            page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(("file:", "data:", "blob:")) else None)
            page.goto((site / start).as_uri())
            page.click("input[data-md-component=search-query]")
            page.keyboard.type(word)
            # Playwright enters letters without a key of their own (Cyrillic ones) as inserted
            # text, with no key events, and the theme searches on key events: one real key, as
            # a person's typing always ends with.
            page.keyboard.press("End")
            page.wait_for_selector(".md-search-result__item", timeout=15000)
            results = page.locator(".md-search-result__item")
            assert results.count() > 0
            assert expected in page.locator(".md-search-result").inner_text().lower()
            # A result opens its page, from the file system.
            results.first.locator("a").first.click()
            page.wait_for_load_state()
            assert page.url.startswith("file://") and page.title()
            assert outside == []
        finally:
            browser.close()


def test_the_language_switch_leads_to_the_same_page_in_the_other_language(site: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"], headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.goto((site / "guides" / "ip-lists.html").as_uri())
            assert "Белый и чёрный списки IP" in page.locator("h1").inner_text()
            english = page.locator("a[hreflang=en]").first.get_attribute("href")
            page.goto((site / "guides" / english).resolve().as_uri())
            assert "IP allow and deny lists" in page.locator("h1").inner_text()
            russian = page.locator("a[hreflang=ru]").first.get_attribute("href")
            assert (site / "en" / "guides" / russian).resolve() == (site / "guides" / "ip-lists.html").resolve()
        finally:
            browser.close()
