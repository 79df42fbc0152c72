"""Debian's pebble (a real ACME server) and pebble-challtestsrv (its fake DNS) on loopback.

pebble validates HTTP-01 on ``http_port`` and TLS-ALPN-01 on ``tls_port`` of the address a
name resolves to; every name resolves to 127.0.0.1 through challtestsrv's DNS. Its own HTTPS
certificate comes from a throw-away CA (``ca_bundle``), which the gateway trusts through
acme.ca_bundle. The root that signs issued certificates is served by the management API at
/roots/0 and changes with every start.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from gateway.certs.authority import create_ca, issue_server_certificate, write_server_certificate
from tests.harness import free_port

PEBBLE = shutil.which("pebble") or "/usr/bin/pebble"
CHALLTESTSRV = shutil.which("pebble-challtestsrv") or "/usr/bin/pebble-challtestsrv"


def available() -> bool:
    return os.access(PEBBLE, os.X_OK) and os.access(CHALLTESTSRV, os.X_OK)


@dataclass
class Pebble:
    folder: Path
    port: int
    management_port: int
    http_port: int
    tls_port: int
    ca_bundle: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def directory(self) -> str:
        return f"https://127.0.0.1:{self.port}/dir"

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_bundle))

    def root_pem(self) -> bytes:
        """The root that signs the certificates pebble issues (management API /roots/0)."""
        url = f"https://127.0.0.1:{self.management_port}/roots/0"
        with urllib.request.urlopen(url, context=self._context(), timeout=10) as answer:
            return bytes(answer.read())

    def log(self) -> str:
        return (self.folder / "pebble.log").read_text(errors="replace")

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)


def start_pebble(folder: Path, http_port: int, tls_port: int | None = None,
                 validity_seconds: int | None = None) -> Pebble:
    folder.mkdir(parents=True, exist_ok=True)
    import ipaddress

    ca = create_ca(folder / "tls", common_name="pebble test TLS CA")
    cert, key = issue_server_certificate(ca, ["localhost"], [ipaddress.ip_address("127.0.0.1")], days=30)
    cert_file, key_file = write_server_certificate(folder / "tls", ca, cert, key)
    port, management, dns = free_port(), free_port(), free_port()
    config = {"pebble": {
        "listenAddress": f"127.0.0.1:{port}", "managementListenAddress": f"127.0.0.1:{management}",
        "certificate": str(cert_file), "privateKey": str(key_file),
        "httpPort": http_port, "tlsPort": tls_port or free_port(), "ocspResponderURL": "",
        "externalAccountBindingRequired": False}}
    if validity_seconds is not None:
        config["pebble"]["certificateValidityPeriod"] = validity_seconds
    (folder / "pebble.json").write_text(json.dumps(config))
    env = dict(os.environ, PEBBLE_VA_NOSLEEP="1", PEBBLE_WFE_NONCEREJECT="0", PEBBLE_AUTHZREUSE="0")
    log = open(folder / "pebble.log", "wb")
    server = Pebble(folder, port, management, http_port, config["pebble"]["tlsPort"], ca.cert_file)
    server.processes.append(subprocess.Popen(
        [CHALLTESTSRV, "-dns01", f"127.0.0.1:{dns}", "-http01", "", "-https01", "", "-tlsalpn01", "",
         "-management", f"127.0.0.1:{free_port()}", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""],
        stdout=log, stderr=subprocess.STDOUT))
    server.processes.append(subprocess.Popen(
        [PEBBLE, "-config", str(folder / "pebble.json"), "-dnsserver", f"127.0.0.1:{dns}"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=folder))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(server.directory, context=server._context(), timeout=2):
                return server
        except OSError:
            if any(p.poll() is not None for p in server.processes):
                break
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"pebble did not start:\n{server.log()[-3000:]}")
