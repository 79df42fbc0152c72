"""``gateway user ...`` (one user) and ``gateway users export|import`` (all of them, as YAML).

Passwords and barcodes are never taken from the command line: a prompt asks twice, or
``--password-stdin`` / ``--barcode-stdin`` read one line each from standard input (password first).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from gateway.commands._accounts import SecretReader, open_state, user_errors
from gateway.utils.private_files import write_private_text
from gateway.accounts.transfer import export_accounts, import_accounts
from gateway.auth import secondfactor
from gateway.store import User

logger = logging.getLogger("gateway.accounts")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("user", help="users: add, list, show, remove, passwd, set-barcode, reset-2fa")
    commands = parser.add_subparsers(dest="user_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    add = commands.add_parser("add", help="create a user (password asked twice, or --password-stdin)")
    add.add_argument("name", help="the user's name (login for Basic authentication)")
    add.add_argument("--group", required=True, help="group id or name")
    add.add_argument("--id", dest="user_id", help="the user's id (default: the next free number)")
    add.add_argument("--description", default="", help="free text")
    add.add_argument("--warehouse", dest="warehouses", action="append", default=[], metavar="NAME",
                     help="a warehouse the user works in (repeatable)")
    add.add_argument("--barcode", action="store_true", help="also set a barcode (asked twice)")
    _secret_flags(add, barcode=True)
    add.set_defaults(func=add_user)

    commands.add_parser("list", help="list users").set_defaults(func=list_users)
    show = commands.add_parser("show", help="show one user (never its secrets)")
    show.add_argument("user", help="id or name")
    show.set_defaults(func=show_user)
    remove = commands.add_parser("remove", help="remove a user; its sessions end at once")
    remove.add_argument("user", help="id or name")
    remove.set_defaults(func=remove_user)

    reset = commands.add_parser("reset-2fa", help="forget a console admin's two-step login (a lost phone); "
                                                  "the next console login enrols a new one")
    reset.add_argument("user", help="id or name")
    reset.set_defaults(func=reset_second_factor)

    move = commands.add_parser("move", help="move a user to another group")
    move.add_argument("user", help="id or name")
    move.add_argument("--group", required=True, help="the new group's id or name")
    move.set_defaults(func=move_user)

    passwd = commands.add_parser("passwd", help="set a new password; sessions and cached logins end at once")
    passwd.add_argument("user", help="id or name")
    _secret_flags(passwd, barcode=False)
    passwd.set_defaults(func=set_password)

    barcode = commands.add_parser("set-barcode", help="set (or --remove) the user's barcode")
    barcode.add_argument("user", help="id or name")
    barcode.add_argument("--barcode-stdin", action="store_true", help="read the barcode from standard input")
    barcode.add_argument("--remove", action="store_true", help="remove the barcode instead")
    barcode.set_defaults(func=set_barcode)

    users = subparsers.add_parser("users", help="export or import all groups and users as YAML (hashes only)")
    transfer = users.add_subparsers(dest="users_command", metavar="ACTION")
    users.set_defaults(func=lambda args: (users.print_help(), 2)[1])
    # `gateway users export` and `gateway user export` both work: people reach for either.
    for group in (transfer, commands):
        export = group.add_parser("export", help="write all groups and users to FILE as YAML, hashes only "
                                                 "('-' for standard output)")
        export.add_argument("file", metavar="FILE")
        export.set_defaults(func=export_users)
        imp = group.add_parser("import", help="add or replace the groups and users of FILE")
        imp.add_argument("file", type=Path, metavar="FILE")
        imp.set_defaults(func=import_users)


def _secret_flags(parser: argparse.ArgumentParser, *, barcode: bool) -> None:
    parser.add_argument("--password-stdin", action="store_true",
                        help="read the password from the first line of standard input")
    if barcode:
        parser.add_argument("--barcode-stdin", action="store_true",
                            help="read the barcode from the next line of standard input")
    parser.add_argument("--force", action="store_true",
                        help="accept a weak password (it is logged that you did, never the password)")


@user_errors
def add_user(args: argparse.Namespace) -> int:
    state = open_state(args.config)
    state.accounts.group(args.group)  # fail on a wrong group before asking for secrets
    reader = SecretReader()
    password = reader.read("password", args.password_stdin)
    barcode = reader.read("barcode", args.barcode_stdin) if (args.barcode or args.barcode_stdin) else None
    user = state.accounts.add_user(args.name, args.group, password, barcode=barcode, description=args.description,
                                   warehouses=tuple(args.warehouses), user_id=args.user_id, force=args.force)
    print(f"user {user.name!r} added (id {user.id}{', with barcode' if barcode is not None else ''})")
    return 0


@user_errors
def list_users(args: argparse.Namespace) -> int:
    state = open_state(args.config)
    groups = {g.id: g for g in state.store.list_groups()}
    users = state.store.list_users()
    if not users:
        print("no users; add one with `gateway user add NAME --group GROUP`")
        return 0
    print(f"{'ID':<8} {'NAME':<20} {'GROUP':<20} {'ROLE':<9} {'BARCODE':<8} DESCRIPTION")
    for u in users:
        group = groups.get(u.group_id)
        print(f"{u.id:<8} {u.name:<20} {group.name if group else u.group_id:<20} {group.role if group else '?':<9} "
              f"{'yes' if u.has_barcode else 'no':<8} {u.description}")
    return 0


def describe(user: User, group_name: str, role: str) -> str:
    return "\n".join([
        f"id:          {user.id}",
        f"name:        {user.name}",
        f"group:       {group_name} (role {role})",
        f"description: {user.description or '-'}",
        f"warehouses:  {', '.join(user.warehouses) or '-'}",
        "password:    set",
        f"barcode:     {'set' if user.has_barcode else 'none'}",
    ])


@user_errors
def show_user(args: argparse.Namespace) -> int:
    state = open_state(args.config)
    user = state.accounts.user(args.user)
    group = state.store.get_group(user.group_id)
    print(describe(user, group.name if group else user.group_id, group.role if group else "?"))
    return 0


@user_errors
def remove_user(args: argparse.Namespace) -> int:
    state = open_state(args.config)
    user = state.accounts.remove_user(args.user)
    secondfactor.remove(state.accounts.store, user.id)  # a later user given the same id starts without one
    print(f"user {user.name!r} removed")
    return 0


@user_errors
def reset_second_factor(args: argparse.Namespace) -> int:
    state = open_state(args.config)
    user = state.accounts.user(args.user)
    if not secondfactor.remove(state.accounts.store, user.id):
        print(f"user {user.name!r} has no two-step login; nothing to reset")
        return 0
    logger.warning("two-step login of user %r (id %s) reset from the command line", user.name, user.id,
                   extra={"event": "second-factor-reset", "user": user.name})
    print(f"two-step login of {user.name!r} reset; the next console login enrols a new one")
    return 0


@user_errors
def move_user(args: argparse.Namespace) -> int:
    state = open_state(args.config)
    group = state.accounts.group(args.group)
    user = state.accounts.update_user(args.user, group=group.id)
    print(f"user {user.name!r} moved to group {group.name!r} (role {group.role})")
    return 0


@user_errors
def set_password(args: argparse.Namespace) -> int:
    state = open_state(args.config)
    state.accounts.user(args.user)
    password = SecretReader().read("password", args.password_stdin)
    user = state.accounts.set_password(args.user, password, force=args.force)
    print(f"password of {user.name!r} changed; its sessions and cached logins have ended")
    return 0


@user_errors
def set_barcode(args: argparse.Namespace) -> int:
    state = open_state(args.config)
    state.accounts.user(args.user)
    if args.remove:
        user = state.accounts.set_barcode(args.user, None)
        print(f"barcode of {user.name!r} removed")
        return 0
    barcode = SecretReader().read("barcode", args.barcode_stdin)
    user = state.accounts.set_barcode(args.user, barcode)
    print(f"barcode of {user.name!r} set")
    return 0


@user_errors
def export_users(args: argparse.Namespace) -> int:
    state = open_state(args.config)
    text = export_accounts(state.store, state.accounts.secret)
    if args.file == "-":
        sys.stdout.write(text)
    else:
        # Hashes of every password and barcode: owner-only, like the keys in the state folder.
        write_private_text(Path(args.file), text)
        print(f"groups and users written to {args.file} (hashes only)", file=sys.stderr)
    return 0


@user_errors
def import_users(args: argparse.Namespace) -> int:
    state = open_state(args.config)
    text = args.file.read_text(encoding="utf-8-sig")
    groups, users = import_accounts(state.store, state.accounts.secret, text, args.file)
    print(f"imported {groups} group(s) and {users} user(s) from {args.file}")
    return 0
