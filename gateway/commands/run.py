"""``gateway run``: serve the configured bases until stopped."""

from __future__ import annotations

import argparse
import logging
import sys

from gateway.commands import load
from gateway.config import ConfigError, LogSettings
from gateway.ops.logsetup import configure_logging


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("run", help="start the gateway (reloads itself when the config file changes)")
    # Internal: how the supervisor starts worker number N (see gateway/run/supervisor.py).
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported when the verb runs, to delay heavy imports (the parser loads every verb's module).
    from gateway.run.runner import StartupError, serve

    try:
        cfg = load(args.config)
    except ConfigError as e:
        configure_logging(LogSettings())
        print(f"error: {e}", file=sys.stderr)
        return 2
    from gateway.run.engine import run_loop
    from gateway.config.scale import resolve_workers
    from gateway.run.supervisor import SupervisorError, supervise

    count, why = resolve_workers(cfg.workers) if args.worker is None else (0, None)
    # Workers and their supervisor share the log files: they append, the supervisor rotates.
    configure_logging(cfg.log, shared=args.worker is not None or count > 1)
    if cfg.log.file is not None and args.worker is None:
        # Everything else goes to the file; without this line the terminal would stay silent.
        # Said once: workers share the supervisor's terminal.
        print(f"gateway: logging to {cfg.log.file} (log.file in {cfg.source}); stop with Ctrl+C", file=sys.stderr,
              flush=True)
    init = getattr(args, "init", False)
    try:
        if args.worker is not None:
            # --init was the supervisor's to act on, once, before any worker started.
            return run_loop(serve(args.config, worker=args.worker))
        if why:
            logging.getLogger("gateway.supervisor").warning("%s", why)
        if count == 1:
            return run_loop(serve(args.config, init=init))
        return run_loop(supervise(args.config, count, init=init))
    except (ConfigError, StartupError, SupervisorError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
