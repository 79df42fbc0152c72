"""Drives load at a URL with wrk (when installed) or bench/loadgen.py, and parses the result."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from procs import pin_preexec

LOADGEN = Path(__file__).resolve().parent / "loadgen.py"
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


@dataclass(frozen=True)
class Measurement:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx/3xx answers plus socket errors
    requests: int
    note: str = ""


class LoadError(Exception):
    """The load generator itself failed (not: the server answered with errors)."""


def wrk_path() -> str | None:
    return shutil.which("wrk")


def choose(kind: str) -> str:
    """``auto`` picks wrk when installed, else the Python generator."""
    if kind == "auto":
        return "wrk" if wrk_path() else "python"
    if kind == "wrk" and not wrk_path():
        raise LoadError("--loadgen wrk: wrk is not installed (scripts/bench-deps.sh installs it)")
    return kind


def measure(kind: str, url: str, *, connections: int, duration: float, headers: list[str],
            cpus: set[int] | None) -> Measurement:
    if kind == "wrk":
        command = [wrk_path() or "wrk", "-t1", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency"]
        for header in headers:
            command += ["-H", header]
        return parse_wrk(_run(command + [url], cpus, duration))
    command = [sys.executable, str(LOADGEN), url, "-c", str(connections), "-d", str(duration)]
    for header in headers:
        command += ["-H", header]
    return parse_loadgen(_run(command, cpus, duration))


def _run(command: list[str], cpus: set[int] | None, duration: float) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=duration + 30,
                              preexec_fn=pin_preexec(cpus))
    except subprocess.TimeoutExpired:
        raise LoadError(f"{Path(command[0]).name} did not finish within {duration + 30:.0f} s") from None
    if done.returncode != 0:
        raise LoadError(f"{Path(command[0]).name} exited with {done.returncode}: {done.stderr.strip()[:300]}")
    return done.stdout


def _millis(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not match:
        raise LoadError(f"cannot read wrk's latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> Measurement:
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    if not (rps and p50 and p99):
        raise LoadError(f"cannot read wrk's output:\n{output[-800:]}")
    errors = 0
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if bad:
        errors += int(bad.group(1))
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if sockets:
        errors += sum(int(n) for n in sockets.groups())
    done = re.search(r"^\s+(\d+) requests in", output, re.MULTILINE)
    return Measurement(float(rps.group(1)), _millis(p50.group(1)), _millis(p99.group(1)), errors,
                       int(done.group(1)) if done else 0)


def parse_loadgen(output: str) -> Measurement:
    try:
        data = json.loads(output.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise LoadError(f"cannot read the load generator's output: {output[-300:]!r}") from None
    return Measurement(float(data["rps"]), float(data["p50_ms"]), float(data["p99_ms"]),
                       int(data["errors"]) + int(data["socket_errors"]), int(data["requests"]),
                       str(data.get("first_error") or ""))


HANDSHAKES = Path(__file__).resolve().parent / "handshakes.py"


def measure_handshakes(url: str, *, duration: float, resume: bool, cpus: set[int] | None) -> Measurement:
    """Requests/s with a new TLS connection each (full handshakes, or resumed with ``resume``)."""
    command = [sys.executable, str(HANDSHAKES), url, "-d", str(duration), "-p", "2"] + (["--resume"] if resume else [])
    output = _run(command, cpus, duration)
    try:
        data = json.loads(output.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise LoadError(f"cannot read handshakes.py's output: {output[-300:]!r}") from None
    note = f"{data['resumed']} of {data['handshakes']} resumed" if resume else ""
    return Measurement(float(data["rps"]), 0.0, 0.0, int(data["errors"]), int(data["handshakes"]), note)
