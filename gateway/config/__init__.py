"""The gateway's configuration: one YAML file, validated on load into frozen dataclasses.

Every error names the file, the key path (``bases[1].data.listen``) and what to do about it,
because the people editing this file are warehouse administrators, not Python developers.
Relative paths in the file are resolved against the file's own folder, so a configuration
works the same whichever directory the gateway is started from.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

import yaml

from gateway.config.acme import AcmeSettings, parse_acme, parse_names
from gateway.config.acme import validate as validate_acme
from gateway.config.reader import ConfigError, _Reader, parse_size
from gateway.config.scale import ProxyProtocolSettings, optional_proxy_protocol, parse_proxy_protocol, parse_workers
from gateway.config.limits import LimitSettings, RequestRate, parse_limits, parse_request_rate

DEFAULT_CONFIG_NAME = "gateway.yaml"
# Bodies above this are streamed, not held in memory; 4 MiB keeps typical OData pages
# (a few hundred KiB) inspectable while multi-MB product lists pass through in chunks.
DEFAULT_STREAM_THRESHOLD = 4 * 1024 * 1024
# nginx's proxy_read_timeout is 60 s; the legacy server's slow exports fit inside it.
DEFAULT_BACKEND_TIMEOUT = 60.0
DEFAULT_CONNECT_TIMEOUT = 10.0
# An idle client's back-end connection is closed after this (nginx's upstream keepalive_timeout):
# a terminal left idle all shift then holds one descriptor, not two; its next request reconnects.
DEFAULT_KEEPALIVE_TIMEOUT = 15.0
TLS_VERSIONS = ("1.2", "1.3")


@dataclass(frozen=True)
class Endpoint:
    """One public listener of a base and the back-end address it forwards to."""

    listen: int
    backend: str
    enabled: bool = True
    proxy_protocol: ProxyProtocolSettings | None = None  # None: the top-level proxy_protocol applies

    # Read on every request (Routing): parsed once per endpoint, which is immutable; a reload
    # makes new endpoints.
    @cached_property
    def backend_host(self) -> str:
        return urlsplit(self.backend).hostname or ""

    @cached_property
    def backend_port(self) -> int:
        parts = urlsplit(self.backend)
        return parts.port or (443 if parts.scheme == "https" else 80)


@dataclass(frozen=True)
class CertPair:
    cert: Path | None = None
    key: Path | None = None
    password_file: Path | None = None
    acme: tuple[str, ...] = ()  # names/IPs of a certificate ordered from acme.directory
    # Device certificates (mutual TLS): off, optional or required; a base's key only.
    client_auth: str = "off"
    # A company CA trusted for device certificates instead of the gateway's own device CA.
    client_ca: Path | None = None


@dataclass(frozen=True)
class BaseConfig:
    id: str
    name: str
    folder: Path
    data: Endpoint
    print: Endpoint | None = None
    comment: str = ""
    https: bool = True
    user_auth: bool = False
    login_by_barcode: bool = False
    whitelist_only: bool = False
    tls: CertPair | None = None
    hsts: int = 0
    policy: Path | None = None
    forward_authorization: bool = True
    compress: bool = False
    backups: bool = False
    backup_retention_days: int = 30
    websocket: bool = False  # allow WebSocket upgrades (other upgrades and CONNECT are always refused)
    client_max_body_size: int | None = None  # bytes, overrides limits.client_max_body_size; 0 = no limit
    proxy_redirect: bool = True  # nginx's proxy_redirect default: the back end's address in Location → the client's
    # limits.rate/burst unless set here; False: no request-rate limit on this base.
    rate_limit: RequestRate | None | bool = None
    http_redirect: bool = False  # plain HTTP on an https port: browsers' GET/HEAD redirected to https://

    @property
    def server_folder(self) -> Path:
        """The seed's ``Server`` subfolder, home of whitelist.dat and blacklist.dat."""
        return self.folder / "Server"

    @property
    def whitelist_file(self) -> Path:
        return self.server_folder / "whitelist.dat"

    @property
    def blacklist_file(self) -> Path:
        return self.server_folder / "blacklist.dat"

    @property
    def backups_folder(self) -> Path:
        return self.folder / "backups"

    def endpoints(self) -> Iterator[tuple[str, Endpoint]]:
        yield "data", self.data
        if self.print is not None and self.print.enabled:
            yield "print", self.print


@dataclass(frozen=True)
class Listener:
    """What the gateway needs to know about one listening port."""

    base: BaseConfig
    role: str  # "data" or "print"
    endpoint: Endpoint

    @property
    def port(self) -> int:
        return self.endpoint.listen

    @property
    def scheme(self) -> str:
        return "https" if self.base.https else "http"


@dataclass(frozen=True)
class TlsSettings:
    cert: Path | None = None
    key: Path | None = None
    password_file: Path | None = None
    min_version: str = "1.2"
    http2: bool = True
    # The names and addresses devices use to reach the gateway, checked against the certificate.
    hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class EnrolmentSettings:
    enabled: bool = False
    host: str = "0.0.0.0"
    listen: int = 8079
    # Serve the enrolment page over TLS with the local server certificate: needed for the
    # one-time device links (a device's key must not cross the network in clear).
    https: bool = False


@dataclass(frozen=True)
class IpListSettings:
    whitelist: tuple[Path, ...] = ()
    blacklist: tuple[Path, ...] = ()


@dataclass(frozen=True)
class ThrottleSettings:
    ip_failures: int = 10
    ip_window: float = 60.0
    account_failures: int = 20
    account_window: float = 60.0
    spray_failures: int = 100  # failed password-only logins per base from all addresses ...
    spray_window: float = 60.0  # ... per this many seconds, past which such checks queue up


@dataclass(frozen=True)
class AuthSettings:
    cache_seconds: float = 30.0
    session_ttl: float = 8 * 3600.0
    header_prefix: str = "X-Gateway-"
    verify_threads: int = 2


@dataclass(frozen=True)
class StoreSettings:
    backend: str = "sqlite"
    redis_url: str | None = None
    # Redis Sentinel (instead of redis_url): where the Sentinels listen, which primary they watch,
    # and the credentials of the Redis servers (and of the Sentinels, when they ask for one).
    sentinels: tuple[str, ...] = ()
    sentinel_master: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sentinel_password: str | None = field(default=None, repr=False)
    db: int = 0


@dataclass(frozen=True)
class ProxySettings:
    forwarded_headers: bool = True
    # Pass the client's Host header to the back end instead of the back end's own address.
    preserve_host: bool = False
    stream_threshold: int = DEFAULT_STREAM_THRESHOLD
    backend_timeout: float = DEFAULT_BACKEND_TIMEOUT
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    keepalive_timeout: float = DEFAULT_KEEPALIVE_TIMEOUT


@dataclass(frozen=True)
class LogSettings:
    format: str = "text"  # "text" for people at a terminal, "json" for machines
    file: Path | None = None
    max_bytes: int = 10 * 1024 * 1024
    backups: int = 5
    level: str = "INFO"


@dataclass(frozen=True)
class AdminSettings:
    enabled: bool = True
    host: str = "127.0.0.1"
    listen: int = 9400
    # Never read from the file: a worker's own listener, asked only by its supervisor.
    private: bool = False
    console_idle_timeout: int = 900  # seconds without a request before a console session ends
    docs_dir: Path | None = None  # the built site served at /docs; None: site/ of the checkout
    # Where administrators use the console from, besides loopback: failed logins on the base
    # ports never lock the console for these addresses (the console counts its own failures).
    allow: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    # The names the admin listener answers to (Host); empty: loopback names and its listen address.
    hosts: tuple[str, ...] = ()

    def allowed(self, address: str) -> bool:
        """Loopback or an ``admin.allow`` address: a place the console is used from."""
        try:
            ip = ipaddress.ip_address(address.split("%")[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        return ip.is_loopback or any(ip.version == net.version and ip in net for net in self.allow)

    def served_hosts(self) -> frozenset[str]:
        """Host names (lower-case, no port, IPv6 without brackets) the admin listener answers to."""
        if self.hosts:
            return frozenset(self.hosts)
        names = {"localhost", "127.0.0.1", "::1"}
        if self.host not in ("0.0.0.0", "::", ""):
            names.add(self.host.lower())
        return frozenset(names)


@dataclass(frozen=True)
class GatewayConfig:
    source: Path
    state_dir: Path
    listen_host: str
    tls: TlsSettings
    bases: tuple[BaseConfig, ...]
    ip_lists: IpListSettings = IpListSettings()
    throttle: ThrottleSettings = ThrottleSettings()
    auth: AuthSettings = AuthSettings()
    store: StoreSettings = StoreSettings()
    proxy: ProxySettings = ProxySettings()
    log: LogSettings = LogSettings()
    admin: AdminSettings = AdminSettings()
    enrolment: EnrolmentSettings = EnrolmentSettings()
    acme: AcmeSettings = AcmeSettings()
    workers: int | str = "auto"
    proxy_protocol: ProxyProtocolSettings = ProxyProtocolSettings()
    limits: LimitSettings = LimitSettings()
    _by_port: dict[int, Listener] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        for base in self.bases:
            for role, endpoint in base.endpoints():
                self._by_port[endpoint.listen] = Listener(base, role, endpoint)

    def listeners(self) -> list[Listener]:
        return list(self._by_port.values())

    def listener_for_port(self, port: int) -> Listener | None:
        return self._by_port.get(port)

    def base_by_id(self, base_id: str) -> BaseConfig | None:
        return next((b for b in self.bases if b.id == base_id), None)

    def base_by_id_or_name(self, wanted: str) -> BaseConfig | None:
        """What `--base` takes everywhere: the id, else the name (case and outer spaces ignored)."""
        key = wanted.strip().casefold()
        return self.base_by_id(wanted) or next((b for b in self.bases if b.name.strip().casefold() == key), None)


# --- parsing -------------------------------------------------------------------------------


def _port(reader: _Reader, name: str, default: int | None = None) -> int:
    value = reader.get(name, int, default) if default is not None else reader.required(name, int)
    if not 1 <= value <= 65535:
        raise reader.fail(name, f"port {value} is out of range; use 1–65535")
    return value


def _console_idle(reader: _Reader) -> int:
    value = reader.get("console_idle_timeout", int, 900)
    if not 10 <= value <= 86400:
        raise reader.fail("console_idle_timeout", f"{value} seconds is out of range; use 10–86400 (default 900)")
    return value


def _backend(reader: _Reader, name: str) -> str:
    url = reader.required(name, str).strip()
    parts = urlsplit(url)
    if parts.scheme == "https":
        raise reader.fail(name, f"{url!r}: the back end is reached over plain HTTP (the gateway adds TLS "
                                "in front of it); write http://")
    if parts.scheme != "http" or not parts.hostname:
        raise reader.fail(name, f"{url!r} is not a back-end address; write it like http://127.0.0.1:9706")
    try:
        parts.port
    except ValueError:
        raise reader.fail(name, f"{url!r} has an invalid port") from None
    if parts.path not in ("", "/") or parts.query:
        raise reader.fail(name, f"{url!r}: give only scheme, host and port, without a path")
    return f"{parts.scheme}://{parts.netloc}"


def _endpoint(reader: _Reader, name: str, optional: bool) -> Endpoint | None:
    if optional and name not in reader.data:
        reader.used.add(name)
        return None
    sub = reader.sub(name)
    enabled = sub.get("enabled", bool, True)
    if optional and not enabled and "listen" not in sub.data and "backend" not in sub.data:
        # «Сервер печати используется» unticked: a port for a server not used is not required.
        sub.finish()
        return None
    endpoint = Endpoint(listen=_port(sub, "listen"), backend=_backend(sub, "backend"), enabled=enabled,
                        proxy_protocol=optional_proxy_protocol(sub))
    sub.finish()
    return endpoint


def _cert_pair(reader: _Reader, base_dir: Path, with_acme: bool = False) -> CertPair:
    pair = CertPair(
        cert=reader.path_value("cert", base_dir),
        key=reader.path_value("key", base_dir),
        password_file=reader.path_value("password_file", base_dir),
    )
    if with_acme and "acme" in reader.data:
        if pair.cert is not None:
            raise reader.fail("acme", "and cert are both given; a base serves either its own file or an ACME "
                                      "certificate — remove one")
        pair = CertPair(acme=parse_names(reader, "acme"))
    if pair.key is not None and pair.cert is None:
        raise reader.fail("cert", "is missing while key is given; name the certificate file too")
    return pair


CLIENT_AUTH_MODES = ("off", "optional", "required")


def _client_auth(reader: _Reader, base_dir: Path, pair: CertPair) -> CertPair:
    mode = reader.get("client_auth", (str, bool), "off")
    if mode is False:  # YAML reads a bare `off` as false
        mode = "off"
    if mode not in CLIENT_AUTH_MODES:
        raise reader.fail("client_auth", "must be off, optional or required")
    client_ca = reader.path_value("client_ca", base_dir)
    if client_ca is not None and not client_ca.is_file():
        raise reader.fail("client_ca", f"names {client_ca}, which is not a file; give the company CA's "
                                       "certificate (PEM), or remove client_ca to use the gateway's device CA")
    return replace(pair, client_auth=mode, client_ca=client_ca)


def _base(reader: _Reader, base_dir: Path) -> BaseConfig:
    base_id = str(reader.required("id", (str, int))).strip()
    if not base_id:
        raise reader.fail("id", "is empty; give the base's code, e.g. its GUID")
    name = reader.required("name", str).strip()
    if not name:
        raise reader.fail("name", "is empty; give the base a name people recognise")
    tls = None
    if "tls" in reader.data:
        tls_reader = reader.sub("tls")
        tls = _client_auth(tls_reader, base_dir, _cert_pair(tls_reader, base_dir, with_acme=True))
        tls_reader.finish()
    hsts_raw = reader.get("hsts", (bool, int), False)
    hsts = (31536000 if hsts_raw else 0) if isinstance(hsts_raw, bool) else hsts_raw
    if hsts < 0:
        raise reader.fail("hsts", "must be true, false or a max-age in seconds")
    retention = reader.get("backup_retention_days", int, 30)
    if retention < 1:
        raise reader.fail("backup_retention_days", "must be at least 1 day")
    base = BaseConfig(
        id=base_id,
        name=name,
        folder=reader.path_value("folder", base_dir) or (base_dir / "bases" / base_id).resolve(),
        comment=reader.get("comment", str, ""),
        https=reader.get("https", bool, True),
        user_auth=reader.get("user_auth", bool, False),
        login_by_barcode=reader.get("login_by_barcode", bool, False),
        whitelist_only=reader.get("whitelist_only", bool, False),
        tls=tls,
        hsts=hsts,
        policy=reader.path_value("policy", base_dir),
        forward_authorization=reader.get("forward_authorization", bool, True),
        compress=reader.get("compress", bool, False),
        backups=reader.get("backups", bool, False),
        backup_retention_days=retention,
        websocket=reader.get("websocket", bool, False),
        client_max_body_size=_optional_size(reader, "client_max_body_size"),
        proxy_redirect=_proxy_redirect(reader),
        http_redirect=reader.get("http_redirect", bool, False),
        rate_limit=_rate_limit(reader),
        data=_endpoint(reader, "data", optional=False),  # type: ignore[arg-type]
        print=_endpoint(reader, "print", optional=True),
    )
    reader.used.add("mode")  # the seed's "mode of work"; only "server" exists in front of a gateway
    reader.finish()
    return base


def _rate_limit(reader: _Reader) -> RequestRate | None | bool:
    value = reader.get("rate_limit", (bool, str, dict), None)
    if value is None:
        return None
    if isinstance(value, str):
        if value.strip().lower() != "off":
            raise reader.fail("rate_limit", f"is {value!r}; give {{rate: 10r/s, burst: 20}}, or off for none on this base")
        return False
    if value is True:
        raise reader.fail("rate_limit", "is true; give {rate: 10r/s, burst: 20}, or off for none on this base")
    if value is False:
        return False
    sub = reader.sub("rate_limit")
    rate = parse_request_rate(sub)
    sub.finish()
    if rate is None:
        raise reader.fail("rate_limit", "has no rate; give e.g. {rate: 10r/s, burst: 20}, or off")
    return rate


def _proxy_redirect(reader: _Reader) -> bool:
    # YAML reads a bare `off` as false and `on` as true: both spellings mean what nginx's do.
    value = reader.get("proxy_redirect", (bool, str), True)
    if isinstance(value, bool):
        return value
    if value.strip().lower() in ("default", "on"):
        return True
    if value.strip().lower() == "off":
        return False
    raise reader.fail("proxy_redirect", f"is {value!r}; use default (rewrite the back end's own address "
                                        f"in Location, Content-Location and Refresh) or off")


def _optional_size(reader: _Reader, name: str) -> int | None:
    raw = reader.get(name, (str, int), None)
    if raw is None:
        return None
    try:
        return parse_size(raw)
    except ValueError as e:
        raise reader.fail(name, str(e)) from None


def _check_ports(source: Path, bases: list[BaseConfig], reserved: dict[int, str]) -> None:
    owners: dict[int, tuple[int, str, str]] = {}
    for index, base in enumerate(bases):
        for role, endpoint in base.endpoints():
            key = f"bases[{index}].{role}.listen"
            port = endpoint.listen
            if port in owners:
                other_index, other_role, other_name = owners[port]
                raise ConfigError(
                    source, key,
                    f"port {port} of base {base.name!r} ({role}) is already used by base "
                    f"{other_name!r} ({other_role}, bases[{other_index}]); every base needs its own port",
                )
            if port in reserved:
                raise ConfigError(source, key, f"port {port} of base {base.name!r} is already used by {reserved[port]}")
            owners[port] = (index, role, base.name)


def _check_ids(source: Path, bases: list[BaseConfig]) -> None:
    seen: dict[str, int] = {}
    for index, base in enumerate(bases):
        if base.id in seen:
            raise ConfigError(source, f"bases[{index}].id",
                              f"id {base.id!r} is also the id of bases[{seen[base.id]}]; ids must be unique")
        seen[base.id] = index


def _host(reader: _Reader, name: str, default: str) -> str:
    value = reader.get(name, str, default).strip()
    if value in ("", "*"):
        return "0.0.0.0"
    if value == "localhost":
        return value
    try:
        ipaddress.ip_address(value.strip("[]"))
    except ValueError:
        raise reader.fail(name, f"{value!r} is not an IP address; use 0.0.0.0 for all, 127.0.0.1 for local") from None
    return value.strip("[]")


def _positive(reader: _Reader, name: str, kind: type, default: Any) -> Any:
    value = reader.get(name, kind, default)
    if value <= 0:
        raise reader.fail(name, f"must be greater than 0, got {value}")
    return value


def _section(reader: _Reader, name: str, build: Callable[[_Reader], Any]) -> Any:
    sub = reader.sub(name)
    value = build(sub)
    sub.finish()
    return value


def parse_config(data: Any, source: Path) -> GatewayConfig:
    base_dir = source.parent.resolve()
    top = _Reader(source, "", data)
    tls = _tls(top.sub("tls"), base_dir)
    bases_raw = top.get("bases", list, [])
    top.used.add("bases")
    bases = [_base(_Reader(source, f"bases[{i}]", raw), base_dir) for i, raw in enumerate(bases_raw)]
    _check_ids(source, bases)
    state_dir = top.path_value("state_dir", base_dir, (base_dir / "state").resolve())
    assert state_dir is not None
    config = GatewayConfig(
        source=source,
        state_dir=state_dir,
        listen_host=_host(top, "listen_host", "0.0.0.0"),
        tls=tls,
        bases=tuple(bases),
        ip_lists=_section(top, "ip_lists", lambda r: _ip_lists(r, base_dir)),
        throttle=_section(top, "throttle", _throttle),
        auth=_section(top, "auth", _auth),
        store=_section(top, "store", _store),
        proxy=_section(top, "proxy", _proxy),
        log=_section(top, "log", lambda r: _log(r, base_dir)),
        admin=_section(top, "admin", lambda r: _admin(r, base_dir)),
        enrolment=_section(top, "enrolment", _enrolment),
        acme=_section(top, "acme", lambda r: _acme(r, base_dir)),
        workers=parse_workers(top),
        proxy_protocol=parse_proxy_protocol(top.sub("proxy_protocol")),
        limits=_section(top, "limits", parse_limits),
    )
    top.finish()
    _check_ports(source, bases, _reserved_ports(config))
    _acme_validate(source, bases, config.acme)
    return config


# --- one function a section ----------------------------------------------------------------------


def _tls(r: _Reader, base_dir: Path) -> TlsSettings:
    pair = _cert_pair(r, base_dir)
    min_version = str(r.get("min_version", (str, float), "1.2"))
    if min_version not in TLS_VERSIONS:
        raise r.fail("min_version", f"{min_version!r} is not allowed; use \"1.2\" or \"1.3\"")
    hosts = r.get("hosts", list, [])
    for i, host in enumerate(hosts):
        if not isinstance(host, str) or not host.strip():
            raise ConfigError(r.source, f"tls.hosts[{i}]", "must be a host name or an IP address")
    tls = TlsSettings(cert=pair.cert, key=pair.key, password_file=pair.password_file,
                      min_version=min_version, http2=r.get("http2", bool, True),
                      hosts=tuple(h.strip() for h in hosts))
    r.finish()
    return tls


def _proxy(r: _Reader) -> ProxySettings:
    try:
        threshold = parse_size(r.get("stream_threshold", (str, int), DEFAULT_STREAM_THRESHOLD))
    except ValueError as e:
        raise r.fail("stream_threshold", str(e)) from None
    return ProxySettings(
        forwarded_headers=r.get("forwarded_headers", bool, True),
        preserve_host=r.get("preserve_host", bool, False),
        stream_threshold=threshold,
        backend_timeout=_positive(r, "backend_timeout", float, DEFAULT_BACKEND_TIMEOUT),
        connect_timeout=_positive(r, "connect_timeout", float, DEFAULT_CONNECT_TIMEOUT),
        keepalive_timeout=_positive(r, "keepalive_timeout", float, DEFAULT_KEEPALIVE_TIMEOUT),
    )


def _log(r: _Reader, base_dir: Path) -> LogSettings:
    fmt = r.get("format", str, "text")
    if fmt not in ("text", "json"):
        raise r.fail("format", f"{fmt!r} is not a log format; use text or json")
    level = r.get("level", str, "INFO").upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise r.fail("level", f"{level!r} is not a level; use debug, info, warning or error")
    try:
        max_bytes = parse_size(r.get("max_bytes", (str, int), 10 * 1024 * 1024))
    except ValueError as e:
        raise r.fail("max_bytes", str(e)) from None
    return LogSettings(format=fmt, file=r.path_value("file", base_dir), max_bytes=max_bytes,
                       backups=r.get("backups", int, 5), level=level)


def _ip_lists(r: _Reader, base_dir: Path) -> IpListSettings:
    def paths(name: str) -> tuple[Path, ...]:
        items = r.get(name, list, [])
        for i, item in enumerate(items):
            if not isinstance(item, str) or not item.strip():
                raise ConfigError(r.source, f"{r.key(name)}[{i}]", "must be a file path")
        return tuple((base_dir / Path(p).expanduser()).resolve() for p in items)
    return IpListSettings(whitelist=paths("whitelist"), blacklist=paths("blacklist"))


def _store(r: _Reader) -> StoreSettings:
    backend = r.get("backend", str, "sqlite")
    if backend not in ("sqlite", "redis"):
        raise r.fail("backend", f"{backend!r} is not a store; use sqlite or redis")
    url = r.get("redis_url", str, None)
    sentinels = _sentinels(r)
    master = r.get("sentinel_master", str, None)
    if sentinels and not master:
        raise r.fail("sentinel_master", "is required with store.sentinels: the name the Sentinels know the "
                                        "primary by (their `sentinel monitor NAME ...` line), e.g. gateway")
    if master and not sentinels:
        raise r.fail("sentinels", "is required with store.sentinel_master, e.g. [10.0.0.1:26379, 10.0.0.2:26379]")
    if sentinels and url:
        raise r.fail("redis_url", "and store.sentinels exclude each other: with Sentinel the primary's address "
                                  "comes from the Sentinels; remove redis_url")
    if backend == "redis" and not url and not sentinels:
        raise r.fail("redis_url", "is required when store.backend is redis, e.g. redis://127.0.0.1:6379/0 "
                                  "(or store.sentinels and store.sentinel_master)")
    db = r.get("db", int, 0)
    if db < 0:
        raise r.fail("db", "must be 0 or more")
    return StoreSettings(backend=backend, redis_url=url, sentinels=sentinels, sentinel_master=master,
                         username=r.get("username", str, None), password=r.get("password", str, None),
                         sentinel_password=r.get("sentinel_password", str, None), db=db)


def _sentinels(r: _Reader) -> tuple[str, ...]:
    items = r.get("sentinels", list, [])
    found = []
    for i, item in enumerate(items):
        host, _, port = str(item).strip().rpartition(":")
        if not isinstance(item, str) or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(r.source, f"{r.key('sentinels')}[{i}]", "must be host:port, e.g. 10.0.0.1:26379")
        found.append(str(item).strip())
    return tuple(found)


def _throttle(r: _Reader) -> ThrottleSettings:
    return ThrottleSettings(
        ip_failures=_positive(r, "ip_failures", int, 10),
        ip_window=_positive(r, "ip_window", float, 60.0),
        account_failures=_positive(r, "account_failures", int, 20),
        account_window=_positive(r, "account_window", float, 60.0),
        spray_failures=_positive(r, "spray_failures", int, 100),
        spray_window=_positive(r, "spray_window", float, 60.0),
    )


def _auth(r: _Reader) -> AuthSettings:
    return AuthSettings(
        cache_seconds=r.get("cache_seconds", float, 30.0),
        session_ttl=_positive(r, "session_ttl", float, 8 * 3600.0),
        header_prefix=r.get("header_prefix", str, "X-Gateway-"),
        verify_threads=_positive(r, "verify_threads", int, 2),
    )


def _admin(r: _Reader, base_dir: Path) -> AdminSettings:
    return AdminSettings(enabled=r.get("enabled", bool, True), host=_host(r, "host", "127.0.0.1"),
                         listen=_port(r, "listen", 9400), console_idle_timeout=_console_idle(r),
                         allow=_networks(r, "allow"), hosts=_host_names(r, "hosts"),
                         docs_dir=r.path_value("docs_dir", base_dir))


def _networks(r: _Reader, name: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    found = []
    for index, item in enumerate(r.get(name, list, [])):
        try:
            found.append(ipaddress.ip_network(str(item).strip(), strict=False))
        except ValueError:
            raise ConfigError(r.source, f"{r.key(name)}[{index}]",
                              f"{item!r} is not an address or network; write e.g. 192.168.10.5 or 192.168.10.0/24") from None
    return tuple(found)


def _host_names(r: _Reader, name: str) -> tuple[str, ...]:
    found = []
    for index, item in enumerate(r.get(name, list, [])):
        text = str(item).strip().lower()
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        if not text or any(c in text for c in "/ ,@") or ("]" in text):
            raise ConfigError(r.source, f"{r.key(name)}[{index}]",
                              f"{item!r} is not a host name or address; write e.g. gateway.sklad.local or 10.0.0.5")
        found.append(text)
    return tuple(found)


def _enrolment(r: _Reader) -> EnrolmentSettings:
    return EnrolmentSettings(enabled=r.get("enabled", bool, False), host=_host(r, "host", "0.0.0.0"),
                             listen=_port(r, "listen", 8079), https=r.get("https", bool, False))


def _reserved_ports(config: GatewayConfig) -> dict[int, str]:
    """The side listeners' ports, which no base may use."""
    reserved = {}
    if config.admin.enabled:
        reserved[config.admin.listen] = "the admin listener (admin.listen)"
    if config.enrolment.enabled:
        reserved[config.enrolment.listen] = "the enrolment listener (enrolment.listen)"
    if config.acme.enabled:
        reserved[config.acme.challenge_listen] = "the ACME challenge listener (acme.challenge_listen)"
    return reserved


def _acme(r: _Reader, base_dir: Path) -> AcmeSettings:
    return parse_acme(r, base_dir)


def _acme_validate(source: Path, bases: list[BaseConfig], settings: AcmeSettings) -> None:
    validate_acme(source, bases, settings)


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key written twice in one mapping: plain YAML keeps the
    last one, so `https: true` followed later by `https: false` would silently serve in clear."""


def _mapping_without_repeats(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    first_line: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in first_line:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is written twice (first on line {first_line[key]}); keep one",
                key_node.start_mark)
        first_line[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_repeats)


def load_config(path: Path | str) -> GatewayConfig:
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        # A new user in the repository folder, `make run` going, typing `gateway check`: point at the demo's.
        # In the checkout `make run` writes demo/gateway.yaml from the packaged default, so the
        # hint holds there even before the first `make run`.
        in_checkout = (source.parent / "gateway" / "config" / "demo.yaml").is_file()
        demo = (" (`make run`'s is -c demo/gateway.yaml)"
                if in_checkout or (source.parent / "demo" / "gateway.yaml").is_file() else "")
        raise ConfigError(source, "", "file not found; create it (see deploy/gateway.example.yaml) or pass -c FILE"
                          + demo) from None
    except UnicodeDecodeError as e:
        raise ConfigError(source, "", f"is not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    except OSError as e:
        raise ConfigError(source, "", f"cannot be read: {e.strerror}") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
        problem = getattr(e, "problem", None) or str(e)
        if "\\t" in problem or "\t" in problem:
            problem += "; YAML does not allow tabs for indentation: use spaces"
        raise ConfigError(source, where, f"not valid YAML: {problem}") from None
    return parse_config(data, source.resolve())
