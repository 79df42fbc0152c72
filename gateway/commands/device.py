"""``gateway device add|list|revoke|renew``: device certificates for bases with
``tls.client_auth`` (the gateway's own device CA in the state folder)."""

from __future__ import annotations

import argparse
import datetime
import logging
from pathlib import Path

from gateway.commands._accounts import open_state, user_errors
from gateway.certs.device_service import Issued, enrol, renew, revoke
from gateway.certs.devices import DEFAULT_DEVICE_DAYS
from gateway.store.devices import last_seen, read_registry
from gateway.certs.device_links import LINK_SECONDS, create_link
from gateway.certs.enrolment import link_url
from gateway.utils.files import atomic_write

logger = logging.getLogger("gateway.devices")

LEGACY_HELP = ("write the PKCS#12 file in the old form (3DES, SHA-1 MAC) with an RSA key, for Android "
               "before 10 and other old terminals that refuse the modern AES form with 'wrong password' "
               "or cannot use ECDSA keys; the file is weaker against password guessing, keep it private")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("device", help="device certificates (mutual TLS): add, list, revoke, renew")
    commands = parser.add_subparsers(dest="device_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    add = commands.add_parser("add", help="issue a device certificate as a password-protected PKCS#12 file")
    add.add_argument("name", help="the device's name, e.g. tsd-07 (letters, digits, '.', '-', '_')")
    add.add_argument("--user", default="", help="bind the device to this user (id or name)")
    add.add_argument("--days", type=int, default=DEFAULT_DEVICE_DAYS, help=f"validity (default {DEFAULT_DEVICE_DAYS})")
    add.add_argument("--legacy-p12", action="store_true", help=LEGACY_HELP)
    add.add_argument("--out", type=Path, help="where to write the file (default: ./NAME.p12)")
    add.add_argument("--link", action="store_true",
                     help="write no file: print a one-time HTTPS link (and its QR code) for the terminal, and the "
                          "code to type there, which is also the file's password; the link works once, for 15 minutes "
                          "(needs enrolment.enabled and enrolment.https)")
    add.add_argument("--link-seconds", type=float, default=LINK_SECONDS, help=argparse.SUPPRESS)  # tests only
    add.set_defaults(func=add_device)

    commands.add_parser("list", help="enrolled devices: user, serial, dates, revoked").set_defaults(func=list_devices)

    rev = commands.add_parser("revoke", help="refuse the device's certificate from now on (within 2 s everywhere)")
    rev.add_argument("name")
    rev.set_defaults(func=revoke_device)

    ren = commands.add_parser("renew", help="issue a new certificate for the device; the old one is refused")
    ren.add_argument("name")
    ren.add_argument("--days", type=int, default=DEFAULT_DEVICE_DAYS)
    ren.add_argument("--legacy-p12", action="store_true", help=LEGACY_HELP)
    ren.add_argument("--out", type=Path, help="where to write the file (default: ./NAME.p12)")
    ren.set_defaults(func=renew_device)


def _user_id(state, user: str) -> str:  # type: ignore[no-untyped-def]
    if not user:
        return ""
    found = state.store.find_user(user)
    if found is None:
        raise ValueError(f"no user {user!r}; gateway user list shows them")
    return str(found.id)


def _hand_over(issued: Issued, out: Path | None, done: str, event: str) -> int:
    """Write the device's file, print where it is and its one-time password, and audit the step."""
    path = out or Path(f"{issued.device.name}.p12")
    atomic_write(path, issued.p12, 0o600)
    expires = datetime.datetime.fromtimestamp(issued.device.expires, datetime.timezone.utc)
    print(f"device {issued.device.name}: serial {issued.device.serial}, expires {expires:%Y-%m-%d}")
    print(f"file: {path} (install it on the terminal: Settings → Security → Install a certificate)")
    print(f"password (shown once, not stored): {issued.password}")
    logger.info("device %s %s (serial %s)", issued.device.name, done, issued.device.serial,
                extra={"event": event, "target": issued.device.name})
    return 0


@user_errors
def add_device(args: argparse.Namespace) -> int:
    state = open_state(args.config)
    if args.link:
        return _add_link(state, args)
    issued = enrol(state.config.state_dir, state.store, args.name, user=_user_id(state, args.user),
                   days=args.days, legacy=args.legacy_p12)
    return _hand_over(issued, args.out, "enrolled", "device-added")


def _add_link(state, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
    enrolment = state.config.enrolment
    if not (enrolment.enabled and enrolment.https):
        raise ValueError("--link needs the enrolment page over HTTPS: set enrolment.enabled: true and "
                         "enrolment.https: true in the configuration")
    link = create_link(state.store, args.name, user=_user_id(state, args.user), days=args.days,
                       legacy=args.legacy_p12, lifetime=args.link_seconds)
    url = link_url(state.config, link.path())
    print(f"one-time link for device {args.name} (works once, until "
          f"{datetime.datetime.fromtimestamp(link.expires):%H:%M}):")
    print(f"link: {url}")
    print(f"code (type it on the terminal; it is also the file's password): {link.code}")
    try:
        import qrcode  # only here: the terminal's QR code is a nicety of --link
        qr = qrcode.QRCode(border=1)
        qr.add_data(url)
        qr.print_ascii(invert=True)
    except Exception:
        pass
    logger.info("one-time enrolment link created for device %s", args.name,
                extra={"event": "device-link-created", "target": args.name})
    return 0


@user_errors
def renew_device(args: argparse.Namespace) -> int:
    state = open_state(args.config)
    issued = renew(state.config.state_dir, state.store, args.name, days=args.days, legacy=args.legacy_p12)
    return _hand_over(issued, args.out, "renewed; the old certificate is refused", "device-renewed")


@user_errors
def revoke_device(args: argparse.Namespace) -> int:
    state = open_state(args.config)
    device = revoke(state.store, args.name)
    print(f"device {device.name} revoked (serial {device.serial}); refused within 2 s on every gateway")
    logger.warning("device %s revoked (serial %s)", device.name, device.serial,
                   extra={"event": "device-revoked", "target": device.name})
    return 0


def _date(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%d") if ts else "-"


def _moment(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M") if ts else "-"


@user_errors
def list_devices(args: argparse.Namespace) -> int:
    state = open_state(args.config)
    devices = read_registry(state.store).devices
    if not devices:
        print("no devices enrolled; gateway device add NAME enrols one")
        return 0
    names = {u.id: u.name for u in state.store.list_users()}
    print(f"{'NAME':<20} {'USER':<14} {'SERIAL':<42} {'ISSUED':<10} {'EXPIRES':<10} {'REVOKED':<10} {'LAST SEEN':<16}")
    for d in sorted(devices, key=lambda d: d.name):
        user = names.get(d.user, d.user) or "-"
        print(f"{d.name:<20} {user:<14} {d.serial:<42} {_date(d.issued):<10} {_date(d.expires):<10} "
              f"{_date(d.revoked):<10} {_moment(last_seen(state.store, d.name)):<16}")
    return 0
