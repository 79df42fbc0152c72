"""A real, throw-away ``redis-server`` for tests: a free port on 127.0.0.1, a temp folder, no persistence.

    server = start_redis(tmp_path / "redis")
    store = RedisStore(server.url)
    server.stop()

``redis-server`` comes from the Debian package of that name (``scripts/system-deps.sh``).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from tests.harness import free_port

START_TIMEOUT = 10.0
ATTEMPTS = 3  # a free port can be taken by someone else between choosing and binding it


@dataclass
class RedisServer:
    process: subprocess.Popen[bytes]
    port: int
    directory: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True, socket_timeout=5)

    def log(self) -> str:
        return (self.directory / "redis.log").read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def stop_keeping_data(server: RedisServer) -> None:
    """An outage that loses nothing: the data is saved to dump.rdb, which ``restart`` loads."""
    with server.client() as client:
        client.save()
    server.stop()


def restart(server: RedisServer) -> RedisServer:
    """The same server again on the same port and folder (a stopped Redis coming back)."""
    binary = shutil.which("redis-server")
    assert binary is not None
    for _ in range(50):  # the old socket may linger a moment
        started = _launch(binary, server.directory, server.port)
        if started is not None:
            return started
        time.sleep(0.1)
    raise RuntimeError(f"redis-server did not come back on port {server.port}")


def start_redis(directory: Path) -> RedisServer:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed; run scripts/system-deps.sh (Debian package redis-server)")
    directory.mkdir(parents=True, exist_ok=True)
    for _ in range(ATTEMPTS):
        server = _launch(binary, directory, free_port())
        if server is not None:
            return server
    raise RuntimeError(f"redis-server did not answer PING; its log:\n{(directory / 'redis.log').read_text()[-2000:]}")


def start_replica(directory: Path, primary: RedisServer) -> RedisServer:
    """A second redis-server copying ``primary`` (``--replicaof``), once it has the primary's data."""
    binary = shutil.which("redis-server")
    assert binary is not None
    directory.mkdir(parents=True, exist_ok=True)
    for _ in range(ATTEMPTS):
        server = _launch(binary, directory, free_port(), ["--replicaof", "127.0.0.1", str(primary.port)])
        if server is not None:
            break
    else:
        raise RuntimeError("the replica redis-server did not start")
    deadline = time.monotonic() + START_TIMEOUT
    with server.client() as client:
        while client.info("replication").get("master_link_status") != "up":
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"the replica never synced; its log:\n{server.log()[-2000:]}")
            time.sleep(0.05)
    return server


def start_sentinel(directory: Path, primary: RedisServer, master: str, down_after_ms: int = 1000) -> RedisServer:
    """One Sentinel watching ``primary`` as ``master`` (quorum 1), quick to fail over for tests."""
    binary = shutil.which("redis-server")
    assert binary is not None
    directory.mkdir(parents=True, exist_ok=True)
    for _ in range(ATTEMPTS):
        port = free_port()
        conf = directory / "sentinel.conf"  # Sentinel rewrites it with what it learns
        conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {directory}\nlogfile {directory / 'redis.log'}\n"
                        f"sentinel monitor {master} 127.0.0.1 {primary.port} 1\n"
                        f"sentinel down-after-milliseconds {master} {down_after_ms}\n"
                        f"sentinel failover-timeout {master} 5000\n"
                        f"sentinel parallel-syncs {master} 1\n")
        process = subprocess.Popen([binary, str(conf), "--sentinel"], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        server = _wait_for_ping(RedisServer(process, port, directory))
        if server is not None:
            return server
    raise RuntimeError(f"redis-server --sentinel did not start; its log:\n{(directory / 'redis.log').read_text()[-2000:]}")


def _launch(binary: str, directory: Path, port: int, extra: list[str] | None = None) -> RedisServer | None:
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory), "--save", "",
         "--appendonly", "no", "--daemonize", "no", "--logfile", str(directory / "redis.log"), *(extra or [])],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    return _wait_for_ping(RedisServer(process, port, directory))


def _wait_for_ping(server: RedisServer) -> RedisServer | None:
    process = server.process
    client = server.client()
    deadline = time.monotonic() + START_TIMEOUT
    try:
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if client.ping():
                    return server
            except redis.ConnectionError:
                time.sleep(0.02)
    finally:
        client.close()
    server.stop()
    return None


def stored_bytes(server: RedisServer) -> bytes:
    """Every key and value under gw:, raw, as one blob to search and compare (in a stable order)."""
    client = redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=5)  # bytes, not decoded
    records: list[bytes] = []
    with client:
        for key in sorted(client.scan_iter(b"gw:*")):
            kind = client.type(key)
            if kind == b"string":
                values = [client.get(key) or b""]
            elif kind == b"hash":
                values = [part for pair in sorted(client.hgetall(key).items()) for part in pair]
            elif kind == b"set":
                values = sorted(client.smembers(key))
            else:
                assert kind == b"zset", kind
                values = client.zrange(key, 0, -1)
            records.append(b"\x00".join([key, *values]))
    return b"\n".join(records)


def assert_key_not_in_redis(server: RedisServer, secret: bytes) -> None:
    stored = stored_bytes(server)
    assert b"gw:auth-hmac-fingerprint" in stored and b"gw:user-names" in stored  # the scan sees the data
    assert secret.hex().encode() not in stored.lower() and secret not in stored
