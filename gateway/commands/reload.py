"""``gateway reload``: ask the running gateway to re-read its configuration, and say what happened.

Portable (no signals): a request file every gateway process watches (gateway/ops/reloadctl.py);
each answers in its run file, which this command reads back.
"""

from __future__ import annotations

import argparse
import sys
import time

from gateway.commands import load
from gateway.config import ConfigError
from gateway.commands.status import live_processes
from gateway.ops.health import read_run_files
from gateway.ops.reloadctl import write_request


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("reload", help="make the running gateway re-read its configuration now")
    parser.add_argument("--timeout", type=float, default=15.0, help="seconds to wait for the answer (default 15)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        cfg = load(args.config)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        print("The running gateway keeps its current configuration; fix the file and run `gateway reload` again.",
              file=sys.stderr)
        return 2
    processes = live_processes(cfg.state_dir)
    if not processes:
        print(f"error: no running gateway for {cfg.source} (nothing in {cfg.state_dir / 'run'}); "
              "start it with `gateway run`", file=sys.stderr)
        return 3
    request = write_request(cfg.state_dir)
    # A supervisor does not reload itself: its workers answer, each for its own listeners.
    waiting = {p.pid for p in processes if not p.workers}
    answers: dict[int, dict[str, object]] = {}
    deadline = time.monotonic() + args.timeout
    while waiting and time.monotonic() < deadline:
        time.sleep(0.2)
        for info in read_run_files(cfg.state_dir):
            if info.pid in waiting and info.last_reload and info.last_reload.get("request") == request:
                answers[info.pid] = info.last_reload
                waiting.discard(info.pid)
    status = 0
    for pid, answer in sorted(answers.items()):
        if answer.get("ok"):
            message = str(answer.get("message") or "applied")
            print(f"pid {pid}: new configuration applied" + ("" if message == "applied" else f" ({message})"))
        else:
            print(f"pid {pid}: reload {answer.get('message')}; the previous configuration stays in force")
            status = 1
    for pid in sorted(waiting):
        print(f"pid {pid}: no answer within {args.timeout:g} s (is it busy or stuck? see its log)")
        status = 1
    return status
