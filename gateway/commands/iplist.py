"""``gateway iplist check|test``: validate a list file; ask who would be let in and why."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from gateway.commands import load
from gateway.config import ConfigError
from gateway.iplist import IpLists, ListUnreadable, client_address, load_list


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("iplist", help="IP allow and deny lists (whitelist.dat, blacklist.dat)")
    commands = parser.add_subparsers(dest="iplist_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    check = commands.add_parser("check", help="read a list file: count its entries and show every bad line")
    check.add_argument("file", type=Path, metavar="FILE")
    check.set_defaults(func=check_file)

    test = commands.add_parser("test", help="would this address be let in? which file and line decide it")
    test.add_argument("address", metavar="ADDRESS")
    test.add_argument("--base", metavar="ID", help="only this base (its id or its name); default: every base")
    test.set_defaults(func=test_address)


def check_file(args: argparse.Namespace) -> int:
    path: Path = args.file
    try:
        compiled = load_list(path)
    except ListUnreadable as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not compiled.present:
        print(f"error: {path}: no such file", file=sys.stderr)
        return 2
    print(compiled.describe())
    for error in compiled.errors:
        print(f"{path}:{error.line}: {error.reason} (the line reads {error.text!r})")
    if compiled.errors:
        print(f"{len(compiled.errors)} bad line(s) are ignored; the other {compiled.entries} entries apply. "
              "Fix or remove them.")
        return 1
    return 0


def test_address(args: argparse.Namespace) -> int:
    try:
        client_address(args.address)
    except ValueError as e:
        print(f"error: {e}; give one address such as 192.168.1.10 or 2001:db8::1", file=sys.stderr)
        return 2
    # Bad lines are printed below as warnings; the watcher's log records would repeat them.
    quiet = logging.getLogger("gateway.ipfilter")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False  # the terminal would otherwise show each bad line twice
    try:
        cfg = load(args.config)
        lists = IpLists()
        lists.configure(cfg)
    except (ConfigError, ListUnreadable) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    bases = cfg.bases
    if args.base is not None:
        # The id, or the name people see everywhere else ("Магазин 15"), case-insensitively.
        bases = tuple(base for base in cfg.bases if base.id == args.base) or tuple(
            base for base in cfg.bases if base.name.casefold() == args.base.strip().casefold())
        if not bases:
            known = "; ".join(f"{base.id} ({base.name})" for base in cfg.bases) or "none"
            print(f"error: no base with id {args.base!r} (nor with that name) in {cfg.source}; known bases: {known}",
                  file=sys.stderr)
            return 2
    if not bases:
        print(f"error: {cfg.source} configures no bases", file=sys.stderr)
        return 2
    for compiled in lists.watcher.all():
        for error in compiled.errors:
            print(f"warning: {compiled.path}:{error.line}: {error.reason} (ignored)", file=sys.stderr)
    for base in bases:
        decision = lists.decide(base.id, args.address)
        print(f"base {base.name!r} ({base.id}): {args.address} {decision}")
    return 0
