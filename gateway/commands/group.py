"""``gateway group add|list|show|remove``: user groups, their role and document types."""

from __future__ import annotations

import argparse

from gateway.commands._accounts import open_state, user_errors
from gateway.store import ROLES, Group
from gateway.utils import table


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("group", help="user groups: role, document types, operations")
    commands = parser.add_subparsers(dest="group_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    add = commands.add_parser("add", help="create a group")
    add.add_argument("name", help="the group's name, e.g. \"Операторы ТСД\"")
    add.add_argument("--role", required=True, choices=ROLES,
                     help="mobile: work on terminals; external: exchange with the accounting system, REST API; "
                          "admin: configuration")
    add.add_argument("--doc-type", dest="doc_types", action="append", default=[], metavar="TYPE",
                     help="a document type the group may work with (repeatable, or comma-separated; at least one)")
    add.add_argument("--id", dest="group_id", help="the group's id (default: the next free number)")
    add.add_argument("--offline", action="store_true", help="allow offline work (the seed's «Автономная работа»)")
    add.add_argument("--on-login", default="", metavar="OPERATION", help="operation run when a user logs in")
    add.add_argument("--on-logout", default="", metavar="OPERATION", help="operation run when a user logs out")
    add.add_argument("--no-doc-type-check", action="store_true",
                     help="do not check the document types against the back ends' /api/v1/DocTypes")
    add.set_defaults(func=add_group)

    edit = commands.add_parser("edit", help="change a group's name, role, document types or offline work")
    edit.add_argument("group", help="id or name")
    edit.add_argument("--name", help="a new name")
    edit.add_argument("--role", choices=ROLES, help="a new role")
    edit.add_argument("--doc-type", dest="doc_types", action="append", default=None, metavar="TYPE",
                      help="the document types (repeatable, or comma-separated; replaces the old ones; at least one)")
    edit.add_argument("--offline", action=argparse.BooleanOptionalAction, default=None,
                      help="allow (--offline) or forbid (--no-offline) offline work")
    edit.add_argument("--no-doc-type-check", action="store_true",
                      help="do not check the document types against the back ends' /api/v1/DocTypes")
    edit.set_defaults(func=edit_group)

    commands.add_parser("list", help="list groups").set_defaults(func=list_groups)
    show = commands.add_parser("show", help="show one group and its users")
    show.add_argument("group", help="id or name")
    show.set_defaults(func=show_group)
    remove = commands.add_parser("remove", help="remove a group that has no users")
    remove.add_argument("group", help="id or name")
    remove.set_defaults(func=remove_group)


def _doc_types(raw: list[str]) -> tuple[str, ...]:
    return tuple(part.strip() for item in raw for part in item.split(",") if part.strip())


def _checked_doc_types(args: argparse.Namespace, cfg: object) -> tuple[str, ...] | None:
    """The names given, or None (after saying why) when the back end does not know one."""
    # Imported when the verb runs, to delay heavy imports (the parser loads every verb's module).
    import sys

    from gateway.accounts.doctypes import check_doc_types, known_doc_types

    names = _doc_types(args.doc_types)
    if not names or args.no_doc_type_check:
        return names
    errors, warnings = check_doc_types(names, known_doc_types(cfg))  # type: ignore[arg-type]
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if errors:
        print("nothing was changed (--no-doc-type-check keeps the names as given)", file=sys.stderr)
        return None
    return names


@user_errors
def add_group(args: argparse.Namespace) -> int:
    state = open_state(args.config)
    if _checked_doc_types(args, state.config) is None:
        return 1
    group = state.accounts.add_group(args.name, args.role, _doc_types(args.doc_types), offline=args.offline,
                                     on_login=args.on_login, on_logout=args.on_logout, group_id=args.group_id)
    print(f"group {group.name!r} added (id {group.id}, role {group.role}, {len(group.doc_types)} document types)")
    return 0


@user_errors
def edit_group(args: argparse.Namespace) -> int:
    state = open_state(args.config)
    doc_types = None
    if args.doc_types is not None:
        doc_types = _checked_doc_types(args, state.config)
        if doc_types is None:
            return 1
    _, group = state.accounts.update_group(args.group, name=args.name, role=args.role, doc_types=doc_types,
                                           offline=args.offline)
    print(f"group {group.name!r} changed (id {group.id}, role {group.role}, "
          f"document types: {', '.join(group.doc_types)})")
    return 0


def describe(group: Group) -> str:
    return "\n".join([
        f"id:           {group.id}",
        f"name:         {group.name}",
        f"role:         {group.role}",
        f"offline work: {'yes' if group.offline else 'no'}",
        f"on login:     {group.on_login or '-'}",
        f"on logout:    {group.on_logout or '-'}",
        f"document types: {', '.join(group.doc_types)}",
    ])


@user_errors
def list_groups(args: argparse.Namespace) -> int:
    groups = open_state(args.config).store.list_groups()
    if not groups:
        print("no groups; add one with `gateway group add NAME --role mobile --doc-type TYPE`")
        return 0
    rows = [(g.id, g.name, g.role, ", ".join(g.doc_types)) for g in groups]
    print("\n".join(table.render(("ID", "NAME", "ROLE", "DOCUMENT TYPES"), rows)))
    return 0


@user_errors
def show_group(args: argparse.Namespace) -> int:
    state = open_state(args.config)
    group = state.accounts.group(args.group)
    print(describe(group))
    members = [u.name for u in state.store.list_users() if u.group_id == group.id]
    print(f"users:        {', '.join(members) if members else '-'}")
    return 0


@user_errors
def remove_group(args: argparse.Namespace) -> int:
    group = open_state(args.config).accounts.remove_group(args.group)
    print(f"group {group.name!r} removed")
    return 0
