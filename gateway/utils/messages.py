"""The message catalogue shared by the console and the CLI: gettext ``.po`` files read in-process.

The catalogues are the ``.po`` files next to this module (``locale/<lang>.po``), shipped as package
data and parsed here on first use, so an installed wheel needs no compile step and no ``.mo``
file can drift from its source. The msgid is the English text; a missing entry falls back to it.
Texts with values use ``{name}`` fields filled after translation (``tr(lang, "… {name} …", name=…)``),
so a translator can move the value within the sentence.
"""

from __future__ import annotations

import ast
import re
import locale
import os
from functools import lru_cache
from importlib.resources import files
from typing import Any, Callable

LANGUAGES = ("ru", "en")


def _unquote(text: str) -> str:
    return ast.literal_eval(text) if text.startswith('"') else ""


def parse_po(text: str) -> dict[str, str]:
    """msgid → msgstr of a .po file's translated, non-fuzzy entries (msgctxt and plurals unused)."""
    catalogue: dict[str, str] = {}
    msgid: list[str] = []
    msgstr: list[str] = []
    current: list[str] | None = None
    fuzzy = False

    def flush() -> None:
        nonlocal fuzzy
        key, value = "".join(msgid), "".join(msgstr)
        if key and value and not fuzzy:
            catalogue[key] = value
        msgid.clear()
        msgstr.clear()
        fuzzy = False

    for line in text.splitlines():
        line = line.strip()
        if line.startswith("#,") and "fuzzy" in line:
            if msgstr:
                flush()
            fuzzy = True
        elif line.startswith("msgid "):
            if msgstr:
                flush()
            current = msgid
            current.append(_unquote(line[6:].strip()))
        elif line.startswith("msgstr "):
            current = msgstr
            current.append(_unquote(line[7:].strip()))
        elif line.startswith('"') and current is not None:
            current.append(_unquote(line))
        elif not line and msgstr:
            flush()
            current = None
    if msgstr:
        flush()
    return catalogue


@lru_cache(maxsize=None)
def catalogue(lang: str) -> dict[str, str]:
    if lang == "en":
        return {}
    resource = files("gateway.utils") / "locale" / f"{lang}.po"
    return parse_po(resource.read_text(encoding="utf-8")) if resource.is_file() else {}


def gettext(lang: str, text: str) -> str:
    return catalogue(lang).get(text, text)


def tr(lang: str, text: str, **values: Any) -> str:
    """The translated text with its ``{fields}`` filled (values are not translated)."""
    translated = gettext(lang, text)
    return translated.format(**values) if values else translated


def translator(lang: str) -> Callable[[str], str]:
    table = catalogue(lang)
    return lambda text: table.get(text, text)


def system_language() -> str:
    """The CLI's language: Russian when the system locale (LC_ALL, LC_MESSAGES, LANG, LANGUAGE) is Russian."""
    for name in ("LC_ALL", "LC_MESSAGES", "LANG", "LANGUAGE"):
        value = os.environ.get(name, "")
        if value:
            return "ru" if value.lower().startswith("ru") else "en"
    try:
        code = locale.getlocale()[0] or ""
    except ValueError:
        code = ""
    return "ru" if code.lower().startswith("ru") else "en"


_FIELD = re.compile(r"\{(\w+)\}")
# Fields that hold a message of their own, localized in turn (names and addresses are never).
_NESTED = frozenset({"reason", "why", "what"})


@lru_cache(maxsize=None)
def _patterns(lang: str) -> list[tuple[re.Pattern[str], str]]:
    """The catalogue's entries with ``{fields}`` as anchored patterns, most literal text first."""
    found = []
    for msgid, msgstr in catalogue(lang).items():
        if not _FIELD.search(msgid):
            continue
        parts = _FIELD.split(msgid)  # literal, name, literal, name, ...
        regex = "".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>.*?)" for i, part in enumerate(parts))
        literal = sum(len(part) for part in parts[::2])
        found.append((literal, re.compile(regex + r"\Z", re.DOTALL), msgstr))
    found.sort(key=lambda item: -item[0])
    return [(pattern, msgstr) for _literal, pattern, msgstr in found]


def localize(lang: str, text: str) -> str:
    """A finished English message (a core error, an action's result) in ``lang``: the catalogue's
    exact entry, else the first ``{field}`` entry it matches, its values carried over. Fields
    named ``reason``, ``why`` or ``what`` hold a message of their own and are localized in turn. Unknown text stays."""
    if lang == "en" or not text:
        return text
    table = catalogue(lang)
    if text in table:
        return table[text]
    for pattern, msgstr in _patterns(lang):
        match = pattern.match(text)
        if match:
            values = match.groupdict()
            for name in _NESTED & values.keys():
                values[name] = localize(lang, values[name])
            return msgstr.format(**values)
    return text


def localize_lines(lang: str, text: str) -> str:
    """Each line localized on its own, its indentation kept (the CLI's aligned reports)."""
    out = []
    for line in text.split("\n"):
        body = line.lstrip()
        out.append(line[:len(line) - len(body)] + localize(lang, body))
    return "\n".join(out)
