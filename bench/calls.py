"""Python function calls per request on the gateway's event loop, plain base and Basic auth.

    .venv/bin/python bench/calls.py [--duration S] [--top N] [--save DIR]

Starts the stand-in, a gateway with a plain HTTPS base and one with ``user_auth: true`` (as
``bench/run.py --auth`` does), loads each with wrk (keep-alive), and profiles a window in the middle
of the load, once wrk's connections are open, with cProfile (bench/profile_hook: SIGUSR1 starts, SIGUSR2 writes the profile). Calls per
request is a count, not a time: it does not move with the machine's load, so it shows what a
change to the request path saved even on a busy shared machine. cProfile makes every call
dearer, so its times are only for ranking. POSIX only (signals).
"""

from __future__ import annotations

import argparse
import os
import pstats
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load  # noqa: E402
import scenarios  # noqa: E402
import servers  # noqa: E402
from procs import cpu_plan  # noqa: E402

HOOK = Path(__file__).resolve().parent / "profile_hook"
PATH = "/api/v1/DocTypes"


def profiled(server: servers.Server, kind: str, duration: float, connections: int, out: Path,
             cpus: set[int] | None) -> tuple[int, pstats.Stats]:
    """The profile of ``duration`` seconds in the middle of a longer wrk run, so that wrk's
    connections (TLS handshakes: thousands of calls each) are open before it starts; the
    requests are counted in the profile itself (the access log's ``response`` hook, once a
    request), not from wrk."""
    url = server.url + PATH
    load.measure(kind, url, connections=connections, duration=1, headers=server.headers, cpus=cpus)  # warm up
    out.unlink(missing_ok=True)
    result: list[object] = []
    runner = threading.Thread(target=lambda: result.append(load.measure(
        kind, url, connections=connections, duration=duration + 2, headers=server.headers, cpus=cpus)))
    runner.start()
    time.sleep(1.0)
    server.process.send_signal(signal.SIGUSR1)
    time.sleep(duration)
    server.process.send_signal(signal.SIGUSR2)
    runner.join()
    deadline = time.monotonic() + 30
    while not out.exists() or out.stat().st_size == 0:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{server.name} wrote no profile")
        time.sleep(0.2)
    time.sleep(0.5)  # let the writer finish
    stats = pstats.Stats(str(out))
    requests = sum(row[1] for (file, _line, func), row in stats.stats.items()  # type: ignore[attr-defined]
                   if func == "response" and file.endswith(("addons/accesslog.py", "addons\\accesslog.py")))
    return requests, stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--top", type=int, default=25, help="functions listed per scenario, by calls")
    parser.add_argument("--save", type=Path, help="keep the profiles (plain.prof, auth.prof) in this folder")
    parser.add_argument("--tree", type=Path, default=servers.REPO,
                        help="the checkout whose gateway is profiled (default: this one), e.g. main's")
    args = parser.parse_args(argv)
    plan = cpu_plan()
    kind = load.choose("auto")
    os.environ["PYTHONPATH"] = str(HOOK) + os.pathsep + os.environ.get("PYTHONPATH", "")
    started: list[servers.Server] = []
    with tempfile.TemporaryDirectory(prefix="gateway-calls-") as tmp:
        workdir = Path(tmp)
        save = args.save or workdir
        save.mkdir(parents=True, exist_ok=True)
        try:
            backend = servers.start_standin(workdir, plan.load)
            started.append(backend)
            os.environ["GATEWAY_BENCH_PROFILE"] = str(save / "plain.prof")
            config = servers.gateway_config(backend.url, base_id="bench")
            scenarios.write_lists(servers.server_folder(workdir / "gateway", config), entries=0)
            tree = args.tree.resolve()
            plain = servers.start_gateway("gateway", workdir / "gateway", config, plan.server, repo=tree)
            started.append(plain)
            os.environ["GATEWAY_BENCH_PROFILE"] = str(save / "auth.prof")
            auth = scenarios.auth_gateway(workdir, backend.url, PATH, plan.server, repo=tree)
            if isinstance(auth, scenarios.Skipped):
                print(f"auth: skipped: {auth.reason}", file=sys.stderr)
                return 1
            started.append(auth)
            for name, server in (("plain", plain), ("auth", auth)):
                requests, stats = profiled(server, kind, args.duration, args.connections,
                                           save / f"{name}.prof", plan.load)
                calls = stats.total_calls  # type: ignore[attr-defined]
                python_calls = sum(row[1] for (file, _l, _f), row in stats.stats.items()  # type: ignore[attr-defined]
                                   if file != "~")
                print(f"{server.name}: {requests} requests, {calls / max(requests, 1):.0f} calls per request "
                      f"({python_calls / max(requests, 1):.0f} of Python functions, the rest built-ins)")
                rows = sorted(stats.stats.items(), key=lambda kv: kv[1][1], reverse=True)  # type: ignore[attr-defined]
                for (file, line, func), (_cc, ncalls, tottime, _ct, _callers) in rows[:args.top]:
                    where = f"{Path(file).parent.name}/{Path(file).name}:{line}" if file != "~" else "~"
                    print(f"  {ncalls / max(requests, 1):6.2f}/req {tottime / max(requests, 1) * 1e6:7.1f} us  "
                          f"{func}  {where}")
        finally:
            for server in reversed(started):
                server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
