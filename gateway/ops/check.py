"""What ``gateway check`` reports: the configuration's certificates, ports, back ends, IP lists,
policies, ACME orders and state folder, one status a base. Called by the CLI and by the console's
check page, so both say the same.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from gateway.autocert.manager import acme_bases, challenge_address
from gateway.autocert.manager import problems as autocert_problems
from gateway.certs import certificate_problems as certificate_problems_of
from gateway.certs.caguard import check_local_ca
from gateway.certs.inspect import host_for_url
from gateway.certs.device_service import expiring
from gateway.certs.devices import EXPIRY_WARNING_DAYS, load_trusted_cas
from gateway.certs.load import CertError
from gateway.config import BaseConfig, GatewayConfig
from gateway.iplist import ListUnreadable, load_list
from gateway.iplist.registry import base_lists, missing_global_lists
from gateway.ops.bypass import bypass_warnings
from gateway.ops.health import BaseStatus, check_bases, gateway_ports, listen_problem
from gateway.policy import PolicyError, load_policy
from gateway.store import StoreError, open_store, statecheck
from gateway.utils.net import is_loopback


def check(cfg: GatewayConfig, timeout: float = 1.0) -> list[BaseStatus]:
    extra: dict[str, list[str]] = {base.id: [] for base in cfg.bases}
    for base_id, problem in certificate_problems(cfg):
        extra[base_id].append(problem)
    for base_id, problems in ip_list_problems(cfg).items():
        extra[base_id] += problems
    for base_id, problem in policy_problems(cfg):
        extra[base_id].append(problem)
    for base_id, problem in acme_problems(cfg):
        extra[base_id].append(problem)
    unreadable_cas, ending = device_problems(cfg)
    for base_id, problem in unreadable_cas:
        extra[base_id].append(problem)
    ours = gateway_ports(cfg.state_dir)
    statuses = check_bases(cfg, extra, timeout, ours)
    bypass = bypass_warnings(cfg)
    for status in statuses:
        status.warnings += bypass.get(status.base_id, [])
        status.warnings += [text for base_id, text in ending if base_id == status.base_id]
    by_id = {base.id: base for base in cfg.bases}
    for status in statuses:
        base = by_id.get(status.base_id)
        if base is not None:
            status.address, warnings = _address_and_warnings(cfg, base, status.address)
            status.warnings += warnings
    return statuses + side_listener_statuses(cfg, ours)


def _address_and_warnings(cfg: GatewayConfig, base: BaseConfig, address: str) -> tuple[str, list[str]]:
    """The base's URL with a name its certificate covers (so it can be opened as shown), and what
    would weaken it: passwords in clear text, a certificate naming no address devices use."""
    if not base.https:
        if base.user_auth:
            return address, ["https: false with user_auth: true: passwords and barcodes cross the network in "
                             "clear text; turn https on for this base"]
        return address, []
    scheme, _, rest = address.partition("://")
    host, _, port = rest.rpartition(":")
    shown, warning = host_for_url(cfg, base, host)
    return f"{scheme}://{shown}:{port}", [warning] if warning else []


def certificate_problems(cfg: GatewayConfig) -> list[tuple[str, str]]:
    """(base id, problem); a problem of the default certificate belongs to every base using it."""
    own_cert = {b.id for b in cfg.bases if b.tls is not None and (b.tls.cert is not None or b.tls.acme)}
    found: list[tuple[str, str]] = []
    for owner, problem in certificate_problems_of(cfg):
        if owner is not None:
            found.append((owner, problem))
        else:
            found += [(b.id, problem) for b in cfg.bases if b.id not in own_cert]
    return found


def acme_problems(cfg: GatewayConfig) -> list[tuple[str, str]]:
    """ACME certificates close to expiry that could not be renewed (gateway/autocert)."""
    return autocert_problems(cfg)


Found = list[tuple[str, str]]


def device_problems(cfg: GatewayConfig, now: datetime.datetime | None = None) -> tuple[Found, Found]:
    """(problems, warnings) as (base id, text): an unreadable company CA file (tls.client_ca);
    device certificates of the gateway's device CA that expire within 30 days (or did), for
    every base that asks for them."""
    found: Found = []
    warnings: Found = []
    own = [b.id for b in cfg.bases if b.tls is not None and b.tls.client_auth != "off" and b.tls.client_ca is None]
    for base in cfg.bases:
        if base.tls is not None and base.tls.client_auth != "off" and base.tls.client_ca is not None:
            try:
                load_trusted_cas(base.tls.client_ca)
            except CertError as e:
                found.append((base.id, f"tls.client_ca: {e}"))
    if not own:
        return found, warnings
    now = now or datetime.datetime.now(datetime.timezone.utc)
    try:
        store = open_store(cfg.state_dir, settings=cfg.store)  # the whole section: Sentinel too
        try:
            ending = expiring(store, EXPIRY_WARNING_DAYS, now)
        finally:
            store.close()
    except StoreError as e:
        return found + [(base_id, f"device certificates: cannot read the device list ({e})") for base_id in own], []
    for device in ending:
        left = (device.expires - now.timestamp()) / 86400
        when = datetime.datetime.fromtimestamp(device.expires, datetime.timezone.utc).strftime("%Y-%m-%d")
        text = (f"device certificate {device.name} expired on {when}" if left < 0 else
                f"device certificate {device.name} expires on {when} (in {int(left)} days)")
        warnings += [(base_id, f"{text}; renew it: gateway device renew {device.name}") for base_id in own]
    return found, warnings


def ip_list_problems(cfg: GatewayConfig) -> dict[str, list[str]]:
    """Bad lines and unreadable files of each base's whitelists and blacklists."""
    missing = missing_global_lists(cfg)
    by_file: dict[Path, list[str]] = {}

    def problems_of(path: Path) -> list[str]:
        if path not in by_file:
            try:
                compiled = load_list(path)
                by_file[path] = [f"{path.name} line {e.line}: {e.reason}" for e in compiled.errors]
            except ListUnreadable as e:
                by_file[path] = [str(e)]
        return by_file[path]

    return {base_id: missing + [p for path in (*lists.whitelists, *lists.blacklists) for p in problems_of(path)]
            for base_id, lists in base_lists(cfg).items()}


def policy_problems(cfg: GatewayConfig) -> list[tuple[str, str]]:
    found = []
    for base in cfg.bases:
        if base.policy is None:
            continue
        try:
            load_policy(base.policy)
        except PolicyError as e:
            found.append((base.id, str(e)))
    return found


def side_listener_statuses(cfg: GatewayConfig, ours: set[int]) -> list[BaseStatus]:
    """The admin and enrolment listeners are checked too: a taken port there stops the start."""
    statuses = []
    for name, settings in (("admin listener", cfg.admin), ("enrolment listener", cfg.enrolment)):
        if not settings.enabled:
            continue
        # The admin listener is TLS-only off loopback (gateway/web/admin.py): show it as it answers.
        scheme = "https" if name == "admin listener" and not is_loopback(settings.host) else "http"
        status = BaseStatus(name.split()[0], name, f"{scheme}://{settings.host}:{settings.listen}")
        problem = listen_problem(settings.host, settings.listen, ours, cfg.source)
        if problem:
            status.problems.append(problem)
        statuses.append(status)
    challenge = _acme_challenge_status(cfg, ours)
    if challenge is not None:
        statuses.append(challenge)
    return statuses


def _acme_challenge_status(cfg: GatewayConfig, ours: set[int]) -> BaseStatus | None:
    # `gateway run` refuses to start when it cannot open this port: say so before, like the others.
    if cfg.acme.enabled and not acme_bases(cfg):
        status = BaseStatus("acme", "ACME", cfg.acme.directory)
        status.warnings.append("acme.enabled is true but no base names anything under bases[].tls.acme, "
                               "so nothing is ordered; add e.g. `tls: {acme: [sklad.example.ru]}` to a base")
        return status
    where = challenge_address(cfg)
    if where is None:
        return None
    host, port = where
    status = BaseStatus("acme", "ACME challenge listener", f"http://{host}:{port}")
    problem = listen_problem(host, port, ours, cfg.source)
    if problem:
        status.problems.append(f"acme.challenge_listen: {problem}")
    return status


def state_statuses(cfg: GatewayConfig) -> list[BaseStatus]:
    """The state folder, when it is not what this configuration's gateway ran with (lost, replaced),
    and the local CA devices trust, when it is missing or another one."""
    statuses = []
    problem = statecheck.fresh_state_problem(cfg)
    if problem:
        statuses.append(BaseStatus("state", "state folder", str(cfg.state_dir), [problem]))
    if cfg.tls.cert is None:
        try:
            check_local_ca(cfg)
        except CertError as e:
            statuses.append(BaseStatus("local-ca", "local CA", str(cfg.state_dir / "certs"), [str(e)]))
    return statuses
