"""The optional gateway scenarios: 100k-entry IP lists (issue 4) and Basic auth on every
request (issue 5). Each either returns a started server or says why it was skipped."""

from __future__ import annotations

import base64
import os
import random
import secrets
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

import servers
from servers import REPO, Server, gateway_cli, gateway_config, server_folder, start_gateway

LIST_ENTRIES = 100_000
# A loopback address other than the load generator's: it is put on the blacklist, and the
# benchmark checks that it really is refused, so the lists are known to be in force.
PROBE_ADDRESS = "127.0.0.2"


@dataclass(frozen=True)
class Skipped:
    reason: str


def http_status(url: str, headers: list[str], source: str | None = None) -> int:
    """One GET on a fresh connection; the status code (0 if the connection was refused/closed)."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    connection_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    kwargs = {"context": context} if parts.scheme == "https" else {}
    connection = connection_class(parts.hostname, parts.port, timeout=10,
                                  source_address=(source, 0) if source else None, **kwargs)
    try:
        fields = dict(h.split(": ", 1) for h in headers)
        connection.request("GET", parts.path or "/", headers=fields)
        return connection.getresponse().status
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        connection.close()


def random_list(count: int, seed: int) -> list[str]:
    """A mix of addresses, masks, ranges and IPv6, never touching 127.0.0.0/8 (the load
    generator's addresses) — so every lookup walks the whole decision: whitelist, then blacklist."""
    rng = random.Random(seed)
    octets = [n for n in range(1, 224) if n not in (126, 127)]  # a range of <= 5000 from 125.x stays clear

    def v4(first: int, rest: int) -> str:
        return socket.inet_ntoa(bytes([first]) + rest.to_bytes(3, "big"))

    lines = []
    for _ in range(count):
        kind = rng.random()
        first, rest = rng.choice(octets), rng.getrandbits(24)
        if kind < 0.70:
            lines.append(v4(first, rest))
        elif kind < 0.85:
            lines.append(f"{v4(first, rest)}/{rng.randint(16, 32)}")
        elif kind < 0.95:
            end = min(rest + rng.randint(0, 5000), 2**24 - 1)
            lines.append(f"{v4(first, rest)} - {v4(first, end)}")
        else:
            lines.append(socket.inet_ntop(socket.AF_INET6, (0x2001 << 112 | rng.getrandbits(112)).to_bytes(16, "big")))
    return lines


def write_lists(folder: Path, *, entries: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if entries == 0:
        (folder / "whitelist.dat").write_text("", encoding="utf-8")
        (folder / "blacklist.dat").write_text("", encoding="utf-8")
        return
    # CRLF: the way Notepad saves them, the way a real installation has them.
    (folder / "whitelist.dat").write_text("\r\n".join(random_list(entries, seed=1)) + "\r\n", encoding="utf-8", newline="")
    blacklist = random_list(entries, seed=2) + [PROBE_ADDRESS]
    (folder / "blacklist.dat").write_text("\r\n".join(blacklist) + "\r\n", encoding="utf-8", newline="")


def ip_list_gateway(workdir: Path, backend: str, path: str, cpus: set[int] | None) -> Server | Skipped:
    if not (REPO / "addons" / "ipfilter.py").exists():
        return Skipped("the IP list feature (addons/ipfilter.py) is not in this tree")
    directory = workdir / "gateway-iplists"
    config = gateway_config(backend, base_id="bench-iplists")
    write_lists(server_folder(directory, config), entries=LIST_ENTRIES)
    server = start_gateway(f"gateway, {LIST_ENTRIES // 1000}k IP lists", directory, config, cpus)
    if http_status(server.url + path, [], source=PROBE_ADDRESS) != 0:
        server.stop()
        return Skipped(f"{PROBE_ADDRESS} is on the blacklist but was served: the lists are not in force")
    return server


def auth_gateway(workdir: Path, backend: str, path: str, cpus: set[int] | None, *,
                 repo: Path = REPO, name: str = "gateway, Basic auth", folder: str = "gateway-auth") -> Server | Skipped:
    directory = workdir / folder
    config = gateway_config(backend, base_id="bench-auth", user_auth=True)
    servers.write_gateway(directory, config)
    group = gateway_cli(directory, "group", "add", "bench", "--role", "external", "--doc-type", "Поступление",
                        repo=repo)
    if group.returncode != 0:
        return Skipped(f"`gateway group add` failed: {_last_line(group.stderr or group.stdout)}")
    # Random, strong, used once: it only lives in this run's temporary state folder.
    password = "Bench" + secrets.token_hex(8) + "7q"
    user = gateway_cli(directory, "user", "add", "bench", "--group", "bench", "--password-stdin",
                       stdin=password + "\n", repo=repo)
    if user.returncode != 0:
        return Skipped(f"`gateway user add` failed: {_last_line(user.stderr or user.stdout)}")
    server = start_gateway(name, directory, config, cpus, repo=repo)
    token = base64.b64encode(f"bench:{password}".encode()).decode()
    server.headers = [f"Authorization: Basic {token}"]
    with_credentials = http_status(server.url + path, server.headers)
    without = http_status(server.url + path, [])
    if with_credentials != 200 or without != 401:
        server.stop()
        return Skipped(f"the user_auth base answered {with_credentials} with credentials and {without} "
                       "without (expected 200 and 401): authentication is not in force")
    return server


def rate_limit_gateway(workdir: Path, backend: str, path: str, cpus: set[int] | None) -> Server | Skipped:
    """limits.rate high enough never to refuse, so every request pays for its count in the store."""
    directory = workdir / "gateway-ratelimit"
    config = gateway_config(backend, base_id="bench-ratelimit")
    config["limits"] = {"rate": "1000000r/s", "burst": 1000000}
    write_lists(server_folder(directory, config), entries=0)
    server = start_gateway("gateway, rate limit", directory, config, cpus)
    if not (directory / "state" / "rates.db").exists() and http_status(server.url + path, []) == 200 \
            and not (directory / "state" / "rates.db").exists():
        server.stop()
        return Skipped("no state/rates.db after a request: the rate limit is not in force")
    return server


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else "(no output)"


def workers_gateway(workdir: Path, backend: str, path: str, cpus: set[int] | None) -> Server | Skipped:
    """The gateway with 2 worker processes, allowed on every CPU (issue 11)."""
    if (os.cpu_count() or 1) < 2:
        return Skipped("one CPU: two workers would share it")
    directory = workdir / "gateway-workers"
    config = gateway_config(backend, base_id="bench-workers", workers=2)
    write_lists(server_folder(directory, config), entries=0)
    return start_gateway("gateway, 2 workers", directory, config, set(range(os.cpu_count() or 1)))


def plain_engine_gateway(workdir: Path, backend: str, path: str, cpus: set[int] | None) -> Server | Skipped:
    """The gateway on the engine as mitmproxy ships it (GATEWAY_LEAN=0): asyncio, mitmproxy's
    log handler, copying option reads, debug type checks — the baseline of issue 11's steps."""
    directory = workdir / "gateway-plain"
    config = gateway_config(backend, base_id="bench-plain")
    write_lists(server_folder(directory, config), entries=0)
    return start_gateway("gateway, plain engine", directory, config, cpus, env={"GATEWAY_LEAN": "0"})


def uvloop_gateway(workdir: Path, backend: str, path: str, cpus: set[int] | None) -> Server | Skipped:
    """The gateway on uvloop (GATEWAY_EVENT_LOOP=uvloop), measured, not the default."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return Skipped("uvloop is not installed (pip install uvloop to measure it)")
    directory = workdir / "gateway-uvloop"
    config = gateway_config(backend, base_id="bench-uvloop")
    write_lists(server_folder(directory, config), entries=0)
    return start_gateway("gateway, uvloop", directory, config, cpus, env={"GATEWAY_EVENT_LOOP": "uvloop"})

