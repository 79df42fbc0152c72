"""``gateway demo``: the stand-in back end and the gateway in one process, ready to try.

What ``make run`` starts. It prepares what is missing (state folder, certificate, the demo
user), then prints the URL and a curl line that works as printed.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from gateway.commands import load
from gateway.config import ConfigError
from gateway.config.demo import DEMO_CONFIG, ensure_demo_config
from gateway.ops.logsetup import configure_logging

DEMO_USER = "demo"
# A demo secret shown on screen on purpose: it exists only in the demo state folder.
DEMO_PASSWORD = "Demo-Warehouse-2026"
# External-connection role: the printed curl line calls the REST API, which the default policy
# keeps from mobile users.
DEMO_GROUP = "Внешние подключения"
DEMO_ADMIN = "demo-admin"
DEMO_ADMIN_PASSWORD = "Demo-Console-2026"
DEMO_ADMIN_GROUP = "Администраторы (демо)"
DEMO_DOC_TYPES = ("Поступление", "Инвентаризация", "Перемещение", "Продажа", "Списание", "Возврат")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("demo", help="run the stand-in back end and the gateway on the demo configuration")
    parser.add_argument("--demo-config", type=Path, default=DEMO_CONFIG,
                        help="demo configuration (default: demo/gateway.yaml in the current folder, written from the "
                             "packaged default when missing)")
    parser.set_defaults(func=run_demo)


def ensure_demo_user(config_path: Path) -> None:
    """Create the demo group and user once; an existing demo user is left as it is."""
    # Imported when the verb runs, to delay heavy imports (the parser loads every verb's module).
    from gateway.accounts import Accounts
    from gateway.store.keys import load_or_create_secret
    from gateway.store import open_store

    cfg = load(config_path)
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(cfg.state_dir, settings=cfg.store)
    accounts = Accounts(store, load_or_create_secret(cfg.state_dir))
    if store.find_group(DEMO_GROUP) is None:
        accounts.add_group(DEMO_GROUP, "external", DEMO_DOC_TYPES)
    if store.find_user(DEMO_USER) is None:
        accounts.add_user(DEMO_USER, DEMO_GROUP, DEMO_PASSWORD, description="demo user created by `gateway demo`")
    # The console (admin listener) needs an admin; the demo makes one if there is none.
    if not any(g.role == "admin" for g in store.list_groups()):
        accounts.add_group(DEMO_ADMIN_GROUP, "admin", DEMO_DOC_TYPES[:1])
    admin_groups = [g for g in store.list_groups() if g.role == "admin"]
    if not any(u.group_id in {g.id for g in admin_groups} for u in store.list_users()) \
            and store.find_user(DEMO_ADMIN) is None:
        accounts.add_user(DEMO_ADMIN, admin_groups[0].id, DEMO_ADMIN_PASSWORD,
                          description="demo console admin created by `gateway demo`")


async def _run(config_path: Path) -> int:
    # Imported when the verb runs, to delay heavy imports (the parser loads every verb's module).
    from gateway.run.runner import Gateway
    from gateway.standin.server import serve as serve_standin

    cfg = load(config_path)
    data_backend = cfg.bases[0].data
    print_backend = cfg.bases[0].print
    ports = [data_backend.backend_port] + ([print_backend.backend_port] if print_backend else [])
    try:
        standin = await serve_standin("127.0.0.1", data_backend.backend_port,
                                      print_backend.backend_port if print_backend else None)
    except OSError as error:
        raise StandinPortError(_standin_problem(config_path, ports, error)) from None
    gateway = Gateway(config_path)
    try:
        await gateway.start()
        _print_banner(config_path)
        await gateway.wait()
    finally:
        await gateway.stop()
        await standin.close()
    return 0


class StandinPortError(Exception):
    """The demo's stand-in back end cannot listen; the message is the one line to show."""


def _standin_problem(config_path: Path, ports: list[int], error: OSError) -> str:
    # Imported when the verb runs, to delay heavy imports (the parser loads every verb's module).
    from gateway.ops.ports import port_problem

    for port in ports:
        problem = port_problem("127.0.0.1", port)
        if problem:
            return (f"the demo's stand-in back end cannot listen: {problem}; stop that program, or change "
                    f"the back-end ports (bases[0].data.backend, bases[0].print.backend) in {config_path}")
    return f"the demo's stand-in back end cannot listen on 127.0.0.1 port {ports}: {error.strerror or error}"


def _print_banner(config_path: Path) -> None:
    cfg = load(config_path)
    ca = cfg.state_dir / "certs" / "ca.pem"
    lines = ["", "The gateway is running. Try it:"]
    for base in cfg.bases:
        url = f"https://localhost:{base.data.listen}/api/v1/DocTypes"
        auth = f" -u {DEMO_USER}:{DEMO_PASSWORD}" if base.user_auth else ""
        lines.append(f"  {base.name}: {url}")
        lines.append(f"    curl --cacert {ca}{auth} {url}")
    lines += [f"  CA certificate to trust on devices: {ca}"]
    lines += next_steps(config_path, cfg)
    lines += ["  Stop with Ctrl+C.", ""]
    print("\n".join(lines), flush=True)


def run_demo(args: argparse.Namespace) -> int:
    # Imported when the verb runs, to delay heavy imports (the parser loads every verb's module).
    from gateway.run.runner import StartupError

    config_path: Path = args.demo_config
    if config_path == DEMO_CONFIG and ensure_demo_config(config_path):
        print(f"note: wrote {config_path} from the packaged demo configuration; edit it freely", file=sys.stderr)
    try:
        cfg = load(config_path)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    configure_logging(cfg.log)
    from gateway.store import statecheck

    if statecheck.fresh_state_problem(cfg):
        # The demo's state is disposable (`make clean` removes it): start it over, CA included.
        print(f"note: the demo's state folder {cfg.state_dir} was removed; the demo starts over with new users "
              "and a NEW local CA (devices that trusted the old demo CA must install the new ca.pem)",
              file=sys.stderr)
        statecheck.forget(cfg.source)
    try:
        ensure_demo_user(config_path)
        return asyncio.run(_run(config_path))
    except (ConfigError, StartupError, StandinPortError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def next_steps(config_path: Path, cfg: object) -> list[str]:
    """What to do next, with commands that work as printed from the repository folder."""
    # Imported when the verb runs, to delay heavy imports (the parser loads every verb's module).
    import os

    try:
        shown = Path(os.path.relpath(config_path))
    except ValueError:  # another drive on Windows
        shown = config_path
    gateway = Path(".venv") / ("Scripts" if sys.platform == "win32" else "bin") / "gateway"
    lines = ["", "Next steps (in another terminal, from this folder):",
             f"  {gateway} -c {shown} status      # pid, uptime, listeners",
             f"  {gateway} -c {shown} check       # one line per base",
             f"  {gateway} -c {shown} user list",
             f"  (or `. .venv/bin/activate` once, then `gateway -c {shown} ...`)"]
    admin = getattr(cfg, "admin", None)
    if admin is not None and admin.enabled:
        lines += [f"  Console: http://{admin.host}:{admin.listen}/console  — log in as "
                  f"{DEMO_ADMIN} / {DEMO_ADMIN_PASSWORD}"]
    return lines
