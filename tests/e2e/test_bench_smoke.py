"""bench/run.py runs end to end: a --quick run with the Python load generator (no wrk, no nginx)
starts the back end, mitmdump and the gateway, loads each, and prints the table and the ratios."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import load  # noqa: E402
import loadgen  # noqa: E402


@pytest.mark.timeout(90)
def test_quick_run_prints_the_table_and_the_ratios() -> None:
    done = subprocess.run(
        [sys.executable, str(REPO / "bench" / "run.py"), "--quick", "--loadgen", "python", "--no-nginx"],
        capture_output=True, text=True, encoding="utf-8", timeout=80, cwd=REPO,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for row in ("back end direct", "mitmdump (reverse)", "gateway"):
        assert re.search(rf"^{re.escape(row)}\s+[1-9]\d*\s", out, re.MULTILINE), out  # a row with req/s > 0
    assert re.search(r"^gateway/mitmdump: \d+\.\d\dx req/s; goal >= 1\.5x", out, re.MULTILINE), out
    assert re.search(r"^\s+\d+\.\d\dx by CPU time per request", out, re.MULTILINE), out
    assert re.search(r"^gateway/back end direct: \d+\.\d\dx", out, re.MULTILINE), out
    assert "nginx: skipped: --no-nginx" in out
    assert "bench/loadgen.py" in out


def test_wrk_output_is_read() -> None:
    sample = """Running 5s test @ https://127.0.0.1:1234/api/v1/DocTypes
  1 threads and 16 connections
  Latency Distribution
     50%  812.00us
     75%    1.10ms
     90%    1.50ms
     99%    2.30s
  4000 requests in 5.00s, 6.00MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:    800.12
"""
    result = load.parse_wrk(sample)
    assert result.rps == pytest.approx(800.12)
    assert result.p50_ms == pytest.approx(0.812)
    assert result.p99_ms == pytest.approx(2300.0)
    assert result.errors == 7


def test_loadgen_request_and_percentiles() -> None:
    target = loadgen.build_target("https://127.0.0.1:8443/api/v1/DocTypes?$top=1", ["Authorization: Basic eA=="])
    assert target.tls and target.port == 8443
    assert target.request.startswith(b"GET /api/v1/DocTypes?$top=1 HTTP/1.1\r\nHost: 127.0.0.1:8443\r\n")
    assert target.request.endswith(b"Authorization: Basic eA==\r\n\r\n")
    values = [float(n) for n in range(1, 101)]
    assert loadgen.percentile(values, 0.50) == 50.0
    assert loadgen.percentile(values, 0.99) == 99.0
