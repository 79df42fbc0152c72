"""Clients shared by the hostile-client tests (tests/e2e/test_hostile.py) and the attack benchmark
(bench/attacks.py): one copy, so the benchmark's figures and the tests' limits measure the same
client."""

from __future__ import annotations

import ssl
import statistics
import threading
import time

import httpx


class LegitClient(threading.Thread):
    """A well-behaved client asking for a small answer every 0.2 s on fresh connections.

    It comes from its own address (127.0.0.2): the attackers use 127.0.0.1 and may meet the
    per-address limits, which must not count against it."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.latencies: list[float] = []
        self.failures = 0
        self.halt = threading.Event()

    def run(self) -> None:
        with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"), timeout=10) as client:
            while not self.halt.is_set():
                start = time.monotonic()
                try:
                    client.get(self.url, headers={"Connection": "close"}).raise_for_status()
                    self.latencies.append(time.monotonic() - start)
                except httpx.HTTPError:
                    self.failures += 1
                self.halt.wait(0.2)

    def stop(self) -> None:
        self.halt.set()
        self.join(15)

    def finish(self, min_samples: int = 3) -> float:
        """Stop after at least ``min_samples`` answers (10 s at most); the median latency, asserting
        that every request was answered."""
        deadline = time.monotonic() + 10
        while len(self.latencies) + self.failures < min_samples and time.monotonic() < deadline:
            time.sleep(0.05)
        self.stop()
        assert self.latencies, "the legitimate client got no answer at all"
        assert self.failures == 0, f"{self.failures} legitimate requests failed"
        return statistics.median(self.latencies)

    def summary(self) -> str:
        if not self.latencies:
            return f"legit: no answer ({self.failures} failed)"
        ms = sorted(x * 1000 for x in self.latencies)
        return (f"legit median {statistics.median(ms):.0f} ms, worst {ms[-1]:.0f} ms, "
                f"{len(ms)} ok, {self.failures} failed")


def unverified_tls_context(alpn: list[str] | None = None) -> ssl.SSLContext:
    """A client context for raw-socket attacks on a test gateway: its certificate comes from the
    test's own local CA, and what is measured is the gateway's handling, not the trust chain."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if alpn:
        context.set_alpn_protocols(alpn)
    return context
