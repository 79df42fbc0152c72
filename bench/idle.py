"""What an idle TLS keep-alive connection costs: memory and descriptors, gateway against nginx.

    .venv/bin/python bench/idle.py                      # 2,000 idle connections each (~1-2 min)
    .venv/bin/python bench/idle.py --max 10000 --step 1000 --png docs/assets/idle-memory.png
    .venv/bin/python bench/idle.py --http2 --no-nginx      # idle HTTP/2 clients instead
    .venv/bin/python bench/idle.py --proxy-protocol --no-nginx  # behind a PROXY-protocol balancer

Each connection is opened from one of many loopback addresses (127.0.0.2, ...; at most 100 per
address, below ``limits.max_connections_per_ip``), sends one request, reads the answer and then
stays open, idle, as a terminal between scans. The server's process tree is measured (RSS, open
descriptors) before the first connection and after every ``--step`` connections; at the end the
script waits past the gateway's back-end keep-alive timeout (``proxy.keepalive_timeout``) and
measures again, which is the state a terminal idle all shift is in. Both servers get a client
keep-alive timeout long enough that no connection is closed while it is measured.

``--http2`` opens HTTP/2 connections (one request on stream 1, then idle); ``--proxy-protocol``
sends a PROXY v1 header first, as HAProxy does, each connection from its own documentation
address (the gateway trusts loopback as the balancer). Both measure the gateway only.
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import ssl
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import servers  # noqa: E402
from procs import cpu_plan, tree_rss  # noqa: E402
from servers import Server  # noqa: E402

from gateway.traffic.proxy_protocol import encode_v1  # noqa: E402

PATH = "/api/v1/DocTypes"
PER_ADDRESS = 100
CLIENT_KEEPALIVE = 900  # seconds: longer than any measurement
BACKEND_KEEPALIVE = 5.0  # the gateway's proxy.keepalive_timeout here, so the run waits less


@dataclass
class Curve:
    name: str
    points: list[tuple[int, int, int]] = field(default_factory=list)  # (connections, rss, fds)
    settled: tuple[int, int, int] | None = None  # after the back-end keep-alive timeout

    def per_connection(self) -> tuple[float, float]:
        """Bytes and descriptors per idle connection (settled state against the empty server).

        A server that sheds idle connections near its connection limit (the gateway caps
        ``limits.max_connections`` by the open-files limit) holds fewer than were opened: the
        slope is then taken up to the last point where it still held them all.
        """
        n0, rss0, fd0 = self.points[0]
        held = [p for p in self.points[1:] if p[2] - fd0 >= 0.95 * (p[0] - n0)]
        n1, rss1, fd1 = self.settled or self.points[-1]
        if held and held[-1] is not self.points[-1]:
            n1, rss1, fd1 = held[-1]
        n = max(n1 - n0, 1)
        return (rss1 - rss0) / n, (fd1 - fd0) / n


def tree_fds(pid: int) -> int:
    import psutil  # bench-only dependency, already required by procs.py

    root = psutil.Process(pid)
    total = 0
    for process in [root, *root.children(recursive=True)]:
        try:
            total += process.num_fds()
        except psutil.Error:
            pass
    return total


def measure(server: Server) -> tuple[int, int]:
    time.sleep(0.5)  # let the last answers leave the buffers
    return tree_rss(server.process.pid), tree_fds(server.process.pid)


def client_address(i: int) -> str:
    return f"127.0.{2 + i // PER_ADDRESS // 250}.{2 + (i // PER_ADDRESS) % 250}"


def open_idle(server: Server, count: int, first: int, held: list[Any], *, http2: bool = False,
              proxy_protocol: bool = False) -> None:
    if http2 or proxy_protocol:
        for i in range(first, first + count):
            held.append(open_raw(server, i, http2=http2, proxy_protocol=proxy_protocol))
        return
    host, port = server.url.split("://", 1)[1].rsplit(":", 1)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    for i in range(first, first + count):
        address = client_address(i)
        conn = http.client.HTTPSConnection(host, int(port), context=context, timeout=30,
                                           source_address=(address, 0))
        conn.request("GET", PATH)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"{server.name}: {response.status} for connection {i}")
        held.append(conn)


def open_raw(server: Server, i: int, *, http2: bool, proxy_protocol: bool) -> ssl.SSLSocket:
    """One idle connection over a plain socket: the PROXY header, TLS, one request, its answer."""
    host, port = server.url.split("://", 1)[1].rsplit(":", 1)
    raw = socket.create_connection((host, int(port)), timeout=30, source_address=(client_address(i), 0))
    if proxy_protocol:  # a documentation address per connection: the per-address limit never bites
        raw.sendall(encode_v1((f"198.18.{i // 250}.{1 + i % 250}", 40000), (host, int(port))))
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"] if http2 else ["http/1.1"])
    tls = context.wrap_socket(raw, server_hostname="localhost")
    if http2:
        status = _h2_get(tls)
    else:
        tls.sendall(f"GET {PATH} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        response = http.client.HTTPResponse(tls)
        response.begin()
        response.read()
        status = response.status
    if status != 200:
        raise RuntimeError(f"{server.name}: {status} for connection {i}")
    return tls


def _h2_get(tls: ssl.SSLSocket) -> int:
    import h2.config
    import h2.connection
    import h2.events

    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "GET"), (":path", PATH), (":scheme", "https"), (":authority", "localhost")],
                      end_stream=True)
    tls.sendall(conn.data_to_send())
    status = 0
    while True:
        data = tls.recv(65536)
        if not data:
            return status
        for event in conn.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                status = int(dict(event.headers)[b":status"])
            if isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                tls.sendall(conn.data_to_send())
                return status
        tls.sendall(conn.data_to_send())


def run_curve(server: Server, total: int, step: int, settle: float, **mode: bool) -> Curve:
    curve = Curve(server.name)
    held: list[Any] = []
    curve.points.append((0, *measure(server)))
    try:
        while len(held) < total:
            open_idle(server, min(step, total - len(held)), len(held), held, **mode)
            curve.points.append((len(held), *measure(server)))
            print(f"  {server.name}: {len(held)} idle: {curve.points[-1][1] / 2**20:.1f} MiB, "
                  f"{curve.points[-1][2]} fds", flush=True)
        if settle:
            time.sleep(settle)
            curve.settled = (len(held), *measure(server))
    finally:
        for conn in held:
            conn.close()
    return curve


def write_png(curves: list[Curve], path: Path) -> None:
    import png_plot  # noqa: E402  (bench-only, beside this file)

    png_plot.line_chart(path, [(c.name, [(n, rss / 2**20) for n, rss, _ in c.points]) for c in curves],
                        x_label="open idle TLS connections", y_label="MiB (process tree RSS)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max", type=int, default=2000, help="idle connections per server (default 2000)")
    parser.add_argument("--step", type=int, default=500, help="measure after every N connections")
    parser.add_argument("--png", type=Path, help="draw the memory curve into this PNG file")
    parser.add_argument("--no-nginx", action="store_true")
    parser.add_argument("--http2", action="store_true", help="idle HTTP/2 connections (gateway only)")
    parser.add_argument("--proxy-protocol", action="store_true",
                        help="each connection behind a PROXY v1 header, as from HAProxy (gateway only)")
    parser.add_argument("--backend-keepalive", type=float, default=BACKEND_KEEPALIVE,
                        help="the gateway's proxy.keepalive_timeout here (0: leave the key out, "
                             "to measure a tree from before issue 22)")
    args = parser.parse_args(argv)
    mode = {"http2": args.http2, "proxy_protocol": args.proxy_protocol}
    curves = run(args.max, args.step, with_nginx=not (args.no_nginx or any(mode.values())),
                 backend_keepalive=args.backend_keepalive, **mode)
    for line in report(curves):
        print(line)
    if args.png:
        write_png(curves, args.png)
        print(f"curve: {args.png}")
    return 0


def run(total: int, step: int, *, with_nginx: bool, backend_keepalive: float = BACKEND_KEEPALIVE,
        **mode: bool) -> list[Curve]:
    plan = cpu_plan()
    started: list[Server] = []
    curves: list[Curve] = []
    with tempfile.TemporaryDirectory(prefix="gateway-idle-") as tmp:
        workdir = Path(tmp)
        try:
            backend = servers.start_standin(workdir, plan.load)
            started.append(backend)
            config = servers.gateway_config(backend.url, base_id="idle")
            config["limits"] = {"keepalive_timeout": CLIENT_KEEPALIVE, "max_connections": total + 1000}
            if backend_keepalive:
                config["proxy"] = {"keepalive_timeout": backend_keepalive}
            if mode.get("proxy_protocol"):
                config["proxy_protocol"] = {"enabled": True, "trusted": ["127.0.0.0/8"]}
            gateway = servers.start_gateway("gateway", workdir / "gateway", config, plan.server,
                                            probe_tls=not mode.get("proxy_protocol"))
            started.append(gateway)
            curves.append(run_curve(gateway, total, step, (backend_keepalive or BACKEND_KEEPALIVE) + 2.0, **mode))
            gateway.stop()
            if with_nginx and servers.nginx_available():
                certs = workdir / "gateway" / "state" / "certs"
                nginx = servers.start_nginx(workdir, backend.url, certs / "server.pem", certs / "server.key",
                                            plan.server, worker_connections=total + 1000,
                                            keepalive_timeout=CLIENT_KEEPALIVE)
                started.append(nginx)
                curves.append(run_curve(nginx, total, step, 2.0))
        finally:
            for server in started:
                server.stop()
    return curves


def report(curves: list[Curve]) -> list[str]:
    lines = ["", "| server | idle connections | RSS above empty | per connection | descriptors per connection |",
             "|---|---|---|---|---|"]
    for c in curves:
        per_bytes, per_fd = c.per_connection()
        n, rss, _ = c.settled or c.points[-1]
        lines.append(f"| {c.name} | {n} | {(rss - c.points[0][1]) / 2**20:.1f} MiB | "
                     f"{per_bytes / 1024:.1f} KiB | {per_fd:.2f} |")
    if len(curves) == 2:
        ratio = curves[0].per_connection()[0] / max(curves[1].per_connection()[0], 1)
        lines.append(f"\ngateway/nginx memory per idle connection: {ratio:.2f}x (goal: gateway <= 32 KiB)")
    return lines


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
