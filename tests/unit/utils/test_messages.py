"""The message catalogue: the .po reader, exact and patterned messages, the system language."""

from __future__ import annotations

import re

import pytest

from gateway.utils import messages

PO = r'''
msgid ""
msgstr "Content-Type: text/plain; charset=UTF-8\n"

msgid "Log in"
msgstr "Войти"

#, fuzzy
msgid "Draft"
msgstr "Черновик"

msgid "two "
"lines"
msgstr "две "
"строки"

msgid "untranslated"
msgstr ""
'''


def test_po_reader_takes_translated_non_fuzzy_entries() -> None:
    assert messages.parse_po(PO) == {"Log in": "Войти", "two lines": "две строки"}


def test_the_shipped_catalogue_is_whole() -> None:
    table = messages.catalogue("ru")
    assert len(table) > 300
    for english, russian in table.items():
        # a translation keeps every {field} of its English text, so filling it never fails
        assert set(re.findall(r"\{(\w+)\}", english)) == set(re.findall(r"\{(\w+)\}", russian)), english


def test_finished_messages_are_localized_with_their_values() -> None:
    assert messages.localize("ru", "user 'петров' added (id 4)") == "пользователь 'петров' добавлен (id 4)"
    assert messages.localize("ru", "configuration reloaded (configuration file changed): 2 base(s); ports opened "
                             "none, closed none").startswith("конфигурация перечитана (файл конфигурации изменён)")
    assert messages.localize("ru", "something nobody wrote down") == "something nobody wrote down"
    assert messages.localize("en", "user 'x' removed") == "user 'x' removed"
    assert messages.localize_lines("ru", "  Names:       a, b") == "  Имена:       a, b"


@pytest.mark.parametrize(("env", "lang"), [({"LANG": "ru_RU.UTF-8"}, "ru"), ({"LANG": "en_US.UTF-8"}, "en"),
                                           ({"LC_ALL": "ru_RU.UTF-8", "LANG": "C"}, "ru"),
                                           ({"LC_ALL": "C.UTF-8", "LANG": "ru_RU.UTF-8"}, "en")])
def test_the_system_language(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], lang: str) -> None:
    for name in ("LC_ALL", "LC_MESSAGES", "LANG", "LANGUAGE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert messages.system_language() == lang
