"""Command line of the stand-in: `gateway standin ...` and `python -m gateway.standin ...`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence

from gateway.standin.server import serve

DEFAULT_DATA_PORT = 9706  # the legacy server's default data port (seed: "Порт сервера данных")
DEFAULT_PRINT_PORT = 9707  # and its print-server port
_PRINT_OFF = ("off", "none", "no", "-")


def print_port_value(text: str) -> int | None:
    """A port number, 0 for any free port, or off/none to run without a print port."""
    if text.strip().lower() in _PRINT_OFF:
        return None
    return port_value(text)


def port_value(text: str) -> int:
    if not text.strip().isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535; 0 picks a free port)")
    return int(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--data-port", type=port_value, default=DEFAULT_DATA_PORT,
                        help=f"data (OData API) port; 0 picks a free one (default {DEFAULT_DATA_PORT})")
    parser.add_argument("--print-port", type=print_port_value, default=DEFAULT_PRINT_PORT,
                        help=f"print-server port; 0 picks a free one, 'off' disables it (default {DEFAULT_PRINT_PORT})")
    parser.add_argument("--no-access-log", dest="access_log", action="store_false",
                        help="do not log one line per request to stderr (for benchmarks)")


def _url(host: str, port: int, path: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}{path}"


async def run(host: str, data_port: int, print_port: int | None, access_log: bool = True) -> int:
    try:
        server = await serve(host, data_port, print_port, access_log=access_log)
    except OSError as error:
        wanted = f"{data_port}" + (f" and {print_port}" if print_port is not None else "")
        print(f"standin: cannot listen on {host} port {wanted}: {error.strerror or error}; "
              "choose other ports with --data-port/--print-port (0 picks a free one)", file=sys.stderr)
        return 1
    ports = server.ports
    urls = [_url(host, ports.data, "/api/v1/DocTypes")]
    if ports.print is not None:
        urls.append(_url(host, ports.print, "/status"))
    # The harness parses "data=N print=N" from this line; print=0 means no print port.
    print(f"standin listening data={ports.data} print={ports.print or 0} {' '.join(urls)}", flush=True)
    stop = asyncio.Event()
    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    except (NotImplementedError, AttributeError):  # Windows: Ctrl+C still works
        pass
    try:
        await stop.wait()
    finally:
        await server.close()
    return 0


def configure_access_log() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger = logging.getLogger("gateway.standin")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def run_from_args(args: argparse.Namespace) -> int:
    configure_access_log()
    try:
        return asyncio.run(run(args.host, args.data_port, args.print_port, args.access_log))
    except KeyboardInterrupt:
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.standin",
                                     description="Stand-in for the legacy warehouse server (plain HTTP).")
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))
