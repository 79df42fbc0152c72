"""Issue 19, fault 8: out of file descriptors. With every descriptor the gateway may hold taken by
idle connections, accepting must not spin the CPU, and service must come back by itself once
the connections are gone."""

from __future__ import annotations

import os
import socket
import ssl
import time
from pathlib import Path
from typing import Callable

import httpx
import psutil
import pytest

from tests.harness import RunningGateway, Standin, gateway_config

pytestmark = pytest.mark.skipif(os.name != "posix", reason="RLIMIT_NOFILE is POSIX")

OPEN_FILES = 120


def test_at_the_descriptor_limit_accepting_does_not_spin_and_service_returns(
        standin: Standin, tmp_path: Path, gateway_factory: Callable[..., RunningGateway]) -> None:
    config = gateway_config(tmp_path, standin, limits={"tls_handshake_timeout": 60})
    gw = gateway_factory(config, open_files=OPEN_FILES, wait=False)
    gw.wait_for_log(r"gateway ready", 60)
    process = psutil.Process(gw.process.pid)
    verify = ssl.create_default_context(cafile=gw.ca_file)
    assert httpx.get(gw.url("b1", path="/api/v1/DocTypes"), verify=verify, timeout=10).status_code == 200
    idle: list[socket.socket] = []
    try:
        # Twice the limit: the kernel queues what the gateway cannot accept.
        for _ in range(2 * OPEN_FILES):
            idle.append(socket.create_connection(("127.0.0.1", gw.port("b1")), timeout=5))
        # The gateway reaches its descriptor budget: max_connections, clamped to what RLIMIT_NOFILE
        # allows (refusing the rest), and EMFILE where accepting outruns it.
        gw.wait_for_log(r"refusing connections from 127\.0\.0\.1|Too many open files", 40)
        time.sleep(1)
        before = process.cpu_times()
        started = time.monotonic()
        time.sleep(4)
        after = process.cpu_times()
        share = (after.user + after.system - before.user - before.system) / (time.monotonic() - started)
        assert share <= 0.10, f"{share:.0%} of a core while out of descriptors"
        print(f"\nout of descriptors: {process.num_fds()} open, {share:.1%} of a core")
    finally:
        for sock in idle:
            sock.close()
    freed = time.monotonic()
    deadline = freed + 15
    status: int | str = "none"
    while time.monotonic() < deadline:
        try:
            status = httpx.get(gw.url("b1", path="/api/v1/DocTypes"), verify=verify, timeout=5).status_code
        except httpx.HTTPError as e:
            status = type(e).__name__
        if status == 200:
            break
        time.sleep(0.2)
    assert status == 200
    print(f"served again {time.monotonic() - freed:.2f} s after the connections closed")
    assert process.is_running() and gw.process.poll() is None
