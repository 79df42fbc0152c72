"""The console's two languages. Templates say ``_("English text")``; Russian comes from the
gettext catalogue shared with the CLI (gateway/utils/locale/ru.po, read by gateway/utils/messages.py).

The language is the ``lang`` cookie set by the switch on every page, else the first of
Russian/English in ``Accept-Language``, else Russian (the seed's users). Messages from the core
(a refused password, a bad certificate) go through the same catalogue as the CLI prints them,
so an administrator sees the same words in both places.
"""

from __future__ import annotations

from typing import Any, Callable

from gateway.utils import messages

LANGUAGES = ("ru", "en")
DEFAULT_LANGUAGE = "ru"

# Texts added here still resolve (pages written before the catalogue); new texts go into
# gateway/utils/locale/ru.po, which wins where both have one.
RU: dict[str, str] = {}


def choose_language(accept_language: str, cookie: str = "") -> str:
    if cookie in LANGUAGES:
        return cookie
    best: tuple[float, str] | None = None
    for item in accept_language.split(","):
        tag, _, params = item.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        if primary not in LANGUAGES:
            continue
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0 and (best is None or quality > best[0]):
            best = (quality, primary)
    return best[1] if best else DEFAULT_LANGUAGE


def translator(language: str) -> Callable[[str], str]:
    if language == "en":
        return lambda text: text
    table = messages.catalogue(language)
    return lambda text: table.get(text) or RU.get(text, text)


def tr(language: str, text: str, **values: Any) -> str:
    """A text with ``{fields}``: translated first, then filled, so the words can move around the values."""
    translated = translator(language)(text)
    return translated.format(**values) if values else translated
