"""Creating and changing groups and users: the rules, the hashing, then one store call each."""

from __future__ import annotations

import logging
from dataclasses import replace

from gateway.store import keys
from gateway.accounts.rules import (
    AccountError, check_group, check_secret, check_user_name, password_weaknesses,
)
from gateway.store.base import Credential, DuplicateError, Group, NotFoundError, Store, User

logger = logging.getLogger("gateway.accounts")


class Accounts:
    def __init__(self, store: Store, secret: bytes) -> None:
        self.store = store
        self.secret = secret

    # --- lookup ---

    def group(self, id_or_name: str) -> Group:
        group = self.store.find_group(id_or_name)
        if group is None:
            raise AccountError(f"no group {id_or_name!r}; see `gateway group list`")
        return group

    def user(self, id_or_name: str) -> User:
        user = self.store.find_user(id_or_name)
        if user is None:
            raise AccountError(f"no user {id_or_name!r}; see `gateway user list`")
        return user

    # --- groups ---

    def add_group(self, name: str, role: str, doc_types: tuple[str, ...], *, offline: bool = False,
                  on_login: str = "", on_logout: str = "", group_id: str | None = None) -> Group:
        doc_types = tuple(d.strip() for d in doc_types if d.strip())
        check_group(name, role, doc_types)
        # No id given: the store allocates the next number in the same atomic step as the insert.
        group = Group(id=group_id or "", name=name.strip(), role=role,
                      doc_types=doc_types, offline=offline, on_login=on_login, on_logout=on_logout)
        try:
            group = self.store.put_group(group)
        except DuplicateError as e:
            raise AccountError(e.what) from None
        return group

    def update_group(self, id_or_name: str, *, name: str | None = None, role: str | None = None,
                     doc_types: tuple[str, ...] | None = None, offline: bool | None = None) -> tuple[Group, Group]:
        """Change a group under the same rules as a new one; returns (before, after)."""
        before = self.group(id_or_name)
        types = tuple(d.strip() for d in doc_types if d.strip()) if doc_types is not None else before.doc_types
        after = replace(before, name=name.strip() if name is not None else before.name,
                        role=role if role is not None else before.role, doc_types=types,
                        offline=offline if offline is not None else before.offline)
        check_group(after.name, after.role, after.doc_types)
        try:
            self.store.put_group(after, replace=True)
        except DuplicateError as e:
            raise AccountError(e.what) from None
        return before, after

    def remove_group(self, id_or_name: str) -> Group:
        group = self.group(id_or_name)
        try:
            self.store.remove_group(group.id)
        except (DuplicateError, NotFoundError) as e:
            raise AccountError(f"group {group.name!r}: {e}") from None
        return group

    # --- users ---

    def _credential(self, value: str, kind: str, *, force: bool = False) -> Credential:
        check_secret(value, kind)
        if kind == "password":
            problems = password_weaknesses(value)
            if problems and not force:
                raise AccountError("the password is weak (" + ", ".join(problems) + "); use at least 8 characters "
                                   "with upper- and lower-case letters and digits, or pass --force")
        return Credential(key=keys.credential_key(self.secret, value), kind=kind, hash=keys.hash_secret(value))

    @staticmethod
    def _log_if_forced(password: str, who: str) -> None:
        """Logged once the weak password is really stored, never when the change failed after all."""
        problems = password_weaknesses(password)
        if problems:
            logger.warning("weak password accepted with --force for user %r (%s)", who, ", ".join(problems),
                           extra={"event": "weak-password-forced", "user": who})

    def add_user(self, name: str, group: str, password: str, *, barcode: str | None = None,
                 description: str = "", warehouses: tuple[str, ...] = (), user_id: str | None = None,
                 force: bool = False) -> User:
        check_user_name(name)
        target = self.group(group)
        creds = [self._credential(password, "password", force=force)]
        if barcode is not None:
            creds.append(self._credential(barcode, "barcode"))
        if barcode is not None and barcode == password:
            raise AccountError("the barcode equals the password; a barcode must differ from every password")
        user = User(id=user_id or "", name=name.strip(), group_id=target.id,
                    description=description, warehouses=tuple(w.strip() for w in warehouses if w.strip()),
                    has_barcode=barcode is not None)
        try:
            user = self.store.add_user(user, tuple(creds))
        except (DuplicateError, NotFoundError) as e:
            raise AccountError(str(e)) from None
        self._log_if_forced(password, user.name)
        logger.info("user %r added to group %r", user.name, target.name, extra={"event": "user-added", "user": user.name})
        return user

    def update_user(self, id_or_name: str, *, group: str | None = None, description: str | None = None,
                    warehouses: tuple[str, ...] | None = None) -> User:
        user = self.user(id_or_name)
        changed = replace(user,
                          group_id=self.group(group).id if group is not None else user.group_id,
                          description=description if description is not None else user.description,
                          warehouses=warehouses if warehouses is not None else user.warehouses)
        self.store.put_user(changed)
        return changed

    def set_password(self, id_or_name: str, password: str, *, force: bool = False) -> User:
        user = self.user(id_or_name)
        cred = self._credential(password, "password", force=force)
        self._set(user, cred, "password")
        self._log_if_forced(password, user.name)
        logger.info("password of user %r changed", user.name, extra={"event": "password-changed", "user": user.name})
        return user

    def set_barcode(self, id_or_name: str, barcode: str | None) -> User:
        user = self.user(id_or_name)
        cred = self._credential(barcode, "barcode") if barcode is not None else None
        self._set(user, cred, "barcode")
        logger.info("barcode of user %r %s", user.name, "changed" if barcode is not None else "removed")
        return user

    def _set(self, user: User, cred: Credential | None, kind: str) -> None:
        try:
            self.store.set_credential(user.id, cred, kind)
        except (DuplicateError, NotFoundError) as e:
            raise AccountError(str(e)) from None

    def remove_user(self, id_or_name: str) -> User:
        user = self.user(id_or_name)
        try:
            self.store.remove_user(user.id)
        except NotFoundError as e:
            raise AccountError(str(e)) from None
        logger.info("user %r removed", user.name, extra={"event": "user-removed", "user": user.name})
        return user
