"""Starts the servers the benchmark compares: the stand-in back end, bare mitmdump, the gateway
and nginx, each as its own process, all on 127.0.0.1 with ports chosen at run time."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from procs import free_port, pin_tree, spawn, terminate, wait_for_port

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
START_TIMEOUT = 30.0
NGINX = Path("/usr/sbin/nginx")


class StartError(Exception):
    """A server did not start; the message says which and points at its log."""


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen[Any]
    log_path: Path
    headers: list[str] = field(default_factory=list)
    stop_signal: int = getattr(signal, "SIGTERM", signal.SIGINT)

    def stop(self) -> None:
        terminate(self.process, self.stop_signal)


def python_env(repo: Path = REPO) -> dict[str, str]:
    """``repo``: the checkout whose ``gateway`` and ``addons`` run (another tree for --old-tree)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(repo) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def _log_tail(path: Path, chars: int = 1500) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")[-chars:]
    except OSError:
        return ""


def start_standin(workdir: Path, cpus: set[int] | None) -> Server:
    log_path = workdir / "standin.log"
    process = spawn([sys.executable, "-m", "gateway.standin", "--host", HOST, "--data-port", "0",
                     "--print-port", "off", "--no-access-log"],
                    cpus=cpus, log_path=log_path, cwd=REPO, env=python_env(), stdout_pipe=True)
    assert process.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        line = process.stdout.readline().decode("utf-8", "replace")
        if not line and process.poll() is not None:
            break
        match = re.search(r"standin listening data=(\d+)", line)
        if match:
            return Server("back end direct", f"http://{HOST}:{match.group(1)}", process, log_path)
    terminate(process)
    raise StartError(f"stand-in back end did not start; log {log_path}:\n{_log_tail(log_path)}")


def mitmdump_path() -> str | None:
    beside = Path(sys.executable).parent / "mitmdump"
    return str(beside) if beside.exists() else shutil.which("mitmdump")


def start_mitmdump(workdir: Path, backend: str, cpus: set[int] | None) -> Server:
    """mitmdump with its default addons, as a user would run it; TLS to clients with a
    certificate from its own CA (kept in a temporary confdir, not ~/.mitmproxy)."""
    binary = mitmdump_path()
    if binary is None:
        raise StartError("mitmdump not found next to this Python or on PATH")
    port = free_port()
    log_path = workdir / "mitmdump.log"
    process = spawn([binary, "--mode", f"reverse:{backend}@{HOST}:{port}", "-q",
                     "--set", f"confdir={workdir / 'mitmproxy'}"],
                    cpus=cpus, log_path=log_path, cwd=workdir)
    return _ready(Server("mitmdump (reverse)", f"https://{HOST}:{port}", process, log_path), tls=True, cpus=cpus)


def gateway_config(backend: str, *, base_id: str, user_auth: bool = False, workers: int = 1) -> dict[str, Any]:
    return {
        # One worker unless a scenario asks for more: the one-core comparisons stay one process.
        "workers": workers,
        "state_dir": "./state",
        "listen_host": HOST,
        "tls": {},
        "admin": {"enabled": False},
        "bases": [{
            "id": base_id,
            "name": "Склад (benchmark)",
            "folder": f"bases/{base_id}",
            "https": True,
            "user_auth": user_auth,
            "data": {"listen": free_port(), "backend": backend},
        }],
    }


def write_gateway(directory: Path, config: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "gateway.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def server_folder(directory: Path, config: dict[str, Any]) -> Path:
    return directory / config["bases"][0]["folder"] / "Server"


def gateway_cli(directory: Path, *args: str, stdin: str | None = None,
                repo: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", "-c", str(directory / "gateway.yaml"), *args],
                          input=stdin, capture_output=True, text=True, encoding="utf-8", env=python_env(repo),
                          cwd=directory, timeout=120)


def start_gateway(name: str, directory: Path, config: dict[str, Any], cpus: set[int] | None,
                  env: dict[str, str] | None = None, *, probe_tls: bool = True, repo: Path = REPO) -> Server:
    """``probe_tls=False`` where the port expects a PROXY header first: a plain connect tells it listens."""
    write_gateway(directory, config)
    log_path = directory / "gateway.log"
    process = spawn([sys.executable, "-m", "gateway", "-c", str(directory / "gateway.yaml"), "run"],
                    cpus=cpus, log_path=log_path, cwd=directory, env={**python_env(repo), **(env or {})})
    port = config["bases"][0]["data"]["listen"]
    server = Server(name, f"https://{HOST}:{port}", process, log_path)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if "gateway ready" in _log_tail(log_path, 100_000):
            return _ready(server, tls=probe_tls, cpus=cpus)
        if process.poll() is not None:
            break
        time.sleep(0.1)
    terminate(process)
    raise StartError(f"{name} did not start; log {log_path}:\n{_log_tail(log_path)}")


def nginx_available() -> bool:
    return NGINX.exists() and os.access(NGINX, os.X_OK)


NGINX_CONF = """\
# Generated by bench/run.py: nginx as the TLS reverse proxy the gateway is compared with.
worker_processes 1;
daemon off;
master_process on;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
worker_rlimit_nofile {nofile};
events {{ worker_connections {worker_connections}; }}
http {{
    access_log off;
    keepalive_timeout {keepalive_timeout};
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream standin {{
        server {backend_host}:{backend_port};
        keepalive 32;
    }}
    server {{
        listen {host}:{port} ssl;
{certificates}
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {{
            proxy_pass http://standin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $proxy_host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $http_host;
        }}
    }}
}}
"""


def start_nginx(workdir: Path, backend: str, cert: Path, key: Path, cpus: set[int] | None, *,
                worker_connections: int = 1024, keepalive_timeout: float = 75,
                also: tuple[tuple[Path, Path], ...] = (), name: str = "nginx (TLS proxy)",
                folder: str = "nginx") -> Server:
    """nginx serving ``cert``/``key`` and each pair of ``also`` beside it (nginx, like the
    gateway, picks the certificate by what the client offers: ECDSA or RSA)."""
    directory = workdir / folder
    directory.mkdir(parents=True, exist_ok=True)
    host_port = backend.split("://", 1)[1]
    backend_host, backend_port = host_port.rsplit(":", 1)
    port = free_port()
    conf = directory / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=directory, backend_host=backend_host, backend_port=backend_port,
                                      host=HOST, port=port,
                                      certificates="\n".join(f"        ssl_certificate {c};\n        ssl_certificate_key {k};"
                                                             for c, k in ((cert, key), *also)),
                                      worker_connections=worker_connections, nofile=2 * worker_connections + 64,
                                      keepalive_timeout=f"{keepalive_timeout:g}s"), encoding="utf-8")
    log_path = directory / "stdout.log"
    process = spawn([str(NGINX), "-p", str(directory), "-c", str(conf), "-e", str(directory / "error.log")],
                    cpus=cpus, log_path=log_path, cwd=directory)
    server = Server(name, f"https://{HOST}:{port}", process, directory / "error.log",
                    stop_signal=getattr(signal, "SIGQUIT", signal.SIGTERM))
    return _ready(server, tls=True, cpus=cpus)


def _ready(server: Server, *, tls: bool, cpus: set[int] | None) -> Server:
    port = int(server.url.rsplit(":", 1)[1])
    try:
        wait_for_port(HOST, port, tls=tls, process=server.process, timeout=START_TIMEOUT)
    except RuntimeError as e:
        server.stop()
        raise StartError(f"{server.name} did not start: {e}; log {server.log_path}:\n{_log_tail(server.log_path)}") from None
    # Threads and worker processes born after the spawn inherit the pinning; this catches any
    # that were not (and nginx's worker, forked from an already pinned master, is checked too).
    pin_tree(server.process.pid, cpus)
    return server
