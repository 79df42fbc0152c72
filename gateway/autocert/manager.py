"""Which ACME certificates are due, ordering them one gateway at a time, and installing them.

Called from the running gateway's renewal loop (in a worker thread: the `acme` package is
synchronous) and from `gateway cert acme renew`. The certificate file is replaced atomically;
the TLS addon's file watcher then serves it to new connections while open ones continue.
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from cryptography import x509

from gateway.certs import acme_storage as storage
from gateway.autocert.schedule import renewal_time, retry_delay
from gateway.config.acme import split_names
from gateway.config import BaseConfig, GatewayConfig
from gateway.certs.authority import certs_folder, issue_server_certificate, load_or_create_ca
from gateway.certs.install import key_pem
from gateway.store import open_store

if TYPE_CHECKING:
    from gateway.autocert.order import AcmeSession

logger = logging.getLogger("gateway.acme")

LOCK_NAME = "acme-order"
# Long enough for a slow CA (an order's timeout plus network); a crashed holder frees it then.
LOCK_SECONDS = 300.0
# A certificate this close to expiry that could not be renewed is a problem for check/readyz.
EXPIRY_ALARM = datetime.timedelta(days=7)
PLACEHOLDER_DAYS = 2


def now_utc() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def acme_bases(cfg: GatewayConfig) -> list[BaseConfig]:
    return [b for b in cfg.bases if b.tls is not None and b.tls.acme] if cfg.acme.enabled else []


def challenge_host(cfg: GatewayConfig) -> str:
    """The HTTP-01 listener's host: every IPv4 address when the gateway listens on all of them."""
    return cfg.listen_host if cfg.listen_host not in ("", "::") else "0.0.0.0"


def challenge_address(cfg: GatewayConfig) -> tuple[str, int] | None:
    """Where the running gateway's HTTP-01 listener binds: only when some base orders a
    certificate. None: not at all."""
    if not (acme_bases(cfg) and cfg.acme.challenge_listen):
        return None
    return challenge_host(cfg), cfg.acme.challenge_listen


# --- the served file ------------------------------------------------------------------------


def ensure_placeholder(cfg: GatewayConfig, base: BaseConfig) -> Path:
    """The base's certificate file, created from the local CA until the first ACME certificate
    arrives: the base serves from the start, and the arrival is an ordinary file swap."""
    path = storage.certificate_file(cfg.state_dir, base.id)
    if path.exists():
        return path
    from cryptography.hazmat.primitives import serialization

    names = list(base.tls.acme if base.tls else ())
    ca, _ = load_or_create_ca(certs_folder(cfg.state_dir))
    certificate, key = issue_server_certificate(ca, *split_names(names), days=PLACEHOLDER_DAYS)
    chain = (certificate.public_bytes(serialization.Encoding.PEM)
             + ca.certificate.public_bytes(serialization.Encoding.PEM))
    storage.write_private(path, chain + key_pem(key))
    status = storage.read_status(cfg.state_dir, base.id)
    status.issued, status.names = False, names
    storage.write_status(cfg.state_dir, base.id, status)
    return path


def served_leaf(cfg: GatewayConfig, base: BaseConfig) -> x509.Certificate | None:
    try:
        return x509.load_pem_x509_certificates(storage.certificate_file(cfg.state_dir, base.id).read_bytes())[0]
    except (OSError, ValueError, IndexError):
        return None


def leaf_names(leaf: x509.Certificate) -> set[str]:
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {n.lower() for n in san.get_values_for_type(x509.DNSName)} | {
        str(ip) for ip in san.get_values_for_type(x509.IPAddress)}


# --- what is due -----------------------------------------------------------------------------


def due_reason(cfg: GatewayConfig, base: BaseConfig, now: datetime.datetime, force: bool = False) -> str | None:
    """Why ``base`` needs an order now, or None."""
    status = storage.read_status(cfg.state_dir, base.id)
    if force:
        return "renewal forced"
    if status.next_attempt is not None and status.failures and now < status.next_attempt:
        return None  # backing off after a failure
    leaf = served_leaf(cfg, base)
    if leaf is None or not status.issued:
        return "no certificate from the CA yet"
    wanted = set(base.tls.acme if base.tls else ())
    if leaf_names(leaf) != wanted:
        return "the configured names changed"
    when = renewal_time(leaf.not_valid_before_utc, leaf.not_valid_after_utc, status.ari_renewal)
    if now >= when:
        return "renewal time reached" + (" (the CA's renewal information asked for it)"
                                         if status.ari_renewal is not None and status.ari_renewal <= now else "")
    return None


def lock_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Outcome:
    base_id: str
    ok: bool
    message: str


def renew_due(cfg: GatewayConfig, *, force: bool = False, only: str | None = None,
              store: Any = None, now: Callable[[], datetime.datetime] = now_utc) -> list[Outcome]:
    """Order every due certificate (or ``only`` one base). Returns what happened per base
    (bases not due are left out). Another gateway holding the order lock: nothing is done.
    ``store``: the gateway's store (opened and closed here when not given)."""
    if store is None:
        if not acme_bases(cfg):
            return []
        opened = _open_store(cfg)
        try:
            return renew_due(cfg, force=force, only=only, store=opened, now=now)
        finally:
            opened.close()  # type: ignore[attr-defined]
    bases = [b for b in acme_bases(cfg) if only is None or b.id == only]
    adopt_shared(cfg, store, bases)

    def due_now() -> list[tuple[BaseConfig, str]]:
        return [(b, r) for b in bases if (r := due_reason(cfg, b, now(), force)) is not None]

    due = due_now()
    if not due:
        return []
    owner = lock_owner()
    if not store.try_lock(LOCK_NAME, owner, LOCK_SECONDS):
        logger.info("another gateway is ordering certificates; its result will be served here")
        return [Outcome(b.id, False, "another gateway is ordering now; try again in a minute") for b, _ in due]
    try:
        # Again under the lease: the gateway that held it may have just renewed these.
        adopt_shared(cfg, store, bases)
        return _order_all(cfg, due_now(), now, store)
    finally:
        store.unlock(LOCK_NAME, owner)


def _open_store(cfg: GatewayConfig) -> object:
    return open_store(cfg.state_dir, settings=cfg.store)


def _order_all(cfg: GatewayConfig, due: list[tuple[BaseConfig, str]],
               now: Callable[[], datetime.datetime], store: Any) -> list[Outcome]:
    # The ACME client (acme, josepy, requests) is loaded when an order is due, not when the TLS
    # addon imports this module in every gateway process.
    from gateway.autocert.order import AcmeError, AcmeSession

    outcomes = []
    session: AcmeSession | None = None
    for base, reason in due:
        status = storage.read_status(cfg.state_dir, base.id)
        logger.info("ordering a certificate for base %r (%s) from %s: %s", base.name, reason,
                    cfg.acme.directory, ", ".join(base.tls.acme if base.tls else ()))
        try:
            if session is None:
                session = AcmeSession(cfg.acme, cfg.state_dir, store)
            issued = session.order(base)
            storage.write_private(storage.certificate_file(cfg.state_dir, base.id), issued.pem)
            _share(store, base, issued.pem)
        except AcmeError as e:
            outcomes.append(Outcome(base.id, False, _record_failure(cfg, base, status, str(e), now())))
            continue
        leaf = x509.load_pem_x509_certificates(issued.chain_pem)[0]
        status = storage.Status(names=list(base.tls.acme if base.tls else ()), issued=True,
                                issuer=leaf.issuer.rfc4514_string(), not_before=leaf.not_valid_before_utc,
                                not_after=leaf.not_valid_after_utc)
        status.ari_renewal, status.ari_next_check = session.renewal_info(issued.chain_pem)
        status.next_renewal = renewal_time(leaf.not_valid_before_utc, leaf.not_valid_after_utc, status.ari_renewal)
        storage.write_status(cfg.state_dir, base.id, status)
        message = (f"certificate for base {base.name!r} installed: {', '.join(sorted(leaf_names(leaf)))}, "
                   f"issued by {status.issuer}, expires {_fmt(leaf.not_valid_after_utc)}, "
                   f"renewal planned {_fmt(status.next_renewal)}")
        logger.info(message, extra={"event": "acme-certificate-installed", "base": base.name})
        outcomes.append(Outcome(base.id, True, message))
    return outcomes


def _share(store: Any, base: BaseConfig, pem: bytes) -> None:
    try:
        store.put_shared(storage.shared_certificate_key(base.id), pem.decode("ascii"))
    except Exception as e:  # noqa: BLE001 — this machine serves it anyway
        logger.warning("certificate for base %r not shared with the other gateways: %s", base.name, e)


def adopt_shared(cfg: GatewayConfig, store: Any, bases: list[BaseConfig]) -> list[str]:
    """Serve a certificate another gateway ordered (shared through the store) when it covers
    this base's names and lasts longer than the one served here. Returns the base ids taken."""
    taken = []
    for base in bases:
        try:
            shared = store.get_shared(storage.shared_certificate_key(base.id))
        except Exception as e:  # noqa: BLE001 — the local certificate keeps serving
            logger.warning("shared ACME certificate for base %r not readable: %s", base.name, e)
            continue
        if not shared:
            continue
        pem = shared.encode("ascii")
        try:
            leaf = x509.load_pem_x509_certificates(pem)[0]
        except ValueError:
            continue
        if leaf_names(leaf) != set(base.tls.acme if base.tls else ()):
            continue
        status = storage.read_status(cfg.state_dir, base.id)
        current = served_leaf(cfg, base)
        if status.issued and current is not None and current.not_valid_after_utc >= leaf.not_valid_after_utc:
            continue
        storage.write_private(storage.certificate_file(cfg.state_dir, base.id), pem)
        storage.write_status(cfg.state_dir, base.id, storage.Status(
            names=list(base.tls.acme if base.tls else ()), issued=True, issuer=leaf.issuer.rfc4514_string(),
            not_before=leaf.not_valid_before_utc, not_after=leaf.not_valid_after_utc,
            next_renewal=renewal_time(leaf.not_valid_before_utc, leaf.not_valid_after_utc, None)))
        logger.info("certificate for base %r taken from the shared store (ordered by another gateway), "
                    "expires %s", base.name, _fmt(leaf.not_valid_after_utc))
        taken.append(base.id)
    return taken


def _record_failure(cfg: GatewayConfig, base: BaseConfig, status: storage.Status, problem: str,
                    now: datetime.datetime) -> str:
    status.failures += 1
    status.last_error, status.last_error_at = problem, now
    status.next_attempt = now + retry_delay(status.failures, status.not_after, now)
    storage.write_status(cfg.state_dir, base.id, status)
    message = (f"certificate order for base {base.name!r} failed: {problem} — "
               f"next attempt {_fmt(status.next_attempt)}; the current certificate keeps serving")
    logger.error(message, extra={"event": "acme-renewal-failed", "base": base.name})
    return message


def refresh_renewal_info(cfg: GatewayConfig, now: datetime.datetime | None = None) -> None:
    """Ask the CA (ARI) about issued certificates whose check time has come; a suggestion
    earlier than the plan moves the renewal forward."""
    from gateway.autocert.order import AcmeError, AcmeSession

    now = now or now_utc()
    session: AcmeSession | None = None
    for base in acme_bases(cfg):
        status = storage.read_status(cfg.state_dir, base.id)
        if not status.issued or (status.ari_next_check is not None and now < status.ari_next_check):
            continue
        try:
            chain = storage.certificate_file(cfg.state_dir, base.id).read_bytes().split(b"-----BEGIN PRIVATE")[0]
            session = session or AcmeSession(cfg.acme, cfg.state_dir)
        except (OSError, AcmeError) as e:
            status.ari_next_check = now + datetime.timedelta(hours=1)
            storage.write_status(cfg.state_dir, base.id, status)
            logger.warning("renewal information for base %r not checked: %s", base.name, e)
            continue
        status.ari_renewal, status.ari_next_check = session.renewal_info(chain)
        if status.not_before and status.not_after:
            status.next_renewal = renewal_time(status.not_before, status.not_after, status.ari_renewal)
        storage.write_status(cfg.state_dir, base.id, status)


def seconds_to_next_check(cfg: GatewayConfig, longest: float, now: datetime.datetime | None = None) -> float:
    """How long the renewal loop may sleep: until the earliest renewal, retry or ARI check,
    at most ``longest`` — so a certificate living hours (or seconds, in tests) renews on time."""
    now = now or now_utc()
    moments = []
    for base in acme_bases(cfg):
        status = storage.read_status(cfg.state_dir, base.id)
        leaf = served_leaf(cfg, base)
        if status.failures and status.next_attempt is not None:
            moments.append(status.next_attempt)
        elif status.issued and leaf is not None:
            moments.append(renewal_time(leaf.not_valid_before_utc, leaf.not_valid_after_utc, status.ari_renewal))
            if status.ari_next_check is not None:
                moments.append(status.ari_next_check)
    if not moments:
        return longest
    return min(longest, max(1.0, (min(moments) - now).total_seconds()))


def problems(cfg: GatewayConfig, now: datetime.datetime | None = None) -> list[tuple[str, str]]:
    """(base id, problem) for `gateway check` and /readyz: a certificate close to expiry (or
    expired) that the last attempt could not renew, or none from the CA at all after failures."""
    now = now or now_utc()
    found = []
    for base in acme_bases(cfg):
        status = storage.read_status(cfg.state_dir, base.id)
        leaf = served_leaf(cfg, base)
        if leaf is None:
            continue
        expires = leaf.not_valid_after_utc
        lifetime = expires - leaf.not_valid_before_utc
        alarm = min(EXPIRY_ALARM, lifetime / 3)
        if status.issued and expires - now > alarm:
            continue
        if not status.issued and not status.failures:
            continue  # first order still pending
        error = f": {status.last_error}" if status.last_error else ""
        if not status.issued:
            found.append((base.id, f"no ACME certificate yet (a temporary local-CA one serves){error}"))
        elif now >= expires:
            found.append((base.id, f"ACME certificate expired {_fmt(expires)} and could not be renewed{error}"))
        else:
            found.append((base.id, f"ACME certificate expires {_fmt(expires)} and could not be renewed{error}"))
    return found


def _fmt(moment: datetime.datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "—"
