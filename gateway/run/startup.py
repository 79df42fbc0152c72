"""What one gateway process and the supervisor of several share before and while they run:
the checks before anything listens, the files whose change reloads the configuration, and the
pipe a worker reports "ready" on. Both import it; neither imports the other for it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from pathlib import Path
from typing import Iterable

from gateway.config import GatewayConfig
from gateway.config.scale import resolve_workers
from gateway.ops.ports import busy_listeners
from gateway.policy import DEFAULT_POLICY_FILE
from gateway.store import statecheck

CONFIG_POLL_INTERVAL = 1.0
# Read once at start. `workers` is the supervisor's to act on: a worker cannot change how many it has.
logger = logging.getLogger("gateway.runner")

# `store` is not among them: a reload reopens the process's one store (gateway/store/handle.py).
RESTART_ONLY_SETTINGS = ("listen_host", "state_dir", "workers")
ALL_INTERFACES = ("", "0.0.0.0", "::")
READY_FD_ENV = "GATEWAY_READY_FD"


class StartupError(Exception):
    """The gateway cannot start; the message is for the person who started it."""


def listen_host_option(cfg: GatewayConfig) -> str:
    # mitmproxy treats "" as every interface, IPv4 and IPv6 alike; "0.0.0.0" would leave out ::1.
    return "" if cfg.listen_host in ALL_INTERFACES else cfg.listen_host


def files_fingerprint(paths: Iterable[Path]) -> str | None:
    """A digest of the files' contents; None while the first (the configuration) is unreadable."""
    digest = hashlib.sha256()
    for index, path in enumerate(paths):
        try:
            digest.update(path.read_bytes())
        except OSError:
            if index == 0:
                return None
            digest.update(b"\0missing")
        digest.update(b"\0")
    return digest.hexdigest()


def watched_files(config_path: Path, cfg: GatewayConfig | None) -> list[Path]:
    """The configuration and the policy files it uses: a saved change to any of them reloads."""
    files = [config_path]
    if cfg is not None:
        files += sorted({base.policy or DEFAULT_POLICY_FILE for base in cfg.bases if base.user_auth})
        # A wrong key password, once fixed in its file, must be picked up without saving the config.
        files += sorted({tls.password_file for tls in (cfg.tls, *(b.tls for b in cfg.bases))
                         if tls is not None and tls.password_file is not None})
    return files


def prepare_start(cfg: GatewayConfig, *, init: bool, reuse_port: bool) -> None:
    """The checks before anything listens, for one gateway process or for the supervisor of many:
    ``--init`` acted on, a lost state folder refused, the state folder made, every port free."""
    if init:
        statecheck.start_over(cfg)
    state_problem = statecheck.fresh_state_problem(cfg)
    if state_problem:
        raise StartupError(state_problem)
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    problems = busy_listeners(cfg, listen_host_option(cfg), skip_ports=set(), reuse_port=reuse_port)
    if problems:
        raise StartupError("cannot listen:\n  " + "\n  ".join(problems))


def report_ready(admin_port: int | None = None) -> int | None:
    """Called by a worker once its listeners are up: tells the supervisor through the inherited pipe.
    Returns the pipe, kept open for the heartbeat (gateway/run/lifeline.py); None outside a supervisor."""
    fd = os.environ.pop(READY_FD_ENV, None)
    if fd is None:
        return None
    try:
        os.write(int(fd), b"ready %d\n" % admin_port if admin_port else b"ready\n")
    except (OSError, ValueError):
        return None
    return int(fd)


def restart_only_changes(old: GatewayConfig, new: GatewayConfig) -> list[str]:
    """The settings a reload cannot apply that differ; ``workers`` by the count it means (auto = CPUs)."""
    changed = [name for name in RESTART_ONLY_SETTINGS
               if name != "workers" and getattr(old, name) != getattr(new, name)]
    if resolve_workers(old.workers)[0] != resolve_workers(new.workers)[0]:
        changed.append("workers")
    if old.log.file != new.log.file:
        changed.append("log.file")
    return changed


def keep_restart_only_settings(old: GatewayConfig, new: GatewayConfig, pending: list[str], *,
                               quiet: bool = False) -> GatewayConfig:
    """``new`` with the settings a reload cannot apply kept as ``old`` has them, each said once."""
    kept: dict[str, object] = {}
    for name in pending:
        if name == "log.file":
            if not quiet:
                logger.warning("log.file changed in the configuration; this takes effect only after a restart "
                               "(logging to %s for now)", old.log.file or "the console")
            kept["log"] = dataclasses.replace(new.log, file=old.log.file)
            continue
        if not quiet:
            logger.warning("%s changed in the configuration; this takes effect only after a restart "
                           "(keeping %r for now)", name, getattr(old, name))
        kept[name] = getattr(old, name)
    for name in RESTART_ONLY_SETTINGS:
        if name not in kept and getattr(old, name) != getattr(new, name):
            kept[name] = getattr(old, name)  # e.g. workers: auto → the same count: nothing to restart for
    return dataclasses.replace(new, **kept) if kept else new


def warn_plaintext(cfg: GatewayConfig) -> None:
    for base in cfg.bases:
        if not base.https:
            logger.warning("base %r is served over plain HTTP (https: false): passwords and data "
                           "travel in clear text — turn https on for anything beyond a closed test lab",
                           base.name, extra={"event": "plaintext-base", "base": base.name})
