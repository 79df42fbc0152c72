"""Document type names checked against the base's own back end.

A group given a document type the back end does not call that way (its alias, a typo, another
installation's name) lets its users log in and then fail with 403/404 on every document, and
nothing says why. ``group add/edit --doc-type`` asks each base's back end for
``GET /api/v1/DocTypes`` (names and aliases) and refuses an unknown name with a suggestion; a
back end that does not answer is a warning only, so groups can be set up before the server runs.
"""

from __future__ import annotations

import difflib
import http.client
import json
from dataclasses import dataclass, field
from urllib.parse import quote

from gateway.config import GatewayConfig

DOC_TYPES_PATH = "/api/v1/DocTypes"
TIMEOUT = 3.0


# difflib ratio from which a name is offered as "did you mean": a typo or two, not any name that
# merely shares half its letters (at 0.5 "Продажа" was offered "Поступление", through its alias "Приход").
CLOSE_ENOUGH = 0.8


@dataclass
class Known:
    names: dict[str, str] = field(default_factory=dict)    # casefolded name -> name
    aliases: dict[str, str] = field(default_factory=dict)  # casefolded alias -> name
    unreachable: list[str] = field(default_factory=list)   # "base: why"
    asked: int = 0


def _fetch(host: str, port: int, timeout: float) -> list[dict[str, object]]:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", quote(DOC_TYPES_PATH), headers={"Accept": "application/json"})
        answer = conn.getresponse()
        body = answer.read()
        if answer.status != 200:
            raise OSError(f"{DOC_TYPES_PATH} answered {answer.status}")
    finally:
        conn.close()
    value = json.loads(body.decode("utf-8")).get("value")
    if not isinstance(value, list):
        raise ValueError(f"{DOC_TYPES_PATH} did not return a list")
    return [item for item in value if isinstance(item, dict)]


def known_doc_types(cfg: GatewayConfig, timeout: float = TIMEOUT) -> Known:
    known = Known()
    seen: set[tuple[str, int]] = set()
    for base in cfg.bases:
        where = (base.data.backend_host, base.data.backend_port)
        if where in seen:
            continue
        seen.add(where)
        known.asked += 1
        try:
            items = _fetch(*where, timeout)
        except (OSError, ValueError, http.client.HTTPException) as e:
            known.unreachable.append(f"{base.name} ({base.data.backend}): {e}")
            continue
        for item in items:
            name = str(item.get("name") or "").strip()
            if not name:
                continue
            known.names[name.casefold()] = name
            alias = str(item.get("alias") or "").strip()
            if alias and alias.casefold() != name.casefold():
                known.aliases[alias.casefold()] = name
    return known


def check_doc_types(wanted: tuple[str, ...], known: Known) -> tuple[list[str], list[str]]:
    """(errors, warnings) for the names given to a group."""
    errors: list[str] = []
    warnings: list[str] = []
    if not known.names:
        if known.asked:
            warnings.append("could not check the document types against the back end ("
                            + "; ".join(known.unreachable) + "); make sure they are spelled as in "
                            f"{DOC_TYPES_PATH} of the base")
        return errors, warnings
    for name in wanted:
        folded = name.casefold()
        if folded in known.names:
            if known.names[folded] != name:
                warnings.append(f"document type {name!r} is spelled {known.names[folded]!r} by the back end")
            continue
        if folded in known.aliases:
            errors.append(f"{name!r} is the alias of the document type {known.aliases[folded]!r}; requests name "
                          f"it {known.aliases[folded]!r}: use --doc-type {known.aliases[folded]!r}")
            continue
        close = difflib.get_close_matches(folded, list(known.names) + list(known.aliases), n=1, cutoff=CLOSE_ENOUGH)
        hint = ""
        if close:
            right = known.names.get(close[0]) or known.aliases[close[0]]
            hint = f"; did you mean {right!r}?"
        errors.append(f"the back end knows no document type {name!r}{hint} (it has: "
                      f"{', '.join(sorted(known.names.values()))})")
    if known.unreachable:
        warnings.append("not checked against: " + "; ".join(known.unreachable))
    return errors, warnings
