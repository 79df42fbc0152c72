"""State that cannot be lost silently.

The state folder holds the users' database, the HMAC key every password and barcode index is
computed with, and the local CA devices trust. Deleting or replacing it under a running gateway
used to go unnoticed: the CLI made a fresh empty database and key next to it, and the next start
made a new CA that no device trusted. Three guards:

* a *memory* file next to the configuration (``.<config name>.state.json``, outside the state
  folder so it survives the folder's loss) remembers that this configuration's gateway has run,
  with which state folder, HMAC key fingerprint and CA fingerprint;
* ``fresh_state_problem`` — a start or a CLI command refuses to create a fresh store where the
  memory says one existed (``--init`` starts over on purpose);
* ``StateWatch`` — the running gateway re-checks its store file and key every second; a change
  is an ERROR event, and ``/readyz`` answers 503 until the gateway is restarted.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.config import GatewayConfig
from gateway.utils.files import atomic_write_text
from gateway.store.keys import secret_fingerprint

logger = logging.getLogger("gateway.state")

DB_NAME = "gateway.db"           # gateway/store/sqlite.py's name; not imported, to keep this module light
KEY_NAME = "auth-hmac.key"       # gateway/store/keys.py's SECRET_FILE

_problem: str | None = None


def current_problem() -> str | None:
    """What the running gateway found wrong with its state folder, or None."""
    return _problem


def set_problem(problem: str | None) -> None:
    global _problem
    _problem = problem


# --- the memory file -------------------------------------------------------------------------


def memory_file(config_path: Path) -> Path:
    config_path = Path(config_path).resolve()
    return config_path.parent / f".{config_path.name}.state.json"


def read_memory(config_path: Path) -> dict[str, Any]:
    try:
        data = json.loads(memory_file(config_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def remember(config_path: Path, **facts: Any) -> None:
    """Merge ``facts`` into the memory file. A read-only configuration folder only costs the guard."""
    path = memory_file(config_path)
    data = read_memory(config_path)
    data.update(facts)
    try:
        atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True))
    except OSError as e:
        logger.warning("cannot write %s (%s): a lost state folder could then go unnoticed", path, e.strerror or e)


def forget(config_path: Path) -> None:
    try:
        memory_file(config_path).unlink()
    except OSError:
        pass


# --- what the state folder holds now ------------------------------------------------------------


def key_fingerprint(state_dir: Path) -> str | None:
    """The HMAC key's fingerprint (never the key), None when the file is missing or damaged."""
    try:
        text = (Path(state_dir) / KEY_NAME).read_bytes().strip()
        secret = bytes.fromhex(text.decode("ascii"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None

    return secret_fingerprint(secret)


def file_identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino)  # st_ino is the NTFS file index on Windows


def has_run_before(cfg: GatewayConfig) -> bool:
    return bool(read_memory(cfg.source).get("ran"))


def fresh_state_problem(cfg: GatewayConfig) -> str | None:
    """Why the state folder must not be (re)created from nothing, or None when all is as remembered."""
    memory = read_memory(cfg.source)
    if not memory.get("ran"):
        return None
    state_dir = Path(cfg.state_dir)
    remembered_dir = memory.get("state_dir")
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(float(memory.get("last_start", 0) or 0)))
    history = f"the gateway of {cfg.source} has run before (last start {when})"
    if not state_dir.exists():
        return (f"state folder {state_dir} is missing, but {history}: its users, HMAC key and local CA "
                "are gone. Restore the folder from a backup, or start over on purpose with --init")
    if cfg.store.backend == "sqlite" and not (state_dir / DB_NAME).exists() and memory.get("had_store"):
        return (f"{state_dir / DB_NAME} (users and groups) is missing, but {history}. Restore it from a "
                "backup, or start over on purpose with --init")
    wanted = memory.get("key_fingerprint")
    have = key_fingerprint(state_dir)
    if wanted and have is None:
        return (f"{state_dir / KEY_NAME} (the HMAC key) is missing, but {history}: without it no stored "
                "password or barcode matches. Restore it from a backup, or start over with --init")
    if wanted and have != wanted:
        return (f"{state_dir / KEY_NAME} is not the HMAC key this gateway ran with (fingerprint {have}, "
                f"expected {wanted}): the state folder was replaced. Restore the right folder, or accept "
                "this one with --init")
    if remembered_dir and Path(remembered_dir) != state_dir.resolve():
        logger.info("state_dir moved from %s to %s", remembered_dir, state_dir)
    return None


def remember_start(cfg: GatewayConfig) -> None:
    state_dir = Path(cfg.state_dir)
    remember(cfg.source, ran=True, state_dir=str(state_dir.resolve()), last_start=time.time(),
             key_fingerprint=key_fingerprint(state_dir),
             had_store=cfg.store.backend != "sqlite" or (state_dir / DB_NAME).exists())


def start_over(cfg: GatewayConfig) -> None:
    """``--init``: the operator starts this configuration's state over on purpose."""
    if has_run_before(cfg):
        logger.warning("--init: starting the state of %s over in %s (a new users' store and HMAC key "
                       "may be created; the local CA is still only replaced by --new-ca)", cfg.source, cfg.state_dir,
                       extra={"event": "state-init"})
    memory = read_memory(cfg.source)
    forget(cfg.source)
    # The CA fingerprint is kept: --init is about the store, and a CA that devices trust is
    # only ever replaced by `gateway cert self-signed --new-ca`.
    if memory.get("ca_fingerprint"):
        remember(cfg.source, ca_fingerprint=memory["ca_fingerprint"])


# --- the running gateway's watch -----------------------------------------------------------------


@dataclass
class StateWatch:
    """What the state folder looked like when the gateway started; ``check`` says what changed."""

    state_dir: Path
    backend: str
    store_identity: tuple[int, int] | None
    key: str | None

    @classmethod
    def snapshot(cls, cfg: GatewayConfig) -> "StateWatch":
        state_dir = Path(cfg.state_dir)
        return cls(state_dir, cfg.store.backend, file_identity(state_dir / DB_NAME), key_fingerprint(state_dir))

    def check(self) -> str | None:
        if not self.state_dir.exists():
            return (f"state folder {self.state_dir} was deleted while the gateway runs: users are checked "
                    "against a database that no longer exists. Restore the folder from a backup and restart "
                    "the gateway")
        if self.backend == "sqlite" and self.store_identity is not None:
            now = file_identity(self.state_dir / DB_NAME)
            if now is None:
                return (f"{self.state_dir / DB_NAME} was deleted while the gateway runs. Restore it from a "
                        "backup and restart the gateway")
            if now != self.store_identity:
                return (f"{self.state_dir / DB_NAME} was replaced while the gateway runs; the gateway still "
                        "uses the old file. Restart the gateway to use the new one")
        if self.key is not None:
            now_key = key_fingerprint(self.state_dir)
            if now_key is None:
                return (f"{self.state_dir / KEY_NAME} (the HMAC key) was deleted while the gateway runs. "
                        "Restore it from a backup and restart the gateway")
            if now_key != self.key:
                return (f"{self.state_dir / KEY_NAME} (the HMAC key) changed while the gateway runs: stored "
                        "passwords and barcodes no longer match it. Restore the old key file and restart")
        return None

    def poll(self) -> None:
        """Called every second by the runner; logs a new problem once as an ERROR event."""
        problem = self.check()
        if problem and problem != current_problem():
            logger.error("%s", problem, extra={"event": "state-lost"})
        if problem:
            set_problem(problem)
