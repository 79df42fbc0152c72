"""`gateway standin`: run the stand-in legacy back end until Ctrl+C."""

from __future__ import annotations

import argparse
from typing import Any

from gateway.standin.main import add_arguments, run_from_args


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "standin",
        help="run the stand-in legacy back end (plain HTTP) for demos and tests",
        description="Serve an imitation of the legacy warehouse server's OData API, an echo "
                    "endpoint and a print port, over plain HTTP. Runs until Ctrl+C.",
    )
    add_arguments(parser)
    parser.set_defaults(func=run_from_args)
