"""The guides' console screenshots are exactly the files the console's browser test writes
(``CONSOLE_SCREENSHOTS=1`` → docs/console/*.png): none missing, none stale. The browser test
tests (tests/e2e/test_console*_browser.py) write them; each checks the shots it took are shown."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SHOTS = ROOT / "docs" / "console"


def guide_screenshots() -> set[str]:
    """The docs/console/*.png names the guides (both languages) show."""
    names: set[str] = set()
    for guide in (ROOT / "docs").rglob("*.md"):
        names.update(re.findall(r"\]\((?:\.\./)*console/([\w-]+\.png)\)", guide.read_text(encoding="utf-8")))
    return names


def test_every_screenshot_shown_exists_and_every_file_is_shown() -> None:
    shown = guide_screenshots()
    assert len(shown) >= 5, shown
    on_disk = {p.name for p in SHOTS.glob("*.png")}
    assert shown == on_disk, f"shown but missing: {sorted(shown - on_disk)}; stale files: {sorted(on_disk - shown)}"


def test_each_guide_language_shows_the_same_screenshots() -> None:
    for english in (ROOT / "docs" / "guides").glob("*.en.md"):
        russian = english.with_name(english.name.replace(".en.md", ".md"))
        pattern = r"console/([\w-]+\.png)"
        assert set(re.findall(pattern, english.read_text(encoding="utf-8"))) == \
            set(re.findall(pattern, russian.read_text(encoding="utf-8"))), english.name


def screenshots_written() -> set[str]:
    """The literal names the console's browser tests give their screenshots (``shots / "name.png"``)."""
    names: set[str] = set()
    for test in (ROOT / "tests" / "e2e").glob("test_console*_browser.py"):
        names.update(re.findall(r'shots / "([\w-]+\.png)"', test.read_text(encoding="utf-8")))
    return names


def test_every_shot_a_console_test_names_is_shown() -> None:
    # Names built at run time (the phone shots, one a page) are checked by the browser tests
    # themselves: each asserts that every shot it took is one the guides show.
    written = screenshots_written()
    assert written and written <= guide_screenshots(), sorted(written - guide_screenshots())
