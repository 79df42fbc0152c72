"""Keeps compiled lists current as their files change on disk.

``poll()`` is cheap when nothing changed (one ``stat`` per file) and is meant to run every
``POLL_INTERVAL`` seconds, so a saved edit is in force within ~1 s. The rules:
- a changed file is read and compiled, then swapped in whole; lookups never see half a list;
- a deleted file is an empty list (logged once);
- a file that cannot be read or decoded keeps its last good version in force (logged once per
  change, retried on every poll — a lock or a permission is often fixed without touching it);
- bad lines are logged once per change of the file, not on every poll.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable

from gateway.iplist.files import ListUnreadable, decode_list, read_list_bytes
from gateway.iplist.lists import CompiledList, compile_text

logger = logging.getLogger("gateway.ipfilter")

POLL_INTERVAL = 0.5
# A file modified this recently may be modified again within the same mtime tick (2 s on FAT)
# without its size changing, so it is read again until its mtime is older than this.
RACY_SECONDS = 2.0
# A list with thousands of bad lines (a wrong file) must not flood the log.
MAX_LOGGED_ERRORS = 20

Signature = tuple[int, int]  # (mtime_ns, size)


@dataclass(frozen=True)
class _Tracked:
    compiled: CompiledList
    signature: Signature | None = None
    digest: bytes = b""
    racy: bool = False
    failed: Signature | None = None  # the signature whose read failed and was logged


class ListWatcher:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._tracked: dict[Path, _Tracked] = {}
        self._lock = threading.Lock()

    def track(self, paths: Iterable[Path]) -> None:
        """Watch exactly these files from now on; files not watched yet are loaded here.

        Raises ListUnreadable if a newly named file exists but cannot be read: with no earlier
        version to fall back on, starting without it would silently drop a blacklist.
        """
        with self._lock:
            tracked: dict[Path, _Tracked] = {}
            for path in paths:
                if path in tracked:
                    continue
                known = self._tracked.get(path)
                tracked[path] = known if known is not None else self._load_new(path)
            self._tracked = tracked

    def get(self, path: Path) -> CompiledList:
        tracked = self._tracked.get(path)
        return tracked.compiled if tracked is not None else CompiledList(path, present=False)

    def all(self) -> list[CompiledList]:
        return [tracked.compiled for tracked in self._tracked.values()]

    def poll(self) -> list[Path]:
        """Check every file once; returns the files whose version in force changed."""
        changed = []
        with self._lock:
            for path, tracked in list(self._tracked.items()):
                updated = self._refresh(path, tracked)
                if updated is not tracked:
                    self._tracked[path] = updated
                    if updated.compiled is not tracked.compiled:
                        changed.append(path)
        return changed

    # --- one file ------------------------------------------------------------------------

    def _load_new(self, path: Path) -> _Tracked:
        try:
            signature = _signature(path)
        except OSError as e:
            raise ListUnreadable(path, f"cannot be examined: {e.strerror or e}") from None
        data = read_list_bytes(path)
        if data is None or signature is None:
            logger.debug("IP list %s does not exist: empty list", path)
            return _Tracked(CompiledList(path, present=False))
        compiled = compile_text(decode_list(data, path), path)
        _log_loaded(compiled, "loaded")
        return _Tracked(compiled, signature, _digest(data), self._is_racy(signature))

    def _refresh(self, path: Path, tracked: _Tracked) -> _Tracked:
        try:
            signature = _signature(path)
        except OSError as e:
            return self._failure(tracked, (-1, -1), ListUnreadable(path, f"cannot be examined: {e.strerror or e}"))
        if signature == tracked.signature and not tracked.racy and tracked.failed is None:
            return tracked
        if signature is None:
            if tracked.compiled.present:
                logger.warning("IP list %s was deleted: it is now an empty list", path,
                               extra={"event": "ip-list-deleted", "file": str(path)})
            return _Tracked(CompiledList(path, present=False))
        try:
            data = read_list_bytes(path)
            if data is None:
                return tracked  # deleted between stat and read; the next poll sees it
            text = decode_list(data, path)
        except ListUnreadable as e:
            return self._failure(tracked, signature, e)
        digest = _digest(data)
        racy = self._is_racy(signature)
        if digest == tracked.digest and tracked.compiled.present:
            if tracked.failed is not None:
                logger.info("IP list %s can be read again; it is unchanged", path)
            return replace(tracked, signature=signature, racy=racy, failed=None)
        compiled = compile_text(text, path)
        _log_loaded(compiled, "reloaded")
        return _Tracked(compiled, signature, digest, racy)

    def _failure(self, tracked: _Tracked, signature: Signature, error: ListUnreadable) -> _Tracked:
        if tracked.failed != signature:
            logger.error("IP list %s — the previous version stays in force", error,
                         extra={"event": "ip-list-unreadable", "file": str(error.path)})
        return replace(tracked, failed=signature)

    def _is_racy(self, signature: Signature) -> bool:
        return self._clock() - signature[0] / 1e9 < RACY_SECONDS


def _signature(path: Path) -> Signature | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_size


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def _log_loaded(compiled: CompiledList, verb: str) -> None:
    logger.info("IP list %s: %s", verb, compiled.describe(),
                extra={"event": f"ip-list-{verb}", "file": str(compiled.path), "entries": compiled.entries})
    for error in compiled.errors[:MAX_LOGGED_ERRORS]:
        logger.warning("%s:%d: %s (the line reads %r); this line is ignored, the rest of the list applies",
                       compiled.path, error.line, error.reason, error.text,
                       extra={"event": "ip-list-bad-line", "file": str(compiled.path), "line": error.line})
    hidden = len(compiled.errors) - MAX_LOGGED_ERRORS
    if hidden > 0:
        logger.warning("%s: %d more bad line(s); run `gateway iplist check %s` to see them all",
                       compiled.path, hidden, compiled.path)
