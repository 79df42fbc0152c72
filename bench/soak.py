"""Load held over time (issue 19): mixed traffic against one gateway for a chosen duration, with
the gateway's RSS, open files, open connections and errors sampled and drawn as a PNG.

    .venv/bin/python -m pip install matplotlib       # bench-only, for the picture; not a runtime dependency
    .venv/bin/python bench/soak.py --minutes 30      # the issue's goal; --load 0.7 of the measured capacity
    .venv/bin/python bench/soak.py --minutes 1 --png /tmp/soak.png   # a short look
    .venv/bin/python bench/soak.py --minutes 5 --trace-memory /tmp/trace  # what grows, and where

First the capacity is measured twice, 15 s each, from ``--generators`` processes (default: the
machine's cores, at least 2; one Python process cannot send a mix with 30 % full TLS handshakes
at the gateway's rate): keep-alive HTTPS clients with Basic auth alone (for comparison), then
the soak's own mix, unpaced, each kind held to its share. The soak paces its requests at
``--load`` of the mix's capacity (``--capacity-basis held``: the rate the mix held through the
gateway on this machine; ``core``: the rate at a full core of the gateway from its CPU per
request, which a machine without a spare core cannot deliver), spread over every generator and
these kinds:
  keep-alive HTTP/1.1 clients with Basic auth (50 %), a new TLS connection per request (Basic
  auth, 15 %), HTTP/2 clients (20 %), password-only logins (``:password``, 15 %), a few slow
  clients (a request head sent a line a second) and a few idle TLS connections that send
  nothing for minutes (these two in the first generator only).
Each minute: the rate asked and held, the gateway's and the generators' CPU (shares of one core)
and how busy the machine is, so the run shows which of them limited the rate.
Every 5 s: the gateway's RSS, open files (num_fds), established TCP connections, and the
requests and errors since the previous sample; per minute in the printed table. An error is any
answer other than 200 or a transport failure of a legitimate request; each is printed with its
time, traffic kind and cause (the status and the gateway's one-line text, or the exception and
what caused it), so a gateway fault can be told from the load generator's own trouble.
Figures: RSS after the warm-up (the first 20 %) against its end; open files at the first sample
and at most while running, against 3 s after the clients left; errors in total; the load average
at start and end. The exit status is non-zero only if something could not run.

The warm-up: the gateway's bounded structures are full within about two minutes of this traffic
(one user: the credential cache and the identity encodings hold one entry; one TLS context; the
keep-alive timeouts, 15 s to the back end and 75 s for an idle client, have cycled; with
``--trace-memory`` the live objects are flat from minute 1), while the allocator's heap keeps
rising towards the high-water mark of requests in flight at once. 20 % (6 minutes of 30) is past
the first and most of the second.

``--trace-memory DIR`` is for finding what grows, not for the goal's figures: tracemalloc makes
the gateway several times slower (its capacity falls with it), and each minute's dump stops it
for a few seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import os
import queue
import random
import signal
import socket
import ssl
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.procs import terminate, tree_cpu_seconds  # noqa: E402
from bench.servers import HOST, gateway_cli, gateway_config, start_gateway, start_standin  # noqa: E402

PATH = "/echo"  # allowed to the mobile role the soak user has
LOGIN, PASSWORD = "Иванов", "Sklad2024soak"
SAMPLE_SECONDS = 5.0
# Set by SIGTERM: the soak ends at the next sample and still reports (and cleans up) what it ran.
ENDED = threading.Event()
CLIENT_TIMEOUT = 30.0


@dataclass
class Failure:
    t: float  # seconds since the soak began
    kind: str
    why: str


KINDS = ("keep-alive", "http2", "new-tls", "password-only", "slow")
# Shares of the rate: the soak's mix, and the same mix when its capacity is measured.
MIX = {"keep-alive": 0.5, "http2": 0.2, "new-tls": 0.15, "password-only": 0.15}


class Counts:
    """One generator's answers, counted in shared memory (the parent samples them every 5 s) per
    kind: ok, failed; failures kept here and sent to the parent when the generator ends."""

    def __init__(self, shared, started: float) -> None:
        self.shared = shared  # multiprocessing.Array("q", 2 * len(KINDS)), written by this process only
        self.started = started  # time.monotonic() of the soak's start in the parent: one clock for all
        self.failures: list[Failure] = []

    def ok(self, kind: str) -> None:
        self.shared[2 * KINDS.index(kind)] += 1

    def fail(self, kind: str, why: str) -> None:
        self.shared[2 * KINDS.index(kind) + 1] += 1
        self.failures.append(Failure(time.monotonic() - self.started, kind, why))

    def answer(self, kind: str, response: httpx.Response) -> None:
        if response.status_code == 200:
            self.ok(kind)
        else:
            # The gateway's own refusals are one line of text (addons/errorpages.py).
            self.fail(kind, f"status {response.status_code}: {' '.join(response.text.split())[:120]}")


def why_failed(e: BaseException) -> str:
    """The exception and what caused it: httpx wraps the transport's error (a timeout, a reset, a
    TLS alert), and which one it was tells the gateway's fault from the load generator's."""
    text = f"{type(e).__name__}: {e}"[:160]
    cause = e.__cause__ or e.__context__
    if cause is not None and str(cause) not in text:
        text += f" <- {type(cause).__name__}: {cause}"[:160]
    return text


def basic(login: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{login}:{secret}".encode()).decode()}


class Pacer:
    """Hands out request slots at a fixed rate, shared by every client loop."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.next = time.monotonic()

    async def wait(self) -> None:
        now = time.monotonic()
        self.next = max(self.next + self.interval, now - 1.0)
        if self.next > now:
            await asyncio.sleep(self.next - now)


class ShareGate:
    """Unpaced, with the mix's shares kept (the capacity run): a kind starts a request only while it
    is not ahead of its share of all requests started, so the dearer kinds (a TLS handshake each)
    are not crowded out by keep-alive and the capacity is that of the mix the soak sends."""

    def __init__(self, shares: dict[str, float]) -> None:
        self.shares = shares
        self.started = dict.fromkeys(shares, 0)
        self.total = 0
        self.cond = asyncio.Condition()

    def pacer(self, kind: str) -> "GateView":
        return GateView(self, kind)

    async def take(self, kind: str) -> None:
        async with self.cond:
            await self.cond.wait_for(lambda: self.started[kind] < self.shares[kind] * self.total + 1)
            self.started[kind] += 1
            self.total += 1
            self.cond.notify_all()


@dataclass
class GateView:
    gate: ShareGate
    kind: str

    async def wait(self) -> None:
        await self.gate.take(self.kind)


async def keepalive_loop(url: str, ctx: ssl.SSLContext, headers: dict[str, str], pacer: Pacer | GateView | None,
                         counts: Counts, stop: asyncio.Event, *, http2: bool = False, kind: str = "keep-alive") -> None:
    async with httpx.AsyncClient(verify=ctx, http2=http2, timeout=CLIENT_TIMEOUT, headers=headers) as client:
        while not stop.is_set():
            if pacer is not None:
                await pacer.wait()
            try:
                counts.answer(kind, await client.get(url))
            except Exception as e:  # any failure is counted and the loop goes on: a dead loop would lower the load
                counts.fail(kind, why_failed(e))


async def new_connection_loop(url: str, ctx: ssl.SSLContext, headers: dict[str, str], pacer: Pacer | GateView,
                              counts: Counts, stop: asyncio.Event, kind: str) -> None:
    while not stop.is_set():
        await pacer.wait()
        try:
            async with httpx.AsyncClient(verify=ctx, timeout=CLIENT_TIMEOUT, headers=headers) as client:
                counts.answer(kind, await client.get(url))
        except Exception as e:  # as in keepalive_loop
            counts.fail(kind, why_failed(e))


async def slow_client(port: int, ctx: ssl.SSLContext, auth: str, counts: Counts, stop: asyncio.Event) -> None:
    """A request head sent one line a second, then the answer read; again and again."""
    lines = [f"GET {PATH} HTTP/1.1\r\n", f"Host: {HOST}\r\n", f"Authorization: {auth}\r\n", "Accept: */*\r\n", "\r\n"]
    while not stop.is_set():
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(HOST, port, ssl=ctx, server_hostname=HOST), CLIENT_TIMEOUT)
            for line in lines:
                writer.write(line.encode())
                await writer.drain()
                await asyncio.sleep(1.0)
            status = await asyncio.wait_for(reader.readline(), CLIENT_TIMEOUT)
            writer.close()
            if status.split(b" ")[1:2] == [b"200"]:
                counts.ok("slow")
            else:
                counts.fail("slow", f"status line {status[:80]!r}")
        except Exception as e:  # as in keepalive_loop
            counts.fail("slow", why_failed(e))
            await asyncio.sleep(1.0)  # not a tight loop of failures while the gateway cannot be reached


async def idle_client(port: int, ctx: ssl.SSLContext, stop: asyncio.Event) -> None:
    """A TLS connection that sends nothing; reopened when the gateway closes it (its idle timeout)."""
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection(HOST, port, ssl=ctx, server_hostname=HOST)
            stopper = asyncio.create_task(stop.wait())
            await asyncio.wait([stopper, asyncio.create_task(reader.read())], return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            writer.close()
        except OSError:
            await asyncio.sleep(1)


def sample(process: psutil.Process) -> tuple[int, int, int, float]:
    """RSS, open files, established connections and CPU seconds used so far, over the process tree."""
    procs = [process, *process.children(recursive=True)]
    rss = fds = conns = 0
    cpu = 0.0
    for p in procs:
        try:
            rss += p.memory_info().rss
            fds += p.num_fds()
            conns += sum(1 for c in p.net_connections("tcp") if c.status == psutil.CONN_ESTABLISHED)
            times = p.cpu_times()
            cpu += times.user + times.system
        except psutil.Error:
            pass
    return rss, fds, conns, cpu


@dataclass
class Plan:
    """What one generator process sends: its share of the asked rate (None: unpaced, the capacity
    run) spread over the kinds by ``shares``, with ``loops`` client loops per kind."""
    port: int
    cafile: str
    shares: dict[str, float]
    rate: float | None
    loops: dict[str, int]
    extras: bool  # the slow and idle clients (one generator has them: they carry no rate)
    started: float  # time.monotonic() at which every generator begins (one clock for all processes)


def generator(plan: Plan, shared, stop_flag, failures_out, grace: float) -> None:
    """One load-generator process: its own event loop, so N of them use N cores."""
    failures = asyncio.run(generate(plan, shared, stop_flag, grace))
    failures_out.put([(f.t, f.kind, f.why) for f in failures])


async def generate(plan: Plan, shared, stop_flag, grace: float) -> list[Failure]:
    ctx = ssl.create_default_context(cafile=plan.cafile)
    url = f"https://{HOST}:{plan.port}{PATH}"
    auth = basic(LOGIN, PASSWORD)
    headers = {"keep-alive": auth, "http2": auth, "new-tls": auth, "password-only": basic("", PASSWORD)}
    counts, stop = Counts(shared, plan.started), asyncio.Event()
    await asyncio.sleep(max(0.0, plan.started - time.monotonic()))
    pace: dict[str, Pacer | GateView]
    if plan.rate is None:
        gate = ShareGate(plan.shares)
        pace = {kind: gate.pacer(kind) for kind in plan.shares}
    else:
        pace = {kind: Pacer(plan.rate * share) for kind, share in plan.shares.items()}
    tasks = []
    for kind in plan.shares:
        for _ in range(plan.loops[kind]):
            if kind in ("keep-alive", "http2"):
                loop = keepalive_loop(url, ctx, headers[kind], pace[kind], counts, stop, http2=kind == "http2",
                                      kind=kind)
            else:
                loop = new_connection_loop(url, ctx, headers[kind], pace[kind], counts, stop, kind)
            tasks.append(asyncio.create_task(loop))
    if plan.extras:
        tasks += [asyncio.create_task(slow_client(plan.port, ctx, auth["Authorization"], counts, stop))
                  for _ in range(3)]
        tasks += [asyncio.create_task(idle_client(plan.port, ctx, stop)) for _ in range(5)]
    while not stop_flag.is_set():
        await asyncio.sleep(0.2)
    stop.set()
    await asyncio.wait(tasks, timeout=grace)
    for task in tasks:
        task.cancel()  # a loop still waiting for its pace or gate; CancelledError is not counted as a failure
    await asyncio.gather(*tasks, return_exceptions=True)
    return counts.failures


class Generators:
    """N generator processes, each a share of the rate and of every kind; their counters summed."""

    def __init__(self, n: int, plans: list[Plan], grace: float) -> None:
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no state of the parent's
        self.stop = context.Event()
        self.failures_in = context.Queue()
        self.grace = grace
        self.shared = [context.Array("q", 2 * len(KINDS), lock=False) for _ in range(n)]  # one writer each
        self.procs = [context.Process(target=generator, args=(plan, shared, self.stop, self.failures_in, grace),
                                      daemon=True) for plan, shared in zip(plans, self.shared)]
        for p in self.procs:
            p.start()

    def totals(self) -> tuple[int, int, dict[str, int]]:
        """Requests, errors, errors by kind, over every generator."""
        requests = errors = 0
        kinds: dict[str, int] = {}
        for shared in self.shared:
            values = shared[:]
            for i, kind in enumerate(KINDS):
                requests += values[2 * i] + values[2 * i + 1]
                errors += values[2 * i + 1]
                if values[2 * i + 1]:
                    kinds[kind] = kinds.get(kind, 0) + values[2 * i + 1]
        return requests, errors, kinds

    def cpu(self) -> float:
        return sum(tree_cpu_seconds(p.pid) for p in self.procs)

    def finish(self) -> list[Failure]:
        self.stop.set()
        failures: list[Failure] = []
        for p in self.procs:
            try:
                failures += [Failure(*f) for f in self.failures_in.get(timeout=self.grace + 30)]
            except queue.Empty:
                failures.append(Failure(0.0, "generator", f"a generator sent no failure list (exit {p.exitcode})"))
        for p in self.procs:
            p.join(10)
            if p.is_alive():
                p.kill()
        return sorted(failures, key=lambda f: f.t)


def plans(n: int, port: int, cafile: str, shares: dict[str, float], rate: float | None,
          loops: dict[str, int], started: float) -> list[Plan]:
    return [Plan(port, cafile, shares, None if rate is None else rate / n, loops, i == 0, started) for i in range(n)]


def capacity(n: int, port: int, cafile: str, gateway: psutil.Process, shares: dict[str, float],
             loops: dict[str, int], seconds: float) -> tuple[float, float, int]:
    """Requests/s of unpaced clients in ``shares`` over ``n`` generators, the gateway's CPU (share of
    one core) meanwhile, and the errors; 2 s of warm-up not counted."""
    started = time.monotonic() + 3.0  # the processes' start-up (imports) before the clock
    gens = Generators(n, plans(n, port, cafile, shares, None, loops, started), grace=3.0)
    time.sleep(max(0.0, started + 2.0 - time.monotonic()))
    r0, _, _ = gens.totals()
    c0, g0, t0 = sample(gateway)[3], gens.cpu(), time.monotonic()
    psutil.cpu_percent()
    time.sleep(seconds)
    r1, errors, _ = gens.totals()
    c1, g1, t1 = sample(gateway)[3], gens.cpu(), time.monotonic()
    busy = psutil.cpu_percent()
    gens.finish()
    print(f"  capacity run {sorted(shares)}: generators at {100 * (g1 - g0) / (t1 - t0):.0f} % of a core, the "
          f"machine's {psutil.cpu_count()} cores {busy:.0f} % busy", flush=True)
    return (r1 - r0) / (t1 - t0), (c1 - c0) / (t1 - t0), errors


def soak(args: argparse.Namespace, gw_pid: int, port: int, cafile: str) -> list[dict[str, float]]:
    print(f"load average at the start (1, 5, 15 min): {load_average()}", flush=True)
    process = psutil.Process(gw_pid)
    rss, fds, conns, _ = sample(process)
    baseline = {"t": 0.0, "rss_mib": rss / 2**20, "fds": fds, "conns": conns, "requests": 0, "errors": 0,
                "before": 1}
    print(f"before any client: RSS {rss / 2**20:.1f} MiB, {fds} open files, {conns} connections: "
          f"{describe_files(process)}", flush=True)
    n = args.generators
    keep_alive, ka_cpu, ka_errors = capacity(n, port, cafile, process, {"keep-alive": 1.0},
                                             {"keep-alive": max(1, 16 // n)}, args.capacity_seconds)
    print(f"capacity, keep-alive only: {keep_alive:.0f} req/s (16 keep-alive HTTPS clients, Basic auth, "
          f"{n} generators), gateway at {100 * ka_cpu:.0f} % of a core, {ka_errors} errors", flush=True)
    mix_loops = {"keep-alive": 8, "http2": 4, "new-tls": 4, "password-only": 4}
    # Unpaced, the gate holds every kind to its share, so the rate is bounded by the dearest kind's
    # loops in flight: enough of them that the gateway, not the loop count, is the limit.
    mix, mix_cpu, mix_errors = capacity(n, port, cafile, process, MIX, {kind: 16 for kind in MIX},
                                        args.capacity_seconds)
    # The soak's mix costs the gateway more per request than keep-alive alone (a TLS handshake for
    # 30 % of them), so 70 % of the keep-alive figure would ask for more than the gateway can do.
    # On a machine without a spare core the generators and the back end take the CPU the gateway
    # would need, so the rate at a full core of the gateway (--capacity-basis core) is one the
    # machine cannot deliver; the held rate is the capacity here.
    full_core = mix / mix_cpu if mix_cpu > 0 else mix
    measured = mix if args.capacity_basis == "held" else full_core
    print(f"capacity, the soak's mix: {mix:.0f} req/s held, gateway at {100 * mix_cpu:.0f} % of a core "
          f"({full_core:.0f} req/s at a full core), {mix_errors} errors", flush=True)
    rate = max(1.0, args.load * measured)
    print(f"soak at {rate:.0f} req/s ({args.load:.0%} of {measured:.0f}, basis {args.capacity_basis}) for "
          f"{args.minutes:g} min, {n} generators", flush=True)
    started = time.monotonic() + 3.0
    gens = Generators(n, plans(n, port, cafile, MIX, rate, mix_loops, started), grace=40.0)
    time.sleep(max(0.0, started - time.monotonic()))
    samples: list[dict[str, float]] = [baseline]
    last_requests = last_errors = 0
    last_cpu, last_gen_cpu, last_at = sample(process)[3], gens.cpu(), time.monotonic()
    psutil.cpu_percent()  # the machine's busy share is then since the previous sample
    minute_requests, minute_at = 0, started
    while time.monotonic() - started < args.minutes * 60 and not ENDED.is_set():
        ENDED.wait(SAMPLE_SECONDS)
        rss, fds, conns, cpu = sample(process)
        gen_cpu, now = gens.cpu(), time.monotonic()
        requests, errors, _ = gens.totals()
        # cpu_pct: of one core; near 100 the one-worker gateway itself is the limit of the rate.
        # gen_cpu_pct: the generators together, of one core; near 100 x N they are the limit.
        samples.append({"t": now - started, "rss_mib": rss / 2**20, "fds": fds, "conns": conns,
                        "requests": requests - last_requests, "errors": errors - last_errors,
                        "cpu_pct": 100 * (cpu - last_cpu) / (now - last_at),
                        "gen_cpu_pct": 100 * (gen_cpu - last_gen_cpu) / (now - last_at),
                        "busy_pct": psutil.cpu_percent(), "rate": rate})
        last_requests, last_errors, last_cpu, last_gen_cpu, last_at = requests, errors, cpu, gen_cpu, now
        if now - minute_at >= 60:
            print(f"  minute {(now - started) / 60:4.1f}: asked {rate:.0f}/s, held "
                  f"{(requests - minute_requests) / (now - minute_at):.0f}/s, {errors} errors so far, gateway CPU "
                  f"{samples[-1]['cpu_pct']:.0f} %, generators {samples[-1]['gen_cpu_pct']:.0f} %, machine busy "
                  f"{samples[-1]['busy_pct']:.0f} %, RSS {rss / 2**20:.1f} MiB, load {load_average()}", flush=True)
            minute_requests, minute_at = requests, now
    if ENDED.is_set():
        print(f"ended early (SIGTERM) after {(time.monotonic() - started) / 60:.1f} min", flush=True)
    print(f"load average at the end (1, 5, 15 min): {load_average()}", flush=True)
    failures = gens.finish()
    # 3 s after the clients left, and again past the back-end keep-alive timeout (15 s).
    for after, wait in ((1, 3.0), (2, 17.0)):
        time.sleep(wait)
        rss, fds, conns, _ = sample(process)
        requests, errors, _ = gens.totals()
        samples.append({"t": time.monotonic() - started, "rss_mib": rss / 2**20, "fds": fds, "conns": conns,
                        "requests": requests - last_requests, "errors": errors - last_errors, "after": after})
        last_requests, last_errors = requests, errors
    print(f"open files 20 s after the clients left: {describe_files(process)}", flush=True)
    print(f"errors by kind: {gens.totals()[2] or 'none'}", flush=True)
    print_failures(failures)
    samples[0].update({"capacity_keepalive": keep_alive, "capacity_mix": mix, "capacity_mix_cpu": mix_cpu,
                       "capacity": measured})
    return samples


def describe_files(process: psutil.Process) -> str:
    """What the gateway's descriptors are: files by name, sockets by state (to tell a leak from a pool)."""
    kinds: dict[str, int] = {}
    try:
        for f in process.open_files():
            name = Path(f.path).name
            kinds[name] = kinds.get(name, 0) + 1
        for c in process.net_connections("all"):
            key = f"socket {c.status}" if c.status != psutil.CONN_NONE else "socket (unix/udp)"
            kinds[key] = kinds.get(key, 0) + 1
    except psutil.Error as e:
        return f"unknown ({e})"
    return ", ".join(f"{n} {k}" for k, n in sorted(kinds.items(), key=lambda item: -item[1]))


def print_failures(failures: list[Failure]) -> None:
    """Each failed request: when, which traffic, why; the same cause folded when there are many."""
    if len(failures) <= 40:
        for f in failures:
            print(f"  failed at {f.t / 60:5.2f} min  {f.kind:<13}  {f.why}", flush=True)
        return
    groups: dict[tuple[str, str], list[float]] = {}
    for f in failures:
        groups.setdefault((f.kind, f.why), []).append(f.t)
    for (kind, why), times in sorted(groups.items(), key=lambda item: -len(item[1])):
        print(f"  {len(times):>5} x {kind:<13} {min(times) / 60:5.2f}-{max(times) / 60:5.2f} min  {why}", flush=True)


def load_average() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except (AttributeError, OSError):  # not on Windows
        return "unknown"


def report(samples: list[dict[str, float]], png: Path | None, title: str) -> dict[str, float]:
    before = next(s for s in samples if s.get("before"))
    during = [s for s in samples if not s.get("after") and not s.get("before")]
    after = {int(s["after"]): s for s in samples if s.get("after")}
    warm = [s for s in during if s["t"] >= during[-1]["t"] * 0.2] or during
    figures = {
        "minutes": round(during[-1]["t"] / 60, 1),
        "requests": int(sum(s["requests"] for s in samples)),
        "errors": int(sum(s["errors"] for s in samples)),
        "capacity_keepalive": round(before.get("capacity_keepalive", 0)),
        "capacity_mix_held": round(before.get("capacity_mix", 0)),
        "capacity_mix_gateway_cpu_pct": round(100 * before.get("capacity_mix_cpu", 0)),
        "capacity": round(before.get("capacity", 0)),
        "rate_target": round(during[-1]["rate"]),
        "rate_mean": round(sum(s["requests"] for s in during) / during[-1]["t"]),
        "rate_held_pct": round(100 * sum(s["requests"] for s in during) / during[-1]["t"] / during[-1]["rate"], 1),
        "gateway_cpu_pct_mean": round(sum(s["cpu_pct"] for s in during) / len(during)),
        "generators_cpu_pct_mean": round(sum(s["gen_cpu_pct"] for s in during) / len(during)),
        "machine_busy_pct_mean": round(sum(s["busy_pct"] for s in during) / len(during)),
        "rss_before_mib": round(before["rss_mib"], 1),
        "rss_after_warmup_mib": round(warm[0]["rss_mib"], 1),
        "rss_end_mib": round(during[-1]["rss_mib"], 1),
        "rss_growth_pct": round(100 * (during[-1]["rss_mib"] / warm[0]["rss_mib"] - 1), 1),
        "fds_before": int(before["fds"]), "fds_first": int(during[0]["fds"]),
        "fds_max": int(max(s["fds"] for s in during)),
        "fds_3s_after_clients_left": int(after[1]["fds"]), "fds_20s_after_clients_left": int(after[2]["fds"]),
        "conns_after_clients_left": int(after[2]["conns"]),
    }
    print("\nminute  requests  asked/s  held/s  errors  RSS MiB  open files  connections  gateway CPU %  generators CPU %")
    for minute in range(int(during[-1]["t"] // 60) + 1):
        rows = [s for s in during if minute * 60 < s["t"] <= (minute + 1) * 60]
        if rows:
            span = rows[-1]["t"] - (rows[0]["t"] - SAMPLE_SECONDS)
            print(f"{minute + 1:>6}  {int(sum(r['requests'] for r in rows)):>8}  {rows[-1]['rate']:>7.0f}"
                  f"  {sum(r['requests'] for r in rows) / span:>6.0f}  {int(sum(r['errors'] for r in rows)):>6}"
                  f"  {rows[-1]['rss_mib']:>7.1f}  {int(rows[-1]['fds']):>10}  {int(rows[-1]['conns']):>11}"
                  f"  {sum(r['cpu_pct'] for r in rows) / len(rows):>13.0f}"
                  f"  {sum(r['gen_cpu_pct'] for r in rows) / len(rows):>16.0f}")
    print(json.dumps(figures))
    if png is not None:
        draw(samples, png, title)
        print(f"picture: {png}")
    return figures


def memory_report(folder: Path, since: float) -> None:
    """What grew in the gateway between the first dump at or after ``since`` seconds and the last:
    traced Python memory by source line and by allocating stack, live objects by type, and glibc's
    heap (bytes in use, bytes free but kept)."""
    import tracemalloc
    counts = [json.loads(f.read_text(encoding="utf-8")) for f in sorted(folder.glob("counts-*.json"))]
    if len(counts) < 2:
        print(f"memory trace: fewer than two dumps in {folder}")
        return
    print("\nmemory trace (gateway process; with tracemalloc its figures are not the soak's)")
    print("   min  objects  traced MiB  malloc in use MiB  malloc free kept MiB  mmap MiB")
    for c in counts:
        m = c.get("malloc", {})
        print(f"  {c['t'] / 60:4.1f}  {c.get('objects', 0):>7}  {c.get('traced', 0) / 2**20:>10.1f}  "
              f"{m.get('in_use', 0) / 2**20:>17.1f}  {m.get('free_kept', 0) / 2**20:>20.1f}  "
              f"{m.get('mmap', 0) / 2**20:>8.1f}")
    if "objects" not in counts[0]:
        return  # --trace-level malloc: the table is all there is
    first = next((c for c in counts if c["t"] >= since), counts[0])
    last = counts[-1]
    print(f"\nlive objects by type, minute {first['t'] / 60:.1f} -> {last['t'] / 60:.1f} (largest changes):")
    names = set(first["types"]) | set(last["types"])
    changes = sorted(((last["types"].get(n, 0) - first["types"].get(n, 0), n) for n in names),
                     key=lambda item: -abs(item[0]))
    for change, name in changes[:15]:
        print(f"  {change:>+8}  {first['types'].get(name, 0):>8} -> {last['types'].get(name, 0):<8} {name}")
    old = tracemalloc.Snapshot.load(str(folder / f"snap-{first['t']:05d}.tracemalloc"))
    new = tracemalloc.Snapshot.load(str(folder / f"snap-{last['t']:05d}.tracemalloc"))
    print("\ntraced Python memory by line (largest growth):")
    for stat in new.compare_to(old, "lineno")[:15]:
        print(f"  {stat.size_diff / 1024:>+9.1f} KiB  {stat.count_diff:>+7} blocks  {stat.traceback[0]}")
    print("\nby allocating stack (largest growth):")
    for stat in new.compare_to(old, "traceback")[:6]:
        print(f"  {stat.size_diff / 1024:>+9.1f} KiB  {stat.count_diff:>+7} blocks")
        for frame in stat.traceback.format()[-12:]:
            print(f"      {frame}")


def draw(samples: list[dict[str, float]], png: Path, title: str) -> None:
    try:
        # Imported here: matplotlib is a bench-only extra (see the module docstring), never needed to run.
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no picture (.venv/bin/python -m pip install matplotlib)")
        return
    minutes = [s["t"] / 60 for s in samples]
    fig, axes = plt.subplots(4, 1, figsize=(9, 9), sharex=True)
    series = [("RSS (MiB)", "rss_mib"), ("open files", "fds"), ("established connections", "conns"),
              (f"errors per {SAMPLE_SECONDS:g} s (of requests)", "errors")]
    for ax, (label, key) in zip(axes, series):
        ax.plot(minutes, [s[key] for s in samples], color="tab:blue")
        if key == "errors":
            ax.plot(minutes, [s["requests"] for s in samples], color="tab:gray", alpha=0.5, label="requests")
            ax.legend(loc="upper right")
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("minutes (first point: before any client; last two: 3 s and 20 s after the clients left)")
    fig.suptitle(title)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=80)


def default_generators() -> int:
    return max(2, min(8, os.cpu_count() or 2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--load", type=float, default=0.7, help="share of the measured capacity (default 0.7)")
    parser.add_argument("--png", type=Path, default=Path("soak.png"))
    parser.add_argument("--trace-memory", type=Path, metavar="DIR",
                        help="run the gateway under tracemalloc (bench/memtrace) with a dump a minute in DIR, and "
                             "print what grew after the warm-up; slows the gateway, so not for the goal's figures")
    parser.add_argument("--trace-level", choices=("full", "malloc"), default="full",
                        help="with --trace-memory: malloc = only glibc's heap figures once a minute (no "
                             "tracemalloc; the gateway runs at its normal speed)")
    parser.add_argument("--generators", type=int, default=default_generators(),
                        help="load-generator processes, each a share of the rate and of every kind "
                             "(default: the machine's cores, at least 2)")
    parser.add_argument("--capacity-basis", choices=("held", "core"), default="held",
                        help="held (default): the mix's capacity is the rate the capacity run held through the "
                             "gateway on this machine; core: the rate at a full core of the gateway, from its CPU "
                             "per request (only honest on a machine with a core to spare for the generators)")
    parser.add_argument("--capacity-seconds", type=float, default=15.0)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: ENDED.set())
    work = Path(tempfile.mkdtemp(prefix="gateway-soak-"))
    standin = start_standin(work, None)
    gateway = None
    try:
        config = gateway_config(standin.url, base_id="b1", user_auth=True)
        directory = work / "gateway"
        from bench.servers import write_gateway
        write_gateway(directory, config)
        gateway_cli(directory, "group", "add", "Кладовщики", "--role", "mobile", "--doc-type", "Поступление")
        added = gateway_cli(directory, "user", "add", LOGIN, "--group", "Кладовщики", "--password-stdin",
                            stdin=PASSWORD + "\n")
        if added.returncode != 0:
            print(f"cannot add the soak user: {added.stderr.strip()}", file=sys.stderr)
            return 1
        env = None
        if args.trace_memory is not None:
            from bench.servers import python_env
            env = {"PYTHONPATH": str(Path(__file__).resolve().parent / "memtrace") + os.pathsep
                   + python_env()["PYTHONPATH"], "GATEWAY_SOAK_TRACE": str(args.trace_memory.resolve()),
                   "GATEWAY_SOAK_TRACE_LEVEL": args.trace_level}
        gateway = start_gateway("gateway", directory, config, None, env)
        cafile = str(directory / "state" / "certs" / "ca.pem")
        port = config["bases"][0]["data"]["listen"]
        samples = soak(args, gateway.process.pid, port, cafile)
        report(samples, args.png, f"gateway soak: {args.minutes:g} min at {args.load:.0%} of capacity")
        if args.trace_memory is not None:
            memory_report(args.trace_memory, args.minutes * 60 * 0.2)
        return 0
    finally:
        if gateway is not None:
            terminate(gateway.process)
        terminate(standin.process)


if __name__ == "__main__":
    sys.exit(main())
