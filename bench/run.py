"""Throughput of the gateway against bare mitmdump, nginx and the back end itself, in one run.

    .venv/bin/python bench/run.py            # back end, mitmdump, gateway, nginx (if installed)
    .venv/bin/python bench/run.py --all      # + 100k-entry IP lists, + Basic auth on every request
    .venv/bin/python bench/run.py --quick    # a smoke run of a few seconds

The machine this runs on is shared and noisy, so absolute figures mean little: every scenario
is measured in the same run, interleaved over several rounds, and what counts are the ratios
between scenarios of the same round (their median is reported). Load comes from wrk when it is
installed (scripts/bench-deps.sh), else from bench/loadgen.py; the server under test is pinned
to one CPU and the load generator to another where the OS allows. The exit status is non-zero
only when something could not be run (a server did not start), never for a missed goal.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import capacity  # noqa: E402
import load  # noqa: E402
import scenarios  # noqa: E402
import servers  # noqa: E402
from load import LoadError, Measurement  # noqa: E402
from procs import CpuPlan, RssSampler, cpu_plan, pin_tree, psutil, tree_cpu_seconds  # noqa: E402
from servers import Server, StartError  # noqa: E402

DEFAULT_PATH = "/api/v1/DocTypes"  # a small JSON answer (1.5 KB), the kind terminals ask for most


@dataclass(frozen=True)
class Sample:
    load: Measurement
    cpu_us: float  # the server's CPU time per request, microseconds (0 when not measured)
    others_cpus: float = 0.0  # CPUs the load generator and the back end used meanwhile


@dataclass
class Scenario:
    key: str
    server: Server
    samples: list[Sample] = field(default_factory=list)
    peak_rss: int = 0
    # keepalive: wrk on keep-alive connections; new / resumed: bench/handshakes.py, one TLS
    # connection per request, a full handshake or a resumed session.
    mode: str = "keepalive"

    @property
    def label(self) -> str:
        suffix = {"new": ", new TLS per req.", "resumed": ", resumed TLS/req."}.get(self.mode, "")
        return self.server.name + suffix

    def median(self, attribute: str) -> float:
        if not self.samples:
            return 0.0
        return statistics.median(s.cpu_us if attribute == "cpu_us" else getattr(s.load, attribute)
                                 for s in self.samples)


@dataclass(frozen=True)
class Ratio:
    label: str
    numerator: str
    denominator: str
    goal: float | None  # the ratio must be at least this
    goal_text: str = ""
    # "Within N %" goals: a ratio above 1 + tolerance is not a miss, but it shows how much of
    # the difference is the machine's noise, so it is said.
    tolerance: float | None = None
    cpu_goal: float | None = None  # the same ratio by CPU time per request must be at least this
    cpu_goal_text: str = ""


RATIOS = [
    Ratio("gateway/mitmdump", "gateway", "mitmdump", 1.5, "goal >= 1.5x (issue 2)",
          cpu_goal=2.0, cpu_goal_text="goal >= 2.0x (issue 11)"),
    # --old-tree: the same comparisons for another checkout, measured in the same rounds.
    Ratio("old tree: gateway/mitmdump", "gateway_old", "mitmdump", None,
          cpu_goal=2.0, cpu_goal_text="goal >= 2.0x (issue 11)"),
    Ratio("gateway: this tree/old tree", "gateway", "gateway_old", None),
    Ratio("2 workers/1 worker", "workers", "gateway", 1.7, "goal >= 1.7x (issue 11)"),
    Ratio("lean engine/plain engine", "gateway", "plain", None),
    Ratio("uvloop/asyncio loop", "uvloop", "gateway", None),
    Ratio("new TLS connections/s: gateway/nginx", "gateway_new", "nginx_new", None,
          cpu_goal=0.4, cpu_goal_text="goal >= 0.4x (issue 22)"),
    Ratio("resumed TLS connections/s: gateway/nginx", "gateway_resumed", "nginx_resumed", None,
          cpu_goal=0.3, cpu_goal_text="goal >= 0.3x (issue 22)"),
    Ratio("new TLS connections/s: gateway/nginx with RSA only", "gateway_new", "nginx_rsa_new", None),
    Ratio("resumed TLS connections/s: gateway/nginx with RSA only", "gateway_resumed", "nginx_rsa_resumed", None),
    Ratio("gateway/nginx", "gateway", "nginx", None),
    Ratio("gateway/back end direct", "gateway", "backend", None),
    Ratio("100k IP lists/empty lists", "iplists", "gateway", 0.98, "goal: <= 2% apart (issue 4)", 0.02),
    Ratio("Basic auth/no auth", "auth", "gateway", 0.95, "goal: <= 5% apart (issue 5)", 0.05),
    # A cached credential needs no place in the failure windows: the login reserve (issue 9) must
    # leave Basic-on-every-request as fast as before, i.e. still within 5 % of no auth at all.
    Ratio("old tree: Basic auth/no auth", "auth_old", "gateway_old", 0.95, "goal: <= 5% apart (issue 5)", 0.05),
    Ratio("Basic auth: this tree/old tree", "auth", "auth_old", None),
    Ratio("Basic auth with login reserve/no auth", "auth", "gateway", 0.95,
          "goal: <= 5% apart, no slower than before the reserve (issue 9)", 0.05),
]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds of load per measurement (default 3)")
    parser.add_argument("--connections", type=int, default=16, help="keep-alive connections (default 16)")
    parser.add_argument("--rounds", type=int, default=6, help="interleaved rounds; medians are reported (default 6)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of unrecorded load per server first")
    parser.add_argument("--path", default=DEFAULT_PATH, help=f"request path (default {DEFAULT_PATH})")
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto",
                        help="wrk if installed (auto), or the Python generator bench/loadgen.py")
    parser.add_argument("--no-nginx", action="store_true", help="leave nginx out even when installed")
    parser.add_argument("--iplists", action="store_true", help="also: the gateway with 100k-entry IP lists")
    parser.add_argument("--auth", action="store_true", help="also: Basic authentication on every request")
    parser.add_argument("--workers", action="store_true", help="also: the gateway with 2 worker processes")
    parser.add_argument("--engine", action="store_true",
                        help="also: the gateway on the engine as mitmproxy ships it (GATEWAY_LEAN=0) "
                             "and on uvloop")
    parser.add_argument("--ratelimit", action="store_true",
                        help="also: a request-rate limit (limits.rate) counted in the store on every request")
    parser.add_argument("--handshakes", action="store_true",
                        help="also: new and resumed TLS connections per second, gateway and nginx")
    parser.add_argument("--nginx-rsa", action="store_true",
                        help="with --handshakes: also nginx serving the RSA certificate alone (as before "
                             "issue 22), beside nginx with the gateway's ECDSA+RSA pair")
    parser.add_argument("--all", action="store_true", help="every scenario (--iplists --auth --ratelimit --workers "
                                                           "--engine --handshakes)")
    parser.add_argument("--capacity", action="store_true",
                        help="the capacity table (implies --handshakes): terminals per core, idle "
                             "connections per GiB, handshakes per second per core, gateway and nginx, "
                             "and the idle-memory curve (bench/idle.py, 0-10,000 connections)")
    parser.add_argument("--idle-max", type=int, default=10000, help="idle connections for --capacity")
    parser.add_argument("--png", type=Path, default=Path(__file__).resolve().parent.parent / "docs" / "assets"
                        / "idle-memory.png", help="where --capacity draws the idle-memory curve")
    parser.add_argument("--old-tree", type=Path, metavar="DIR",
                        help="also: the gateway (and with --auth the Basic-auth gateway) run from another "
                             "checkout (e.g. main's), measured in the same rounds: old against new in one run")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 1 round of 1 s, 4 connections, short warm-up")
    args = parser.parse_args(argv)
    if args.capacity:
        args.handshakes = True
    if args.all:
        args.iplists = args.auth = args.workers = args.engine = args.handshakes = args.ratelimit = True
    if args.quick:
        args.duration, args.rounds, args.warmup, args.connections = 1.0, 1, 0.3, 4
    if args.old_tree is not None and not (args.old_tree / "gateway" / "__main__.py").exists():
        parser.error(f"--old-tree {args.old_tree}: no gateway package there")
    if args.duration <= 0 or args.rounds < 1 or args.connections < 1:
        parser.error("--duration, --rounds and --connections must be positive")
    return args


# --- describing the machine -------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def tool_version(command: list[str]) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0] if text else "unknown"


def describe_machine(kind: str, plan: CpuPlan, with_nginx: bool) -> list[str]:
    load_avg = " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    lines = [
        f"date:       {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"machine:    {os.cpu_count()} CPUs, {cpu_model()}; load average {load_avg}",
        f"software:   Python {platform.python_version()}, mitmproxy {metadata.version('mitmproxy')}",
        f"load:       {'wrk (' + tool_version(['wrk', '-v']) + ')' if kind == 'wrk' else 'bench/loadgen.py (Python asyncio; wrk not used)'}",
        f"nginx:      {tool_version([str(servers.NGINX), '-v']) if with_nginx else 'not measured'}",
        f"pinning:    {plan.description}",
    ]
    return lines


# --- measuring ---------------------------------------------------------------------------------


def start_all(args: argparse.Namespace, workdir: Path, plan: CpuPlan,
              started: list[Server]) -> tuple[list[Scenario], list[str]]:
    """Starts every server (registering each in ``started`` for clean-up); returns the scenarios
    and the lines saying which optional ones were skipped and why."""
    skipped: list[str] = []
    backend = servers.start_standin(workdir, plan.load)
    started.append(backend)
    found = [Scenario("backend", backend)]

    mitm = servers.start_mitmdump(workdir, backend.url, plan.server)
    started.append(mitm)
    found.append(Scenario("mitmdump", mitm))

    gateway_dir = workdir / "gateway"
    gateway_config = servers.gateway_config(backend.url, base_id="bench")
    scenarios.write_lists(servers.server_folder(gateway_dir, gateway_config), entries=0)
    gateway = servers.start_gateway("gateway", gateway_dir, gateway_config, plan.server)
    started.append(gateway)
    found.append(Scenario("gateway", gateway))

    if args.old_tree is not None:
        old_dir = workdir / "gateway-old"
        old_config = servers.gateway_config(backend.url, base_id="bench")
        scenarios.write_lists(servers.server_folder(old_dir, old_config), entries=0)
        old = servers.start_gateway("gateway (old tree)", old_dir, old_config, plan.server,
                                    repo=args.old_tree.resolve())
        started.append(old)
        found.append(Scenario("gateway_old", old))
        if args.auth:
            old_auth = scenarios.auth_gateway(workdir, backend.url, args.path, plan.server,
                                              repo=args.old_tree.resolve(), name="gateway, Basic auth (old tree)",
                                              folder="gateway-auth-old")
            if isinstance(old_auth, scenarios.Skipped):
                skipped.append(f"Basic auth (old tree): skipped: {old_auth.reason}")
            else:
                started.append(old_auth)
                found.append(Scenario("auth_old", old_auth))

    if args.no_nginx:
        skipped.append("nginx: skipped: --no-nginx")
    elif not servers.nginx_available():
        skipped.append(f"nginx: skipped: {servers.NGINX} not installed (scripts/bench-deps.sh installs it)")
    else:
        # The same certificate set as the gateway: the generated RSA certificate and its ECDSA twin.
        certs = gateway_dir / "state" / "certs"
        twin = ((certs / "server-ecdsa.pem", certs / "server-ecdsa.key"),) if (certs / "server-ecdsa.pem").exists() else ()
        nginx = servers.start_nginx(workdir, backend.url, certs / "server.pem", certs / "server.key", plan.server,
                                    also=twin)
        started.append(nginx)
        found.append(Scenario("nginx", nginx))
        if args.handshakes and args.nginx_rsa:
            rsa_only = servers.start_nginx(workdir, backend.url, certs / "server.pem", certs / "server.key",
                                           plan.server, name="nginx, RSA cert. only", folder="nginx-rsa")
            started.append(rsa_only)
            found.append(Scenario("nginx_rsa", rsa_only))

    optional = [("iplists", args.iplists, scenarios.ip_list_gateway, "100k IP lists"),
                ("auth", args.auth, scenarios.auth_gateway, "Basic auth"),
                ("ratelimit", args.ratelimit, scenarios.rate_limit_gateway, "request-rate limit"),
                ("workers", args.workers, scenarios.workers_gateway, "2 workers"),
                ("plain", args.engine, scenarios.plain_engine_gateway, "plain engine"),
                ("uvloop", args.engine, scenarios.uvloop_gateway, "uvloop")]
    for key, wanted, start, label in optional:
        if not wanted:
            continue
        result = start(workdir, backend.url, args.path, plan.server)
        if isinstance(result, scenarios.Skipped):
            skipped.append(f"{label}: skipped: {result.reason}")
            continue
        started.append(result)
        found.append(Scenario(key, result))

    for scenario in found:
        status = scenarios.http_status(scenario.server.url + args.path, scenario.server.headers)
        if status != 200:
            raise StartError(f"{scenario.server.name} answered {status} for GET {args.path}, not 200")
    if args.handshakes:
        for key in ("gateway", "nginx", "nginx_rsa"):
            server = next((s.server for s in found if s.key == key), None)
            if server is not None:
                found += [Scenario(f"{key}_new", server, mode="new"), Scenario(f"{key}_resumed", server, mode="resumed")]
        # nginx with the RSA certificate alone is measured for its handshakes only.
        found = [s for s in found if s.key != "nginx_rsa"]
    return found, skipped


def place(scenario: Scenario, everyone: list[Scenario], plan: CpuPlan) -> None:
    """The back end sits on the server CPU when it is the one measured, else with the load."""
    backend = everyone[0].server
    pin_tree(backend.process.pid, plan.server if scenario.key == "backend" else plan.load)


def measure_once(scenario: Scenario, everyone: list[Scenario], args: argparse.Namespace, kind: str,
                 plan: CpuPlan, duration: float) -> Sample:
    place(scenario, everyone, plan)
    url = scenario.server.url + args.path
    pid = scenario.server.process.pid
    backend_pid = everyone[0].server.process.pid
    cpu_before = tree_cpu_seconds(pid)
    others_before = _children_cpu() + (tree_cpu_seconds(backend_pid) if backend_pid != pid else 0.0)
    started = time.monotonic()
    with RssSampler(pid) as sampler:
        if scenario.mode == "keepalive":
            result = load.measure(kind, url, connections=args.connections, duration=duration,
                                  headers=scenario.server.headers, cpus=plan.load)
        else:
            result = load.measure_handshakes(url, duration=duration, resume=scenario.mode == "resumed",
                                             cpus=plan.load)
    elapsed = time.monotonic() - started
    cpu = tree_cpu_seconds(pid) - cpu_before
    others = _children_cpu() + (tree_cpu_seconds(backend_pid) if backend_pid != pid else 0.0) - others_before
    scenario.peak_rss = max(scenario.peak_rss, sampler.peak)
    return Sample(result, cpu / result.requests * 1e6 if result.requests and cpu > 0 else 0.0,
                  others / elapsed if elapsed > 0 else 0.0)


def _children_cpu() -> float:
    """CPU seconds of this script's finished children: the load generator runs."""
    import resource
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# The goal pairs of issue 22, each measured back to back in every round: old Basic auth, old
# gateway, mitmdump, gateway, Basic auth (each neighbour pair is a ratio).
CHAIN = ["auth_old", "gateway_old", "mitmdump", "gateway", "auth"]


def round_order(found: list[Scenario], round_number: int) -> list[Scenario]:
    """The chain's pairs side by side, then everything else; every other round backwards, so
    each of a pair goes first in half the rounds and a drift of the machine within a round
    weighs on both sides alike."""
    chain = [s for key in CHAIN for s in found if s.key == key]
    order = chain + [s for s in found if s not in chain]
    return order if round_number % 2 == 0 else order[::-1]


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def run_rounds(found: list[Scenario], args: argparse.Namespace, kind: str, plan: CpuPlan) -> None:
    for scenario in found:
        measure_once(scenario, found, args, kind, plan, args.warmup)
    for round_number in range(args.rounds):
        print(f"  round {round_number + 1}/{args.rounds}: load average {load_average()}", file=sys.stderr, flush=True)
        for scenario in round_order(found, round_number):
            sample = measure_once(scenario, found, args, kind, plan, args.duration)
            scenario.samples.append(sample)
            print(f"  round {round_number + 1}/{args.rounds}: {scenario.label:<34} "
                  f"{sample.load.rps:9.0f} req/s {sample.cpu_us:7.0f} us CPU/req", file=sys.stderr, flush=True)


# --- reporting ---------------------------------------------------------------------------------


def table(found: list[Scenario]) -> list[str]:
    header = (f"{'scenario':<34} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/req':>11} "
              f"{'peak RSS':>10} {'errors':>7}")
    lines = [header, "-" * len(header)]
    for s in found:
        rss = f"{s.peak_rss / 2**20:.0f} MiB" if s.peak_rss else "n/a"
        cpu = f"{s.median('cpu_us'):.0f}" if s.median("cpu_us") else "n/a"
        errors = sum(sample.load.errors for sample in s.samples)
        lines.append(f"{s.label:<34} {s.median('rps'):>9.0f} {s.median('p50_ms'):>8.2f} "
                     f"{s.median('p99_ms'):>8.2f} {cpu:>11} {rss:>10} {errors:>7}")
    return lines


def ratio_lines(found: list[Scenario]) -> list[str]:
    by_key = {s.key: s for s in found}
    lines = []
    for ratio in RATIOS:
        top, bottom = by_key.get(ratio.numerator), by_key.get(ratio.denominator)
        if top is None or bottom is None:
            continue
        pairs = list(zip(top.samples, bottom.samples))
        per_round = [a.load.rps / b.load.rps for a, b in pairs if b.load.rps > 0]
        if not per_round:
            lines.append(f"{ratio.label}: n/a (no requests completed)")
            continue
        value = statistics.median(per_round)
        spread = f" (rounds {min(per_round):.2f}-{max(per_round):.2f})" if len(per_round) > 1 else ""
        verdict = ""
        if ratio.goal is not None:
            verdict = f"; {ratio.goal_text}: " + (
                "met" if value >= ratio.goal else f"MISSED by {(ratio.goal - value) / ratio.goal:.0%}")
            if ratio.tolerance is not None and value > 1 + ratio.tolerance:
                verdict += f" (faster by {value - 1:.0%}: that much of this figure is noise)"
        lines.append(f"{ratio.label}: {value:.2f}x req/s{spread}{verdict}")
        # The same comparison by CPU time per request (throughput one core could give if nothing
        # else ran on it): steadier than req/s on a shared machine.
        by_cpu = [b.cpu_us / a.cpu_us for a, b in pairs if a.cpu_us > 0 and b.cpu_us > 0]
        if by_cpu:
            cpu_spread = f" (rounds {min(by_cpu):.2f}-{max(by_cpu):.2f})" if len(by_cpu) > 1 else ""
            cpu_value = statistics.median(by_cpu)
            cpu_verdict = ""
            if ratio.cpu_goal is not None:
                cpu_verdict = f"; {ratio.cpu_goal_text}: " + (
                    "met" if cpu_value >= ratio.cpu_goal else f"MISSED by {(ratio.cpu_goal - cpu_value) / ratio.cpu_goal:.0%}")
            lines.append(f"{'':<{len(ratio.label)}}  {cpu_value:.2f}x by CPU time per request{cpu_spread}{cpu_verdict}")
        if ratio.numerator == "workers":
            others = [s.others_cpus for s in top.samples if s.others_cpus]
            if others:
                lines.append(f"{'':<{len(ratio.label)}}  meanwhile the load generator and the back end used "
                             f"{statistics.median(others):.2f} of {os.cpu_count()} CPUs (median)")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = cpu_plan()
    if plan.load is not None:
        os.sched_setaffinity(0, plan.load)  # this script (and the RSS sampler) stays off the server's CPU
    try:
        kind = load.choose(args.loadgen)
    except LoadError as e:
        print(f"bench: {e}", file=sys.stderr)
        return 2
    with_nginx = not args.no_nginx and servers.nginx_available()
    for line in describe_machine(kind, plan, with_nginx):
        print(line)
    print(f"command:    bench/run.py {' '.join(argv if argv is not None else sys.argv[1:])}".rstrip())
    print(f"shape:      GET {args.path}, {args.connections} keep-alive connections, {args.duration:g} s x "
          f"{args.rounds} interleaved round(s), medians")
    if psutil is None:
        print("memory:     psutil not installed: peak RSS not measured")
    print(flush=True)

    started: list[Server] = []
    with tempfile.TemporaryDirectory(prefix="gateway-bench-") as tmp:
        try:
            found, skipped = start_all(args, Path(tmp), plan, started)
            begun = time.monotonic()
            run_rounds(found, args, kind, plan)
            elapsed = time.monotonic() - begun
        except (StartError, LoadError) as e:
            print(f"bench: {e}", file=sys.stderr)
            return 1
        finally:
            for server in reversed(started):
                server.stop()
    for line in table(found):
        print(line)
    print()
    for line in ratio_lines(found):
        print(line)
    for line in skipped:
        print(line)
    for s in found:
        if s.mode == "resumed" and s.samples:
            print(f"{s.label}: {s.samples[-1].load.note} in the last round")
    failing = [s.label for s in found if any(sample.load.errors for sample in s.samples)]
    if failing:
        print(f"warning: error answers or socket errors from: {', '.join(failing)} (see the errors column)")
    if kind == "python":
        print("note: with the Python load generator the fastest rows (back end, nginx) are limited by the "
              "generator, not the server; install wrk for those")
    if args.capacity:
        for line in capacity.report(found, args.idle_max, args.png, with_nginx):
            print(line, flush=True)
    print(f"measured for {elapsed:.0f} s; load average now {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
