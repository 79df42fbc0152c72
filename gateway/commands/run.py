"""``gateway run``: serve the configured bases until stopped."""

from __future__ import annotations

import argparse
import asyncio
import sys

from gateway.config import ConfigError, LogSettings, load_config
from gateway.logsetup import configure_logging


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("run", help="start the gateway (reloads itself when the config file changes)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from gateway.runner import StartupError, serve

    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        configure_logging(LogSettings())
        print(f"error: {e}", file=sys.stderr)
        return 2
    configure_logging(cfg.log)
    if cfg.log.file is not None:
        # Everything else goes to the file; without this line the terminal would stay silent.
        print(f"gateway: logging to {cfg.log.file} (log.file in {cfg.source}); stop with Ctrl+C", file=sys.stderr,
              flush=True)
    try:
        return asyncio.run(serve(args.config, init=getattr(args, "init", False)))
    except (ConfigError, StartupError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
