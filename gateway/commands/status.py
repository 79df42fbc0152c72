"""``gateway status``: is the gateway of this configuration running, and how is it doing.

Read from the run files each gateway process keeps in ``<state_dir>/run/<pid>.json`` (a
supervisor's run file lists its workers), so it works on every OS and whatever the process
layout. No traffic is sent.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from gateway.commands import load
from gateway.config import ConfigError
from gateway.ops.health import RunInfo, process_alive, read_run_files


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("status", help="is the gateway running: pid, workers, uptime, listeners, last reload")
    parser.add_argument("--json", action="store_true", help="print a machine-readable object instead of lines")
    parser.set_defaults(func=run)


def live_processes(state_dir: object) -> list[RunInfo]:
    return [info for info in read_run_files(state_dir) if process_alive(info.pid)]  # type: ignore[arg-type]


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "unknown"


def _uptime(started: float) -> str:
    seconds = max(0, int(time.time() - started))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    return (f"{days}d " if days else "") + f"{hours:02d}:{minutes:02d}:{seconds:02d}"


def reload_text(last: dict[str, object] | None) -> str:
    if not last:
        return "none since start"
    return f"{'OK' if last.get('ok') else 'FAILED'} at {_when(float(last.get('at') or 0))} — {last.get('message')}"


def run(args: argparse.Namespace) -> int:
    try:
        cfg = load(args.config)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    # Imported when the verb runs, to delay heavy imports (the parser loads every verb's module).
    from gateway.store import statecheck

    processes = live_processes(cfg.state_dir)
    state_problem = statecheck.fresh_state_problem(cfg)
    if args.json:
        print(json.dumps({"running": bool(processes), "config": str(cfg.source), "state_problem": state_problem,
                          "processes": [{"pid": p.pid, "workers": list(p.workers), "started": p.started,
                                         "uptime_seconds": int(time.time() - p.started) if p.started else None,
                                         "config_loaded_at": p.loaded_at, "admin_port": p.admin,
                                         "listeners": list(p.listeners), "last_reload": p.last_reload}
                                        for p in processes]}, ensure_ascii=False, indent=2))
        return 0 if processes else 3
    if not processes:
        orphans = _gateways_holding_ports(cfg)
        if orphans:
            # Its run file went with the state folder; the OS still knows who holds the ports.
            print(f"running: pid {', '.join(map(str, orphans))} holds the ports of {cfg.source}, but its run file in "
                  f"{cfg.state_dir / 'run'} is gone (no uptime or reload details)")
            if state_problem:
                print(f"state: {state_problem}")
            return 0
        print(f"not running: no live gateway process for {cfg.source} (state folder {cfg.state_dir})")
        if state_problem:
            print(f"state: {state_problem}")
        return 3
    workers = {w for p in processes for w in p.workers}
    by_pid = {p.pid: p for p in processes}
    print(f"running: {len(processes)} process(es) for {cfg.source}")
    for p in processes:
        if p.pid in workers:
            continue  # shown under its supervisor
        if p.workers:
            print(f"  pid {p.pid} (supervisor), {len(p.workers)} workers")
            print(f"    uptime:     {_uptime(p.started)} (since {_when(p.started)})")
            if p.admin:
                print(f"    admin:      http://{cfg.admin.host}:{p.admin}/ (/healthz, /readyz, /metrics, /console)")
            shown_listeners = False
            for pid in p.workers:
                worker = by_pid.get(pid)
                if worker is None:
                    print(f"    worker pid {pid}: not running (the supervisor restarts it)")
                    continue
                print(f"    worker pid {pid}: up {_uptime(worker.started)}, config loaded at {_when(worker.loaded_at)}, "
                      f"last reload: {reload_text(worker.last_reload)}")
                if not shown_listeners:
                    for line in worker.listeners:
                        print(f"    listener:   {line}")
                    shown_listeners = True
            continue
        print(f"  pid {p.pid}")
        print(f"    uptime:     {_uptime(p.started)} (since {_when(p.started)})")
        print(f"    config loaded at: {_when(p.loaded_at)}")
        print(f"    last reload: {reload_text(p.last_reload)}")
        if p.admin:
            print(f"    admin:      http://{cfg.admin.host}:{p.admin}/ (/healthz, /readyz, /metrics, /console)")
        for line in p.listeners:
            print(f"    listener:   {line}")
    if state_problem:
        print(f"state: {state_problem}")
    return 0


def _gateways_holding_ports(cfg: object) -> list[int]:
    # Imported when the verb runs, to delay heavy imports (the parser loads every verb's module).
    from pathlib import Path

    from gateway.ops.portowner import owner_of

    pids: set[int] = set()
    for listener in cfg.listeners():  # type: ignore[attr-defined]
        owner = owner_of(listener.port)
        if owner is None or not owner.is_gateway():
            continue
        theirs = owner.config_path()
        try:
            same = theirs is None or theirs.resolve() == Path(cfg.source).resolve()  # type: ignore[attr-defined]
        except OSError:
            same = False
        if same:
            pids.add(owner.pid)
    return sorted(pids)
