"""Policy files: YAML in, a checked AccessPolicy out, or an error naming file, line and fix.

Policy files are edited by hand by administrators, so every problem is reported with the file,
the line, the rule (``rules[2]``) and what to write instead, and a file with any problem is
refused as a whole: a half-understood access policy is worse than none.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import yaml

from gateway.config import ConfigError
from gateway.policy.model import ANY, ROLES, VARIABLES, AccessPolicy, PathPattern, Rule, Segment, fold

# Shipped next to the package (repository root / policies); found from this file, not the
# working directory, so the gateway behaves the same wherever it is started.
def _default_policy_file() -> Path:
    # A source checkout (or editable install) has policies/ beside the packages; a regular
    # install carries it as data files under <prefix>/share/tls-gateway/ (see pyproject.toml).
    beside = Path(__file__).resolve().parent.parent.parent / "policies" / "default.yaml"
    installed = Path(sys.prefix) / "share" / "tls-gateway" / "policies" / "default.yaml"
    return beside if beside.exists() or not installed.exists() else installed


DEFAULT_POLICY_FILE = _default_policy_file()

# Named so that a typo ("GTE") is an error, not a rule that silently never matches. MERGE is
# OData v2's PATCH; the WebDAV verbs appear on old Windows servers.
KNOWN_METHODS = frozenset({
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "MERGE",
    "PROPFIND", "PROPPATCH", "MKCOL", "COPY", "MOVE", "LOCK", "UNLOCK", "SEARCH", "REPORT",
})
RULE_KEYS = ("comment", "action", "roles", "methods", "paths", "device")
DEVICE_CHOICES = ("any", "required", "absent")
_VARIABLE = re.compile(r"^\{([^{}]*)\}$")


class PolicyError(ConfigError):
    """A policy file the gateway refuses; the message names the file, line and fix."""

    def __init__(self, source: Path | str, line: int | None, key: str, problem: str) -> None:
        self.line = line
        where = ", ".join(part for part in (f"line {line}" if line else "", key) if part)
        super().__init__(source, where, problem)


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


class _RuleReader:
    def __init__(self, source: str, index: int, node: yaml.Node, loader: yaml.SafeLoader) -> None:
        self.source = source
        self.index = index
        self.node = node
        self.loader = loader
        self.values: dict[str, tuple[Any, yaml.Node]] = {}
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, "", "is not a mapping; write each rule as `- comment: ...` "
                                      "with action, roles, methods and paths under it")
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            if key not in RULE_KEYS:
                raise self.fail(key_node, str(key), f"is not a rule key; use {', '.join(RULE_KEYS)}")
            self.values[key] = (loader.construct_object(value_node, deep=True), value_node)

    def fail(self, node: yaml.Node, key: str, problem: str) -> PolicyError:
        name = f"rules[{self.index}]" + (f".{key}" if key else "")
        return PolicyError(self.source, _line(node), name, problem)

    def required(self, key: str, hint: str) -> tuple[Any, yaml.Node]:
        if key not in self.values:
            raise self.fail(self.node, key, f"is missing; {hint}")
        return self.values[key]

    def names(self, key: str, allowed: frozenset[str] | tuple[str, ...], hint: str, upper: bool) -> frozenset[str]:
        """A list of names, or "*" for any; "*" is stored as the empty set."""
        value, node = self.values.get(key, (ANY, self.node))
        if value == ANY:
            return frozenset()
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items:
            raise self.fail(node, key, f"must be \"*\" or a non-empty list, e.g. {hint}")
        names = set()
        for item in items:
            if not isinstance(item, str):
                raise self.fail(node, key, f"{item!r} is not a name; write a list such as {hint}")
            name = item.strip().upper() if upper else item.strip().lower()
            if name not in allowed:
                raise self.fail(node, key, f"{item!r} is unknown; use {', '.join(sorted(allowed))} or \"*\"")
            names.add(name)
        return frozenset(names)


def parse_pattern(text: str) -> PathPattern:
    """Parse one path pattern; ValueError says what is wrong with it."""
    if not text.startswith("/"):
        raise ValueError(f"pattern {text!r} must start with '/'")
    parts = text.split("/")[1:]
    if parts == [""]:
        return PathPattern(text, ())  # the root "/" alone
    segments: list[Segment] = []
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if part == "":
            raise ValueError(f"pattern {text!r} has an empty segment; remove the extra or trailing '/' "
                             "(use /** for \"and everything below\")")
        if part in (".", ".."):
            raise ValueError(f"pattern {text!r} has a dot segment; write the path it means")
        if part == "**":
            if not last:
                raise ValueError(f"pattern {text!r}: '**' may only be the last segment")
            segments.append(Segment("rest"))
        elif part == "*":
            segments.append(Segment("one"))
        elif (variable := _VARIABLE.match(part)) is not None:
            if variable.group(1) not in VARIABLES:
                raise ValueError(f"pattern {text!r}: unknown variable {part}; "
                                 f"known: {', '.join('{' + v + '}' for v in VARIABLES)}")
            segments.append(Segment(variable.group(1)))
        elif any(c in part for c in "*{}"):
            raise ValueError(f"pattern {text!r}: segment {part!r} mixes text with '*' or braces; "
                             "a wildcard or variable must be a whole segment")
        elif "%" in part or "\\" in part:
            raise ValueError(f"pattern {text!r}: write patterns decoded (Поступление, not %D0%9F...), "
                             "without '%' or '\\'")
        else:
            segments.append(Segment("literal", fold(part)))
    return PathPattern(text, tuple(segments))


def _rule(source: str, index: int, node: yaml.Node, loader: yaml.SafeLoader) -> Rule:
    reader = _RuleReader(source, index, node, loader)
    comment, comment_node = reader.required("comment", "say in one sentence why this rule exists")
    if not isinstance(comment, str) or not comment.strip():
        raise reader.fail(comment_node, "comment", "must be a sentence saying why this rule exists")
    action, action_node = reader.required("action", "write `action: allow` or `action: deny`")
    if action not in ("allow", "deny"):
        raise reader.fail(action_node, "action", f"{action!r} is not an action; use allow or deny")
    roles = reader.names("roles", ROLES, "[mobile, external]", upper=False)
    methods = reader.names("methods", KNOWN_METHODS, "[GET, POST]", upper=True)
    raw_paths, paths_node = reader.required("paths", "list path patterns, e.g. [\"/api/v1/**\"]")
    items = [raw_paths] if isinstance(raw_paths, str) else raw_paths
    if not isinstance(items, list) or not items:
        raise reader.fail(paths_node, "paths", "must be a non-empty list of patterns, e.g. [\"/api/v1/**\"]")
    patterns = []
    for item in items:
        if not isinstance(item, str):
            raise reader.fail(paths_node, "paths", f"{item!r} is not a path pattern; quote it as a string")
        try:
            patterns.append(parse_pattern(item.strip()))
        except ValueError as e:
            raise reader.fail(paths_node, "paths", str(e)) from None
    device, device_node = reader.values.get("device", ("any", node))
    if device not in DEVICE_CHOICES:
        raise reader.fail(device_node, "device", f"{device!r} is not a choice; use any, required (only from an "
                                                 "enrolled device) or absent (only without one)")
    return Rule(index=index, line=_line(node), comment=comment.strip(), action=action,
                roles=roles, methods=methods, paths=tuple(patterns), device=device)


def parse_policy(text: str, source: Path | str) -> AccessPolicy:
    """Parse policy YAML; PolicyError names the file, the line and the fix."""
    loader = yaml.SafeLoader(text)
    try:
        return _policy(loader, source)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or "is not valid YAML"
        raise PolicyError(source, mark.line + 1 if mark else None, "", f"not valid YAML: {problem}") from None
    finally:
        loader.dispose()


def _policy(loader: yaml.SafeLoader, source: Path | str) -> AccessPolicy:
    root = loader.get_single_node()
    if not isinstance(root, yaml.MappingNode):
        raise PolicyError(source, _line(root) if root else None, "",
                          "must be a mapping with a `rules:` list (see policies/default.yaml)")
    rules_node: yaml.Node | None = None
    for key_node, value_node in root.value:
        key = loader.construct_object(key_node, deep=True)
        if key == "rules":
            rules_node = value_node
        elif key != "version":
            raise PolicyError(source, _line(key_node), str(key), "is not a policy key; use `rules:` (and `version: 1`)")
        elif loader.construct_object(value_node, deep=True) != 1:
            raise PolicyError(source, _line(value_node), "version", "this gateway understands `version: 1` only")
    if rules_node is None:
        raise PolicyError(source, _line(root), "rules", "is missing; add a `rules:` list (see policies/default.yaml)")
    if not isinstance(rules_node, yaml.SequenceNode) or not rules_node.value:
        raise PolicyError(source, _line(rules_node), "rules", "must be a non-empty list of rules")
    rules = tuple(_rule(str(source), i, node, loader) for i, node in enumerate(rules_node.value))
    return AccessPolicy(source=str(source), rules=rules)


def load_policy(path: Path | str) -> AccessPolicy:
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise PolicyError(source, None, "", "file not found; fix the base's `policy:` path "
                                            "or remove it to use policies/default.yaml") from None
    except UnicodeDecodeError as e:
        raise PolicyError(source, None, "", f"is not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    except OSError as e:
        raise PolicyError(source, None, "", f"cannot be read: {e.strerror}") from None
    return parse_policy(text, source)
