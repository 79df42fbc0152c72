"""The ``gateway`` command. Each sub-command lives in gateway/commands/<name>.py."""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import importlib
import os
import sys
from pathlib import Path
from typing import Any, Callable

from gateway.commands import load
from gateway.config import DEFAULT_CONFIG_NAME
from gateway.utils import messages

COMMAND_MODULES = ("run", "demo", "check", "standin", "cert", "iplist", "group", "user", "bans", "status", "reload", "device")
# Commands that open the users' store: they refuse to create a fresh one where one existed.
STATE_COMMANDS = frozenset({"run", "group", "user", "bans", "device"})
# These set up logging themselves; every other command logs like the gateway it manages.
SERVING_COMMANDS = frozenset({"run", "demo", "standin"})


def build_parser(lang: str = "en") -> argparse.ArgumentParser:
    _argparse_in(lang)
    parser = argparse.ArgumentParser(
        prog="gateway",
        description="TLS security gateway for legacy plain-HTTP servers.",
    )
    parser.add_argument("-c", "--config", type=Path, default=Path(DEFAULT_CONFIG_NAME),
                        help=f"configuration file (default: ./{DEFAULT_CONFIG_NAME})")
    parser.add_argument("--init", action="store_true",
                        help="allow creating a fresh state folder (users, HMAC key) for a configuration whose "
                             "gateway has run before; without it a lost state folder is an error")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module_name = f"gateway.commands.{name}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name == module_name:
                continue
            raise
        module.register(subparsers)
    _accept_config_anywhere(parser)
    if lang != "en":
        _translate_help(parser, messages.translator(lang))
    return parser


def _argparse_in(lang: str) -> None:
    """argparse's own words ("usage:", "options", "show this help message and exit", its error
    lines) from our catalogue: argparse looks ``_``/``ngettext`` up in its module at call time."""
    translate = messages.translator(lang)
    argparse._ = translate  # type: ignore[attr-defined]
    argparse.ngettext = lambda one, many, n: translate(one if n == 1 else many)  # type: ignore[attr-defined]


def _translate_help(parser: argparse.ArgumentParser, translate: Callable[[str], str]) -> None:
    """Every command's description and every option's help through the catalogue (exact English
    text as msgid), so the commands' modules keep plain English strings."""
    if parser.description:
        parser.description = translate(parser.description)
    for action in parser._actions:
        if action.help and action.help is not argparse.SUPPRESS:
            action.help = translate(action.help)
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                if choice.help:
                    choice.help = translate(choice.help)
            for sub in dict.fromkeys(action.choices.values()):
                _translate_help(sub, translate)


class _LocalizedLines:
    """stdout/stderr of a one-shot command in the system's language: each whole line the
    catalogue knows (``error: …``, ``warning: …`` and the commands' own result lines) is
    written translated; any other line passes unchanged."""

    PREFIXES = ("error: ", "warning: ")

    def __init__(self, stream: Any, lang: str) -> None:
        self._stream = stream
        self._lang = lang
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self._stream.write(self._line(line) + "\n")
        return len(text)

    def _line(self, line: str) -> str:
        for prefix in self.PREFIXES:
            if line.startswith(prefix):
                return messages.localize(self._lang, prefix.rstrip()) + " " + \
                    messages.localize(self._lang, line[len(prefix):])
        indent = line[:len(line) - len(line.lstrip())]
        return indent + messages.localize(self._lang, line.strip()) if line.strip() else line

    def flush(self) -> None:
        if self._pending:
            self._stream.write(self._line(self._pending))
            self._pending = ""
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _accept_config_anywhere(parser: argparse.ArgumentParser) -> None:
    """Let -c come after the sub-command too (`gateway run -c gateway.yaml`), as people type it.

    The sub-parsers' copy has no default of its own, so it only overrides the top-level value
    when it is actually given.
    """
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                if not any("-c" in a.option_strings for a in sub._actions):
                    sub.add_argument("-c", "--config", type=Path, default=argparse.SUPPRESS,
                                     help=f"configuration file (default: ./{DEFAULT_CONFIG_NAME})")
                if not any("--init" in a.option_strings for a in sub._actions):
                    sub.add_argument("--init", action="store_true", default=argparse.SUPPRESS,
                                     help="start the state folder over on purpose (see `gateway --help`)")
                _accept_config_anywhere(sub)


def log_like_the_gateway(config_path: Path) -> None:
    """A one-shot command's security events (a ban lifted, a weak password forced, a user
    removed) go where the running gateway logs: into log.file when there is one. On a
    terminal only warnings and errors show, so command output stays readable."""
    # Imported here: nothing that loads OpenSSL may load before main() sets OPENSSL_CONF.
    from gateway.config import ConfigError, LogSettings
    from gateway.ops.logsetup import configure_logging

    state_dir = None
    try:
        cfg = load(config_path)
        settings, state_dir = cfg.log, cfg.state_dir
    except ConfigError:
        settings = LogSettings()  # the command itself reports the broken configuration
    if settings.file is None:
        settings = dataclasses.replace(settings, level="WARNING")
    try:
        # Appends only: rotating is the running gateway's job, never a short command's.
        configure_logging(settings, shared=True)
    except OSError:
        configure_logging(dataclasses.replace(settings, file=None, level="WARNING"))
    if state_dir is not None:
        from gateway.ops.journal import install_journal

        # Security events also go to the shared journal the console shows (gateway/ops/journal.py).
        install_journal(state_dir)


def refuse_fresh_state(config_path: Path, init: bool) -> str | None:
    """Why this command must not touch the state folder, or None (see gateway/store/statecheck.py)."""
    # Imported here: nothing that loads OpenSSL may load before main() sets OPENSSL_CONF.
    from gateway.store import statecheck
    from gateway.config import ConfigError

    try:
        cfg = load(config_path)
    except ConfigError:
        return None  # the command itself reports the broken configuration
    if init:
        statecheck.start_over(cfg)
        return None
    return statecheck.fresh_state_problem(cfg)


def _remember_state(config_path: Path) -> None:
    """A command may have created the store or the key: remember them at once, not at the next start."""
    # Imported here: nothing that loads OpenSSL may load before main() sets OPENSSL_CONF.
    from gateway.store import statecheck
    from gateway.config import ConfigError

    try:
        cfg = load(config_path)
    except ConfigError:
        return
    if statecheck.has_run_before(cfg) and statecheck.fresh_state_problem(cfg) is None:
        state_dir = Path(cfg.state_dir)
        statecheck.remember(cfg.source, key_fingerprint=statecheck.key_fingerprint(state_dir),
                            had_store=cfg.store.backend != "sqlite" or (state_dir / statecheck.DB_NAME).exists())


def main(argv: list[str] | None = None) -> int:
    # First of all: OpenSSL reads its configuration (the TLS profile's groups) when it starts.
    from gateway.ops.opensslconf import use_gateway_openssl_conf

    use_gateway_openssl_conf()
    # Cyrillic base names must print on a Windows console or a C-locale terminal alike.
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    lang = messages.system_language()
    parser = build_parser(lang)
    args = parser.parse_args(argv)
    if lang != "en" and getattr(args, "command", None) not in SERVING_COMMANDS:
        sys.stdout = _LocalizedLines(sys.stdout, lang)  # type: ignore[assignment]
        sys.stderr = _LocalizedLines(sys.stderr, lang)  # type: ignore[assignment]
        atexit.register(sys.stdout.flush)
        atexit.register(sys.stderr.flush)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if args.command not in SERVING_COMMANDS:
        log_like_the_gateway(args.config)
    if args.command in STATE_COMMANDS and args.command != "run":
        refused = refuse_fresh_state(args.config, args.init)
        if refused:
            print(f"error: {refused}", file=sys.stderr)
            return 2
    try:
        status = int(args.func(args) or 0)
        if args.command in STATE_COMMANDS and args.command != "run":
            _remember_state(args.config)
        return status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `gateway ... | head`: the reader left; say nothing more, and keep Python from
        # complaining about the pipe while it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
