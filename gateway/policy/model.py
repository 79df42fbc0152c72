"""Access rules by role, and the decision for one request.

A policy is an ordered list of rules; the first rule that matches the request's role, method
and path decides (allow or deny), like a firewall. No match means deny, so a gap in a policy
file closes rather than opens.

Path patterns are written decoded, segment by segment:

* a literal segment (``Docs``, ``Поступление``) matches that segment;
* ``*`` matches exactly one segment, whatever it is;
* ``**`` (last segment only) matches zero or more segments;
* ``{doc_type}`` matches one segment naming one of the user's document types, either bare
  (``Поступление``) or with an OData key (``Поступление('42')``).

Matching ignores case and Unicode composition (NFC + casefold): the legacy server's OData
routes are case-insensitive, so a case-sensitive gateway could be bypassed with
``/API/V1/Products``. A document addressed by id only (``Docs('42')``, ``Docs(...)``) carries no
type the gateway could check, so ``{doc_type}`` rules never match it.
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass, field
from typing import Iterable

ROLES = ("mobile", "external", "admin")
ANY = "*"
VARIABLES = ("doc_type",)
DECISIONS_REMEMBERED = 4096


def fold(text: str) -> str:
    """The form both patterns and paths are compared in."""
    if text.isascii():
        return text.lower()  # NFC leaves ASCII as it is, and casefold() of ASCII is lower()
    return unicodedata.normalize("NFC", text).casefold()


@functools.lru_cache(maxsize=1024)  # a user's document types are the same on every request
def _folded_types(doc_types: tuple[str, ...]) -> frozenset[str]:
    return frozenset(fold(t) for t in doc_types if t)


@dataclass(frozen=True)
class Segment:
    kind: str  # "literal", "one", "rest" or "doc_type"
    value: str = ""  # folded literal


@dataclass(frozen=True)
class PathPattern:
    text: str
    segments: tuple[Segment, ...]

    def matches(self, folded_path: tuple[str, ...], doc_types: frozenset[str]) -> bool:
        """``folded_path`` and ``doc_types`` are already passed through fold()."""
        return _match(self.segments, folded_path, doc_types)


def _entity_name(segment: str) -> str | None:
    """``Поступление('42')`` → ``Поступление``; a segment without an OData key → itself."""
    if "(" not in segment:
        return segment
    name, _, rest = segment.partition("(")
    return name if rest.endswith(")") and name else None


def _match(pattern: tuple[Segment, ...], path: tuple[str, ...], doc_types: frozenset[str]) -> bool:
    for index, seg in enumerate(pattern):
        if seg.kind == "rest":
            return True
        if index >= len(path):
            return False
        part = path[index]
        if seg.kind == "literal" and part != seg.value:
            return False
        if seg.kind == "one" and part == "":
            return False
        if seg.kind == "doc_type" and _entity_name(part) not in doc_types:
            return False
    return len(pattern) == len(path)


@dataclass(frozen=True)
class Rule:
    index: int
    line: int
    comment: str
    action: str  # "allow" or "deny"
    roles: frozenset[str]  # empty = any authenticated role
    methods: frozenset[str]  # empty = any method
    paths: tuple[PathPattern, ...]
    # "any"; "required": only requests from an enrolled device (a client certificate);
    # "absent": only requests without one (so a deny rule makes a role need a device).
    device: str = "any"

    def applies(self, role: str, method: str, path: tuple[str, ...], doc_types: frozenset[str],
                has_device: bool = False) -> bool:
        if self.roles and role not in self.roles:
            return False
        if self.device != "any" and has_device != (self.device == "required"):
            return False
        if self.methods and method not in self.methods:
            return False
        return any(p.matches(path, doc_types) for p in self.paths)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str  # for the client and the log; names role, method and path, never a secret
    rule: Rule | None = None


@dataclass(frozen=True)
class AccessPolicy:
    source: str
    rules: tuple[Rule, ...] = field(default_factory=tuple)
    # Decisions already taken, by everything they depend on: a policy never changes (a reload
    # makes a new one), and the same few requests repeat all day.
    _decisions: dict[tuple[str, str, tuple[str, ...], frozenset[str], bool], Decision] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    def decide(self, role: str, method: str, segments: tuple[str, ...], doc_types: Iterable[str],
               has_device: bool = False) -> Decision:
        """First matching rule wins; no match denies. ``segments`` come from normalise_path;
        ``has_device``: the request came over a connection with a device certificate."""
        method = method.upper()  # a back end may accept "get" as GET; rules must see it as one
        folded_types = _folded_types(doc_types if isinstance(doc_types, tuple) else tuple(doc_types))
        segments = segments if isinstance(segments, tuple) else tuple(segments)
        key = (role, method, segments, folded_types, has_device)
        decision = self._decisions.get(key)
        if decision is None:
            if len(self._decisions) >= DECISIONS_REMEMBERED:
                self._decisions.clear()  # a flood of distinct paths costs a re-decision, never memory
            decision = self._decisions[key] = self._decide(role, method, segments, folded_types, has_device)
        return decision

    def _decide(self, role: str, method: str, segments: tuple[str, ...], folded_types: frozenset[str],
                has_device: bool = False) -> Decision:
        folded_path = tuple(fold(s) for s in segments)
        shown = "/" + "/".join(segments)
        if role not in ROLES:
            # "*" in a rule means any of the known roles, never a role nobody checked.
            return Decision(False, f"role {role or '(none)'} is not one of {', '.join(ROLES)}")
        for rule in self.rules:
            if rule.applies(role, method, folded_path, folded_types, has_device):
                if rule.action == "allow":
                    return Decision(True, f"role {role} may {method} {shown}", rule)
                return Decision(False, f"role {role} may not {method} {shown}", rule)
        return Decision(False, f"role {role} may not {method} {shown} (no rule allows it)")
