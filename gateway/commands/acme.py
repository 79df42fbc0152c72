"""``gateway cert acme status`` and ``gateway cert acme renew [--base ID] [--force]``."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import sys
from typing import Any, Iterator

from gateway.commands import load
from gateway.config import ConfigError, GatewayConfig


def register(cert_commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = cert_commands.add_parser("acme", help="automatic certificates from an ACME CA (Let's Encrypt): status, renew")
    actions = parser.add_subparsers(dest="acme_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    status = actions.add_parser("status", help="per base: names, issuer, expiry, next renewal, last error")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(func=show_status)

    renew = actions.add_parser("renew", help="order the certificates that are due now (or all with --force)")
    renew.add_argument("--base", metavar="ID", help="only this base (its id or name)")
    renew.add_argument("--force", action="store_true", help="order even when the certificate is not due yet")
    renew.set_defaults(func=renew_now)


def _fail(message: object, code: int = 1) -> int:
    print(f"error: {message}", file=sys.stderr)
    return code


def _acme_config(args: argparse.Namespace) -> GatewayConfig:
    cfg = load(args.config)
    if not cfg.acme.enabled:
        raise ConfigError(cfg.source, "acme.enabled", "is off; turn it on and list names in a base's tls.acme")
    # Imported when the verb runs, to delay heavy imports (the parser loads every verb's module).
    from gateway.autocert.manager import acme_bases

    if not acme_bases(cfg):
        raise ConfigError(cfg.source, "bases", "no base has tls.acme; list the names its certificate must cover")
    return cfg


def _fmt(moment: datetime.datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "—"


def base_report(cfg: GatewayConfig, base_id: str) -> dict[str, Any]:
    # Imported when the verb runs, to delay heavy imports (the parser loads every verb's module).
    from gateway.certs import acme_storage as storage
    from gateway.autocert.manager import leaf_names, served_leaf
    from gateway.autocert.schedule import renewal_time

    base = cfg.base_by_id(base_id)
    assert base is not None and base.tls is not None
    status = storage.read_status(cfg.state_dir, base.id)
    leaf = served_leaf(cfg, base)
    issued = status.issued and leaf is not None
    next_renewal = (renewal_time(leaf.not_valid_before_utc, leaf.not_valid_after_utc, status.ari_renewal)
                    if issued and leaf is not None else None)
    if status.failures and status.next_attempt is not None:
        next_renewal = status.next_attempt if next_renewal is None else min(next_renewal, status.next_attempt)
    return {
        "base": base.id, "name": base.name, "names": list(base.tls.acme),
        "certificate": str(storage.certificate_file(cfg.state_dir, base.id)),
        "issued": issued,
        "covers": sorted(leaf_names(leaf)) if leaf is not None else [],
        "issuer": (leaf.issuer.rfc4514_string() if leaf is not None else ""),
        "expires": _fmt(leaf.not_valid_after_utc) if leaf is not None else None,
        "next_renewal": _fmt(next_renewal) if next_renewal else ("at the next check" if not issued else None),
        "ari_suggestion": _fmt(status.ari_renewal) if status.ari_renewal else None,
        "last_error": status.last_error or None,
        "last_error_at": _fmt(status.last_error_at) if status.last_error_at else None,
        "failures": status.failures,
    }


def show_status(args: argparse.Namespace) -> int:
    try:
        cfg = _acme_config(args)
    except ConfigError as e:
        return _fail(e, 2)
    # Imported when the verb runs, to delay heavy imports (the parser loads every verb's module).
    from gateway.autocert.manager import acme_bases, problems

    reports = [base_report(cfg, b.id) for b in acme_bases(cfg)]
    if args.json:
        print(json.dumps({"directory": cfg.acme.directory, "bases": reports}, ensure_ascii=False, indent=2))
    else:
        print(f"ACME directory: {cfg.acme.directory}" + (f" (profile {cfg.acme.profile})" if cfg.acme.profile else ""))
        for r in reports:
            print(f"\nBase {r['name']!r} ({r['base']}):")
            print(f"  Names:        {', '.join(r['names'])}")
            if r["issued"]:
                print(f"  Issuer:       {r['issuer']}")
            else:
                print("  Issuer:       (none yet — a temporary certificate from the local CA serves)")
            print(f"  Expires:      {r['expires'] or '—'}")
            print(f"  Next renewal: {r['next_renewal'] or '—'}"
                  + (f" (the CA's renewal information suggests {r['ari_suggestion']})" if r["ari_suggestion"] else ""))
            if r["last_error"]:
                print(f"  Last error:   {r['last_error_at']}: {r['last_error']} ({r['failures']} failed attempt(s))")
            else:
                print("  Last error:   none")
    return 1 if problems(cfg) else 0


def renew_now(args: argparse.Namespace) -> int:
    try:
        cfg = _acme_config(args)
    except ConfigError as e:
        return _fail(e, 2)
    # Imported when the verb runs, to delay heavy imports (the parser loads every verb's module).
    from gateway.autocert.manager import acme_bases, renew_due

    if args.base is not None:
        # The id, or the name shown everywhere else, as `iplist test --base` takes it.
        wanted = args.base.strip().casefold()
        base = next((b for b in cfg.bases if b.id == args.base), None) or next(
            (b for b in cfg.bases if b.name.casefold() == wanted), None)
        if base is None:
            known = "; ".join(f"{b.id} ({b.name})" for b in acme_bases(cfg)) or "none"
            return _fail(f"no base with id {args.base!r} (nor with that name) in {cfg.source}; "
                         f"bases with tls.acme: {known}", 2)
        if base.id not in {b.id for b in acme_bases(cfg)}:
            return _fail(f"base {base.name!r} ({base.id}) has no tls.acme in {cfg.source}", 2)
        args.base = base.id
    try:
        with _challenge_responder(cfg):
            outcomes = renew_due(cfg, force=args.force, only=args.base)
    except OSError as e:
        return _fail(e)
    except Exception as e:  # the store: StoreError names it
        from gateway.store import StoreError

        if not isinstance(e, StoreError):
            raise
        return _fail(e)
    if not outcomes:
        print("Nothing is due; use --force to order anyway. Planned renewals:")
        for b in acme_bases(cfg):
            if args.base is None or b.id == args.base:
                print(f"  {b.name} ({b.id}): {base_report(cfg, b.id)['next_renewal'] or '—'}")
        return 0
    for outcome in outcomes:
        print(outcome.message if outcome.ok else f"error: {outcome.message}", file=sys.stdout if outcome.ok else sys.stderr)
    if all(o.ok for o in outcomes):
        print("A running gateway serves the new certificate within seconds; open connections continue.")
    return 0 if all(o.ok for o in outcomes) else 1


@contextlib.contextmanager
def _challenge_responder(cfg: GatewayConfig) -> Iterator[None]:
    """HTTP-01 answers: the running gateway's challenge listener when there is one (it reads the
    same files), else a listener of our own for the time of the order."""
    # Imported when the verb runs, to delay heavy imports (the parser loads every verb's module).
    from gateway.autocert.challenge import StandaloneResponder
    from gateway.autocert.manager import challenge_host
    from gateway.ops.health import read_run_files, process_alive

    host = challenge_host(cfg)
    port = cfg.acme.challenge_listen
    try:
        responder = StandaloneResponder(cfg.state_dir, host, port)
    except OSError as e:
        if any(process_alive(info.pid) for info in read_run_files(cfg.state_dir)):
            yield  # the running gateway holds the port and answers
            return
        raise OSError(f"acme.challenge_listen: port {port} on {host} is taken by another program "
                      f"({e.strerror}); the CA could not reach the HTTP-01 answer — stop that program or "
                      "forward another port to acme.challenge_listen") from None
    with responder:
        yield
