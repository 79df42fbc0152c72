"""Process plumbing for the benchmark: CPU pinning, start/stop, waiting for a port, peak RSS.

Pinning uses ``os.sched_setaffinity`` (Linux); elsewhere everything runs unpinned and the
benchmark says so. psutil (the ``test`` extra) is optional: without it peak memory is not shown.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

try:
    import psutil
except ImportError:  # pragma: no cover - psutil comes with the test extra
    psutil = None  # type: ignore[assignment]


@dataclass(frozen=True)
class CpuPlan:
    server: set[int] | None  # the proxy (or back end) under test
    load: set[int] | None  # the load generator, the back end behind a proxy, this script
    description: str


def cpu_plan() -> CpuPlan:
    if not hasattr(os, "sched_setaffinity"):
        return CpuPlan(None, None, "no CPU pinning on this platform (os.sched_setaffinity missing)")
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return CpuPlan(None, None, f"no CPU pinning: only {len(cpus)} CPU available")
    server, load = {cpus[0]}, set(cpus[1:])
    return CpuPlan(server, load,
                   f"server under test pinned to CPU {cpus[0]}; load generator, the back end behind a "
                   f"proxy and this script on CPU {','.join(map(str, sorted(load)))}")


def pin_preexec(cpus: set[int] | None) -> Callable[[], None] | None:
    if cpus is None or not hasattr(os, "sched_setaffinity"):
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def pin_tree(pid: int, cpus: set[int] | None) -> None:
    """Pins a process, its children and every one of their threads (affinity is per thread)."""
    if cpus is None or not hasattr(os, "sched_setaffinity"):
        return
    pids = [pid]
    if psutil is not None:
        try:
            pids += [child.pid for child in psutil.Process(pid).children(recursive=True)]
        except psutil.Error:
            pass
    for each in pids:
        task_dir = f"/proc/{each}/task"
        tids = [int(t) for t in os.listdir(task_dir)] if os.path.isdir(task_dir) else [each]
        for tid in tids:
            try:
                os.sched_setaffinity(tid, cpus)
            except OSError:
                pass  # the thread ended meanwhile


def spawn(command: list[str], *, cpus: set[int] | None, log_path: os.PathLike[str] | str,
          cwd: os.PathLike[str] | str | None = None, env: dict[str, str] | None = None,
          stdout_pipe: bool = False) -> subprocess.Popen[bytes]:
    log = open(log_path, "ab")
    try:
        return subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE if stdout_pipe else log,
                                stderr=log if stdout_pipe else subprocess.STDOUT,
                                preexec_fn=pin_preexec(cpus))
    finally:
        log.close()


def terminate(process: subprocess.Popen[Any], sig: int = getattr(signal, "SIGTERM", signal.SIGINT)) -> None:
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def wait_for_port(host: str, port: int, *, tls: bool, process: subprocess.Popen[Any], timeout: float = 30.0) -> None:
    """Until a connection (and a TLS handshake, for tls) succeeds; raises if the process dies."""
    context = None
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode} before listening on port {port}")
        try:
            with socket.create_connection((host, port), timeout=2) as sock:
                if context is None:
                    return
                with context.wrap_socket(sock, server_hostname=host):
                    return
        except OSError as e:
            last = str(e)
        time.sleep(0.1)
    raise RuntimeError(f"not listening on port {port} after {timeout:.0f} s ({last})")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class RssSampler:
    """Samples the resident memory of a process tree in a thread; keeps the peak in bytes."""

    pid: int
    interval: float = 0.1
    peak: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> RssSampler:
        if psutil is not None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, tree_rss(self.pid))
            if self._stop.wait(self.interval):
                return


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU time used so far by a process and its children (0.0 without psutil).

    CPU time per request is what the proxy costs on its own: unlike requests/s it does not
    drop when another program on a shared machine takes the CPU away for a while."""
    if psutil is None:
        return 0.0
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def tree_rss(pid: int) -> int:
    if psutil is None:
        return 0
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.Error:
            pass
    return total
