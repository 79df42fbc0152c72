"""Small edits to the configuration file that keep its comments and layout.

PyYAML cannot write a file back with its comments, and operators annotate their configuration
heavily. So edits are made on the text, line by line, and the result is parsed with the real
loader before it replaces the file: an edit that would not mean what was intended is refused and
the lines are shown for the person to add by hand.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Callable

from gateway.config import ConfigError, GatewayConfig, load_config


class EditError(Exception):
    """The file could not be edited safely; the message says what to add by hand."""


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _block_end(lines: list[str], start: int, indent: int) -> int:
    """Index after the block of lines more indented than ``indent`` that follows ``start``."""
    end = start + 1
    while end < len(lines):
        text = lines[end]
        stripped = text.strip()
        if stripped and not stripped.startswith("#") and len(text) - len(text.lstrip()) <= indent:
            break
        end += 1
    return end


def _child_indent(lines: list[str], start: int, end: int, parent: int) -> int:
    for text in lines[start + 1:end]:
        stripped = text.strip()
        if stripped and not stripped.startswith("#"):
            return len(text) - len(text.lstrip())
    return parent + 2


def _set_tls(lines: list[str], key_line: int, indent: int, cert: Path, key: Path | None) -> list[str]:
    """Under the mapping whose ``tls:`` key is at ``key_line`` (or a new one), set cert and key."""
    end = _block_end(lines, key_line, indent)
    child = _child_indent(lines, key_line, end, indent)
    kept = [line for line in lines[key_line + 1:end]
            if not re.match(rf"^\s{{{child}}}(cert|key|password_file)\s*:", line)]
    new = [" " * child + f"cert: {_quote(str(cert))}"]
    if key is not None:
        new.append(" " * child + f"key: {_quote(str(key))}")
    return lines[:key_line + 1] + new + kept + lines[end:]


def install_tls(config_path: Path, cert: Path, key: Path | None, base_id: str | None = None) -> None:
    """Point tls.cert/tls.key (of the base ``base_id``, or the default) at the imported files."""
    path = Path(config_path)
    text = path.read_text(encoding="utf-8-sig")
    newline = "\r\n" if "\r\n" in text else "\n"
    lines = text.splitlines()
    # Written relative to the configuration's folder when inside it: the folder can then move
    # (or be copied to another machine) with its configuration.
    shown_cert, shown_key = _relative(cert, path.parent), None if key is None else _relative(key, path.parent)
    if base_id is None:
        lines = _install_default(lines, shown_cert, shown_key)
    else:
        lines = _install_base(lines, shown_cert, shown_key, base_id)

    def served(cfg: GatewayConfig) -> Path | None:
        if base_id is None:
            return cfg.tls.cert
        base = cfg.base_by_id(base_id)
        return base.tls.cert if base is not None and base.tls is not None else None

    _write_checked(path, newline.join(lines) + newline, lambda cfg: served(cfg) == Path(cert).resolve()
                   or served(cfg) == cert)


def _relative(file: Path, folder: Path) -> Path:
    try:
        return Path(file).resolve().relative_to(folder.resolve())
    except ValueError:
        return Path(file)


def _install_default(lines: list[str], cert: Path, key: Path | None) -> list[str]:
    for index, line in enumerate(lines):
        match = re.match(r"^tls\s*:\s*(#.*)?$", line)
        if match:
            return _set_tls(lines, index, 0, cert, key)
        if re.match(r"^tls\s*:", line):
            raise EditError("tls: is written in flow style ({...}) in the configuration")
    insert = ["tls:", f"  cert: {_quote(str(cert))}"] + ([f"  key: {_quote(str(key))}"] if key is not None else [])
    # Before `bases:`, where people look for it, or at the end.
    for index, line in enumerate(lines):
        if re.match(r"^bases\s*:", line):
            return lines[:index] + insert + [""] + lines[index:]
    return lines + insert


def _install_base(lines: list[str], cert: Path, key: Path | None, base_id: str) -> list[str]:
    pattern = re.compile(rf"^(\s*)(-\s+)?id\s*:\s*['\"]?{re.escape(base_id)}['\"]?\s*(#.*)?$")
    for index, line in enumerate(lines):
        match = pattern.match(line)
        if not match:
            continue
        indent = len(match.group(1)) + len(match.group(2) or "")
        end = _block_end(lines, index, indent - 1)
        for inner in range(index + 1, end):
            if re.match(rf"^\s{{{indent}}}tls\s*:\s*(#.*)?$", lines[inner]):
                return _set_tls(lines, inner, indent, cert, key)
            if re.match(rf"^\s{{{indent}}}tls\s*:", lines[inner]):
                raise EditError(f"base {base_id}'s tls: is written in flow style")
        new = [" " * indent + "tls:", " " * (indent + 2) + f"cert: {_quote(str(cert))}"]
        if key is not None:
            new.append(" " * (indent + 2) + f"key: {_quote(str(key))}")
        return lines[:index + 1] + new + lines[index + 1:]
    raise EditError(f"no `id: {base_id}` line found in the configuration")


def _write_checked(path: Path, text: str, ok: Callable[[GatewayConfig], bool]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.edit")
    tmp.write_text(text, encoding="utf-8")
    try:
        try:
            cfg = load_config(tmp)
        except ConfigError as e:
            raise EditError(f"the edited configuration would not load ({e.problem if hasattr(e, 'problem') else e})") \
                from None
        if not ok(cfg):
            raise EditError("the edit did not take effect as intended")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
