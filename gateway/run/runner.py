"""Builds the gateway's mitmproxy Master and keeps its configuration current.

Only the addons the gateway needs are loaded (mitmproxy's default set of ~30 addons costs
throughput and adds behaviour we do not want in front of a legacy server). One ``reverse:``
listener per base port; the listeners are reconciled on reload, so the listeners of unchanged
bases, and their open connections, are never touched.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
from pathlib import Path
from typing import Any, Iterable

from mitmproxy import options
from mitmproxy.addons import next_layer, proxyserver
from mitmproxy.proxy import mode_specs

from addons import _listen, _tls_alerts
from addons import (accesslog, admin, auth, autocert, backups, client_auth, compress, enrolment, errorpages, hsts,
                    https_only, hygiene, identity, ipfilter, limits, metrics, minutes, policy, ratelimit, redirects,
                    reset_share, routing, timeouts, tls, tls_failures)
from addons._context import set_current_config
from gateway.run.engine_options import GatewayOptions
from gateway.config import AdminSettings, ConfigError, EnrolmentSettings, GatewayConfig, load_config
from gateway.run.hooktable import GatewayMaster
from gateway.ops import reloadctl
from gateway.store import statecheck
from gateway.store.handle import StoreHandle
from gateway.ops.ports import busy_listeners
from gateway.run.startup import (
    CONFIG_POLL_INTERVAL, StartupError, files_fingerprint, keep_restart_only_settings, listen_host_option,
    prepare_start, report_ready, restart_only_changes, warn_plaintext, watched_files,
)
from gateway.run import lifeline
from gateway.run import engine_headers, engine_longlived, engine_memory
from gateway.run.engine import lean, skip_debug_type_checks
from gateway.certs import tickets
from gateway.web.admin import read_worker_secret

logger = logging.getLogger("gateway.runner")

# A worker told to stop finishes its open connections for this long (the supervisor waits longer).
DRAIN_SECONDS = 5.0


def build_addons(stores: StoreHandle | None = None) -> list[Any]:
    """The gateway's own addons, in the order their hooks must run (see docs/ARCHITECTURE.md).

    Imported directly, not discovered: a security addon that fails to import must stop the
    gateway from starting, never leave a base unprotected. ``stores``: the process's one store,
    handed to every addon that reads or writes the state.
    """
    stores = stores or StoreHandle()
    return [
        tls.GatewayTls(),              # first: chooses the certificate in tls_start_client
        client_auth.ClientAuth(stores),  # device certificates: on the connection GatewayTls made
        tls_failures.TlsFailures(),    # one line per failed handshake (after ClientAuth's own)
        autocert.AutoCert(stores),     # ACME challenges and renewals; GatewayTls serves the files
        hsts.Hsts(),
        enrolment.Enrolment(stores),   # after GatewayTls, which creates the CA it serves
        limits.Limits(),               # client_connected: connection limits, cheapest refusal first
        reset_share.ResetShare(stores),  # HTTP/2 reset counts and bans shared through the store
        ipfilter.IpFilter(),           # client_connected: before any TLS handshake
        https_only.HttpsOnly(),
        ratelimit.RateLimit(stores),   # requestheaders: 429 before anything else spends work on it
        hygiene.Hygiene(),             # refuse what a lax back end could misread, before anything reads it
        routing.Routing(),
        auth.Auth(stores),             # requestheaders: before a streamed body could leave
        policy.Policy(),               # needs the role and document types Auth set
        identity.Identity(),           # last to touch request headers
        timeouts.BackendTimeout(),
        redirects.ProxyRedirect(),     # responseheaders: the back end's own address out of its redirects
        compress.Compression(),        # before AccessLog, so bytes_out is the compressed size
        backups.Backups(),
        accesslog.AccessLog(),         # before ErrorPages, which clears the timeout flag
        metrics.Metrics(),
        minutes.Minutes(),             # the dashboard's per-minute numbers
        admin.Admin(stores),
        errorpages.ErrorPages(),
    ]


def mode_specs_for(cfg: GatewayConfig) -> list[str]:
    # Always http:// towards the back end: the legacy server speaks plain HTTP. TLS towards the
    # client is decided per connection by GatewayTls, plaintext on an https base by HttpsOnly.
    return [f"reverse:{listener.endpoint.backend}@{listener.port}" for listener in cfg.listeners()]


class Gateway:
    def __init__(self, config_path: Path | str, addons: Iterable[Any] | None = None, *, init: bool = False,
                 worker: int | None = None) -> None:
        self.config_path = Path(config_path).resolve()
        self.init = init
        # Set when this process is worker number `worker` under gateway/run/supervisor.py.
        self.worker = worker
        self._state_watch: statecheck.StateWatch | None = None
        self._reloads: reloadctl.ReloadRequests | None = None
        self._request_id: str | None = None
        self.last_reload: dict[str, Any] | None = None
        self.config_loaded_at: float | None = None
        # The process's one store, opened for each configuration the addons take (gateway.store.handle).
        self.stores = StoreHandle()
        self.addons = list(addons) if addons is not None else build_addons(self.stores)
        self.config: GatewayConfig | None = None
        self.master: GatewayMaster | None = None
        self._fingerprint: str | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._reload_lock = asyncio.Lock()
        self._draining = False
        self._stopping_logged = False

    # --- start and stop ------------------------------------------------------------------

    def _load(self) -> GatewayConfig:
        cfg = load_config(self.config_path)
        if self.worker is None:
            return cfg
        # The supervisor serves the machine's admin listener and asks each worker's own on a
        # private loopback port; the enrolment page needs only one process, the first worker.
        # The same for the ACME challenge port, which cannot be shared either.
        first = self.worker == 1
        return dataclasses.replace(
            cfg, admin=AdminSettings(enabled=True, host="127.0.0.1", listen=0, private=True),
            enrolment=cfg.enrolment if first else EnrolmentSettings(enabled=False),
            acme=cfg.acme if first else dataclasses.replace(cfg.acme, challenge_listen=0))

    async def start(self) -> None:
        try:
            _listen.install()
            _listen.configure(reuse_port=self.worker is not None)
            _tls_alerts.install()
            engine_longlived.install()  # a leak fix, not a trim: installed with GATEWAY_LEAN=0 too
            if lean():
                engine_memory.install()
        except (_listen.MitmproxyMoved, _tls_alerts.MitmproxyMoved, engine_longlived.MitmproxyMoved,
                engine_memory.MitmproxyMoved) as e:
            raise StartupError(str(e)) from None
        if self.worker is not None:
            tickets.read_key_from_supervisor()  # before any TLS context is built
            read_worker_secret()  # the private admin listener answers the supervisor only
        cfg = self._load()
        self._fingerprint = files_fingerprint(watched_files(self.config_path, cfg))
        prepare_start(cfg, init=self.init, reuse_port=self.worker is not None)

        skip_debug_type_checks()
        if lean():
            engine_headers.install()
        opts = GatewayOptions() if lean() else options.Options()
        self.master = GatewayMaster(opts)
        self.master.addons.add(proxyserver.Proxyserver(), next_layer.NextLayer(), *self.addons)
        try:
            self._apply_to_addons(cfg)
        except Exception as e:
            raise StartupError(f"{self.config_path}: {e}") from e
        self.config = cfg
        set_current_config(cfg)
        opts.update(
            listen_host=listen_host_option(cfg),
            # lazy: no back-end connection is opened before the request has been checked.
            connection_strategy="lazy",
            keep_host_header=True,
            stream_large_bodies=str(cfg.proxy.stream_threshold),
            http2=cfg.tls.http2,
            mode=mode_specs_for(cfg),
        )
        self._warn_plaintext(cfg)
        run_task = asyncio.get_running_loop().create_task(self.master.run())
        self._tasks.append(run_task)
        await self._wait_listening(cfg, run_task)
        import time

        self.config_loaded_at = time.time()
        admin = self.master.addons.get("admin")
        if admin is not None and hasattr(admin, "note_reload"):
            admin.note_reload(None, self.config_loaded_at)
        statecheck.remember_start(cfg)
        self._reloads = reloadctl.ReloadRequests(cfg.state_dir)
        self._state_watch = statecheck.StateWatch.snapshot(cfg)
        statecheck.set_problem(None)
        self._tasks.append(asyncio.get_running_loop().create_task(self._watch_config()))
        self._install_signal_handlers()
        if self.worker is not None:
            if not lifeline.watch_supervisor(self._supervisor_gone):
                self._tasks.append(asyncio.get_running_loop().create_task(self._watch_supervisor()))
            logger.info("worker %d ready (pid %d): %d listener(s)", self.worker, os.getpid(), len(cfg.listeners()))
            return
        for listener in cfg.listeners():
            logger.info("base %r %s: %s://%s:%d → %s", listener.base.name, listener.role, listener.scheme,
                        cfg.listen_host, listener.port, listener.endpoint.backend)
        logger.info("gateway ready: %d listener(s), config %s", len(cfg.listeners()), self.config_path)

    def _supervisor_gone(self) -> None:
        logger.error("worker %s: the supervisor is gone; stopping", self.worker)
        self.shutdown()

    def start_heartbeat(self, fd: int | None) -> None:
        if fd is not None:
            self._tasks.append(asyncio.get_running_loop().create_task(lifeline.beat(fd)))

    async def _watch_supervisor(self) -> None:
        # The fallback where no lifeline pipe came with the worker: a worker whose supervisor
        # is gone (killed with SIGKILL) must not keep the ports.
        parent = os.getppid()
        while True:
            await asyncio.sleep(1.0)
            if os.getppid() != parent:
                logger.error("worker %s: the supervisor (pid %d) is gone; stopping", self.worker, parent)
                self.shutdown()
                return

    async def _wait_listening(self, cfg: GatewayConfig, run_task: asyncio.Task[Any]) -> None:
        ps = self.master.addons.get("proxyserver") if self.master else None
        wanted = {listener.port for listener in cfg.listeners()}
        for _ in range(200):
            if run_task.done():
                run_task.result()
                raise StartupError("the proxy stopped during start-up; see the log above")
            if ps is not None and ps.is_running and not ps.servers.is_updating:
                have = {addr[1] for addr in ps.listen_addrs()}
                if wanted <= have:
                    return
            await asyncio.sleep(0.05)
        raise StartupError("listeners did not come up within 10 s; see the log above")

    async def wait(self) -> None:
        if self._tasks:
            await self._tasks[0]

    def shutdown(self) -> None:
        if self.master:
            self.master.shutdown()

    async def stop(self) -> None:
        self.shutdown()
        for task in self._tasks[1:]:
            task.cancel()
        if self._tasks:
            try:
                await asyncio.wait_for(self._tasks[0], 10)
            except (asyncio.TimeoutError, asyncio.CancelledError):
                pass

    def drain_then_shutdown(self) -> None:
        """A worker's stop: close the listeners (the other workers and, after a restart, this slot's
        successor take new connections), let open connections finish for up to DRAIN_SECONDS."""
        if self._draining:
            return  # SIGTERM from systemd and from the supervisor alike
        self._draining = True

        async def drain() -> None:
            ps = self.master.addons.get("proxyserver") if self.master else None
            if ps is not None:
                try:
                    await ps.servers.update([])
                    deadline = asyncio.get_running_loop().time() + DRAIN_SECONDS
                    while ps.connections and asyncio.get_running_loop().time() < deadline:
                        await asyncio.sleep(0.1)
                except Exception:
                    logger.exception("draining connections failed; stopping now")
            self.shutdown()
        self._tasks.append(asyncio.get_running_loop().create_task(drain()))

    def _log_stopping(self, why: str) -> None:
        # Logged, so that a stop can be told from a crash in the log (a worker's own stop is the
        # supervisor's to say).
        if self.worker is None and not self._stopping_logged:
            self._stopping_logged = True
            logger.info("stopping (%s)", why, extra={"event": "stopping"})

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        stop_now = self.shutdown if self.worker is None else self.drain_then_shutdown

        def stop() -> None:
            self._log_stopping("SIGTERM")
            stop_now()

        def interrupt_now() -> None:
            self._log_stopping("SIGINT")
            self.shutdown()

        # A worker ignores SIGINT (Ctrl-C reaches the whole process group): its supervisor decides.
        interrupt = interrupt_now if self.worker is None else (lambda: None)
        for name, action in (("SIGHUP", lambda: self._spawn_reload("SIGHUP")),
                             ("SIGTERM", stop), ("SIGINT", interrupt)):
            sig = getattr(signal, name, None)
            if sig is None:
                continue  # Windows has no SIGHUP; the file watcher is the primary trigger anyway.
            try:
                loop.add_signal_handler(sig, action)
            except (NotImplementedError, RuntimeError, ValueError):
                pass

    # --- reload --------------------------------------------------------------------------

    def _spawn_reload(self, reason: str) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(self.reload(reason)))

    async def _watch_config(self) -> None:
        while True:
            await asyncio.sleep(CONFIG_POLL_INTERVAL)
            if self._state_watch is not None:
                self._state_watch.poll()
            request = self._reloads.pending() if self._reloads is not None else None
            if request is not None:
                self._request_id = request
                try:
                    await self.reload("`gateway reload`")
                finally:
                    self._request_id = None
                continue
            fingerprint = files_fingerprint(watched_files(self.config_path, self.config))
            if fingerprint is not None and fingerprint != self._fingerprint:
                await self.reload("configuration file changed")

    async def reload(self, reason: str) -> bool:
        async with self._reload_lock:
            old = self.config
            assert old is not None and self.master is not None
            try:
                new = self._load()
            except ConfigError as e:
                self._fingerprint = files_fingerprint(watched_files(self.config_path, old))
                return self._refused(reason, str(e))
            # Taken before applying: a save during the reload is then seen as a new change.
            previous_fingerprint = self._fingerprint
            self._fingerprint = files_fingerprint(watched_files(self.config_path, new))
            pending = restart_only_changes(old, new)
            new = self._keep_restart_only_settings(old, new, pending)
            if new == old and self._fingerprint == previous_fingerprint:
                logger.info("configuration reloaded (%s): no change", reason, extra={"event": "config-reloaded"})
                self._record_reload(True, "no change" + (
                    f"; {', '.join(pending)} changed: takes effect only after a restart" if pending else ""))
                return True
            problems = busy_listeners(new, listen_host_option(new), skip_ports={l.port for l in old.listeners()},
                                      reuse_port=self.worker is not None)
            if problems:
                return self._refused(reason, "; ".join(problems))
            try:
                self._apply_to_addons(new)
            except Exception as e:
                self._apply_to_addons(old)
                return self._refused(reason, str(e))
            self.config = new
            set_current_config(new)
            self._warn_plaintext(new)
            specs = mode_specs_for(new)
            self.master.options.update(stream_large_bodies=str(new.proxy.stream_threshold), mode=specs)
            ps = self.master.addons.get("proxyserver")
            all_ok = await ps.servers.update([mode_specs.ProxyMode.parse(s) for s in specs])
            added = {l.port for l in new.listeners()} - {l.port for l in old.listeners()}
            removed = {l.port for l in old.listeners()} - {l.port for l in new.listeners()}
            logger.info("configuration reloaded (%s): %d base(s); ports opened %s, closed %s%s",
                        reason, len(new.bases), sorted(added) or "none", sorted(removed) or "none",
                        "" if all_ok else " — some listeners failed, see above",
                        extra={"event": "config-reloaded"})
            message = "applied" if all_ok else "applied, but some listeners failed (see the log)"
            if pending:
                # `gateway reload` prints this: "applied" alone would claim the change is in force.
                message += f"; {', '.join(pending)} changed: takes effect only after a restart"
            self._record_reload(all_ok, message)
            return all_ok

    def _refused(self, reason: str, why: str) -> bool:
        logger.error("configuration reload refused (%s): %s — the running configuration stays in force",
                     reason, why, extra={"event": "config-reload-refused"})
        self._record_reload(False, f"refused: {why}")
        return False

    def _record_reload(self, ok: bool, message: str) -> None:
        import time

        self.last_reload = {"at": time.time(), "ok": ok, "message": message, "request": self._request_id}
        if ok:
            self.config_loaded_at = self.last_reload["at"]
        admin = self.master.addons.get("admin") if self.master else None
        if admin is not None and hasattr(admin, "note_reload"):
            admin.note_reload(self.last_reload, self.config_loaded_at)

    def _keep_restart_only_settings(self, old: GatewayConfig, new: GatewayConfig, pending: list[str]) -> GatewayConfig:
        # Workers keep quiet: their supervisor says it once for the machine.
        return keep_restart_only_settings(old, new, pending, quiet=self.worker is not None)

    def _apply_to_addons(self, cfg: GatewayConfig) -> None:
        for addon in self.addons:
            apply = getattr(addon, "apply_config", None)
            if apply is not None:
                apply(cfg)
        # Every addon took cfg: a store opened for another configuration (the old one after a
        # reload that changed the store settings, the new one after a refused reload) is closed.
        self.stores.settle(cfg)

    def _warn_plaintext(self, cfg: GatewayConfig) -> None:
        if self.worker is None:  # workers: their supervisor says it, once
            warn_plaintext(cfg)


async def serve(config_path: Path | str, *, init: bool = False, worker: int | None = None) -> int:
    gateway = Gateway(config_path, init=init, worker=worker)
    await gateway.start()
    if worker is not None:
        admin = gateway.master.addons.get("admin") if gateway.master else None
        gateway.start_heartbeat(report_ready(getattr(admin, "port", None)))
    try:
        await gateway.wait()
    finally:
        await gateway.stop()
        gateway.stores.close()
        if worker is None:
            logger.info("stopped", extra={"event": "stopped"})
    return 0
