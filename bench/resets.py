"""What sharing HTTP/2 reset counts through the store costs (issue 24 point 5).

    .venv/bin/python bench/resets.py            # ~1 min: needs redis-server (scripts/system-deps.sh)

Three figures, each against a baseline measured in the same run:
  per reset   CPU of ``ResetLedger.record`` (count, window, the batch for the store) against what
              the per-connection limit already did for every reset before (one deque append and
              trim): the cost the sharing adds on the hot path, as a ratio
  per batch   one ``Store.add_strikes`` call (a batch of 1, 100 and 1000 addresses) on SQLite and
              Redis, against one ``Store.version()`` read (what every request of a user_auth base
              already costs)
  store calls a gateway with `workers: 2` on a real Redis, flooded for FLOOD seconds by clients
              reconnecting after every 99 resets from 10 addresses: the Redis calls made while it
              runs against the calls of the same gateway idle for as long (the baseline: the
              0.5 s tick of each worker), and the calls per 1000 resets
"""

from __future__ import annotations

import collections
import socket
import ssl
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.store import SqliteStore  # noqa: E402
from gateway.store.redis import RedisStore  # noqa: E402
from gateway.traffic.limits import RESET_SHARE_INTERVAL, RESET_WINDOW, ResetLedger  # noqa: E402
from tests.harness import base_entry, gateway_config, start_gateway, start_standin  # noqa: E402
from tests.redis_server import start_redis  # noqa: E402

FLOOD = 8.0
ADDRESSES = [f"127.0.4.{i}" for i in range(1, 11)]


class LedgerBeforeSharing(ResetLedger):
    """The ledger as it was before it fed the store: the same count and window, no batch."""

    def record(self, address: str, now: float, limit: int) -> bool:
        times = self._times.get(address)
        if times is None:
            times = self._times[address] = collections.deque()
        times.append(now)
        while times and times[0] < now - RESET_WINDOW:
            times.popleft()
        if len(times) > limit and self.banned_for(address, now) == 0.0:
            self._banned[address] = now + 60.0
            times.clear()
            return True
        return False


def per_reset(n: int = 200_000) -> None:
    addresses = [f"203.0.113.{i % 200}" for i in range(n)]
    times = [i * 1e-5 for i in range(n)]
    results = {}
    for name, ledger in (("before", LedgerBeforeSharing()), ("shared", ResetLedger())):
        # With sharing, _h2_event also asks whether another process banned the address.
        also_ask = name == "shared"
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            for address, now in zip(addresses, times):
                if not ledger.record(address, now, 10**9) and also_ask:
                    ledger.banned_for(address, now)
            best = min(best, time.perf_counter() - started)
        results[name] = best / n
    print(f"per reset: the ledger with its batch for the store and the shared-ban check "
          f"{results['shared'] * 1e9:.0f} ns against "
          f"{results['before'] * 1e9:.0f} ns without (×{results['shared'] / results['before']:.2f}, best of 3, "
          f"{n} resets from 200 addresses)", flush=True)


def per_batch(store: object, name: str) -> None:
    rounds = 50
    for size in (0, 1, 100, 1000):
        counts = [(f"reset:198.51.100.{i}", 3) for i in range(size)]
        started = time.perf_counter()
        for _ in range(rounds):
            store.add_strikes(counts, time.time(), RESET_WINDOW, 10**9, 60.0)  # type: ignore[attr-defined]
        took = (time.perf_counter() - started) / rounds
        print(f"per batch ({name}): {size:4d} addresses {took * 1000:6.2f} ms, "
              f"{took / RESET_SHARE_INTERVAL * 100:.2f} % of a worker's {RESET_SHARE_INTERVAL} s interval "
              "(in a store thread, off the event loop)", flush=True)


def flood(port: int, ca: str, stop: threading.Event, sent: list[int]) -> None:
    import h2.config
    import h2.connection

    context = ssl.create_default_context(cafile=ca)
    context.set_alpn_protocols(["h2"])
    turn = 0
    while not stop.is_set():
        source = ADDRESSES[turn % len(ADDRESSES)]
        turn += 1
        try:
            raw = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0))
            tls = context.wrap_socket(raw, server_hostname="127.0.0.1")
        except (OSError, ssl.SSLError):
            continue  # refused: a banned address
        with tls:
            conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
            conn.initiate_connection()
            for _ in range(99):
                sid = conn.get_next_available_stream_id()
                conn.send_headers(sid, [(":method", "GET"), (":path", "/echo"), (":scheme", "https"),
                                        (":authority", "x")])
                conn.reset_stream(sid)
            try:
                tls.sendall(conn.data_to_send())
                sent[0] += 99
            except (OSError, ssl.SSLError):
                pass


def redis_calls(client: object) -> collections.Counter[str]:
    stats = client.info("commandstats")  # type: ignore[attr-defined]
    return collections.Counter({k[len("cmdstat_"):]: int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info"})


def store_calls(tmp: Path) -> None:
    redis = start_redis(tmp / "redis")
    standin = start_standin(tmp / "standin.log")
    config = gateway_config(tmp, standin, bases=[base_entry(standin, "tls")], workers=2,
                            store={"backend": "redis", "redis_url": redis.url},
                            limits={"http2_max_resets": 10**6})  # no ban: every reset is counted, none refused
    gw = start_gateway(tmp / "gw", config, wait=False)
    try:
        gw.wait_for_log("gateway ready", 90)
        client = redis.client()
        time.sleep(1.0)
        before = redis_calls(client)
        time.sleep(FLOOD)
        idle_by = redis_calls(client) - before
        idle = sum(idle_by.values())
        stop, sent = threading.Event(), [0]
        threads = [threading.Thread(target=flood, args=(gw.port("tls"), gw.ca_file, stop, sent)) for _ in range(4)]
        before = redis_calls(client)
        for t in threads:
            t.start()
        time.sleep(FLOOD)
        stop.set()
        for t in threads:
            t.join()
        busy_by = redis_calls(client) - before
        busy = sum(busy_by.values())
        # Each batch is one EVALSHA (the commands inside it are counted too); an idle tick is one
        # ZRANGEBYSCORE. Other GETs are the store's change marker, read by other parts.
        print(f"store calls: {busy_by['evalsha']} batches (EVALSHA) in {FLOOD:.0f} s for a flood of {sent[0]} "
              f"resets ({sent[0] / FLOOD:.0f}/s) from {len(ADDRESSES)} addresses over 2 workers: "
              f"{busy_by['evalsha'] / max(sent[0], 1) * 1000:.1f} per 1000 resets; Redis commands in all "
              f"(inside scripts too) {busy} against {idle} in {FLOOD:.0f} s idle (×{busy / max(idle, 1):.2f}); "
              f"idle {dict(idle_by)}, flood {dict(busy_by)}", flush=True)
    finally:
        gw.stop()
        standin.stop()
        redis.stop()


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        per_reset()
        sqlite = SqliteStore(tmp_path / "gateway.db")
        per_batch(sqlite, "SQLite")
        sqlite.close()
        redis = start_redis(tmp_path / "redis-batch")
        try:
            store = RedisStore(redis.url)
            per_batch(store, "Redis")
            store.close()
        finally:
            redis.stop()
        store_calls(tmp_path)


if __name__ == "__main__":
    main()
