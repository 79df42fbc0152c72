"""The ``gateway`` command's verbs, one module each (``register(subparsers)``); gateway/cli.py
builds the parser from them and is the only module that imports this package."""

from __future__ import annotations

from pathlib import Path

from gateway.config import ConfigError, GatewayConfig, load_config

_loaded: dict[Path, tuple[tuple[int, int] | None, GatewayConfig | ConfigError]] = {}


def load(config_path: Path | str) -> GatewayConfig:
    """The configuration, parsed once per call: the CLI's set-up and the verb share it. A file
    changed meanwhile (a verb that edits it) is read again. Raises ConfigError like load_config."""
    path = Path(config_path)
    try:
        st = path.stat()
        stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
    except OSError:
        stamp = None
    cached = _loaded.get(path)
    if cached is None or stamp is None or cached[0] != stamp:
        try:
            result: GatewayConfig | ConfigError = load_config(path)
        except ConfigError as e:
            result = e
        cached = _loaded[path] = (stamp, result)
    if isinstance(cached[1], ConfigError):
        raise cached[1]
    return cached[1]
