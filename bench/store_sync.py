"""What syncing every commit of the state database costs: one failed login's record
(``add_failure``, one write transaction) with ``synchronous = FULL`` — what the gateway uses
since a disk turned read-only lost the last commits (docs/RELIABILITY.md, fault 3) — against
``NORMAL`` (the WAL synced only at checkpoints) in the same run, on the same disk, and both
against the argon2 verification every such login costs anyway.

    .venv/bin/python bench/store_sync.py [--writes N] [--folder DIR]

The folder should be on the disk the state folder will live on (default: a temporary folder).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.store import keys  # noqa: E402
from gateway.store.sqlite import SqliteStore  # noqa: E402

ROUNDS = 3


def per_write(folder: Path, synchronous: str, writes: int) -> float:
    store = SqliteStore(folder / f"{synchronous.lower()}.db")
    try:
        # The bench's only reach inside: this thread's connection told the mode to compare.
        store._conn().execute(f"PRAGMA synchronous = {synchronous}")
        now = time.time()
        start = time.perf_counter()
        for i in range(writes):
            store.add_failure(f"address:127.0.0.{i % 200}", now + i * 0.001, now - 3600, "127.0.0.1")
        return (time.perf_counter() - start) / writes
    finally:
        store.close()


def per_argon2(checks: int) -> float:
    hashed = keys.hash_secret("Sklad2024x")
    start = time.perf_counter()
    for _ in range(checks):
        keys.verify_secret(hashed, "Wrong12345")
    return (time.perf_counter() - start) / checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=400)
    parser.add_argument("--folder", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.folder) as raw:
        folder = Path(raw)
        normal, full = [], []
        for _ in range(ROUNDS):  # interleaved: the machine's noise falls on both alike
            normal.append(per_write(folder, "NORMAL", args.writes))
            full.append(per_write(folder, "FULL", args.writes))
        argon2 = per_argon2(20)
    n, f = statistics.median(normal), statistics.median(full)
    print(f"one failed-login record, synchronous NORMAL (baseline): {n * 1000:.3f} ms")
    print(f"one failed-login record, synchronous FULL:              {f * 1000:.3f} ms  ({f / n:.2f}x the baseline)")
    print(f"one argon2 verification (every such login):             {argon2 * 1000:.3f} ms  "
          f"(FULL adds {(f - n) / argon2 * 100:.1f} % of it)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
