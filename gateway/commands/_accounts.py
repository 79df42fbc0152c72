"""What the account commands share: opening the state from the configuration, reading secrets.

Secrets never come from argv (it shows in `ps` and shell history): from an interactive prompt,
asked twice, or one per line on standard input for scripts.
"""

from __future__ import annotations

import getpass
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TextIO

from gateway.store.keys import load_or_create_secret
from gateway.accounts.rules import AccountError
from gateway.accounts.service import Accounts
from gateway.commands import load
from gateway.config import GatewayConfig
from gateway.store import Store, open_store


@dataclass
class Opened:
    config: GatewayConfig
    store: Store
    accounts: Accounts


def open_state(config_path: Path) -> Opened:
    """Raises ConfigError, StoreError or ValueError (damaged key file) with a readable text."""
    cfg = load(config_path)
    # What a command changes (a ban lifted, a user removed) shows on the console's events page.
    from gateway.ops.journal import install_journal
    install_journal(cfg.state_dir)
    store = open_store(cfg.state_dir, settings=cfg.store)
    return Opened(cfg, store, Accounts(store, load_or_create_secret(cfg.state_dir)))


class SecretReader:
    """Reads secrets in the order asked: one line each from stdin, or a prompt asked twice."""

    def __init__(self, stdin: TextIO | None = None, prompt: Callable[[str], str] = getpass.getpass) -> None:
        self.stdin = stdin if stdin is not None else sys.stdin
        self.prompt = prompt

    def from_stdin(self, what: str) -> str:
        line = self.stdin.readline()
        if not line:
            raise AccountError(f"standard input ended before the {what}; give one {what} per line")
        return line.rstrip("\r\n")

    def interactive(self, what: str) -> str:
        first = self.prompt(f"New {what}: ")
        second = self.prompt(f"Repeat the {what}: ")
        if first != second:
            raise AccountError(f"the two {what}s differ; nothing was changed")
        return first

    def read(self, what: str, use_stdin: bool) -> str:
        return self.from_stdin(what) if use_stdin else self.interactive(what)


def user_errors(func: Callable[..., int]) -> Callable[..., int]:
    """A refused change or a broken state folder is one line on stderr and exit code 1."""
    # Imported when the verb runs, to delay heavy imports (the parser loads every verb's module).
    import functools

    from gateway.certs.load import CertError
    from gateway.config import ConfigError
    from gateway.store import StoreError

    @functools.wraps(func)
    def wrapper(*args: object, **kwargs: object) -> int:
        try:
            return func(*args, **kwargs)
        except (AccountError, CertError, ConfigError, StoreError, ValueError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    return wrapper
