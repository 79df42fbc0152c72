"""The bottom of the configuration: the error every section raises and the reader that walks
one mapping of the YAML tree, remembering its key path so each error names the file, the key
(``bases[1].data.listen``) and the fix. Section parsers (limits, scale, acme, the model's own)
build on it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any


class ConfigError(Exception):
    """A configuration problem, already phrased for the person who edits the file."""

    def __init__(self, source: Path | str, key: str, problem: str) -> None:
        self.source = str(source)
        self.key = key
        self.problem = problem
        where = f"{self.source}: {key}" if key else self.source
        super().__init__(f"{where}: {problem}")


class _Reader:
    """Reads one mapping of the YAML tree, remembering its key path for error messages."""

    def __init__(self, source: Path, path: str, data: Any) -> None:
        self.source = source
        self.path = path
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(source, path or "(top level)", f"must be a mapping of keys, got {_kind(data)}")
        self.data = data
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def fail(self, name: str, problem: str) -> ConfigError:
        return ConfigError(self.source, self.key(name), problem)

    def get(self, name: str, kind: type | tuple[type, ...], default: Any) -> Any:
        self.used.add(name)
        if name not in self.data or self.data[name] is None:
            return default
        value = self.data[name]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if kind is int and isinstance(value, bool) or not isinstance(value, kind):
            expected = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise self.fail(name, f"must be {_article(expected)}, got {_kind(value)} {value!r}")
        return value

    def required(self, name: str, kind: type) -> Any:
        if name not in self.data or self.data[name] is None:
            raise self.fail(name, "is required")
        return self.get(name, kind, None)

    def sub(self, name: str) -> _Reader:
        self.used.add(name)
        return _Reader(self.source, self.key(name), self.data.get(name))

    def path_value(self, name: str, base_dir: Path, default: Path | None = None) -> Path | None:
        raw = self.get(name, str, None)
        if raw is None:
            return default
        if not raw.strip():
            raise self.fail(name, "is empty; remove the key or give a path")
        return (base_dir / Path(raw).expanduser()).resolve()

    def finish(self) -> None:
        unknown = sorted(set(map(str, self.data)) - self.used)
        if unknown:
            raise self.fail(unknown[0], f"unknown key; known keys here: {', '.join(sorted(self.used))}")


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", str: "text", bool: "true/false", int: "a number",
            float: "a number", type(None): "nothing"}.get(type(value), type(value).__name__)


def _article(word: str) -> str:
    names = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "text",
             "list": "a list", "dict": "a mapping"}
    return names.get(word, word)


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?)i?b?\s*$", re.IGNORECASE)


def parse_size(text: str | int) -> int:
    """``4m``, ``512k``, ``1g`` or a plain number of bytes."""
    if isinstance(text, int):
        return text
    match = _SIZE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a size; write e.g. 4m, 512k or 1048576")
    number, unit = match.groups()
    return int(float(number) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit.lower()])
