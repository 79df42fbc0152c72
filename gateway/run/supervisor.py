"""``gateway run`` with ``workers`` > 1: a small supervisor and N worker processes.

Each worker is a whole gateway (``gateway run --worker N``) listening on every base port with
SO_REUSEPORT (addons/_listen.py), so the kernel spreads new connections over the workers.
Everything they must agree on lives in files or the shared store, not in their memory: the
configuration and list files (each worker watches them and reloads itself; an invalid file is
refused by every worker alike), throttle counts, bans, sessions and users (SQLite in WAL mode or
Redis; the store's change marker ends cached logins in every worker).

The supervisor
- starts the workers and restarts one that dies (logged with its exit status; a worker that
  keeps dying right after start is restarted with a growing pause), and kills and replaces one
  whose heartbeat stops (SIGSTOP, a hook stuck in a blocking call: gateway/run/lifeline.py);
- holds each worker's lifeline pipe, so the workers stop at once when it dies, even by SIGKILL;
- stops them all on SIGTERM/SIGINT: each worker stops accepting, finishes open connections for
  up to its drain time, then exits; whatever is still running after GRACE_SECONDS is killed;
- passes SIGHUP on to every worker;
- serves the machine's one admin listener (/metrics summed over the workers, /healthz and
  /readyz from every worker, the console), asking each worker's private admin listener;
- makes one TLS session-ticket key before the workers start and hands it to each
  (gateway/certs/tickets.py), so sessions resume on any worker;
- writes ``<state_dir>/run/<pid>.json`` with its workers (pid, slot, started) for ``gateway status``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from gateway.certs import tickets
from gateway.config import ConfigError, GatewayConfig, load_config
from gateway.ops.health import read_run_files, remove_run_file, run_file, write_run_record
from gateway.web.admin import PLAIN, AdminApp, Answer
from gateway.run.metrics_merge import merge
from gateway.run.lifeline import HEARTBEAT_INTERVAL, HEARTBEAT_TIMEOUT, LIFELINE_FD_ENV, ReadyPipe, lifeline_pipe
from gateway.run.startup import (
    CONFIG_POLL_INTERVAL, READY_FD_ENV, RESTART_ONLY_SETTINGS, files_fingerprint, prepare_start, watched_files,
)
from addons.tls import GatewayTls
from gateway.ops.logrotate import rotate_if_needed
from gateway.ops.logsetup import security_log_path

logger = logging.getLogger("gateway.supervisor")

GRACE_SECONDS = 10.0
START_TIMEOUT = 60.0
ASK_TIMEOUT = 3.0


class SupervisorError(Exception):
    """The workers could not be started; the message is for the person who started the gateway."""


@dataclass
class Worker:
    slot: int
    process: asyncio.subprocess.Process
    started: float = field(default_factory=time.time)
    started_monotonic: float = field(default_factory=time.monotonic)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    killed: bool = False
    pipe: ReadyPipe | None = None
    # The supervisor's end of the worker's lifeline; closed by the kernel when the supervisor dies.
    lifeline: int | None = None

    @property
    def pid(self) -> int:
        return self.process.pid


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit status {returncode}"


async def ask(port: int, path: str, timeout: float = ASK_TIMEOUT) -> tuple[int, bytes]:
    """GET ``path`` from a worker's private admin listener on 127.0.0.1."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode("ascii"))
        data = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    return (int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0), body


class SupervisorAdmin(AdminApp):
    """The admin listener of the machine: the same pages, answered from every worker."""

    def __init__(self, supervisor: Supervisor) -> None:
        super().__init__()
        self.supervisor = supervisor

    async def answer(self, method: str, path: str) -> Answer:
        if path not in ("/metrics", "/healthz", "/readyz") or method not in ("GET", "HEAD"):
            return await super().answer(method, path)
        answers = await self.supervisor.ask_workers(path)
        expected = self.supervisor.count
        if path == "/metrics":
            texts = [(str(slot), body.decode("utf-8", "replace")) for slot, status, body in answers if status == 200]
            return Answer(200, "text/plain; version=0.0.4; charset=utf-8", merge(texts, self.supervisor.own_metrics()))
        bad = [f"worker {slot}: {body.decode('utf-8', 'replace').strip() or 'no answer'}"
               for slot, status, body in answers if status != 200]
        missing = expected - len(answers)
        if missing > 0:
            bad.append(f"{missing} of {expected} worker(s) not running")
        if bad:
            what = "unhealthy" if path == "/healthz" else "not ready"
            return Answer(503, PLAIN, (f"{what}:\n" + "\n".join(bad) + "\n").encode())
        if path == "/healthz":
            return Answer(200, PLAIN, f"ok: {expected} worker(s)\n".encode())
        return Answer(200, PLAIN, (f"ready: {expected} worker(s)\n".encode() + answers[0][2] if answers else b""))

    def _write_run_file(self) -> None:
        cfg = self._config
        if cfg is None:
            return
        info = {"pid": os.getpid(), "ports": sorted({l.port for l in cfg.listeners()}
                                                    | ({cfg.enrolment.listen} if cfg.enrolment.enabled else set())),
                "admin": self.port, "started": self._started, "role": "supervisor",
                "workers": [{"slot": w.slot, "pid": w.pid, "started": w.started}
                            for w in sorted(self.supervisor.workers.values(), key=lambda w: w.slot)]}
        try:
            write_run_record(cfg.state_dir, os.getpid(), info)
        except OSError as e:
            logger.warning("cannot write %s: %s", run_file(cfg.state_dir, os.getpid()), e.strerror or e)

    def refresh_run_file(self) -> None:
        self._write_run_file()


# How often the supervisor looks at the shared log files' sizes.
LOG_ROTATE_INTERVAL = 1.0


class Supervisor:
    def __init__(self, config_path: Path | str, count: int, *, init: bool = False) -> None:
        self.config_path = Path(config_path).resolve()
        self.count = count
        self.init = init
        self.workers: dict[int, Worker] = {}
        self.restarts = 0
        self.stopping = asyncio.Event()
        self.admin = SupervisorAdmin(self)
        self.config: GatewayConfig | None = None
        self._admin_ports: dict[int, int] = {}  # worker pid → its private admin port
        self._fingerprint: str | None = None
        # Made once, before any worker: a client resumes its TLS session on whichever worker.
        self.ticket_key = tickets.new_key()

    # --- start and stop ---

    async def run(self) -> int:
        cfg = load_config(self.config_path)
        # Decided once, here: workers starting together must not each judge a half-made state.
        prepare_start(cfg, init=self.init, reuse_port=False)
        self.config = cfg
        self._fingerprint = files_fingerprint(watched_files(self.config_path, cfg))
        try:
            # Made here, once: workers starting together would each generate their own CA and
            # certificate. This also checks every certificate before any worker starts.
            GatewayTls().apply_config(cfg)
            self.admin.apply_config(cfg)
        except Exception as e:
            raise SupervisorError(f"{self.config_path}: {e}") from e
        # No admin.running(): apply_config, inside the running loop, has started the listener
        # already, and a second start would race it.
        self._install_signal_handlers()
        keepers = [asyncio.create_task(self._keep_running(slot)) for slot in range(1, self.count + 1)]
        try:
            await self._wait_all_ready()
            self._all_started = True
            for listener in cfg.listeners():
                logger.info("base %r %s: %s://%s:%d → %s", listener.base.name, listener.role, listener.scheme,
                            cfg.listen_host, listener.port, listener.endpoint.backend)
            logger.info("gateway ready: %d worker(s) (pids %s), %d listener(s), config %s", self.count,
                        ", ".join(str(w.pid) for w in sorted(self.workers.values(), key=lambda w: w.slot)),
                        len(cfg.listeners()), self.config_path)
            watcher = asyncio.create_task(self._watch_config())
            rotator = asyncio.create_task(self._rotate_logs())
            pulse = asyncio.create_task(self._check_heartbeats())
            await self.stopping.wait()
            watcher.cancel()
            rotator.cancel()
            pulse.cancel()
            return 0
        finally:
            self.stopping.set()
            await self._stop_workers()
            for keeper in keepers:
                keeper.cancel()
            self.admin.done()
            remove_run_file(cfg.state_dir, os.getpid())

    async def _rotate_logs(self) -> None:
        """The only rotation of the shared log files: workers append and follow (gateway/ops/logrotate.py)."""
        while True:
            await asyncio.sleep(LOG_ROTATE_INTERVAL)
            cfg = self.config
            if cfg is None or cfg.log.file is None:
                continue
            for path in (cfg.log.file, security_log_path(cfg.log)):
                if path is None:
                    continue
                try:
                    await asyncio.to_thread(rotate_if_needed, path, cfg.log.max_bytes, cfg.log.backups)
                except OSError as e:
                    logger.warning("cannot rotate %s: %s", path, e.strerror or e)

    async def _check_heartbeats(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_INTERVAL)
            for worker in list(self.workers.values()):
                pipe = worker.pipe
                if pipe is None or not pipe.ready or worker.process.returncode is not None:
                    continue
                silent = pipe.silent_for()
                if silent > HEARTBEAT_TIMEOUT and not worker.killed:
                    worker.killed = True
                    logger.error("worker %d (pid %d) sent no heartbeat for %.0f s (stopped or stuck); killing it "
                                 "and starting a new one", worker.slot, worker.pid, silent,
                                 extra={"event": "worker-wedged", "worker": worker.slot, "pid": worker.pid})
                    _signal(worker, signal.SIGKILL)

    async def _wait_all_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and not self.stopping.is_set():
            if len(self.workers) == self.count and all(w.ready.is_set() for w in self.workers.values()):
                return
            if self._start_failed:
                raise SupervisorError(self._start_failed)
            await asyncio.sleep(0.05)
        if not self.stopping.is_set():
            raise SupervisorError(f"the workers did not become ready within {START_TIMEOUT:g} s; see the log above")

    _start_failed: str | None = None
    _all_started = False

    async def _stop_workers(self) -> None:
        running = [w for w in self.workers.values() if w.process.returncode is None]
        for worker in running:
            _signal(worker, signal.SIGTERM)
        if not running:
            return
        done, pending = await asyncio.wait([asyncio.create_task(w.process.wait()) for w in running],
                                           timeout=GRACE_SECONDS)
        for worker in running:
            if worker.process.returncode is None:
                logger.warning("worker %d (pid %d) still running %g s after SIGTERM; killing it",
                               worker.slot, worker.pid, GRACE_SECONDS)
                _signal(worker, signal.SIGKILL)
        if pending:
            await asyncio.wait(pending, timeout=5)

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig, action in ((signal.SIGTERM, self.stopping.set), (signal.SIGINT, self.stopping.set),
                            (signal.SIGHUP, self._forward_reload)):
            loop.add_signal_handler(sig, action)

    def _forward_reload(self) -> None:
        logger.info("SIGHUP: passing the reload on to %d worker(s)", len(self.workers))
        for worker in list(self.workers.values()):
            _signal(worker, signal.SIGHUP)
        self._reload_own("SIGHUP")

    # --- workers ---

    async def _keep_running(self, slot: int) -> None:
        quick_deaths = 0
        while not self.stopping.is_set():
            worker = await self._spawn(slot)
            returncode = await worker.process.wait()
            _close_pipes(worker)
            self.workers.pop(slot, None)
            self._admin_ports.pop(worker.pid, None)
            if self.config is not None:
                remove_run_file(self.config.state_dir, worker.pid)
            if self.stopping.is_set():
                return
            if not self._all_started:
                # Failing before the first start completed is a configuration or port problem,
                # which another try will not fix.
                self._start_failed = f"worker {slot} could not start ({describe_exit(returncode)}); see above"
                return
            lived = time.monotonic() - worker.started_monotonic
            quick_deaths = quick_deaths + 1 if lived < 10 else 0
            pause = min(30.0, 0.5 * 2 ** (quick_deaths - 1)) if quick_deaths else 0.0
            self.restarts += 1
            logger.error("worker %d (pid %d) exited with %s after %.0f s; starting a new one%s", slot, worker.pid,
                         describe_exit(returncode), lived, f" in {pause:g} s" if pause else "",
                         extra={"event": "worker-exited", "worker": slot, "pid": worker.pid,
                                "status": describe_exit(returncode)})
            self.admin.refresh_run_file()
            if pause:
                try:
                    await asyncio.wait_for(self.stopping.wait(), pause)
                except asyncio.TimeoutError:
                    pass

    async def _spawn(self, slot: int) -> Worker:
        read_end, write_end = os.pipe()
        life_read, life_write = lifeline_pipe()
        # The ticket key travels through a pipe, not the environment (readable in /proc).
        key_read, key_write = os.pipe()
        os.write(key_write, self.ticket_key)
        os.close(key_write)
        env = dict(os.environ)
        env[READY_FD_ENV] = str(write_end)
        env[LIFELINE_FD_ENV] = str(life_read)
        env[tickets.KEY_FD_ENV] = str(key_read)
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway", "-c", str(self.config_path), "run", "--worker", str(slot),
                pass_fds=(write_end, key_read, life_read), env=env)
        except BaseException:
            os.close(read_end)
            os.close(life_write)
            raise
        finally:
            os.close(write_end)
            os.close(key_read)
            os.close(life_read)
        worker = Worker(slot, process, lifeline=life_write)

        def on_ready(port: int | None) -> None:
            # The admin port comes with "ready": the run file it is also in may be gone (a deleted
            # state folder), and /readyz must then still ask the worker, which knows why.
            if port is not None:
                self._admin_ports[worker.pid] = port
            worker.ready.set()
            if self._all_started:
                logger.info("worker %d (pid %d) ready again", worker.slot, worker.pid,
                            extra={"event": "worker-ready", "worker": worker.slot, "pid": worker.pid})

        worker.pipe = ReadyPipe(read_end, on_ready)
        self.workers[slot] = worker
        self.admin.refresh_run_file()
        return worker

    def _admin_port(self, worker: Worker) -> int | None:
        port = self._admin_ports.get(worker.pid)
        if port is None and self.config is not None:
            for info in read_run_files(self.config.state_dir):
                if info.pid == worker.pid and info.admin:
                    port = self._admin_ports[worker.pid] = info.admin
        return port

    async def ask_workers(self, path: str) -> list[tuple[int, int, bytes]]:
        """(slot, status, body) from every running, ready worker; status 0 when it did not answer."""
        workers = sorted((w for w in self.workers.values() if w.ready.is_set()), key=lambda w: w.slot)

        async def one(worker: Worker) -> tuple[int, int, bytes]:
            port = self._admin_port(worker)
            if port is None:
                return worker.slot, 0, b"its admin listener is not known yet"
            try:
                status, body = await ask(port, path)
            except (OSError, asyncio.TimeoutError) as e:
                return worker.slot, 0, f"does not answer ({e.__class__.__name__})".encode()
            return worker.slot, status, body

        return list(await asyncio.gather(*(one(w) for w in workers)))

    def own_metrics(self) -> list[object]:
        alive = GaugeMetricFamily("gateway_workers", "Worker processes running and ready")
        alive.add_metric([], sum(1 for w in self.workers.values() if w.ready.is_set()))
        restarts = CounterMetricFamily("gateway_worker_restarts", "Workers restarted after they died")
        restarts.add_metric([], self.restarts)
        return [alive, restarts]

    # --- configuration ---

    async def _watch_config(self) -> None:
        while True:
            await asyncio.sleep(CONFIG_POLL_INTERVAL)
            fingerprint = files_fingerprint(watched_files(self.config_path, self.config))
            if fingerprint is not None and fingerprint != self._fingerprint:
                self._fingerprint = fingerprint
                self._reload_own("configuration file changed")

    def _reload_own(self, reason: str) -> None:
        """The supervisor's own part of a reload: the admin listener and the console. The workers
        reload themselves (and log what they did)."""
        try:
            new = load_config(self.config_path)
        except ConfigError:
            return  # every worker logs the refusal
        old = self.config
        if old is not None:
            new = _keep_restart_only(old, new)
        try:
            self.admin.apply_config(new)
        except Exception as e:
            logger.error("admin listener keeps its old settings (%s): %s", reason, e)
            if old is not None:
                self.admin.apply_config(old)
            return
        self.config = new


def _keep_restart_only(old: GatewayConfig, new: GatewayConfig) -> GatewayConfig:
    # Quietly: every worker logs the settings it keeps.
    return dataclasses.replace(new, **{name: getattr(old, name) for name in RESTART_ONLY_SETTINGS})


def _close_pipes(worker: Worker) -> None:
    if worker.pipe is not None:
        worker.pipe.close()
    if worker.lifeline is not None:
        try:
            os.close(worker.lifeline)
        except OSError:
            pass
        worker.lifeline = None


def _signal(worker: Worker, sig: int) -> None:
    try:
        worker.process.send_signal(sig)
    except ProcessLookupError:
        pass


async def supervise(config_path: Path | str, count: int, *, init: bool = False) -> int:
    return await Supervisor(config_path, count, init=init).run()
