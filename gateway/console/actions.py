"""What the console's buttons do: each action calls the same core function as the CLI command
(``Accounts``, ``Throttle.lift``, the list editor, ``import_certificate``) and returns what
happened in words, for the page and for the audit event. Pure of HTTP: the form arrives as a
dict, uploaded files as bytes.

An action never puts a secret into its result: passwords and barcodes are checked and stored,
and the audit text says only that one was set.
"""

from __future__ import annotations

import logging
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from gateway.accounts.rules import AccountError
from gateway.auth import secondfactor
from gateway.accounts.service import Accounts
from gateway.certs.device_service import enrol, renew, revoke
from gateway.certs.devices import DEFAULT_DEVICE_DAYS
from gateway.certs.device_links import create_link
from gateway.certs.enrolment import link_url
from gateway.certs.importer import import_certificate
from gateway.certs.load import CertError
from gateway.config import GatewayConfig
from gateway.config.edit import EditError, install_tls
from gateway.iplist.edit import check_text, read_list_file, save_list_file
from gateway.iplist.files import ListUnreadable
from gateway.store import StoreError
from gateway.auth.throttle import Throttle
from gateway.accounts.doctypes import check_doc_types, known_doc_types

logger = logging.getLogger("gateway.console")


class ActionRefused(Exception):
    """The change was not made; the text says why (the CLI's own message where there is one)."""


@dataclass
class Form:
    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)

    def get(self, name: str) -> str:
        return self.fields.get(name, "")

    def required(self, name: str, label: str) -> str:
        value = self.get(name).strip()
        if not value:
            raise ActionRefused(f"{label} is empty")
        return value


@dataclass(frozen=True)
class Done:
    message: str  # for the page
    audit: str  # for the security log: what changed, before/after, never a secret
    # Set when a list with bad lines waits for the admin's confirmation; nothing was saved.
    unsaved_text: str | None = None
    unsaved_errors: tuple[str, ...] = ()
    base: str = ""  # the base the change concerns, for the events page's filter
    # A device certificate just issued (PKCS#12 bytes and its password): put on the answer page
    # once, never into ``message`` or ``audit``.
    issued: object | None = None
    # A one-time enrolment link just made: (NewLink, its URL), shown once like ``issued``.
    link: object | None = None
    block: str = ""  # text to show as is, in lines (YAML to paste), below the message


@dataclass
class Context:
    cfg: GatewayConfig
    accounts: Accounts
    throttle: Throttle


def _doc_types(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for line in raw.splitlines() for part in line.split(",") if part.strip())


def _twice(form: Form, what: str, first: str, second: str) -> str:
    value = form.get(first)
    if value != form.get(second):
        raise ActionRefused(f"the two {what}s differ; nothing was changed")  # the CLI's prompt message
    return value


# --- groups ------------------------------------------------------------------------------------


def _checked_doc_types(ctx: Context, names: tuple[str, ...]) -> str:
    """The back end's own check, as `gateway group add/edit` makes it; returns the warnings' text."""
    errors, warnings = check_doc_types(names, known_doc_types(ctx.cfg))
    if errors:
        raise ActionRefused("; ".join(e.replace("use --doc-type ", "use ") for e in errors) + "; nothing was changed")
    return "".join(f" (warning: {w})" for w in warnings)


def group_add(ctx: Context, form: Form) -> Done:
    names = _doc_types(form.get("doc_types"))
    warnings = _checked_doc_types(ctx, names)
    group = ctx.accounts.add_group(form.get("name"), form.get("role"), names, offline=form.get("offline") == "on")
    return Done(f"group {group.name!r} added (id {group.id}, role {group.role}, {len(group.doc_types)} "
                f"document types){warnings}",
                f"added group {group.name!r} (id {group.id}): role {group.role}, document types "
                f"{', '.join(group.doc_types)}")


def group_edit(ctx: Context, form: Form) -> Done:
    names = _doc_types(form.get("doc_types"))
    current = ctx.accounts.group(form.required("group", "the group"))
    # Only names the admin changed are asked about: a group kept as it was saves as it was.
    warnings = _checked_doc_types(ctx, tuple(n for n in names if n not in current.doc_types))
    before, after = ctx.accounts.update_group(
        current.id, name=form.get("name") or None, role=form.get("role") or None,
        doc_types=names, offline=form.get("offline") == "on")
    changes = []
    if before.name != after.name:
        changes.append(f"name {before.name!r} → {after.name!r}")
    if before.role != after.role:
        changes.append(f"role {before.role} → {after.role}")
    if before.doc_types != after.doc_types:
        changes.append(f"document types {', '.join(before.doc_types)} → {', '.join(after.doc_types)}")
    if before.offline != after.offline:
        changes.append(f"offline work {'yes' if before.offline else 'no'} → {'yes' if after.offline else 'no'}")
    what = "; ".join(changes) or "nothing changed"
    return Done(f"group {after.name!r} changed: {what}{warnings}",
                f"changed group {after.name!r} (id {after.id}): {what}")


def group_remove(ctx: Context, form: Form) -> Done:
    group = ctx.accounts.remove_group(form.required("group", "the group"))
    return Done(f"group {group.name!r} removed",
                f"removed group {group.name!r} (id {group.id}, role {group.role}, document types "
                f"{', '.join(group.doc_types)})")


# --- users -------------------------------------------------------------------------------------


def user_add(ctx: Context, form: Form) -> Done:
    name = form.get("name")
    group = ctx.accounts.group(form.required("group", "the group"))  # a wrong group first, as the CLI
    password = _twice(form, "password", "password", "password2")
    barcode = None
    if form.get("barcode") or form.get("barcode2"):
        barcode = _twice(form, "barcode", "barcode", "barcode2")
    user = ctx.accounts.add_user(name, group.id, password, barcode=barcode, description=form.get("description"),
                                 force=form.get("force") == "on")
    with_barcode = ", with barcode" if barcode is not None else ""
    return Done(f"user {user.name!r} added (id {user.id}{with_barcode})",
                f"added user {user.name!r} (id {user.id}) to group {group.name!r} (role {group.role}); "
                f"password set{with_barcode}")


def user_password(ctx: Context, form: Form) -> Done:
    user = ctx.accounts.user(form.required("user", "the user"))
    password = _twice(form, "password", "password", "password2")
    user = ctx.accounts.set_password(user.id, password, force=form.get("force") == "on")
    return Done(f"password of {user.name!r} changed; its sessions and cached logins have ended",
                f"reset the password of user {user.name!r} (id {user.id})")


def user_barcode(ctx: Context, form: Form) -> Done:
    user = ctx.accounts.user(form.required("user", "the user"))
    if form.get("remove") == "on":
        had = user.has_barcode
        user = ctx.accounts.set_barcode(user.id, None)
        return Done(f"barcode of {user.name!r} removed",
                    f"removed the barcode of user {user.name!r} (id {user.id}); before: "
                    f"{'set' if had else 'none'}, after: none")
    barcode = _twice(form, "barcode", "barcode", "barcode2")
    before = "set" if user.has_barcode else "none"
    user = ctx.accounts.set_barcode(user.id, barcode)
    return Done(f"barcode of {user.name!r} set",
                f"set the barcode of user {user.name!r} (id {user.id}); before: {before}, after: set")


def user_move(ctx: Context, form: Form) -> Done:
    user = ctx.accounts.user(form.required("user", "the user"))
    old = ctx.accounts.store.get_group(user.group_id)
    new = ctx.accounts.group(form.required("group", "the group"))
    ctx.accounts.update_user(user.id, group=new.id)
    old_name = old.name if old else user.group_id
    return Done(f"user {user.name!r} moved to group {new.name!r}",
                f"moved user {user.name!r} (id {user.id}) from group {old_name!r} to group {new.name!r} "
                f"(role {new.role})")


def user_remove(ctx: Context, form: Form) -> Done:
    user = ctx.accounts.remove_user(form.required("user", "the user"))
    secondfactor.remove(ctx.accounts.store, user.id)  # a later user given the same id starts without one
    return Done(f"user {user.name!r} removed", f"removed user {user.name!r} (id {user.id})")


# --- bans --------------------------------------------------------------------------------------


def ban_lift(ctx: Context, form: Form) -> Done:
    target = form.required("target", "the address or user name")
    forgotten = ctx.throttle.lift(target)
    if not forgotten:
        raise ActionRefused(f"{target} had no recent failed logins; nothing to lift")
    # The same event the CLI logs, so the events page shows it whichever way it was lifted.
    logger.info("ban lifted for %s (%d failed login(s) forgotten)", target, forgotten,
                extra={"event": "ban-lifted", "target": target})
    return Done(f"lifted: {forgotten} failed login(s) of {target} forgotten",
                f"lifted the ban of {target} ({forgotten} failed login(s) forgotten)")


# --- IP lists ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListRef:
    key: str  # what forms and links carry: never a path
    path: Path
    kind: str  # "whitelist" or "blacklist"
    base: str  # the base's name, or "" for a global list


def list_files(cfg: GatewayConfig) -> list[ListRef]:
    """Every list file the configuration names: the global ones, then each base's own."""
    refs = []
    for kind, paths in (("whitelist", cfg.ip_lists.whitelist), ("blacklist", cfg.ip_lists.blacklist)):
        refs += [ListRef(f"global-{kind}-{i}", Path(p), kind, "") for i, p in enumerate(paths)]
    for base in cfg.bases:
        refs.append(ListRef(f"base-{base.id}-whitelist", base.whitelist_file, "whitelist", base.name))
        refs.append(ListRef(f"base-{base.id}-blacklist", base.blacklist_file, "blacklist", base.name))
    return refs


def find_list(cfg: GatewayConfig, key: str) -> ListRef:
    for ref in list_files(cfg):
        if ref.key == key:
            return ref
    raise ActionRefused(f"no list {key!r} in the configuration; open the IP lists page again")


def list_save(ctx: Context, form: Form) -> Done:
    ref = find_list(ctx.cfg, form.required("list", "the list"))
    text = form.get("text")
    errors = check_text(text)
    try:
        current = read_list_file(ref.path)
    except ListUnreadable as e:
        raise ActionRefused(str(e)) from None
    if errors and form.get("confirm") != "yes":
        return Done("", "", unsaved_text=text, unsaved_errors=tuple(str(e) for e in errors))
    before = sum(1 for line in current.lines() if line.strip())
    after_lines = [line for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n") if line.strip()]
    try:
        save_list_file(current, text)
    except OSError as e:
        raise ActionRefused(f"{ref.path}: cannot be written ({e.strerror or e})") from None
    bad = f", {len(errors)} bad line(s) kept after confirmation" if errors else ""
    added = sorted(set(after_lines) - set(current.lines()))
    removed = sorted({line for line in current.lines() if line.strip()} - set(after_lines))
    detail = "; ".join(part for part in (
        f"added {', '.join(a.strip() for a in added[:10])}{' …' if len(added) > 10 else ''}" if added else "",
        f"removed {', '.join(r.strip() for r in removed[:10])}{' …' if len(removed) > 10 else ''}"
        if removed else "") if part) or "no line changed"
    return Done(f"{ref.path} saved ({len(after_lines)} non-empty line(s){bad}); the gateway applies it within "
                "seconds",
                f"edited {ref.path}: {before} → {len(after_lines)} non-empty line(s){bad}; {detail}", base=ref.base)


# --- certificates ------------------------------------------------------------------------------


def certificate_upload(ctx: Context, form: Form) -> Done:
    base_id = form.get("base") or None
    cert = form.files.get("cert", b"")
    if not cert:
        raise ActionRefused("no certificate file chosen; choose a PFX/P12 file, or a PEM certificate (and its key)")
    key = form.files.get("key", b"")
    password = form.get("password").encode("utf-8") or None
    # import_certificate reads files, as `gateway cert import` does: the upload goes to a private
    # folder in the state folder, under the names the person chose (they show in its messages).
    folder = Path(ctx.cfg.state_dir) / f".upload-{secrets.token_hex(8)}"
    folder.mkdir(mode=0o700, parents=True)
    try:
        cert_file = folder / _safe_name(form.get("cert_name") or "certificate.pfx")
        cert_file.write_bytes(cert)
        key_file = None
        if key:
            key_file = folder / _safe_name(form.get("key_name") or "private.key")
            key_file.write_bytes(key)
        try:
            result = import_certificate(ctx.cfg, cert_file, key_file, password, base_id)
        except CertError as e:
            raise ActionRefused(str(e).replace(str(folder) + "/", "").replace(str(folder), "")) from None
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    leaf = result.bundle.leaf
    target = f"base {base_id}" if base_id else "the default certificate"
    lines = [f"installed {leaf.subject.rfc4514_string()} as {target} ({len(result.bundle.chain)} certificate(s)) "
             f"into {result.cert_file}"]
    lines += [f"warning: does not cover {host}; devices connecting to {host} will refuse it"
              for host in result.not_covered]
    block = ""
    configured = ""
    if result.config_lines and form.get("install") == "on":
        # What `gateway cert import --install` does: the comment-keeping editor, checked by the
        # parser before it replaces the file; the running gateway reloads the file by itself.
        try:
            install_tls(ctx.cfg.source, result.cert_file, result.key_file, base_id)
        except (EditError, OSError) as e:
            lines.append(f"could not edit {ctx.cfg.source} ({e}); add these lines yourself:")
            block = "\n".join(result.config_lines)
        else:
            lines.append(f"wrote the tls: lines into {ctx.cfg.source} (comments kept); the gateway reloads it "
                         "within seconds")
            configured = f"; wrote tls: lines into {ctx.cfg.source}"
    elif result.config_lines:
        lines.append("add to the configuration so the gateway serves it (or upload again with "
                     "\"Install into the configuration\"):")
        block = "\n".join(result.config_lines)
    else:
        lines.append("a running gateway picks it up within seconds; open connections continue")
    return Done("\n".join(lines),
                f"installed certificate {leaf.subject.rfc4514_string()} (valid until "
                f"{leaf.not_valid_after_utc:%Y-%m-%d}) as {target} in {result.cert_file}{configured}",
                base=_base_name(ctx.cfg, base_id), block=block)


# --- devices -----------------------------------------------------------------------------------

def _device_days(form: Form) -> int:
    raw = form.get("days").strip() or str(DEFAULT_DEVICE_DAYS)
    if not raw.isdigit() or int(raw) < 1:
        raise ActionRefused(f"days must be a whole number of days, at least 1 (got {raw!r})")
    return int(raw)


def device_add(ctx: Context, form: Form) -> Done:
    name = form.required("name", "device name")
    user_id = ""
    if form.get("user").strip():
        user = ctx.accounts.store.find_user(form.get("user").strip())
        if user is None:
            raise ActionRefused(f"no user {form.get('user').strip()!r}")
        user_id = user.id
    if form.get("link") == "on":
        return _device_link(ctx, name, user_id, form)
    try:
        issued = enrol(ctx.cfg.state_dir, ctx.accounts.store, name, user=user_id, days=_device_days(form),
                       legacy=form.get("legacy") == "on")
    except CertError as e:
        raise ActionRefused(str(e)) from None
    bound = f", bound to user {form.get('user').strip()!r}" if user_id else ""
    return Done(f"device {name} enrolled (serial {issued.device.serial}){bound}",
                f"enrolled device {name} (serial {issued.device.serial}){bound}", issued=issued)


def _device_link(ctx: Context, name: str, user_id: str, form: Form) -> Done:
    if not (ctx.cfg.enrolment.enabled and ctx.cfg.enrolment.https):
        raise ActionRefused("a one-time link needs the enrolment page over HTTPS: set enrolment.enabled: true "
                            "and enrolment.https: true in the configuration")
    try:
        link = create_link(ctx.accounts.store, name, user=user_id, days=_device_days(form),
                           legacy=form.get("legacy") == "on")
    except (CertError, StoreError) as e:
        raise ActionRefused(str(e)) from None
    return Done(f"one-time link for device {name} created: it works once, for 15 minutes",
                f"created a one-time enrolment link for device {name}",
                link=(link, link_url(ctx.cfg, link.path())))


def device_renew(ctx: Context, form: Form) -> Done:
    name = form.required("name", "device name")
    try:
        issued = renew(ctx.cfg.state_dir, ctx.accounts.store, name, days=_device_days(form),
                       legacy=form.get("legacy") == "on")
    except CertError as e:
        raise ActionRefused(str(e)) from None
    return Done(f"device {name} renewed (serial {issued.device.serial}); the old certificate is refused",
                f"renewed device {name}: new serial {issued.device.serial}, the old one refused", issued=issued)


def device_revoke(ctx: Context, form: Form) -> Done:
    name = form.required("name", "device name")
    device = revoke(ctx.accounts.store, name)
    return Done(f"device {name} revoked; refused within 2 s on every gateway",
                f"revoked device {name} (serial {device.serial})")


def _base_name(cfg: GatewayConfig, base_id: str | None) -> str:
    base = cfg.base_by_id(base_id) if base_id else None
    return base.name if base is not None else ""


def _safe_name(name: str) -> str:
    name = Path(name.replace("\\", "/")).name
    return "".join(ch if ch.isalnum() or ch in "-_. " else "_" for ch in name)[:100] or "upload"


ACTIONS: dict[str, Callable[[Context, Form], Done]] = {
    "/console/groups/add": group_add,
    "/console/groups/edit": group_edit,
    "/console/groups/remove": group_remove,
    "/console/users/add": user_add,
    "/console/users/password": user_password,
    "/console/users/barcode": user_barcode,
    "/console/users/move": user_move,
    "/console/users/remove": user_remove,
    "/console/bans/lift": ban_lift,
    "/console/iplists/save": list_save,
    "/console/certificates/upload": certificate_upload,
    "/console/devices/add": device_add,
    "/console/devices/renew": device_renew,
    "/console/devices/revoke": device_revoke,
}


def run_action(path: str, ctx: Context, form: Form) -> Done:
    """Raises ActionRefused with the reason (AccountError's and StoreError's texts are the CLI's)."""
    try:
        return ACTIONS[path](ctx, form)
    except (AccountError, StoreError) as e:
        raise ActionRefused(str(e)) from None
