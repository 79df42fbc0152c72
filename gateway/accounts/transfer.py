"""Export and import of groups and users as YAML: hashes only, never a password or barcode.

The keyed hashes in an export only mean something with the same HMAC key, so the file carries
the key's fingerprint and an import into a state folder with another key is refused (copy the
key file, which is deliberately not in the export).
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any

import yaml

from gateway.store import keys
from gateway.accounts.rules import AccountError, check_group, check_user_name
from gateway.store.base import CREDENTIAL_KINDS, Credential, DuplicateError, Group, Store, User

FORMAT = "tls-gateway-users/1"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def export_accounts(store: Store, secret: bytes) -> str:
    groups = [{"id": g.id, "name": g.name, "role": g.role, "offline": g.offline,
               "doc_types": list(g.doc_types), "on_login": g.on_login, "on_logout": g.on_logout}
              for g in store.list_groups()]
    users = []
    for u in store.list_users():
        entry: dict[str, Any] = {"id": u.id, "name": u.name, "group": u.group_id,
                                 "description": u.description, "warehouses": list(u.warehouses)}
        for cred in store.credentials_of(u.id):
            entry[cred.kind] = {"key": cred.key, "hash": cred.hash}
        users.append(entry)
    document = {"format": FORMAT, "secret_fingerprint": keys.secret_fingerprint(secret),
                "groups": groups, "users": users}
    header = ("# Groups and users of a TLS gateway. Only hashes: no password or barcode is in this file.\n"
              f"# Import with `gateway users import FILE` into a state folder holding the same {keys.SECRET_FILE}.\n")
    return header + yaml.safe_dump(document, allow_unicode=True, sort_keys=False)


class _Where:
    def __init__(self, source: Path) -> None:
        self.source = source

    def fail(self, key: str, problem: str) -> AccountError:
        return AccountError(f"{self.source}: {key}: {problem}")


def _text(where: _Where, data: dict[str, Any], key: str, path: str, default: str | None = None) -> str:
    value = data.get(key, default)
    if value is None:
        raise where.fail(f"{path}.{key}", "is missing")
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise where.fail(f"{path}.{key}", f"must be text, got {type(value).__name__}")
    return value


def _list(where: _Where, data: dict[str, Any], key: str, path: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, (str, int)) for v in value):
        raise where.fail(f"{path}.{key}", "must be a list of names")
    return tuple(str(v) for v in value)


def parse_accounts(text: str, source: Path, secret: bytes) -> tuple[list[Group], list[tuple[User, list[Credential]]]]:
    where = _Where(source)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        raise where.fail(f"line {mark.line + 1}" if mark else "YAML", "not valid YAML") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise where.fail("format", f"is not {FORMAT!r}; this is not a file written by `gateway users export`")
    if data.get("secret_fingerprint") != keys.secret_fingerprint(secret):
        raise where.fail("secret_fingerprint",
                         f"the export was made with another {keys.SECRET_FILE}; copy that file from the "
                         "exporting gateway's state folder into this one (the export never contains it)")
    groups = []
    for i, raw in enumerate(data.get("groups") or []):
        path = f"groups[{i}]"
        if not isinstance(raw, dict):
            raise where.fail(path, "must be a mapping")
        group = Group(id=_text(where, raw, "id", path), name=_text(where, raw, "name", path),
                      role=_text(where, raw, "role", path), doc_types=_list(where, raw, "doc_types", path),
                      offline=bool(raw.get("offline", False)), on_login=_text(where, raw, "on_login", path, ""),
                      on_logout=_text(where, raw, "on_logout", path, ""))
        try:
            check_group(group.name, group.role, group.doc_types)
        except AccountError as e:
            raise where.fail(path, str(e)) from None
        groups.append(group)
    users = []
    for i, raw in enumerate(data.get("users") or []):
        path = f"users[{i}]"
        if not isinstance(raw, dict):
            raise where.fail(path, "must be a mapping")
        user = User(id=_text(where, raw, "id", path), name=_text(where, raw, "name", path),
                    group_id=_text(where, raw, "group", path), description=_text(where, raw, "description", path, ""),
                    warehouses=_list(where, raw, "warehouses", path))
        try:
            check_user_name(user.name)
        except AccountError as e:
            raise where.fail(path, str(e)) from None
        creds = []
        for kind in CREDENTIAL_KINDS:
            item = raw.get(kind)
            if item is None:
                continue
            if not isinstance(item, dict) or not _HEX64.match(str(item.get("key", ""))) \
                    or not keys.is_argon2id_hash(str(item.get("hash", ""))):
                raise where.fail(f"{path}.{kind}", "must hold a 64-hex-digit key and an $argon2id$ hash")
            creds.append(Credential(key=item["key"], kind=kind, hash=item["hash"], user_id=user.id))
        if not any(c.kind == "password" for c in creds):
            raise where.fail(path, "has no password; every user needs one")
        users.append((user, creds))
    return groups, users


def import_accounts(store: Store, secret: bytes, text: str, source: Path) -> tuple[int, int]:
    """Add or replace the file's groups and users; everything is checked before anything is written."""
    groups, users = parse_accounts(text, source, secret)
    # SQLite: the whole file in one transaction, so an admin editing meanwhile sees it all or none.
    atomically = getattr(store, "atomically", contextlib.nullcontext)
    with atomically():
        for group in groups:
            store.put_group(group, replace=True)
        for user, creds in users:
            # Try the insert first rather than asking whether the user exists: another admin may
            # add it between a question and the write; the insert's own check is atomic.
            try:
                store.add_user(user, tuple(creds))
                continue
            except DuplicateError:
                if store.get_user(user.id) is None:
                    raise  # a clash of name or secret with another user, not this user already there
            store.put_user(user)
            for kind in CREDENTIAL_KINDS:
                store.set_credential(user.id, next((c for c in creds if c.kind == kind), None), kind)
    return len(groups), len(users)
