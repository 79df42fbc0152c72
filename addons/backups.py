"""Saves the body of every successful (2xx) document write on bases with ``backups: true``.

Files are written by one background thread, after the back end has answered, so a backup never
delays a response; a failed write is logged and counted (``failed``) and never fails a request.
A body small enough to be buffered is taken from memory; a streamed one (above
``proxy.stream_threshold``, or of unknown length) is teed into a temporary file as it passes
to the back end, so a huge upload is never held in memory. Day folders older than
``backup_retention_days`` are removed at start and once a day.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any, Callable

from mitmproxy import http

from addons import _engine_patches
from addons._background import BackgroundTask
from addons._context import listener_of
from addons.accesslog import masked_path
from gateway.traffic.backups import BackupMeta, backup_name, day_folder, is_document_write, remove_expired, write_backup
from gateway.config import BaseConfig, GatewayConfig

logger = logging.getLogger("gateway.backups")

STATE_KEY = "gateway_backup"
# Up to this much of a streamed body stays in memory before the tee spills to a file.
SPOOL_BYTES = 1024 * 1024
# Backups waiting for the disk; beyond this the disk is not keeping up and new ones are dropped
# (and counted) rather than letting memory grow without bound.
MAX_PENDING = 64
CLEANUP_INTERVAL = 24 * 3600.0


@dataclass
class _Pending:
    base: BaseConfig
    tee: _Tee | None = None


class _Tee:
    """A request stream callable that passes chunks on and keeps a copy in a spooled file."""

    def __init__(self, inner: Callable[[bytes], Any] | None, folder: Any) -> None:
        self.inner = inner
        self.folder = folder
        self.file: IO[bytes] | None = None
        self.size = 0
        self.broken: str | None = None

    def __call__(self, chunk: bytes) -> list[bytes]:
        out = self.inner(chunk) if self.inner is not None else chunk
        pieces = [out] if isinstance(out, (bytes, bytearray)) else list(out)
        pieces = [bytes(p) for p in pieces if p]
        if self.broken is None:
            try:
                if self.file is None:
                    self.file = tempfile.SpooledTemporaryFile(SPOOL_BYTES, dir=self.folder)
                for piece in pieces:
                    self.file.write(piece)
                    self.size += len(piece)
            except OSError as e:
                self.broken = e.strerror or str(e)
                self.close()
        return pieces

    def close(self) -> None:
        if self.file is not None:
            try:
                self.file.close()
            except OSError:
                pass
            self.file = None


class Backups:
    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gateway-backups")
        self._lock = threading.Lock()
        self._bases: tuple[BaseConfig, ...] = ()
        self._cleaner = BackgroundTask(self._clean_daily)
        self.saved = 0
        self.failed = 0
        self.pending = 0
        _engine_patches.stream_hooks.append(self._streamed_past_budget)

    # --- configuration and retention ---

    def apply_config(self, cfg: GatewayConfig) -> None:
        bases = tuple(b for b in cfg.bases if b.backups)
        newly = {b.id for b in bases} - {b.id for b in self._bases}
        self._bases = bases
        if newly and self._cleaner.started:
            self._pool.submit(self.clean_up)

    def running(self) -> None:
        self._cleaner.start()

    def done(self) -> None:
        self._cleaner.stop()
        self._pool.shutdown(wait=True)

    async def _clean_daily(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await loop.run_in_executor(self._pool, self.clean_up)
            await asyncio.sleep(CLEANUP_INTERVAL)

    def clean_up(self, today: datetime.date | None = None) -> None:
        today = today or datetime.datetime.now(datetime.timezone.utc).date()
        for base in self._bases:
            try:
                removed = remove_expired(base.backups_folder, today, base.backup_retention_days)
            except OSError as e:
                logger.error("base %r: cannot remove old backups in %s: %s", base.name, base.backups_folder,
                             e.strerror or e, extra={"event": "backup-cleanup-failed", "base": base.name})
                continue
            if removed:
                logger.info("base %r: removed %d backup day folder(s) older than %d days", base.name,
                            len(removed), base.backup_retention_days,
                            extra={"event": "backups-expired", "base": base.name, "folders": len(removed)})

    # --- requests ---

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error:
            return
        listener = listener_of(flow.client_conn)
        if listener is None or not listener.base.backups:
            return
        request = flow.request
        if not is_document_write(request.method, request.path):
            return
        pending = _Pending(listener.base)
        unknown_length = "content-length" not in request.headers
        if request.stream or unknown_length:
            self._tee(flow, pending)
        flow.metadata[STATE_KEY] = pending

    @staticmethod
    def _tee(flow: http.HTTPFlow, pending: _Pending) -> None:
        """Streamed bodies never sit in memory whole: keep a copy on its way through."""
        folder = pending.base.backups_folder
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            folder = None
        current = flow.request.stream
        pending.tee = _Tee(current if callable(current) else None, folder)
        flow.request.stream = pending.tee

    def _streamed_past_budget(self, flow: http.HTTPFlow) -> None:
        """A body that was to be buffered is streamed after all (the memory budget was full): the
        copy is then teed too, from its first byte, as the engine passes what it had buffered."""
        pending = flow.metadata.get(STATE_KEY)
        if isinstance(pending, _Pending) and pending.tee is None:
            self._tee(flow, pending)

    def response(self, flow: http.HTTPFlow) -> None:
        pending: _Pending | None = flow.metadata.pop(STATE_KEY, None)
        if pending is None:
            return
        response = flow.response
        if response is None or not 200 <= response.status_code < 300 or flow.metadata.get("gateway_denied"):
            if pending.tee is not None:
                pending.tee.close()
            return
        body: Any
        if pending.tee is not None:
            if pending.tee.broken is not None or pending.tee.file is None and pending.tee.size:
                self._failed(pending.base, flow, pending.tee.broken or "the copy was lost")
                pending.tee.close()
                return
            body, size = pending.tee.file or b"", pending.tee.size
        else:
            body = flow.request.raw_content or b""
            size = len(body)
        now = datetime.datetime.now(datetime.timezone.utc)
        request = flow.request
        content_type = request.headers.get("content-type", "")
        meta = BackupMeta(
            time=now.isoformat(timespec="microseconds"), base=pending.base.name,
            user=flow.metadata.get("gateway_user"), method=request.method, path=masked_path(request.path),
            status=response.status_code, size=size, content_type=content_type,
            content_encoding=request.headers.get("content-encoding", ""),
        )
        folder = day_folder(pending.base.backups_folder, now)
        name = backup_name(now, request.method, request.path, content_type)
        with self._lock:
            if self.pending >= MAX_PENDING:
                self.failed += 1
                logger.error("base %r: backup of %s %s dropped: %d backups are still waiting for the disk",
                             pending.base.name, request.method, meta.path, self.pending,
                             extra={"event": "backup-failed", "base": pending.base.name})
                if pending.tee is not None:
                    pending.tee.close()
                return
            self.pending += 1
        self._pool.submit(self._write, pending, folder, name, body, meta)

    def error(self, flow: http.HTTPFlow) -> None:
        pending: _Pending | None = flow.metadata.pop(STATE_KEY, None)
        if pending is not None and pending.tee is not None:
            pending.tee.close()

    def _write(self, pending: _Pending, folder: Any, name: str, body: Any, meta: BackupMeta) -> None:
        try:
            write_backup(folder, name, body, meta)
            with self._lock:
                self.saved += 1
        except OSError as e:
            with self._lock:
                self.failed += 1
            logger.error("base %r: backup of %s %s could not be written to %s: %s — the request itself "
                         "succeeded", meta.base, meta.method, meta.path, folder, e.strerror or e,
                         extra={"event": "backup-failed", "base": meta.base})
        finally:
            with self._lock:
                self.pending -= 1
            if pending.tee is not None:
                pending.tee.close()

    def _failed(self, base: BaseConfig, flow: http.HTTPFlow, reason: str) -> None:
        with self._lock:
            self.failed += 1
        logger.error("base %r: backup of %s %s failed: %s — the request itself succeeded", base.name,
                     flow.request.method, masked_path(flow.request.path), reason,
                     extra={"event": "backup-failed", "base": base.name})
