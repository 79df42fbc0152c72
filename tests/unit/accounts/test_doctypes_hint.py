"""Issue 23 point 15: "did you mean" offers a name only when it is close to what was typed."""

from __future__ import annotations

from gateway.accounts.doctypes import Known, check_doc_types

KNOWN = Known(names={n.casefold(): n for n in ("Поступление", "Инвентаризация", "Списание", "Расход")},
              aliases={"приход": "Поступление"}, asked=1)


def test_a_typo_gets_the_right_name() -> None:
    errors, _ = check_doc_types(("Инвентаризацыя",), KNOWN)
    assert len(errors) == 1 and "did you mean 'Инвентаризация'?" in errors[0]


def test_a_name_sharing_only_a_few_letters_gets_no_suggestion() -> None:
    for wanted in ("Склад", "Возврат", "Продажа"):
        errors, _ = check_doc_types((wanted,), KNOWN)
        assert len(errors) == 1 and "did you mean" not in errors[0], errors
        assert "it has: Инвентаризация, Поступление, Расход, Списание" in errors[0]
