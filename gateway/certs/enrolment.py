"""What the enrolment listener answers: the local CA certificate and one page about it.

Pure: (method, path) in, (status, headers, body) out. Nothing else is reachable there, so the
plain-HTTP port exposes no part of the gateway.
"""

from __future__ import annotations

import html
import ipaddress
import re
from dataclasses import dataclass

import qrcode
import qrcode.image.svg

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from gateway.certs.authority import default_names
from gateway.certs.inspect import fingerprint
from gateway.config import GatewayConfig

PEM_TYPE = "application/x-pem-file"
DER_TYPE = "application/x-x509-ca-cert"
HTML_TYPE = "text/html; charset=utf-8"
TEXT_TYPE = "text/plain; charset=utf-8"
COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True)
class Answer:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes


# What a Host header may hold to be put into the QR code: a name or address and a port, no more.
_SAFE_HOST = re.compile(r"^[A-Za-z0-9.\-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$")


@dataclass(frozen=True)
class EnrolmentContent:
    pem: bytes
    der: bytes
    page: bytes
    ca: x509.Certificate | None = None
    # Names devices use (tls.hosts) and this machine's LAN addresses, for the QR code.
    hosts: tuple[str, ...] = ()
    lan_addresses: tuple[str, ...] = ()
    port: int | None = None
    scheme: str = "http"  # https with enrolment.https

    @classmethod
    def for_ca(cls, ca: x509.Certificate, hosts: tuple[str, ...] = (), lan_addresses: tuple[str, ...] = (),
               port: int | None = None, scheme: str = "http") -> EnrolmentContent:
        return cls(
            pem=ca.public_bytes(serialization.Encoding.PEM),
            der=ca.public_bytes(serialization.Encoding.DER),
            page=render_page(ca).encode("utf-8"),
            ca=ca, hosts=hosts, lan_addresses=lan_addresses, port=port, scheme=scheme,
        )

    def page_for(self, host: str | None) -> bytes:
        """The page with a QR code of the download link as a phone on the LAN would reach it."""
        target = qr_host(host, self.hosts, self.lan_addresses, self.port)
        if self.ca is None or target is None:
            return self.page
        return render_page(self.ca, qr_svg(f"{self.scheme}://{target}/ca.pem")).encode("utf-8")


def _phone_can_reach(name: str) -> bool:
    """Not loopback, not a bare host name (phones rarely resolve those), not a wildcard."""
    bare = name.strip("[]")
    try:
        ip = ipaddress.ip_address(bare)
    except ValueError:
        return "." in bare and not bare.startswith("*") and not bare.endswith(".localhost") and bare != "localhost"
    return not (ip.is_loopback or ip.is_unspecified or ip.is_link_local)


def qr_host(request_host: str | None, hosts: tuple[str, ...], lan_addresses: tuple[str, ...],
            port: int | None) -> str | None:
    """host[:port] for the QR code: tls.hosts first, then the address the page was opened with,
    then a LAN address of this machine; never 127.0.0.1 or a bare name. None: no QR code."""
    def with_port(name: str) -> str:
        name = f"[{name}]" if ":" in name and not name.startswith("[") else name
        return f"{name}:{port}" if port and port != 80 else name

    for name in hosts:
        if _phone_can_reach(name):
            return with_port(name)
    if request_host and _SAFE_HOST.match(request_host):
        name, _, _ = request_host.rpartition(":") if not request_host.endswith("]") else (request_host, "", "")
        name = name or request_host
        if _phone_can_reach(name):
            return request_host
    for address in lan_addresses:
        if _phone_can_reach(address):
            return with_port(address)
    return None


def qr_svg(text: str) -> str:
    image = qrcode.make(text, image_factory=qrcode.image.svg.SvgPathImage, box_size=10, border=2)
    return image.to_string(encoding="unicode")


def render_page(ca: x509.Certificate, qr: str = "") -> str:
    subject = html.escape(ca.subject.rfc4514_string())
    print_ = html.escape(fingerprint(ca))
    expires = ca.not_valid_after_utc.strftime("%Y-%m-%d")
    return f"""<!doctype html>
<html lang="ru"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Сертификат шлюза / Gateway certificate</title>
<style>body{{font-family:sans-serif;margin:1em;max-width:40em}}code{{word-break:break-all;font-size:1.1em}}
a{{display:block;margin:.6em 0;font-size:1.2em}}.qr svg{{width:12em;height:12em}}</style></head><body>
<h1>Сертификат шлюза</h1>
<p>Установите этот сертификат центра сертификации на устройство один раз, чтобы оно доверяло
HTTPS-адресам шлюза. / Install this CA certificate on the device once so that it trusts the gateway.</p>
<a href="/ca.pem">ca.pem — Android, Windows, Linux</a>
<a href="/ca.der">ca.der — Windows CE, iOS, старые устройства / older devices</a>
<p>Сверьте отпечаток SHA-256 с тем, что показывает администратор (<code>gateway cert show</code>) /
Compare the SHA-256 fingerprint with the one your administrator sees:</p>
<p><code>{print_}</code></p>
<p>{subject}<br>действителен до / valid until {expires}</p>
{'<p>Или отсканируйте с устройства / or scan from the device:</p><div class="qr">' + qr + '</div>' if qr else ''}
</body></html>
"""


def answer(method: str, path: str, content: EnrolmentContent | None, host: str | None = None) -> Answer:
    if method not in ("GET", "HEAD"):
        return _text(405, "Method Not Allowed", "only GET is served here", {"Allow": "GET, HEAD"})
    path = path.split("?", 1)[0]
    if content is None:
        if path == "/":
            return _text(200, "OK", "this gateway does not serve a certificate of its local CA (tls.cert is set). "
                                    "Devices trust it only when they already trust the CA that issued it: one from a "
                                    "public CA needs no setup; one from a company CA, or a self-signed one, must be "
                                    "installed on each device as your administrator describes")
        return _text(404, "Not Found", "not found")
    if path == "/":
        return Answer(200, "OK", {"Content-Type": HTML_TYPE, "Cache-Control": "no-cache", **COMMON_HEADERS},
                      content.page_for(host))
    if path == "/ca.pem":
        return Answer(200, "OK", {"Content-Type": PEM_TYPE, "Content-Disposition": 'attachment; filename="gateway-ca.pem"',
                                  **COMMON_HEADERS}, content.pem)
    if path == "/ca.der":
        return Answer(200, "OK", {"Content-Type": DER_TYPE, "Content-Disposition": 'attachment; filename="gateway-ca.crt"',
                                  **COMMON_HEADERS}, content.der)
    return _text(404, "Not Found", "not found")


def _text(status: int, reason: str, text: str, extra: dict[str, str] | None = None) -> Answer:
    return Answer(status, reason, {"Content-Type": TEXT_TYPE, **COMMON_HEADERS, **(extra or {})}, (text + "\n").encode())


def encode(answer_: Answer, head_only: bool = False) -> bytes:
    headers = {**answer_.headers, "Content-Length": str(len(answer_.body)), "Connection": "close"}
    lines = [f"HTTP/1.1 {answer_.status} {answer_.reason}"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (b"" if head_only else answer_.body)


def lan_addresses() -> tuple[str, ...]:
    """This machine's private LAN addresses, for the QR code when tls.hosts names none."""
    found = [ip for ip in default_names()[1] if ip.is_private and not ip.is_loopback and not ip.is_link_local]
    found.sort(key=lambda ip: ip.version)  # IPv4 first: what phones on a warehouse LAN use
    return tuple(str(ipaddress.ip_address(ip)) for ip in found)


def link_url(cfg: GatewayConfig, path: str, request_host: str | None = None) -> str:
    """The HTTPS address of ``path`` on the enrolment listener as a terminal would reach it:
    a name of tls.hosts, else the address the admin used, else a LAN address of this machine."""
    port = cfg.enrolment.listen
    target = qr_host(None, cfg.tls.hosts, lan_addresses(), port)
    if target is None and request_host and _SAFE_HOST.match(request_host):
        name = request_host.rsplit(":", 1)[0] if not request_host.endswith("]") else request_host
        target = f"{name}:{port}"  # the console's own port is not the enrolment listener's
    if target is None:
        host = cfg.enrolment.host if cfg.enrolment.host not in ("0.0.0.0", "::") else "127.0.0.1"
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"https://{target}{path}"
