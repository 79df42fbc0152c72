"""The rules a group or a user must satisfy before it is stored (the seed's "Users and groups").

Pure functions, no storage: uniqueness lives in the store's indexes, everything else here.
"""

from __future__ import annotations

from gateway.store.base import ROLES

# The seed's own wording, both languages, so an administrator who knows the old panel
# recognises it.
NO_OPERATION = ("a user group must have at least one operation (document type) — "
                "«Группа пользователей должна иметь хотя бы одну операцию»")
MIN_PASSWORD_LENGTH = 8  # the seed: "длина около 8 символов, прописные и строчные буквы, цифры"
MAX_SECRET_LENGTH = 256  # bounds argon2 input and the Authorization header we accept


class AccountError(Exception):
    """A refused account change, phrased for the administrator, never containing a secret."""


def check_group(name: str, role: str, doc_types: tuple[str, ...]) -> None:
    if not name.strip():
        raise AccountError("the group name is empty; give the group a name, e.g. \"Операторы ТСД\"")
    if role not in ROLES:
        raise AccountError(f"role {role!r} is unknown; use one of: {', '.join(ROLES)}")
    if not [d for d in doc_types if d.strip()]:
        raise AccountError(NO_OPERATION)


def check_user_name(name: str) -> None:
    if not name.strip():
        raise AccountError("the user name is empty; give the user a name")
    if ":" in name:
        # Basic authentication splits user and password at the first colon.
        raise AccountError(f"user name {name!r} contains ':'; HTTP Basic cannot carry it, choose another")
    if any(ord(ch) < 32 for ch in name):
        raise AccountError(f"user name {name!r} contains control characters")


def check_secret(secret: str, kind: str) -> None:
    """Shape rules that hold even when --force is given."""
    if not secret:
        raise AccountError(f"the {kind} is empty; an empty {kind} is not allowed (terminals log in by it alone)")
    if len(secret) > MAX_SECRET_LENGTH:
        raise AccountError(f"the {kind} is longer than {MAX_SECRET_LENGTH} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in secret):
        raise AccountError(f"the {kind} contains control characters (a stray line break?)")
    if secret != secret.strip():
        raise AccountError(f"the {kind} starts or ends with a space; terminals and HTTP clients drop those")


def password_weaknesses(password: str) -> list[str]:
    """What makes a password weak; empty when it is strong enough."""
    problems = []
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(f"shorter than {MIN_PASSWORD_LENGTH} characters")
    if not any(ch.isupper() for ch in password):
        problems.append("no upper-case letter")
    if not any(ch.islower() for ch in password):
        problems.append("no lower-case letter")
    if not any(ch.isdigit() for ch in password):
        problems.append("no digit")
    return problems
