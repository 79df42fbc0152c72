"""``gateway bans list|lift``: addresses and accounts refused for too many failed logins."""

from __future__ import annotations

import argparse
import logging

from gateway.commands._accounts import open_state, user_errors
from gateway.auth.throttle import Throttle
from gateway.utils import table
from gateway.utils.display import shown

logger = logging.getLogger("gateway.bans")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("bans", help="addresses and users locked out by failed logins or HTTP/2 reset floods")
    commands = parser.add_subparsers(dest="bans_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
    commands.add_parser("list", help="who is refused right now, and for how long").set_defaults(func=list_bans)
    lift = commands.add_parser("lift", help="forget the failed logins of an address or a user name "
                                            "(and end an address's reset ban)")
    lift.add_argument("target", metavar="ADDRESS|USER")
    lift.set_defaults(func=lift_ban)


def _throttle(args: argparse.Namespace) -> Throttle:
    state = open_state(args.config)
    return Throttle(state.store, state.config.throttle)


@user_errors
def list_bans(args: argparse.Namespace) -> int:
    throttle = _throttle(args)
    bans = throttle.bans()
    if not bans:
        print("no address or user is locked out")
        return 0
    rows = []
    for ban in bans:
        # The failure key holds the login folded to lower case; show the name as it is stored.
        user = throttle.store.find_user(ban.target) if ban.kind == "user" else None
        rows.append((ban.kind, user.name if user is not None else ban.target, "-" if ban.short else ban.failures,
                     f"{ban.retry_after:.0f}s"))
    print("\n".join(table.render(("KIND", "ADDRESS OR USER", "FAILURES", "FREE IN"), rows, right=(2, 3))))
    return 0


@user_errors
def lift_ban(args: argparse.Namespace) -> int:
    forgotten = _throttle(args).lift(args.target)
    if not forgotten:
        print(f"{shown(args.target)} had no recent failed logins; nothing to lift")
        return 0
    print(f"lifted: {forgotten} failed login(s) of {shown(args.target)} forgotten")
    logger.info("ban lifted for %s (%d failed login(s) forgotten)", args.target, forgotten,
                extra={"event": "ban-lifted", "target": args.target})
    return 0
