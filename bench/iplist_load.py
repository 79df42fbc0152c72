"""How long a 1,000,000-line IP list takes to load (read, decode, parse, compile).

Usage: python bench/iplist_load.py [LINES]. The list is a realistic mix — 70 % single
addresses, 15 % masks, 10 % ranges, 5 % IPv6 — written as UTF-8 with CRLF line ends, the way
Notepad saves it. The goal (SPEC section 4, issue 4) is at most 3 s for a million lines.
"""

from __future__ import annotations

import random
import socket
import sys
import tempfile
import time
from pathlib import Path

from gateway.iplist import CompiledList, decide, load_list


def sample_lines(count: int, seed: int = 1) -> list[str]:
    rng = random.Random(seed)

    def v4(value: int) -> str:
        return socket.inet_ntoa(value.to_bytes(4, "big"))

    lines = []
    for _ in range(count):
        kind = rng.random()
        start = rng.getrandbits(32)
        if kind < 0.70:
            lines.append(v4(start))
        elif kind < 0.85:
            lines.append(f"{v4(start)}/{rng.randint(16, 32)}")
        elif kind < 0.95:
            end = min(start + rng.randint(0, 5000), 2**32 - 1)
            lines.append(f"{v4(start)} - {v4(end)}")
        else:
            lines.append(socket.inet_ntop(socket.AF_INET6, rng.getrandbits(128).to_bytes(16, "big")))
    return lines


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "blacklist.dat"
        path.write_bytes(("\r\n".join(sample_lines(count)) + "\r\n").encode("utf-8"))
        size = path.stat().st_size
        best = best_cpu = float("inf")
        for _ in range(3):
            started, started_cpu = time.perf_counter(), time.process_time()
            compiled = load_list(path)
            best = min(best, time.perf_counter() - started)
            best_cpu = min(best_cpu, time.process_time() - started_cpu)
    print(f"{count:,} lines ({size / 1e6:.1f} MB): {compiled.entries:,} entries, "
          f"{len(compiled.v4):,} IPv4 + {len(compiled.v6):,} IPv6 intervals, {len(compiled.errors)} bad lines; "
          f"load {best:.2f} s wall, {best_cpu:.2f} s CPU (best of 3)")
    print(lookup_figures(compiled))
    return 0


def lookup_figures(big: CompiledList, probes: int = 200_000) -> str:
    """Cost of one connection's decision with the big list in force, against no list at all."""
    rng = random.Random(2)
    hosts = [socket.inet_ntoa(rng.getrandbits(32).to_bytes(4, "big")) for _ in range(probes)]
    empty = CompiledList(Path("empty.dat"), present=False)
    timings = {}
    for name, lists in (("empty lists", [empty]), (f"{big.entries:,}-entry list", [big])):
        started = time.perf_counter()
        for host in hosts:
            decide(host, lists, lists)
        timings[name] = (time.perf_counter() - started) / probes * 1e6
    return "decision per connection: " + ", ".join(f"{us:.1f} µs with {name}" for name, us in timings.items())


if __name__ == "__main__":
    sys.exit(main())
