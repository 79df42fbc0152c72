"""Which process listens on a TCP port, where the OS lets us ask without extra rights.

Linux: /proc/net/tcp{,6} gives the listening socket's inode, /proc/<pid>/fd finds its owner
(only our own account's processes unless run as root). Windows: ``netstat -ano`` and
``tasklist``. Elsewhere, or when not allowed: None, and callers fall back to "another program".
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from gateway.config import DEFAULT_CONFIG_NAME
from gateway.config.demo import DEMO_CONFIG

LISTEN_STATE = "0A"


@dataclass(frozen=True)
class PortOwner:
    pid: int
    name: str
    argv: tuple[str, ...] = ()
    cwd: str | None = None

    def is_gateway(self) -> bool:
        """A `gateway run` / `gateway demo` process (python -m gateway, or the gateway script)."""
        args = [Path(a).name for a in self.argv]
        launched = "gateway" in args[:3] or any(a == "-m" and n == "gateway" for a, n in zip(args, args[1:]))
        return launched and any(a in ("run", "demo") for a in args)

    def config_path(self) -> Path | None:
        """The configuration the process serves; None only when its command line cannot tell."""
        argv = list(self.argv)
        for i, arg in enumerate(argv):
            value = None
            if arg in ("-c", "--config", "--demo-config") and i + 1 < len(argv):
                value = argv[i + 1]
            elif arg.startswith(("--config=", "--demo-config=")):
                value = arg.split("=", 1)[1]
            if value:
                path = Path(value)
                return path if path.is_absolute() or self.cwd is None else Path(self.cwd) / path
        # No option: the command's default. Without this, `gateway demo` (make run) or a bare
        # `gateway run` looked like the gateway of every configuration, and `check` of another one
        # called the ports they hold free.
        if self.cwd is None:
            return None
        args = [Path(a).name for a in argv]
        if "demo" in args:
            return Path(self.cwd) / DEMO_CONFIG
        return Path(self.cwd) / DEFAULT_CONFIG_NAME


def owner_of(port: int) -> PortOwner | None:
    try:
        if sys.platform.startswith("linux"):
            return _linux_owner(port)
        if sys.platform == "win32":
            return _windows_owner(port)
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
    return None


def proc_tcp_rows() -> Iterator[list[str]]:
    """The fields of every row of Linux's /proc/net/tcp and tcp6 (local address, remote, state, …, inode)."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9:
                yield fields


def _linux_inodes(port: int) -> set[str]:
    inodes = {fields[9] for fields in proc_tcp_rows()
              if fields[3] == LISTEN_STATE and int(fields[1].rsplit(":", 1)[1], 16) == port}
    inodes.discard("0")
    return inodes


def _linux_owner(port: int) -> PortOwner | None:
    inodes = {f"socket:[{inode}]" for inode in _linux_inodes(port)}
    if not inodes:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) in inodes:
                    return _linux_process(int(entry.name))
            except OSError:
                continue
    return None


def _linux_process(pid: int) -> PortOwner:
    base = Path("/proc") / str(pid)
    try:
        argv = tuple(a for a in (base / "cmdline").read_bytes().decode(errors="replace").split("\0") if a)
    except OSError:
        argv = ()
    try:
        name = (base / "comm").read_text().strip()
    except OSError:
        name = Path(argv[0]).name if argv else "?"
    try:
        cwd: str | None = os.readlink(base / "cwd")
    except OSError:
        cwd = None
    return PortOwner(pid, name, argv, cwd)


def _windows_owner(port: int) -> PortOwner | None:
    out = subprocess.run(["netstat", "-ano", "-p", "TCP"], capture_output=True, text=True, timeout=5).stdout
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[3].upper() == "LISTENING" and fields[1].rsplit(":", 1)[-1] == str(port):
            pid = int(fields[4])
            listing = subprocess.run(["tasklist", "/FI", f"PID eq {pid}", "/FO", "CSV", "/NH"],
                                     capture_output=True, text=True, timeout=5).stdout
            name = listing.split(",")[0].strip('"') if listing.startswith('"') else "?"
            return PortOwner(pid, name)
    return None


def describe(owner: PortOwner) -> str:
    return f"{owner.name} (pid {owner.pid})"


# --- on which addresses a port listens (for the bypass check) -----------------------------------


def _decode_proc_address(hex_addr: str) -> str:
    import ipaddress

    raw = bytes.fromhex(hex_addr)
    # /proc stores each 32-bit word in host (little-endian) order.
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return str(ipaddress.ip_address(words))


def listen_addresses(port: int) -> list[str] | None:
    """Local addresses with a listening TCP socket on ``port`` ("0.0.0.0"/"::" = every address);
    None when this OS cannot tell us. Read from the OS tables: no connection is made."""
    try:
        if sys.platform.startswith("linux"):
            found: list[str] = []
            for fields in proc_tcp_rows():
                if fields[3] == LISTEN_STATE:
                    address, _, hex_port = fields[1].rpartition(":")
                    if int(hex_port, 16) == port:
                        found.append(_decode_proc_address(address))
            return sorted(set(found))
        if sys.platform == "win32":
            out = subprocess.run(["netstat", "-ano", "-p", "TCP"], capture_output=True, text=True, timeout=5).stdout
            out += subprocess.run(["netstat", "-ano", "-p", "TCPv6"], capture_output=True, text=True, timeout=5).stdout
            found = []
            for line in out.splitlines():
                fields = line.split()
                if len(fields) >= 4 and fields[3].upper() == "LISTENING":
                    address, _, text_port = fields[1].rpartition(":")
                    if text_port == str(port):
                        found.append(address.strip("[]"))
            return sorted(set(found))
    except (OSError, ValueError, subprocess.SubprocessError):
        return None
    return None
