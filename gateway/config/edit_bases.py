"""Add, change and remove one base in the configuration file, keeping everything else as written.

The console's Bases page edits through here. Only the base's own item under ``bases:`` is
touched: a scalar setting is rewritten on its own line (a comment after it stays), the ``data``,
``print`` and ``tls`` blocks are written anew, keys the form does not manage (folder, comment,
policy, hsts, ...) are left alone, and every other line of the file stays byte for byte. The
result is parsed by the same loader as the running gateway (``load_config``) and by the
caller's own check (ports held by other programs) before it replaces the file in one rename.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable

import yaml

from gateway.config import ConfigError, GatewayConfig, load_config
from gateway.config.edit import EditError

# Written on one line each, in this order when new.
SCALARS = ("id", "name", "https", "user_auth", "whitelist_only", "compress", "backups", "client_max_body_size")
BLOCKS = ("data", "print", "tls")

BaseValues = dict[str, Any]  # the keys above; a value None removes the key


def _indent(text: str) -> int:
    return len(text) - len(text.lstrip())


def _meaningful(text: str) -> bool:
    stripped = text.strip()
    return bool(stripped) and not stripped.startswith("#")


def _bases_items(lines: list[str]) -> tuple[int, list[tuple[int, int]]]:
    """(index of the ``bases:`` line, [(start, end) of each item]); the end excludes trailing comments."""
    top = next((i for i, line in enumerate(lines) if re.match(r"^bases\s*:\s*(#.*)?$", line)), None)
    if top is None:
        if any(re.match(r"^bases\s*:", line) for line in lines):
            raise EditError("bases: is written in flow style ([...]) in the configuration; edit it by hand")
        raise EditError("the configuration has no `bases:` section")
    end = top + 1
    while end < len(lines) and (not _meaningful(lines[end]) or _indent(lines[end]) > 0
                                or lines[end].lstrip().startswith("- ")):
        end += 1
    starts = [i for i in range(top + 1, end) if re.match(r"^\s*-(\s|$)", lines[i]) and _meaningful(lines[i])]
    if starts:
        dash = _indent(lines[starts[0]])
        starts = [i for i in starts if _indent(lines[i]) == dash]
    items = []
    for n, start in enumerate(starts):
        stop = starts[n + 1] if n + 1 < len(starts) else end
        while stop > start + 1 and not _meaningful(lines[stop - 1]):
            stop -= 1
        items.append((start, stop))
    return top, items


def _item_id(lines: list[str], start: int, stop: int) -> str:
    try:
        data = yaml.safe_load("\n".join(lines[start:stop]))
    except yaml.YAMLError:
        return ""
    if isinstance(data, list) and data and isinstance(data[0], dict):
        return str(data[0].get("id", ""))
    return ""


def _scalar(value: Any) -> str:
    dumped = yaml.safe_dump(value, allow_unicode=True, default_flow_style=True, width=10_000)
    return dumped.strip().removesuffix("...").strip()  # a plain scalar is dumped as a document


def _block(key: str, value: Any, indent: int) -> list[str]:
    dumped = yaml.safe_dump({key: value}, allow_unicode=True, default_flow_style=False, sort_keys=False, width=10_000)
    return [" " * indent + line for line in dumped.splitlines()]


def _new_item(values: BaseValues, dash: int) -> list[str]:
    lines: list[str] = []
    child = dash + 2
    for key in SCALARS + BLOCKS:
        value = values.get(key)
        if value is None:
            continue
        if key in BLOCKS:
            lines += _block(key, value, child)
        else:
            lines.append(" " * child + f"{key}: {_scalar(value)}")
    first = lines[0]
    return [" " * dash + "- " + first[child:]] + lines[1:]


def _change_item(item: list[str], values: BaseValues) -> list[str]:
    """The item's lines with the managed keys set; others, and comments, kept."""
    first = item[0]
    if re.match(r"^\s*-\s*\{", first):
        raise EditError("this base is written in flow style ({...}); edit it by hand")
    child = _indent(first) + 2
    # Work on the item as if its first key were on a line of its own.
    body = [" " * child + first.lstrip()[1:].lstrip()] + item[1:]
    keys: dict[str, tuple[int, int]] = {}
    i = 0
    while i < len(body):
        match = re.match(rf"^\s{{{child}}}([A-Za-z_][\w-]*)\s*:", body[i])
        if match and _indent(body[i]) == child:
            end = i + 1
            while end < len(body) and (not _meaningful(body[end]) or _indent(body[end]) > child):
                end += 1
            while end > i + 1 and not _meaningful(body[end - 1]):
                end -= 1
            keys[match.group(1)] = (i, end)
            i = end
        else:
            i += 1
    replacements: dict[int, tuple[int, list[str]]] = {}
    added: list[str] = []
    for key in SCALARS + BLOCKS:
        if key not in values:
            continue
        value = values[key]
        if key in keys:
            start, end = keys[key]
            if value is None:
                new: list[str] = []
            elif key in BLOCKS:
                new = _block(key, value, child)
            else:
                comment = re.search(r"\s+#.*$", body[start]) if end == start + 1 else None
                tail = comment.group(0) if comment and "'" not in comment.group(0) and '"' not in comment.group(0) else ""
                new = [" " * child + f"{key}: {_scalar(value)}{tail}"]
            replacements[start] = (end, new)
        elif value is not None:
            added += _block(key, value, child) if key in BLOCKS else [" " * child + f"{key}: {_scalar(value)}"]
    out: list[str] = []
    i = 0
    while i < len(body):
        if i in replacements:
            end, new = replacements[i]
            out += new
            i = end
        else:
            out.append(body[i])
            i += 1
    out += added
    first_key = next(n for n, line in enumerate(out) if _meaningful(line))
    out[first_key] = " " * (child - 2) + "- " + out[first_key][child:]
    return out


def change_bases(config_path: Path, base_id: str | None, values: BaseValues | None,
                 check: Callable[[GatewayConfig], None] = lambda cfg: None) -> tuple[GatewayConfig, GatewayConfig]:
    """Add (``base_id`` None), change, or remove (``values`` None) one base; (before, after).

    ``check`` sees the parsed new configuration before it replaces the file; raising refuses it.
    A ConfigError of the new text is raised as is (it names the key path and the fix)."""
    path = Path(config_path)
    before = load_config(path)
    raw = path.read_bytes().decode("utf-8-sig")
    newline = "\r\n" if "\r\n" in raw else "\n"
    lines = raw.splitlines()
    top, items = _bases_items(lines)
    if base_id is None:
        assert values is not None
        dash = _indent(lines[items[0][0]]) if items else 2
        insert = items[-1][1] if items else top + 1
        lines = lines[:insert] + _new_item(values, dash) + lines[insert:]
    else:
        found = next(((s, e) for s, e in items if _item_id(lines, s, e) == base_id), None)
        if found is None:
            raise EditError(f"no base with id {base_id!r} in {path}")
        start, end = found
        lines = lines[:start] + ([] if values is None else _change_item(lines[start:end], values)) + lines[end:]
    text = newline.join(lines) + newline
    tmp = path.with_name(f".{path.name}.{os.getpid()}.edit")
    tmp.write_text(text, encoding="utf-8", newline="")
    try:
        try:
            after = load_config(tmp)
        except ConfigError as e:
            raise ConfigError(path, e.key, e.problem) from None  # the operator's file, not our temporary one
        check(after)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return before, after
