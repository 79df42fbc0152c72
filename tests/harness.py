"""Real processes for end-to-end tests: the stand-in back end and the gateway.

Usage (the fixtures in conftest.py wrap these):

    standin = start_standin()                       # one plain-HTTP back end, ports chosen by the OS
    gw = start_gateway(tmp_path, gateway_config(tmp_path, standin, bases=[base_entry(standin, "b1")]))
    httpx.get(gw.url("b1"), verify=gw.ca_file)      # https://127.0.0.1:<port>/
    gw.wait_for_log("configuration reloaded")       # text of the gateway's log so far
    gw.write_config(new_dict)                       # rewrites gateway.yaml; the gateway reloads itself
    gw.stop()

``gateway_config`` returns a plain dict (edit it freely before starting); ``base_entry`` makes one
base pointing at the stand-in with fresh free ports. The CA that signs the gateway's generated
server certificate is ``gw.ca_file`` (state/certs/ca.pem).
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
START_TIMEOUT = 20.0


# Ports below the kernel's ephemeral range (Linux 32768–60999, Windows 49152–65535). A port the
# kernel picks for a bind to 0 is one it may also give the next outgoing connection — of this
# suite or of another run on the machine — before the gateway binds it ("Address already in use").
_PORT_FLOOR = 10000
_ports = random.SystemRandom()  # never the seeded module-level generator (Hypothesis seeds it)
_handed_out: set[int] = set()


def _below_ephemeral() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0]) - 1
    except (OSError, ValueError, IndexError):
        return 32767


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, that this process has not handed out before."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    ceiling = _below_ephemeral()
    for _ in range(500 if ceiling > _PORT_FLOOR else 0):
        port = _ports.randint(_PORT_FLOOR, ceiling)
        if port in _handed_out:
            continue
        try:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.bind((host, port))
        except OSError:
            continue
        _handed_out.add(port)
        return port
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    # The CLI speaks the system's language (gateway/utils/messages.py); tests read its English.
    for name in ("LC_ALL", "LC_MESSAGES", "LANGUAGE"):
        env.pop(name, None)
    env["LANG"] = "C.UTF-8"
    return env


@dataclass
class Standin:
    process: subprocess.Popen[bytes]
    data_port: int
    print_port: int
    log_path: Path

    @property
    def data_url(self) -> str:
        return f"http://127.0.0.1:{self.data_port}"

    @property
    def print_url(self) -> str:
        return f"http://127.0.0.1:{self.print_port}"

    def stop(self) -> None:
        _terminate(self.process)


def start_standin(log_path: Path) -> Standin:
    """The stand-in's access log (one line per request, paths without query) goes to log_path."""
    err = open(log_path, "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway.standin", "--host", "127.0.0.1", "--data-port", "0", "--print-port", "0"],
        stdout=subprocess.PIPE, stderr=err, env=_env(), cwd=REPO,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        line = process.stdout.readline().decode("utf-8", "replace")
        if not line and process.poll() is not None:
            raise RuntimeError(f"stand-in exited with {process.returncode}")
        match = re.search(r"standin listening data=(\d+) print=(\d+)", line)
        if match:
            return Standin(process, int(match.group(1)), int(match.group(2)), log_path)
    _terminate(process)
    raise RuntimeError("stand-in did not report its ports")


def base_entry(standin: Standin, base_id: str, name: str | None = None, **overrides: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": base_id,
        "name": name or f"Base {base_id}",
        "folder": f"bases/{base_id}",
        "https": True,
        "user_auth": False,
        "data": {"listen": free_port(), "backend": standin.data_url},
        "print": {"enabled": True, "listen": free_port(), "backend": standin.print_url},
    }
    entry.update(overrides)
    return entry


def gateway_config(tmp_path: Path, standin: Standin | None = None, bases: list[dict[str, Any]] | None = None,
                   **overrides: Any) -> dict[str, Any]:
    if bases is None:
        assert standin is not None
        bases = [base_entry(standin, "b1", "Магазин 15 Вещевой, Расширенный")]
    config: dict[str, Any] = {
        "state_dir": "./state",
        "listen_host": "127.0.0.1",
        "admin": {"enabled": False},
        "proxy": {"backend_timeout": 5},
        # One process unless a test asks for more: the suite must not double its processes.
        "workers": 1,
        "bases": bases,
    }
    config.update(overrides)
    return config


@dataclass
class RunningGateway:
    directory: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    config: dict[str, Any]
    _log_offset: int = field(default=0)

    @property
    def config_path(self) -> Path:
        return self.directory / "gateway.yaml"

    @property
    def state_dir(self) -> Path:
        return self.directory / "state"

    @property
    def ca_file(self) -> str:
        return str(self.state_dir / "certs" / "ca.pem")

    def port(self, base_id: str, role: str = "data") -> int:
        for base in self.config["bases"]:
            if str(base["id"]) == base_id:
                return int(base[role]["listen"])
        raise KeyError(base_id)

    def url(self, base_id: str, role: str = "data", path: str = "/") -> str:
        base = next(b for b in self.config["bases"] if str(b["id"]) == base_id)
        scheme = "https" if base.get("https", True) else "http"
        return f"{scheme}://127.0.0.1:{self.port(base_id, role)}{path}"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def mark_log(self) -> None:
        """Later wait_for_log calls only look at what is logged after this point."""
        self._log_offset = len(self.log())

    def wait_for_log(self, pattern: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while time.monotonic() < deadline:
            text = self.log()[self._log_offset:]
            match = regex.search(text)
            if match:
                return match.group(0)
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"log never matched {pattern!r}; log:\n{self.log()[-4000:]}")

    def write_config(self, config: dict[str, Any]) -> None:
        self.config = config
        _write_yaml(self.config_path, config)

    def reload(self, config: dict[str, Any], expect: str = "configuration reloaded", timeout: float = 10.0) -> None:
        self.mark_log()
        self.write_config(config)
        self.wait_for_log(expect, timeout)

    def stop(self) -> int:
        return _terminate(self.process)


def _write_yaml(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    os.replace(tmp, path)


def start_gateway(directory: Path, config: dict[str, Any], *, wait: bool = True,
                  args: list[str] | None = None, open_files: int | None = None) -> RunningGateway:
    """open_files: the gateway process's hard and soft RLIMIT_NOFILE (POSIX only)."""
    directory.mkdir(parents=True, exist_ok=True)
    _write_yaml(directory / "gateway.yaml", config)
    log_path = directory / "gateway.log"
    log_file = open(log_path, "wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "-c", str(directory / "gateway.yaml"), *(args or ["run"])],
        stdout=log_file, stderr=subprocess.STDOUT, env=_env(), cwd=directory,
        preexec_fn=None if open_files is None else _open_files_limit(open_files),
    )
    gw = RunningGateway(directory, process, log_path, config)
    if wait:
        try:
            gw.wait_for_log(r"gateway ready", START_TIMEOUT)
        except AssertionError:
            gw.stop()
            raise
    return gw


def _open_files_limit(count: int) -> Any:
    def apply() -> None:
        import resource
        resource.setrlimit(resource.RLIMIT_NOFILE, (count, count))
    return apply


def run_gateway_command(directory: Path, *args: str, input: str | None = None,
                        timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run a one-shot ``gateway -c <dir>/gateway.yaml ARGS`` and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "gateway", "-c", str(directory / "gateway.yaml"), *args],
        input=input, capture_output=True, text=True, encoding="utf-8", env=_env(), cwd=directory, timeout=timeout,
    )


def _terminate(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM if hasattr(signal, "SIGTERM") else signal.SIGINT)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    return int(process.returncode)


def cli_ok(directory: Path, *args: str, input: str | None = None, secrets: tuple[str, ...] = ()) -> str:
    """Run a one-shot gateway command that must succeed and must not echo any of ``secrets``."""
    done = run_gateway_command(directory, *args, input=input)
    assert done.returncode == 0, done.stderr
    for secret in secrets:
        assert secret not in done.stdout + done.stderr, "a secret was echoed by the command"
    return done.stdout
