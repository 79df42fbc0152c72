"""The capacity table of ``bench/run.py --capacity``: what one core and one GiB buy, gateway and
nginx on the same machine, from CPU time per request or connection (process CPU time, so the
other load on a shared machine counts little) and memory per idle connection (bench/idle.py).

* terminals per core: one request per second each on a keep-alive connection → 1 / CPU s per request
* idle connections per GiB: 1 GiB / the RSS one more idle TLS connection adds (after the back-end
  keep-alive timeout)
* handshakes per second per core: 1 / CPU s per new (or resumed) TLS connection with one request
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import idle


def _per_core(cpu_us: float) -> str:
    return f"{1e6 / cpu_us:,.0f}" if cpu_us > 0 else "n/a"


def report(found: list[Any], idle_max: int, png: Path, with_nginx: bool) -> list[str]:
    by_key = {s.key: s for s in found}
    print(f"\nidle connections: up to {idle_max} per server (bench/idle.py) ...", flush=True)
    curves = idle.run(idle_max, max(idle_max // 10, 1), with_nginx=with_nginx)
    idle.write_png(curves, png)
    per_gib = {("nginx" if c.name.startswith("nginx") else "gateway"): 2**30 / max(c.per_connection()[0], 1)
               for c in curves}
    lines = ["", "| per core / per GiB | gateway (1 worker) | nginx (1 worker) | gateway/nginx |", "|---|---|---|---|"]

    def row(label: str, key: str) -> None:
        ours, theirs = by_key.get(f"gateway{key}"), by_key.get(f"nginx{key}")
        a = ours.median("cpu_us") if ours else 0.0
        b = theirs.median("cpu_us") if theirs else 0.0
        ratio = f"{b / a:.2f}x" if a and b else "n/a"
        lines.append(f"| {label} | {_per_core(a)} | {_per_core(b)} | {ratio} |")

    row("terminals per core (1 req/s each, keep-alive)", "")
    row("new TLS connections per second per core (+1 request)", "_new")
    row("resumed TLS connections per second per core (+1 request)", "_resumed")
    g, n = per_gib.get("gateway"), per_gib.get("nginx")
    lines.append(f"| idle TLS keep-alive connections per GiB | {g:,.0f} | "
                 + (f"{n:,.0f} | {g / n:.2f}x |" if n else "n/a | n/a |"))
    lines += idle.report(curves)
    lines.append(f"idle-memory curve: {png}")
    return lines
