"""Bench-only memory tracing for ``bench/soak.py --trace-memory DIR``: Python imports this module
at start-up when its folder is on PYTHONPATH, which soak.py puts there for the gateway process
only. Nothing in the gateway imports it, so a normal run pays nothing.

With ``GATEWAY_SOAK_TRACE=DIR`` set, it starts tracemalloc (``GATEWAY_SOAK_TRACE_FRAMES`` frames,
default 6) and, every ``GATEWAY_SOAK_TRACE_EVERY`` seconds (default 60), writes into DIR:
``snap-<seconds>.tracemalloc`` (a tracemalloc snapshot) and ``counts-<seconds>.json``: live
objects per type (``gc.get_objects``), the traced Python heap, and glibc's malloc figures
(``mallinfo2``: bytes in use and bytes free inside the heap) where glibc is there — RSS that is
neither Python objects nor malloc'd C memory in use is heap the allocator keeps.
``GATEWAY_SOAK_TRACE_LEVEL=malloc``: only the malloc figures (no tracemalloc, no object count:
next to nothing, so the gateway runs at its normal speed).
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import gc
import json
import os
import sys
import threading
import time
import tracemalloc
from pathlib import Path


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def _mallinfo() -> dict[str, int]:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
        info = libc.mallinfo2()
    except (OSError, AttributeError):
        return {}
    # arena: bytes the main heap took from the system; hblkhd: mmap'd blocks; uordblks: in use;
    # fordblks: free but kept.
    return {"arena": info.arena, "mmap": info.hblkhd, "in_use": info.uordblks, "free_kept": info.fordblks}


def _dump_malloc(folder: Path, started: float) -> None:
    at = int(time.monotonic() - started)
    counts = {"t": at, "malloc": _mallinfo()}
    (folder / f"counts-{at:05d}.json").write_text(json.dumps(counts), encoding="utf-8")


def _dump(folder: Path, started: float) -> None:
    at = int(time.monotonic() - started)
    # The list gc.get_objects() returns holds a reference to every object, and a tuple the gateway
    # is building that moment then has two: CPython's in-place resize of it fails (SystemError,
    # "bad argument to internal function", seen as a 500). So this thread keeps the GIL until the
    # list is gone: no switch to the gateway's thread in between.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1000.0)
    time.sleep(0.001)  # give the GIL away once: a thread already waiting with the old interval gets it now
    try:
        by_type = collections.Counter(map(type, gc.get_objects()))
    finally:
        sys.setswitchinterval(interval)
    types = collections.Counter({f"{t.__module__}.{t.__qualname__}": n for t, n in by_type.items()})
    current, peak = tracemalloc.get_traced_memory()
    counts = {"t": at, "objects": sum(types.values()), "types": dict(types.most_common(400)),
              "traced": current, "traced_peak": peak, "malloc": _mallinfo()}
    tracemalloc.take_snapshot().dump(str(folder / f"snap-{at:05d}.tracemalloc"))
    (folder / f"counts-{at:05d}.json").write_text(json.dumps(counts), encoding="utf-8")


def _loop(folder: Path, every: float, malloc_only: bool) -> None:
    started = time.monotonic()
    while True:
        time.sleep(every)
        try:
            (_dump_malloc if malloc_only else _dump)(folder, started)
        except Exception as e:  # a failed dump must not take the gateway down; it is a bench aid
            print(f"memtrace: dump failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)


def _start() -> None:
    folder = os.environ.get("GATEWAY_SOAK_TRACE")
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    malloc_only = os.environ.get("GATEWAY_SOAK_TRACE_LEVEL") == "malloc"
    if not malloc_only:
        tracemalloc.start(int(os.environ.get("GATEWAY_SOAK_TRACE_FRAMES", "6")))
    every = float(os.environ.get("GATEWAY_SOAK_TRACE_EVERY", "60"))
    threading.Thread(target=_loop, args=(Path(folder), every, malloc_only), name="soak-memtrace",
                     daemon=True).start()


_start()
