"""Limits and timeouts against hostile clients: the pure checks of the ``limits:`` section
(the section itself, its defaults and nginx names, is gateway/config/limits.py).

Names follow nginx where nginx has the setting, so an administrator who knows nginx finds them;
the "Limits and timeouts" table of docs/guides/policies-limits.md lists each with its default and
its nginx equivalent.

The checks here are pure functions over bytes and strings; the mitmproxy side lives in
addons/_engine_patches.py (what must happen while a request head is still being read) and in
addons/limits.py and addons/hygiene.py (per connection and per request).
"""

from __future__ import annotations

import collections
import logging
import re
from dataclasses import dataclass

# LimitSettings is the configuration's (gateway/config/limits.py); named here too for the addons.
from gateway.config.limits import MAX_SAFE_CONTENT_LENGTH, LimitSettings

logger = logging.getLogger("gateway.limits")

RESET_WINDOW = 10.0
# Client stream resets per address across all its connections (issue 24 point 5): past
# RESET_ADDRESS_FACTOR × http2_max_resets in RESET_WINDOW the address's new connections are
# refused for RESET_BAN seconds — reconnecting after each GOAWAY no longer starts afresh.
RESET_ADDRESS_FACTOR = 5
RESET_BAN = 60.0
RESET_ADDRESSES = 10_000  # addresses remembered; past that the ledger starts over (memory stays bounded)
# The ledger's key in the store's short bans (Store.add_strikes): the address after it.
RESET_KEY = "reset:"
# How often each process sends its resets to the store and reads every process's bans back:
# the store sees batches, never a call per reset; a ban made anywhere holds everywhere after this.
RESET_SHARE_INTERVAL = 0.5


class ResetLedger:
    """Client stream resets per address, across its connections.

    Counted and decided in this process at once (a ban here is immediate), and shared through the
    store in batches (``take_pending`` → ``Store.add_strikes`` → ``adopt``): resets spread over
    workers and machines add up there, and a ban made by any process is honoured by all of them
    within ``RESET_SHARE_INTERVAL`` — the attacker's next connection may land on any worker."""

    def __init__(self) -> None:
        self._times: dict[str, collections.deque[float]] = {}
        self._banned: dict[str, float] = {}  # address → refused until (monotonic): ours and the store's
        self._pending: dict[str, int] = {}  # resets the store has not seen, per address
        self._fresh: set[str] = set()  # banned here since the last batch left: the store does not know yet

    def record(self, address: str, now: float, limit: int) -> bool:
        """Count one reset; True when this one takes the address past ``limit`` (it is banned now)."""
        times = self._times.get(address)
        if times is None:
            if len(self._times) >= RESET_ADDRESSES:
                self._times.clear()
            times = self._times[address] = collections.deque()
        times.append(now)
        while times and times[0] < now - RESET_WINDOW:
            times.popleft()
        pending = self._pending.get(address)
        if pending is not None:
            self._pending[address] = pending + 1
        elif len(self._pending) < RESET_ADDRESSES:
            self._pending[address] = 1
        if len(times) > limit and self.banned_for(address, now) == 0.0:
            if len(self._banned) >= RESET_ADDRESSES:
                self._banned = {a: t for a, t in self._banned.items() if t > now}
            self._banned[address] = now + RESET_BAN
            times.clear()
            # Reported as a full count, so the store bans it whatever the other processes saw.
            self._pending[address] = limit + 1
            self._fresh.add(address)
            return True
        return False

    def banned_for(self, address: str, now: float) -> float:
        """Seconds the address's new connections are still refused (0.0: not refused)."""
        until = self._banned.get(address)
        if until is None:
            return 0.0
        if until <= now:
            del self._banned[address]
            return 0.0
        return until - now

    def take_pending(self) -> tuple[list[tuple[str, int]], set[str]]:
        """The batch for the store: (store key, resets) per address since the last batch, and
        the addresses this process banned meanwhile (it has logged those itself)."""
        counts = [(RESET_KEY + address, n) for address, n in self._pending.items()]
        fresh = self._fresh
        self._pending, self._fresh = {}, set()
        return counts, fresh

    def give_back(self, counts: list[tuple[str, int]], fresh: set[str], limit: int) -> None:
        """The store did not take the batch: the bans made here go with the next one (plain
        counts are dropped, as they would arrive late and count twice against a window)."""
        for key, n in counts:
            address = key[len(RESET_KEY):]
            if address in fresh and n > limit:
                self._pending[address] = max(self._pending.get(address, 0), n)
        self._fresh |= fresh

    def adopt(self, bans: dict[str, float], now: float, wall: float) -> None:
        """The store's answer to a batch: every ban in force anywhere (store key → until, wall
        clock), and only those — a ban lifted with ``gateway bans lift`` ends here too. Bans made
        here while the batch was on its way are kept: the store learns of them next time."""
        kept = {a: self._banned[a] for a in self._fresh if a in self._banned}
        self._banned = {key[len(RESET_KEY):]: now + (until - wall) for key, until in bans.items()
                        if key.startswith(RESET_KEY) and until > wall}
        self._banned.update(kept)


# --- the file-descriptor limit -------------------------------------------------------------


def raise_open_files_limit() -> tuple[int, int] | None:
    """Raise the soft RLIMIT_NOFILE to the hard limit; (soft, hard) after, None where unsupported.

    Every client connection is a file descriptor; the usual soft limit of 1024 is reached by a
    modest idle flood, after which every accept fails. The hard limit is what the administrator
    (systemd's LimitNOFILE) allows; raising the soft limit to it needs no privilege.
    """
    try:
        import resource  # POSIX only: Windows has no such limit to raise
    except ImportError:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as e:
            logger.warning("could not raise the open-files limit from %d to %d: %s", soft, target, e)
    return soft, hard


FILES_RESERVED = 64  # descriptors kept for listeners, logs, the store, certificates


@dataclass(frozen=True)
class DescriptorBudget:
    """How a worker spends its open-files limit: one descriptor per client connection, one per
    back-end connection in use. An idle client holds only its own (``proxy.keepalive_timeout``
    closes its back-end connection), so clients may take all but ``backend_reserve``, which is
    kept for the back-end connections their next requests open; a new client is refused while
    clients and open back-end connections together leave less than that (``admits``), so a
    back end in use never finds the descriptors gone and accept() never fails with EMFILE."""

    usable: int           # the limit less FILES_RESERVED
    backend_reserve: int  # kept for back-end connections
    clients: int          # client connections at most (usable - backend_reserve)

    def admits(self, clients: int, backends: int) -> bool:
        """Whether one more client fits beside ``clients`` and ``backends`` already open."""
        return clients < self.clients and clients + backends + self.backend_reserve < self.usable


def descriptor_budget(open_files: int) -> DescriptorBudget:
    """The budget for an open-files limit: an eighth (at least 16) kept for back-end connections."""
    usable = max(32, open_files - FILES_RESERVED)
    reserve = max(16, usable // 8)
    return DescriptorBudget(usable, reserve, usable - reserve)


# --- the raw HTTP/1 request head ------------------------------------------------------------


class HeadRefused(Exception):
    """The request head cannot be forwarded; status and a one-line reason for the client."""

    def __init__(self, status: int, reason: str) -> None:
        self.status = status
        self.reason = reason
        super().__init__(f"{status} {reason}")


# Any control character but HTAB (which header values may hold); DEL too. A bare CR is the
# dangerous one: some parsers end a line there and read a second header the gateway never saw.
_BAD_IN_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_VERSION = re.compile(rb"HTTP/1\.[01]")
# A CR not followed by LF (RFC 9112 §2.2: invalid, or to be read as a space). Parsers disagree on
# it — one ends the line there, another strips it as half of the line's CRLF — so it is refused
# wherever it stands in a head, the line ends included.
_BARE_CR = re.compile(rb"\r(?!\n)")
# Fields that frame the message or name its host: what every hop must read as the client sent them.
FRAMING_FIELDS = frozenset({b"transfer-encoding", b"content-length", b"host"})
# Connection options that are this hop's own directives (they name no field).
HOP_DIRECTIVES = frozenset({b"close", b"keep-alive"})


def head_lines(head: bytes | bytearray) -> list[bytes]:
    """The lines of an HTTP/1 request head, without their line ends; ``head`` runs from the request
    line through the empty line that ends the head (CRLF or a bare LF). Raises HeadRefused (400)
    for a bare CR anywhere, including one just before a line's CRLF, which a lax split would take
    as half of that CRLF and a strict parser refuses."""
    if _BARE_CR.search(head):
        raise HeadRefused(400, "a bare CR (not followed by LF) in the request head")
    # Every CR is now the first half of a CRLF; the head ends with LF (CR)LF: two empty remnants.
    return [line.removesuffix(b"\r") for line in bytes(head).split(b"\n")[:-2]]


def connection_options(values: list[bytes]) -> frozenset[bytes]:
    """The options of a request's Connection fields, lower-cased; raises HeadRefused (400) when one
    names a framing field or Host.

    RFC 9110 §7.6.1: a sender MUST NOT name in Connection a field intended for all recipients, and
    Host, Content-Length and Transfer-Encoding are just that: every hop needs them to read the
    request. Honouring such an option (dropping the field, as for any other option) forwards a
    body without its framing, which the back end reads as the next request: smuggling. Ignoring
    it forwards a message its sender declared broken and leaves the decision to whichever hop reads
    Connection next. A request no correct client sends is refused (400, RFC 9110 §15.5.1), which
    is also what failing closed asks for."""
    options = frozenset(token.strip(b" \t").lower() for value in values for token in value.split(b",")) - {b""}
    named = sorted(options & FRAMING_FIELDS)
    if named:
        raise HeadRefused(400, "the Connection header names " + ", ".join(n.decode("ascii") for n in named)
                          + ", which every hop needs")
    return options


def without_connection_fields(fields: tuple[tuple[bytes, bytes], ...]) -> tuple[tuple[bytes, bytes], ...]:
    """``fields`` without Connection and the fields it names (RFC 9110 §7.6.1: this hop's only);
    ``close`` / ``keep-alive`` are kept, as one Connection field, for the hop's own handling.
    Raises HeadRefused as ``connection_options``; returns ``fields`` itself when there is no
    Connection field."""
    values = [value for name, value in fields if name.lower() == b"connection"]
    if not values:
        return fields
    options = connection_options(values)
    kept = tuple(f for f in fields if f[0].lower() != b"connection" and f[0].lower() not in options)
    directives = sorted(options & HOP_DIRECTIVES)
    if directives:
        kept += ((b"Connection", b", ".join(directives)),)
    return kept


# RFC 9113 §8.2.2: HTTP/2 has no connection-specific fields; a request carrying one is malformed.
# ``te`` is allowed with the value ``trailers`` only.
_HTTP2_CONNECTION_SPECIFIC = frozenset({b"connection", b"proxy-connection", b"keep-alive", b"transfer-encoding",
                                        b"upgrade"})


def connection_specific_in_http2(fields: tuple[tuple[bytes, bytes], ...]) -> bytes | None:
    """The name of the first connection-specific field of an HTTP/2 request, else None. The h2
    library refuses these while mitmproxy's ``validate_inbound_headers`` is on; checked here
    too because the HTTP/1 request the back end gets is framed from what passes (a
    ``transfer-encoding`` kept would be sent on beside the framing the gateway adds)."""
    for name, value in fields:
        lower = name.lower()
        if lower in _HTTP2_CONNECTION_SPECIFIC or (lower == b"te" and value.strip().lower() != b"trailers"):
            return lower
    return None


def check_transfer_encoding(values: list[bytes], version: bytes) -> None:
    """Transfer-Encoding, when present, must be exactly one ``chunked`` (any case, spaces around):
    the only coding the gateway decodes and re-applies. Raises HeadRefused: 501 for anything else
    (RFC 9112 §6.1: a server that receives a transfer coding it does not understand SHOULD answer
    501) — ``gzip, chunked``, ``chunked, chunked``, ``identity``, two fields, odd spellings — so
    it is never forwarded for a back end to read its own way; 400 in an HTTP/1.0 request (§6.1:
    such framing is faulty, it was likely forwarded by a hop that did not decode it)."""
    if not values:
        return
    if version == b"HTTP/1.0":
        raise HeadRefused(400, "Transfer-Encoding in an HTTP/1.0 request")
    if len(values) != 1 or values[0].strip(b" \t").lower() != b"chunked":
        shown = ", ".join(v.decode("latin-1") for v in values)[:60]
        raise HeadRefused(501, f"Transfer-Encoding {shown!r} is not supported (only one 'chunked')")


def check_request_head(lines: list[bytes], limits: LimitSettings) -> int | None:
    """Refuse an HTTP/1 request head (lines without their CRLF) that a lax parser might read
    differently from the gateway; return its Content-Length (None without one). Raises HeadRefused."""
    if len(lines) - 1 > limits.max_headers:
        raise HeadRefused(431, f"more than {limits.max_headers} header fields")
    request_line = lines[0]
    parts = request_line.split(b" ")
    if len(parts) != 3 or not all(parts):
        raise HeadRefused(400, "malformed request line")
    method, target, version = parts
    if _BAD_IN_VALUE.search(request_line):
        raise HeadRefused(400, "control character in the request line")
    if not _VERSION.fullmatch(version):
        if re.fullmatch(rb"HTTP/\d(\.\d)?", version):
            raise HeadRefused(505, f"HTTP version {version.decode('ascii')} is not supported; use HTTP/1.1")
        raise HeadRefused(400, "malformed HTTP version")
    if not _TOKEN.fullmatch(method):
        raise HeadRefused(400, "malformed method")
    problem = check_method(method.decode("ascii"), limits.methods)
    if problem is not None:
        raise HeadRefused(*problem)
    if method == b"CONNECT":
        raise HeadRefused(501, "CONNECT is not supported by this gateway")
    lengths: list[str] = []
    codings: list[bytes] = []
    connection: list[bytes] = []
    hosts = 0
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):
            raise HeadRefused(400, "obsolete line folding (a header line starting with a space) is not accepted")
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            raise HeadRefused(400, "malformed header field name")
        if _BAD_IN_VALUE.search(value):
            raise HeadRefused(400, f"control character (CR, LF or NUL) in header {name.decode('ascii')!r}")
        lower = name.lower()
        if lower == b"content-length":
            lengths.append(value.decode("latin-1"))
        elif lower == b"transfer-encoding":
            codings.append(value)
        elif lower == b"connection":
            connection.append(value)
        elif lower == b"host":
            hosts += 1
    if version == b"HTTP/1.1" and hosts != 1:
        # RFC 9112 §3.2: exactly one Host in an HTTP/1.1 request; two let two parsers pick two hosts.
        raise HeadRefused(400, "an HTTP/1.1 request needs exactly one Host header" if hosts else
                          "an HTTP/1.1 request without a Host header")
    if hosts > 1:
        raise HeadRefused(400, "more than one Host header")
    connection_options(connection)
    check_transfer_encoding(codings, version)
    reason = check_content_length(lengths)
    if reason is not None:
        raise HeadRefused(400, reason)
    if lengths and codings:
        raise HeadRefused(400, "both Content-Length and Transfer-Encoding (a request smuggling pattern)")
    return int(lengths[0].strip()) if lengths else None


# A dot segment written with escapes: decoded before or after resolving ".."? Servers disagree.
_ESCAPED_DOT_SEGMENT = re.compile(r"(?:^|/)(?:\.|%2e)*%2e(?:\.|%2e)*(?:/|$)", re.IGNORECASE)
_ABSOLUTE = re.compile(r"^[a-z][a-z0-9+.-]*://[^/?#]*", re.IGNORECASE)


def check_target(method: str, target: str) -> str:
    """The request target in origin form (``/path?query``), as both protocols forward it.

    An absolute-form target (``http://x/a``) loses its scheme and host (Routing sets the back
    end's); ``*`` is kept for OPTIONS only. Raises HeadRefused (400) for a target a back end
    could read otherwise than the gateway: no leading ``/``, a ``#``, a dot segment written with
    escapes, ``..`` above the root. Plain ``.`` and ``..`` segments are resolved (RFC 3986
    §5.2.4), so the back end receives the path that was checked, whichever protocol carried it."""
    if target == "*":
        if method == "OPTIONS":
            return target
        raise HeadRefused(400, "the target '*' is for OPTIONS only")
    absolute = _ABSOLUTE.match(target)
    if absolute:
        target = target[absolute.end():] or "/"
        if target.startswith("?"):
            target = "/" + target
    if not target.startswith("/"):
        raise HeadRefused(400, "the request target does not start with '/'")
    if "#" in target:
        raise HeadRefused(400, "the request target contains '#' (a fragment is never sent to a server)")
    path, question, query = target.partition("?")
    if _ESCAPED_DOT_SEGMENT.search(path):
        raise HeadRefused(400, "the request target holds a dot segment written with escapes (%2e)")
    return remove_dot_segments(path) + question + query


def remove_dot_segments(path: str) -> str:
    """``/a/./b/../c`` → ``/a/c`` (RFC 3986 §5.2.4) for a path starting with ``/``; ``..`` above
    the root is refused rather than guessed at."""
    segments = path.split("/")[1:]
    if "." not in segments and ".." not in segments:
        return path
    kept: list[str] = []
    for segment in segments:
        if segment == ".":
            continue
        if segment == "..":
            if not kept:
                raise HeadRefused(400, "the request target goes above the root with '..'")
            kept.pop()
        else:
            kept.append(segment)
    trailing = segments[-1] in (".", "..")
    return "/" + "/".join(kept) + ("/" if trailing and kept else "")


def check_method(method: str, allowed: tuple[str, ...]) -> tuple[int, str] | None:
    """(status, reason) for a method the gateway does not forward, else None."""
    if method != method.upper():
        return 400, f"method {method!r} must be upper-case"
    if method not in allowed:
        return 501, f"method {method} is not supported by this gateway"
    return None


def check_content_length(values: list[str]) -> str | None:
    """A reason to refuse, or None: one plain decimal below 2^53 (repeats must agree)."""
    if not values:
        return None
    distinct = {v.strip() for v in values}
    if len(distinct) != 1:
        return "conflicting Content-Length headers"
    value = distinct.pop()
    if not value.isascii() or not value.isdigit() or len(value) > 16 or int(value) >= MAX_SAFE_CONTENT_LENGTH:
        return "Content-Length is not a plain decimal number below 2^53"
    return None


def control_character_in(fields: tuple[tuple[bytes, bytes], ...]) -> bytes | None:
    """The name of the first header whose name or value holds a control character, else None."""
    for name, value in fields:
        if _BAD_IN_VALUE.search(value) or not _TOKEN.fullmatch(name):
            return name
    return None


def identity_lookalike(name: str, prefix: str) -> bool:
    """True if a header name, read with '_' as '-' (as CGI-style servers do), carries the prefix."""
    return name.replace("_", "-").lower().startswith(prefix.lower())
