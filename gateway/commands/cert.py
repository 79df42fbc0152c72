"""``gateway cert``: test-lab certificates, requests to a CA, import, and inspection."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gateway.certs.authority import (
    DEFAULT_SERVER_DAYS,
    ECDSA_CERT_NAME,
    certs_folder,
    create_ca,
    load_ca,
    ensure_ecdsa_twin,
    issue_server_certificate,
    load_or_create_ca,
    write_server_certificate,
)
from gateway.certs.importer import import_certificate
from gateway.certs.inspect import fingerprint, load_local_ca
from gateway.certs.load import CertError
from gateway.certs.report import report
from gateway.certs.request import parse_ips, parse_names, write_request
from gateway.certs.sources import base_source, default_source, local_ca_file
from gateway.commands import load
from gateway.config import DEFAULT_CONFIG_NAME, ConfigError, GatewayConfig, parse_config


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("cert", help="certificates: self-signed (test lab), request, import, show")
    commands = parser.add_subparsers(dest="cert_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])

    own = commands.add_parser("self-signed", help="create (once) a local CA and a server certificate signed by it")
    own.add_argument("--name", action="append", default=[], metavar="DNS",
                     help="a DNS name to cover (repeatable; default: localhost and this computer's names)")
    own.add_argument("--ip", action="append", default=[], metavar="IP",
                     help="an IP address to cover (repeatable; default: loopback and this computer's addresses)")
    own.add_argument("--days", type=int, default=DEFAULT_SERVER_DAYS, help=f"validity (default {DEFAULT_SERVER_DAYS})")
    own.add_argument("--replace", action="store_true",
                     help="cover only the given names (default: add them to what the current certificate covers)")
    own.add_argument("--new-ca", action="store_true",
                     help="make a NEW local CA even though one exists or existed (every device must be re-enrolled)")
    own.set_defaults(func=self_signed)

    request = commands.add_parser("request", help="make a private key and a certificate request (CSR) for a CA")
    request.add_argument("--name", action="append", default=[], metavar="DNS", help="a DNS name (repeatable)")
    request.add_argument("--ip", action="append", default=[], metavar="IP", help="an IP address (repeatable)")
    request.add_argument("--org", help="organisation name for the request")
    request.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for gateway.key and gateway.csr")
    request.set_defaults(func=make_request)

    imp = commands.add_parser("import", help="install an issued certificate (PEM, DER or PFX/PKCS#12)")
    imp.add_argument("file", type=Path, metavar="FILE")
    imp.add_argument("--key", type=Path, metavar="KEYFILE", help="the private key, when FILE does not hold it")
    imp.add_argument("--password-stdin", action="store_true", help="read the PFX or key password from standard input")
    imp.add_argument("--base", metavar="ID", help="install as this base's own certificate (its id or its name) "
                                                  "instead of the default one")
    imp.add_argument("--install", action="store_true",
                     help="also write the tls: cert/key lines into the configuration (comments are kept)")
    imp.set_defaults(func=import_file)

    show = commands.add_parser("show", help="show a certificate like the SSL settings dialog, with warnings")
    show.add_argument("file", type=Path, nargs="?", metavar="FILE", help="default: the configured certificate(s)")
    show.add_argument("--password-stdin", action="store_true", help="read a PFX password from standard input")
    show.set_defaults(func=show_certificate)

    # Imported when the verb runs, to delay heavy imports (the parser loads every verb's module).
    from gateway.commands import acme  # `gateway cert acme …` lives in its own module

    acme.register(commands)


def _fail(message: object) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def _config(args: argparse.Namespace, required: bool) -> GatewayConfig | None:
    if not Path(args.config).exists():
        if not required:
            return None
        if Path(args.config) == Path(DEFAULT_CONFIG_NAME):
            # A test lab may make its certificate before writing any configuration: the
            # defaults (state folder ./state) are what `gateway run` will use later too.
            print(f"note: no {DEFAULT_CONFIG_NAME} here; using the default state folder ./state", file=sys.stderr)
            return parse_config({}, Path(DEFAULT_CONFIG_NAME).resolve())
    return load(args.config)


def _interactive() -> bool:
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def _password(args: argparse.Namespace) -> bytes | None:
    if not args.password_stdin:
        return None
    return sys.stdin.buffer.read().removeprefix(b"\xef\xbb\xbf").rstrip(b"\r\n")


def self_signed(args: argparse.Namespace) -> int:
    # Imported when the verb runs, to delay heavy imports (the parser loads every verb's module).
    from gateway.certs.caguard import check_local_ca, remember_ca, remembered_ca, ca_fingerprint, warn_new_ca
    from gateway.certs.coverage import planned_names, uncovered

    try:
        cfg = _config(args, required=True)
        assert cfg is not None
        folder = certs_folder(cfg.state_dir)
        names, ips, kept = planned_names(cfg, folder, parse_names(args.name), parse_ips(args.ip), args.replace)
        for host, why in uncovered(cfg, folder, names, ips):
            print(f"warning: the new certificate will not cover {host} ({why}); add --name/--ip {host} "
                  "to keep it", file=sys.stderr)
        if args.new_ca:
            existing = load_ca(folder) if (folder / "ca.pem").exists() else None
            previous = remembered_ca(cfg) or (ca_fingerprint(existing.certificate) if existing else None)
            folder.mkdir(parents=True, exist_ok=True)
            ca, created = create_ca(folder), True
            warn_new_ca(cfg, ca, previous)
            if previous is not None:
                print("WARNING: a NEW local CA replaced the one devices trusted; every device must be "
                      f"re-enrolled (install {ca.cert_file} on it again)", file=sys.stderr)
        else:
            check_local_ca(cfg)  # a CA that existed before is never re-made silently
            ca, created = load_or_create_ca(folder)
        remember_ca(cfg, ca)
        certificate, key = issue_server_certificate(ca, names, ips, days=args.days)
        cert_file, _ = write_server_certificate(folder, ca, certificate, key)
        ensure_ecdsa_twin(folder, ca)
    except (ConfigError, CertError) as e:
        return _fail(e)
    except OSError as e:
        return _fail(f"{e.filename}: {e.strerror}")
    print(("Created" if created else "Kept") + f" the local CA: {ca.cert_file}")
    print(f"  SHA-256 {fingerprint(ca.certificate)}")
    expires = certificate.not_valid_after_utc
    capped = " — capped at the CA's own expiry" if (expires - certificate.not_valid_before_utc).days < args.days - 1 else ""
    print(f"Server certificate: {cert_file} (valid until {expires:%Y-%m-%d}{capped})")
    print(f"  covers: {', '.join(names + [str(ip) for ip in ips])}")
    print(f"  and its ECDSA P-256 twin {folder / ECDSA_CERT_NAME} (the same names; served to clients that offer ECDSA)")
    if kept:
        print(f"  (kept from the previous certificate: {', '.join(kept)}; --replace to start over)")
    if cfg.tls.cert is not None:
        print(f"note: the config serves {cfg.tls.cert} (tls.cert); remove tls.cert/tls.key to serve this one")
    else:
        print("A running gateway picks it up within seconds. Devices must trust the local CA once:")
        print(f"  copy {ca.cert_file} to them, or turn on the enrolment page (enrolment.enabled: true).")
    return 0


def make_request(args: argparse.Namespace) -> int:
    try:
        files = write_request(args.out, parse_names(args.name), parse_ips(args.ip), args.org)
    except CertError as e:
        return _fail(e)
    except OSError as e:
        return _fail(f"{e.filename}: {e.strerror}")
    print(f"Private key: {files.key} (keep it here; never send it)")
    print(f"Request:     {files.csr}")
    print("Next:")
    print(f"  1. send {files.csr.name} to your certificate authority (the file, or paste its text);")
    print("  2. when the certificate comes back, install it:")
    print(f"       gateway cert import CERTFILE --key {files.key}")
    return 0


def import_file(args: argparse.Namespace) -> int:
    try:
        cfg = _config(args, required=True)
        assert cfg is not None
        if args.base is not None:
            base = cfg.base_by_id_or_name(args.base)
            if base is None:
                known = ", ".join(f"{b.id} ({b.name})" for b in cfg.bases) or "none"
                return _fail(f"{cfg.source}: no base with id or name {args.base!r} (bases: {known})")
            args.base = base.id
        try:
            result = import_certificate(cfg, args.file, args.key, _password(args), args.base)
        except CertError as e:
            if args.password_stdin or "password" not in str(e) or "wrong" in str(e) or not _interactive():
                raise
            # As `user add` does: on a terminal, ask instead of failing (never from argv).
            import getpass

            typed = getpass.getpass(f"Password for {args.file}: ").encode("utf-8")
            result = import_certificate(cfg, args.file, args.key, typed, args.base)
    except (ConfigError, CertError) as e:
        return _fail(e)
    except OSError as e:
        return _fail(f"{e.filename}: {e.strerror}")
    leaf = result.bundle.leaf
    print(f"Installed {leaf.subject.rfc4514_string()} ({len(result.bundle.chain)} certificate(s), leaf first)")
    print(f"  certificate: {result.cert_file}")
    print(f"  key:         {result.key_file or result.cert_file}")
    if result.covered:
        print(f"  covers: {', '.join(result.covered)}")
    for host in result.not_covered:
        print(f"warning: does not cover {host}; devices connecting to {host} will refuse it")
    from gateway.certs.inspect import is_self_signed

    if len(result.bundle.chain) == 1 and not is_self_signed(leaf):
        print(f"warning: the chain is incomplete: no certificate of the issuer ({leaf.issuer.rfc4514_string()}) "
              "came with it; devices that do not already hold that intermediate certificate will refuse the "
              "connection. Import the file with the whole chain (leaf, then intermediates), or append the "
              "issuer's certificate to it")
    from gateway.certs.inspect import describe, load_local_ca

    local_ca = load_local_ca(cfg)
    if local_ca is not None and describe(list(result.bundle.chain), local_ca).kind != "local CA":
        print(f"warning: devices that trust only this gateway's local CA ({local_ca_file(cfg)}, installed from the "
              "enrolment page or by hand) will refuse the new certificate; they need the CA that issued it "
              "(nothing to do for a public CA's certificate on ordinary devices)")
    if result.config_lines and args.install:
        from gateway.config.edit import EditError, install_tls

        try:
            install_tls(cfg.source, result.cert_file, result.key_file, args.base)
        except (EditError, OSError) as e:
            print(f"warning: could not edit {cfg.source} ({e}); add these lines yourself:")
            for line in result.config_lines:
                print(f"  {line}")
            return 1
        print(f"Wrote the tls: lines into {cfg.source} (comments kept); a running gateway reloads it by itself.")
    elif result.config_lines:
        print("Add to the configuration so the gateway serves it (or import again with --install):")
        for line in result.config_lines:
            print(f"  {line}")
    else:
        print("A running gateway picks it up within seconds; open connections continue.")
    return 0


def show_certificate(args: argparse.Namespace) -> int:
    try:
        cfg = _config(args, required=args.file is None)
    except ConfigError as e:
        return _fail(e)
    local_ca = load_local_ca(cfg)
    if args.file is not None:
        return _show_one(args.file, cfg, local_ca, _password(args))
    assert cfg is not None
    status = 0
    default = default_source(cfg)
    if cfg.tls.cert is None and not default.cert.exists():
        print("No certificate yet: the gateway creates a test certificate at its first start "
              "(or run: gateway cert self-signed).")
    else:
        print("Default certificate (bases without their own):")
        status |= _show_one(default.cert, cfg, local_ca, None)
    for base in cfg.bases:
        own = base_source(base)
        if own is not None:
            print(f"\nBase {base.name!r} ({base.id}):")
            status |= _show_one(own.cert, cfg, local_ca, None)
    if local_ca is not None:
        print(f"\nLocal CA (install on devices): {local_ca_file(cfg)}\n  SHA-256 {fingerprint(local_ca)}")
    return status


def _show_one(path: Path, cfg: GatewayConfig | None, local_ca: object, password: bytes | None) -> int:
    del local_ca  # report() finds it from cfg
    try:
        print(report(path, cfg, password))
    except CertError as e:
        return _fail(e)
    return 0
