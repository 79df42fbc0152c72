"""``gateway check``: the configuration, certificates, ports, back ends and IP lists, one status
line per base — the seed's "Адрес / Статус" with the real reason instead of "the underlying
connection was closed". Safe while the gateway runs: its own ports do not count as taken.
"""

from __future__ import annotations

import argparse
import json
import sys

from gateway.commands import load
from gateway.config import ConfigError
from gateway.ops.check import check, state_statuses


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "check", help="check the configuration, certificates, ports, back ends and IP lists of every base")
    parser.add_argument("--json", action="store_true", help="print a machine-readable list instead of lines")
    parser.add_argument("--timeout", type=float, default=1.0, help="seconds to wait for each back end (default 1)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        cfg = load(args.config)
    except ConfigError as e:
        if args.json:
            print(json.dumps({"ok": False, "config": str(args.config), "error": str(e)}, ensure_ascii=False))
        else:
            print(f"error: {e}", file=sys.stderr)
        return 2
    statuses = state_statuses(cfg) + check(cfg, args.timeout)
    if args.json:
        print(json.dumps([s.as_dict() for s in statuses], ensure_ascii=False, indent=2))
    else:
        if not cfg.bases:
            print(f"{cfg.source}: no bases configured")
        for status in statuses:
            print(status.line())
    return 0 if all(s.ok for s in statuses) else 1
