"""The facts behind `gateway check` and /readyz: is a back end reachable, is a port free or held
by the running gateway itself, and what is wrong with each base.

No mitmproxy here. ``gateway check`` must be safe to run while the gateway runs, so a busy port
is only "taken" when the running gateway is not the one holding it: the gateway records the
ports it serves in ``<state_dir>/run/<pid>.json`` (written by gateway/web/admin.py), and a port
listed there by a live process is ours.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from gateway.config import BaseConfig, GatewayConfig, Listener
from gateway.ops.ports import port_problem
from gateway.utils.files import atomic_write_text
from gateway.ops.portowner import owner_of

RUN_FOLDER = "run"
RUN_FOLDER_MODE = 0o700
# A warehouse LAN answers a TCP connect in milliseconds; a second means "not there".
PROBE_TIMEOUT = 1.0


# --- back ends ---------------------------------------------------------------------------------


def tcp_problem(host: str, port: int, timeout: float = PROBE_TIMEOUT) -> str | None:
    """None when something accepts a TCP connection at host:port, else why not, in words."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as e:
        return _connect_failure(e, host, timeout)


async def tcp_problem_async(host: str, port: int, timeout: float = PROBE_TIMEOUT) -> str | None:
    """``tcp_problem`` for an event loop (the admin listener's /readyz): same answers, same words."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, asyncio.TimeoutError) as e:
        return _connect_failure(e, host, timeout)
    writer.close()
    return None


def _connect_failure(e: BaseException, host: str, timeout: float) -> str:
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, (socket.timeout, TimeoutError, asyncio.TimeoutError)):
        return f"timed out after {timeout:g} s"
    if isinstance(e, socket.gaierror):
        return f"the name {host!r} does not resolve"
    return getattr(e, "strerror", None) or str(e)


def backend_problem(backend: str, host: str, port: int, timeout: float = PROBE_TIMEOUT) -> str | None:
    reason = tcp_problem(host, port, timeout)
    return None if reason is None else f"back end {backend} not reachable ({reason})"


# --- the run file: which ports the running gateway holds -----------------------------------------


@dataclass(frozen=True)
class RunInfo:
    pid: int
    ports: tuple[int, ...]
    admin: int | None = None
    started: float = 0.0
    # For `gateway status` and `gateway reload` (gateway/commands/status.py, reloadctl.py).
    config: str = ""
    loaded_at: float | None = None
    last_reload: dict[str, Any] | None = None
    listeners: tuple[str, ...] = ()
    workers: tuple[int, ...] = ()


def run_file(state_dir: Path, pid: int) -> Path:
    # One file per process: several gateway processes may share a state folder.
    return state_dir / RUN_FOLDER / f"{pid}.json"


def write_run_file(state_dir: Path, info: RunInfo) -> None:
    write_run_record(state_dir, info.pid, {"pid": info.pid, "ports": sorted(info.ports), "admin": info.admin,
                               "started": info.started, "config": info.config, "loaded_at": info.loaded_at,
                               "last_reload": info.last_reload, "listeners": list(info.listeners),
                               "workers": list(info.workers)})


def write_run_record(state_dir: Path, pid: int, record: dict[str, Any]) -> None:
    """The one writer of run files (a gateway process's and the supervisor's), replaced in one
    rename so `gateway status` never reads half of one. The folder and its files are the
    owner's only: they name each worker's private admin port."""
    folder = state_dir / RUN_FOLDER
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True, mode=RUN_FOLDER_MODE)
    if os.name == "posix" and folder.stat().st_mode & 0o077:
        os.chmod(folder, RUN_FOLDER_MODE)  # mkdir's mode passes through the umask; older folders were 0755
    atomic_write_text(run_file(state_dir, pid), json.dumps(record), mode=0o600)


def remove_run_file(state_dir: Path, pid: int) -> None:
    try:
        run_file(state_dir, pid).unlink()
    except OSError:
        pass


def read_run_files(state_dir: Path) -> list[RunInfo]:
    infos = []
    for path in sorted((state_dir / RUN_FOLDER).glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            infos.append(RunInfo(pid=int(data["pid"]), ports=tuple(int(p) for p in data.get("ports", ())),
                                 admin=int(data["admin"]) if data.get("admin") else None,
                                 started=float(data.get("started", 0.0)),
                                 config=str(data.get("config") or ""),
                                 loaded_at=float(data["loaded_at"]) if data.get("loaded_at") else None,
                                 last_reload=data.get("last_reload") if isinstance(data.get("last_reload"), dict) else None,
                                 listeners=tuple(str(x) for x in data.get("listeners") or ()),
                                 workers=tuple(_worker_pid(x) for x in data.get("workers") or ())))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return infos


def _worker_pid(entry: Any) -> int:
    # The supervisor lists its workers as {"slot", "pid", "started"}; a bare pid is accepted too.
    return int(entry["pid"]) if isinstance(entry, dict) else int(entry)


def process_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if sys.platform == "win32":
        return _windows_process_alive(pid)
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another account
    except OSError:
        return False
    return True


def _windows_process_alive(pid: int) -> bool:
    # os.kill on Windows would terminate the process; ask the kernel instead.
    import ctypes

    synchronize, wait_timeout = 0x00100000, 0x102
    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    handle = kernel32.OpenProcess(synchronize, False, pid)
    if not handle:
        return False
    try:
        return bool(kernel32.WaitForSingleObject(handle, 0) == wait_timeout)
    finally:
        kernel32.CloseHandle(handle)


def gateway_ports(state_dir: Path, alive: Callable[[int], bool] = process_alive) -> set[int]:
    """Ports the running gateway processes of this state folder hold (empty when none runs)."""
    ports: set[int] = set()
    for info in read_run_files(state_dir):
        if alive(info.pid):
            ports.update(info.ports)
            if info.admin:
                ports.add(info.admin)
    return ports


def listen_problem(host: str, port: int, ours: set[int], config: Path | None = None) -> str | None:
    """Like ports.port_problem, but a port the running gateway holds is fine — known from its run
    file, or, when that is gone with the state folder, from the process holding the port."""
    problem = port_problem(host, port)
    if problem is not None and "taken" in problem:
        if port in ours:
            return None

        owner = owner_of(port)
        if owner is not None and owner.is_gateway():
            theirs = owner.config_path()
            if config is None or theirs is None or _same_file(theirs, config):
                return None
            return f"port {port} is held by another gateway (pid {owner.pid}, configuration {theirs})"
    return problem


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == Path(b).resolve()
    except OSError:
        return False


# --- one line per base ------------------------------------------------------------------------


@dataclass
class BaseStatus:
    base_id: str
    name: str
    address: str
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # said, but do not fail the check

    @property
    def ok(self) -> bool:
        return not self.problems

    def line(self) -> str:
        text = self._problems_line()
        return "\n".join([text, *(f"  warning: {w}" for w in self.warnings)])

    def _problems_line(self) -> str:
        if self.ok:
            return f"{self.name} — {self.address} — OK"
        if len(self.problems) == 1:
            return f"{self.name} — {self.address} — {self.problems[0]}"
        # One problem per line: a long run of "; " hid the one that mattered.
        return "\n".join([f"{self.name} — {self.address} — {len(self.problems)} problems:",
                          *(f"  - {p}" for p in self.problems)])

    def as_dict(self) -> dict[str, object]:
        return {"base": self.base_id, "name": self.name, "address": self.address, "ok": self.ok,
                "problems": list(self.problems), "warnings": list(self.warnings)}


def public_host(cfg: GatewayConfig) -> str:
    """The host name people type to reach the gateway, as in the seed's "Адрес: https://it02:10560"."""
    if cfg.listen_host in ("", "0.0.0.0", "::"):
        return socket.gethostname() or "localhost"
    return f"[{cfg.listen_host}]" if ":" in cfg.listen_host else cfg.listen_host


def address_of(cfg: GatewayConfig, base: BaseConfig) -> str:
    return f"{'https' if base.https else 'http'}://{public_host(cfg)}:{base.data.listen}"


def listener_problems(listener: Listener, host: str, ours: set[int], timeout: float,
                      config: Path | None = None) -> list[str]:
    problems = []
    where = "" if listener.role == "data" else "print "
    taken = listen_problem(host, listener.port, ours, config)
    if taken:
        problems.append(where + taken)
    unreachable = backend_problem(listener.endpoint.backend, listener.endpoint.backend_host,
                                  listener.endpoint.backend_port, timeout)
    if unreachable:
        problems.append(where + unreachable)
    return problems


def check_bases(cfg: GatewayConfig, extra: dict[str, list[str]] | None = None,
                timeout: float = PROBE_TIMEOUT, ours: set[int] | None = None) -> list[BaseStatus]:
    """Ports and back ends of every base; ``extra`` adds problems found elsewhere (certificates,
    IP lists), keyed by base id."""
    extra = extra or {}
    ours = gateway_ports(cfg.state_dir) if ours is None else ours
    host = "" if cfg.listen_host in ("", "0.0.0.0", "::") else cfg.listen_host
    listeners = cfg.listeners()
    # Back ends are probed side by side: ten unreachable bases must not take ten timeouts.
    with ThreadPoolExecutor(max_workers=min(16, max(1, len(listeners)))) as pool:
        found = list(pool.map(lambda listener: listener_problems(listener, host, ours, timeout, cfg.source),
                              listeners))
    statuses = []
    for base in cfg.bases:
        status = BaseStatus(base.id, base.name, address_of(cfg, base))
        for listener, problems in zip(listeners, found):
            if listener.base.id == base.id:
                status.problems += problems
        status.problems += extra.get(base.id, [])
        statuses.append(status)
    return statuses
