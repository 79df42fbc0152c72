"""The Redis store against a real redis-server, held to the SQLite store's contract.

The contract tests run on both stores (parametrized ``store`` fixture), so a difference in
semantics between them fails here; the Redis-only tests cover what SQLite has no counterpart for:
the key prefix, TTLs, the HMAC key check (only a fingerprint in Redis), and a Redis that is down.
"""

from __future__ import annotations

import multiprocessing
import shutil
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from gateway.store import keys
from gateway.store import (
    Credential, DuplicateError, Group, NotFoundError, SessionRecord, SqliteStore, Store, StoreError, User,
    open_store,
)
from gateway.store.redis import RedisStore
from tests.redis_server import RedisServer, assert_key_not_in_redis, start_redis

KEY_A, KEY_B, KEY_C = "a" * 64, "b" * 64, "c" * 64


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def clean_redis(redis_server: RedisServer) -> RedisServer:
    with redis_server.client() as client:
        client.flushdb()
    return redis_server


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    opened: Store
    if request.param == "sqlite":
        opened = SqliteStore(tmp_path / "gateway.db")
    else:
        opened = RedisStore(request.getfixturevalue("clean_redis").url)
    yield opened
    opened.close()


def _group(gid: str = "1", name: str = "Операторы ТСД", role: str = "mobile") -> Group:
    return Group(id=gid, name=name, role=role, doc_types=("Приход", "Инвентаризация"), offline=True,
                 on_login="start", on_logout="stop")


def _cred(key: str, kind: str = "password", hash_: str = "$argon2id$x") -> Credential:
    return Credential(key, kind, hash_)


# --- the contract, on both stores ---

def test_users_groups_and_the_unique_credential_index(store: Store) -> None:
    store.put_group(_group())
    with pytest.raises(DuplicateError, match="already exists"):
        store.put_group(_group("2", "операторы тсд"))  # names are unique regardless of case
    store.add_user(User("1", "Иванов", "1"), (_cred(KEY_A),))
    with pytest.raises(DuplicateError, match="already in use"):
        store.add_user(User("2", "Петров", "1"), (_cred(KEY_A, "barcode", "$argon2id$y"),))
    assert store.get_user("2") is None  # the failed add left nothing behind
    assert store.find_user("Петров") is None
    with pytest.raises(DuplicateError, match="named"):
        store.add_user(User("3", "ИВАНОВ", "1"), (_cred(KEY_B),))
    found = store.find_credential(KEY_A)
    assert found == Credential(KEY_A, "password", "$argon2id$x", "1")
    assert store.find_credential(KEY_B) is None  # the refused user's secret was not kept either
    principal = store.principal("1")
    assert principal is not None and principal.group == _group() and principal.user.name == "Иванов"
    with pytest.raises(DuplicateError, match="still has 1 user"):
        store.remove_group("1")


def test_credential_change_bumps_generation_and_ends_sessions(store: Store) -> None:
    store.put_group(_group())
    store.add_user(User("1", "Иванов", "1"), (_cred(KEY_A),))
    store.create_session("t" * 64, SessionRecord("1", 1, 2e9))
    store.set_credential("1", _cred(KEY_B, hash_="$argon2id$y"), "password")
    user = store.get_user("1")
    assert user is not None and user.generation == 2
    assert store.get_session("t" * 64) is None
    assert store.find_credential(KEY_A) is None
    store.remove_user("1")
    assert store.find_credential(KEY_B) is None


def test_groups_replace_rename_and_remove(store: Store) -> None:
    store.put_group(_group())
    with pytest.raises(DuplicateError, match="with id '1' already exists"):
        store.put_group(_group("1", "Другое имя"))
    store.put_group(Group("1", "Кладовщики", "external", ("Расход",)), replace=True)
    store.put_group(_group("2", "Операторы ТСД"))  # the old name is free again
    assert store.find_group("операторы тсд") == _group("2")
    renamed = store.get_group("1")
    assert renamed == Group("1", "Кладовщики", "external", ("Расход",))
    store.put_group(_group("10", "2"))
    found = store.find_group("2")
    assert found is not None and found.id == "2"  # an exact id wins over a name
    assert [g.name for g in store.list_groups()] == ["2", "Кладовщики", "Операторы ТСД"]
    assert store.next_id("groups") == "11"
    store.remove_group("2")
    assert store.get_group("2") is None and store.find_group("Операторы ТСД") is None
    with pytest.raises(NotFoundError, match="no group with id '2'"):
        store.remove_group("2")


def test_user_profile_changes_keep_credentials(store: Store) -> None:
    store.put_group(_group())
    store.put_group(_group("2", "Учёт", "external"))
    with pytest.raises(NotFoundError, match="no group with id '9'"):
        store.add_user(User("1", "Иванов", "9"), ())
    store.add_user(User("1", "Иванов", "1", "склад", ("W1",), generation=5),
                   (_cred(KEY_A), _cred(KEY_B, "barcode", "$argon2id$b")))
    user = store.get_user("1")
    assert user == User("1", "Иванов", "1", "склад", ("W1",), generation=5, has_barcode=True)
    assert [c.kind for c in store.credentials_of("1")] == ["password", "barcode"]

    store.put_user(User("1", "Иванов-Петров", "2", "офис", ("W2", "W3")))
    moved = store.find_user("иванов-петров")
    assert moved == User("1", "Иванов-Петров", "2", "офис", ("W2", "W3"), generation=6, has_barcode=True)
    assert store.find_user("Иванов") is None  # the old name is free
    assert len(store.credentials_of("1")) == 2
    store.remove_group("1")  # the user left it
    with pytest.raises(DuplicateError, match="still has 1 user"):
        store.remove_group("2")

    store.put_user(User("7", "Новый", "2", generation=9))  # an import of a new user starts at 1
    added = store.get_user("7")
    assert added is not None and added.generation == 1 and not added.has_barcode
    with pytest.raises(DuplicateError, match="named 'новый'"):
        store.put_user(User("8", "новый", "2"))
    with pytest.raises(DuplicateError, match="with id '7' already exists"):
        store.add_user(User("7", "Другой", "2"), ())
    assert [u.name for u in store.list_users()] == ["Иванов-Петров", "Новый"]
    assert store.next_id("users") == "8"
    store.put_user(User("7", "7-й", "2"))
    assert store.find_user("7") == store.get_user("7")  # an id wins
    store.remove_user("1")
    with pytest.raises(NotFoundError, match="no user with id '1'"):
        store.remove_user("1")
    assert store.get_user("1") is None and store.credentials_of("1") == ()


def test_set_credential_rules(store: Store) -> None:
    store.put_group(_group())
    store.add_user(User("1", "Иванов", "1"), (_cred(KEY_A), _cred(KEY_B, "barcode")))
    store.add_user(User("2", "Петров", "1"), (_cred(KEY_C),))
    with pytest.raises(DuplicateError, match="this password is already in use"):
        store.set_credential("2", _cred(KEY_A), "password")
    with pytest.raises(DuplicateError, match="already in use"):  # a barcode may not equal own password
        store.set_credential("1", _cred(KEY_A, "barcode"), "barcode")
    unchanged = store.get_user("2")
    assert unchanged is not None and unchanged.generation == 1  # a refused change changes nothing
    assert store.find_credential(KEY_C) == Credential(KEY_C, "password", "$argon2id$x", "2")

    store.set_credential("1", _cred(KEY_A, hash_="$argon2id$new"), "password")  # the same secret again
    assert store.find_credential(KEY_A) == Credential(KEY_A, "password", "$argon2id$new", "1")
    store.set_credential("1", None, "barcode")
    user = store.get_user("1")
    assert user is not None and user.generation == 3 and not user.has_barcode
    assert store.find_credential(KEY_B) is None
    store.set_credential("2", _cred(KEY_B, "barcode"), "barcode")  # a freed secret can be reused
    assert [c.key for c in store.credentials_of("2")] == [KEY_C, KEY_B]
    with pytest.raises(NotFoundError, match="no user with id '9'"):
        store.set_credential("9", _cred("d" * 64), "password")
    with pytest.raises(DuplicateError, match="already in use"):
        store.add_user(User("3", "Сидоров", "1"), (_cred("e" * 64), _cred("e" * 64, "barcode")))
    assert store.get_user("3") is None


def test_failures_window_prune_and_clear(store: Store) -> None:
    for at in (100.0, 150.5, 200.25):
        store.add_failure("ip:127.0.0.2", at, 0.0)
    store.add_failure("user:иванов", 160.0, 0.0)
    assert store.failure_times("ip:127.0.0.2", 150.5) == [150.5, 200.25]
    assert store.failure_keys(150.0) == {"ip:127.0.0.2": [150.5, 200.25], "user:иванов": [160.0]}
    assert store.failure_keys(300.0) == {}
    # A failure of another key forgets everything older than forget_before, for every key.
    store.add_failure("ip:127.0.0.3", 260.0, 155.0)
    assert store.failure_times("ip:127.0.0.2", 0.0) == [200.25]
    assert store.failure_times("user:иванов", 0.0) == [160.0]
    store.add_failure("ip:127.0.0.3", 261.0, 200.0)
    assert store.failure_keys(0.0) == {"ip:127.0.0.2": [200.25], "ip:127.0.0.3": [260.0, 261.0]}
    assert store.clear_failures("ip:127.0.0.2") == 1
    assert store.clear_failures("ip:127.0.0.2") == 0
    store.add_failure("ip:127.0.0.3", 262.0, 262.0)  # at == forget_before is kept
    assert store.failure_keys(0.0) == {"ip:127.0.0.3": [262.0]}
    store.add_failure("ip:127.0.0.4", 300.0, 0.0)
    store.add_failure("ip:127.0.0.4", 300.0, 0.0)  # two failures in the same instant both count
    assert store.failure_times("ip:127.0.0.4", 300.0) == [300.0, 300.0]


def test_strikes_past_the_limit_make_a_short_ban_every_caller_sees(store: Store) -> None:
    now = 1_000_000.0
    version = store.version()
    assert store.add_strikes([("reset:10.0.0.1", 300), ("reset:10.0.0.2", 10)], now, 10.0, 500, 60.0) == ([], {})
    # Another worker's flush a few seconds later: together past the limit, in the one step.
    banned, bans = store.add_strikes([("reset:10.0.0.1", 201)], now + 5.5, 10.0, 500, 60.0)
    assert banned == ["reset:10.0.0.1"] and bans == {"reset:10.0.0.1": now + 65.5}
    assert store.short_bans(now + 6) == bans and store.add_strikes([], now + 6, 10.0, 500, 60.0) == ([], bans)
    # Strikes older than the window no longer count; a banned key is not counted again.
    assert store.add_strikes([("reset:10.0.0.2", 495), ("reset:10.0.0.1", 999)], now + 12, 10.0, 500, 60.0)[0] == []
    assert store.short_bans(now + 65.5) == {}  # over
    assert store.version() == version  # counting never empties the caches that watch the marker
    store.add_strikes([("reset:10.0.0.3", 501)], now, 10.0, 500, 60.0)
    assert store.lift_short_ban("reset:10.0.0.3") == 0  # (its ban, by the test's clock, is long over)
    store.add_strikes([("reset:10.0.0.4", 501)], time.time(), 10.0, 500, 60.0)
    assert store.lift_short_ban("reset:10.0.0.4") == 1 and store.short_bans(time.time()) == {}


def test_sessions(store: Store) -> None:
    store.put_group(_group())
    store.add_user(User("1", "Иванов", "1"), (_cred(KEY_A),))
    store.create_session("s1", SessionRecord("1", 1, 1000.0))
    store.create_session("s2", SessionRecord("1", 1, 2000.5))
    assert store.get_session("s1") == SessionRecord("1", 1, 1000.0)  # expiry is the reader's call
    with pytest.raises(StoreError):
        store.create_session("s1", SessionRecord("1", 1, 3000.0))
    with pytest.raises(StoreError):
        store.create_session("s3", SessionRecord("9", 1, 3000.0))  # no such user
    assert store.purge_sessions(1500.0) == 1
    assert store.get_session("s1") is None and store.get_session("s2") == SessionRecord("1", 1, 2000.5)
    store.delete_session("s2")
    store.delete_session("s2")
    assert store.get_session("s2") is None
    store.create_session("s4", SessionRecord("1", 1, 4000.0))
    store.remove_user("1")
    assert store.get_session("s4") is None and store.purge_sessions(1e10) == 0


def test_one_credential_wins_a_race(store: Store) -> None:
    store.put_group(_group())
    outcomes: list[str] = []

    def add(i: int) -> None:
        try:
            store.add_user(User(str(i), f"user{i}", "1"), (_cred(KEY_A),))
            outcomes.append("added")
        except DuplicateError:
            outcomes.append("refused")

    threads = [threading.Thread(target=add, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == ["added"] + ["refused"] * 7
    assert len(store.list_users()) == 1


def _another_handle(store: Store, request: pytest.FixtureRequest) -> Store:
    """A second store object on the same data: another process, or another machine."""
    if isinstance(store, SqliteStore):
        return SqliteStore(store.path)
    return RedisStore(request.getfixturevalue("clean_redis").url)  # the instance the store fixture used


def test_version_moves_with_every_write_and_only_then(store: Store, request: pytest.FixtureRequest) -> None:
    other = _another_handle(store, request)
    writes = [
        lambda s: s.put_group(_group()),
        lambda s: s.put_group(_group(name="Переименована"), replace=True),
        lambda s: s.add_user(User("1", "Иванов", "1"), (_cred(KEY_A),)),
        lambda s: s.put_user(User("1", "Иванов", "1", description="кладовщик")),
        lambda s: s.set_credential("1", _cred(KEY_B), "password"),
        lambda s: s.add_failure("ip:127.0.0.2", 1000.0, 900.0),
        lambda s: s.clear_failures("ip:127.0.0.2"),
        lambda s: s.create_session("s1", SessionRecord("1", 2, 2000.0)),
        lambda s: s.delete_session("s1"),
        lambda s: s.create_session("s2", SessionRecord("1", 2, 1000.0)),
        lambda s: s.purge_sessions(1500.0),
        lambda s: s.remove_user("1"),
        lambda s: s.remove_group("1"),
    ]
    reads = [
        lambda s: s.get_group("1"), lambda s: s.find_group("1"), lambda s: s.list_groups(),
        lambda s: s.get_user("1"), lambda s: s.find_user("Иванов"), lambda s: s.list_users(),
        lambda s: s.credentials_of("1"), lambda s: s.find_credential(KEY_B), lambda s: s.principal("1"),
        lambda s: s.next_id("users"), lambda s: s.failure_times("ip:127.0.0.2", 0.0),
        lambda s: s.failure_keys(0.0), lambda s: s.get_session("s1"),
    ]
    for i, write in enumerate(writes):
        writer = store if i % 2 == 0 else other  # a change by this handle and by another one
        seen_here, seen_there = store.version(), other.version()
        write(writer)
        assert store.version() != seen_here, f"write {i} did not move version() of the writing side"
        assert other.version() != seen_there, f"write {i} did not move version() of the other side"
        steady_here, steady_there = store.version(), other.version()
        for read in reads:
            read(store)
            read(other)
        assert (store.version(), other.version()) == (steady_here, steady_there), "a read moved version()"
    other.close()


# --- Redis only ---

def _hammer(url: str, key: str, count: int) -> None:
    store = RedisStore(url)
    for i in range(count):
        store.add_failure(key, 1000.0 + i, 0.0)
    store.close()


def test_two_processes_share_one_count(clean_redis: RedisServer) -> None:
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_hammer, args=(clean_redis.url, "ip:127.0.0.2", 150)) for _ in range(3)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    assert len(RedisStore(clean_redis.url).failure_times("ip:127.0.0.2", 0.0)) == 450


def test_keys_are_prefixed_and_expire(clean_redis: RedisServer) -> None:
    store = RedisStore(clean_redis.url)
    other = RedisStore(clean_redis.url, prefix="other:")
    store.put_group(_group())
    store.add_user(User("1", "Иванов", "1"), (_cred(KEY_A),))
    store.add_failure("ip:127.0.0.2", 1000.0, 940.0)
    store.create_session("s1", SessionRecord("1", 1, 2e9))
    with clean_redis.client() as client:
        names = set(client.scan_iter("*"))
        # the other tenant holds only its schema mark and its change marker
        assert {name for name in names if not name.startswith("gw:")} == {"other:schema", "other:version"}
        assert "gw:users" in names
        assert 0 < client.ttl("gw:fail:ip:127.0.0.2") <= 61
        assert 0 < client.ttl("gw:fail-keys") <= 61
        assert client.ttl("gw:session:s1") > 0
        assert client.ttl("gw:user-sessions:1") > 0
    assert other.get_user("1") is None and other.failure_keys(0.0) == {}  # one Redis, two tenants


def test_a_redis_that_is_down_raises_store_error(tmp_path: Path) -> None:
    server = start_redis(tmp_path / "redis")
    url = f"redis://:s3cret-pw@127.0.0.1:{server.port}/0"
    with server.client() as client:
        client.config_set("requirepass", "s3cret-pw")
    store = RedisStore(url)
    store.add_failure("ip:127.0.0.2", 1000.0, 0.0)
    server.stop()
    for call in (lambda: store.failure_times("ip:127.0.0.2", 0.0), lambda: store.find_credential(KEY_A),
                 lambda: store.add_failure("ip:127.0.0.2", 1001.0, 0.0)):
        with pytest.raises(StoreError) as refused:
            call()
        assert "s3cret-pw" not in str(refused.value)
    with pytest.raises(StoreError, match=f"127.0.0.1:{server.port}") as unreachable:
        open_store(tmp_path / "state", "redis", url)
    assert "s3cret-pw" not in str(unreachable.value)
    with pytest.raises(StoreError, match="not a Redis URL"):
        RedisStore("http://127.0.0.1:1/0")


def test_a_damaged_record_or_foreign_schema_fails_closed(clean_redis: RedisServer) -> None:
    store = RedisStore(clean_redis.url)
    store.put_group(_group())
    with clean_redis.client() as client:
        client.hdel("gw:group:1", "role")
        client.set("foreign:schema", "7")
    with pytest.raises(StoreError, match="damaged group"):
        store.get_group("1")
    with pytest.raises(StoreError, match="schema '7'"):
        RedisStore(clean_redis.url, prefix="foreign:")


def test_machines_must_hold_the_same_hmac_key_and_redis_holds_only_its_fingerprint(
        clean_redis: RedisServer, tmp_path: Path) -> None:
    machine_a, machine_b, machine_c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    existing = keys.load_or_create_secret(machine_a)  # A ran on SQLite before: its users keep working
    other = keys.load_or_create_secret(machine_b)
    open_store(machine_a, "redis", clean_redis.url).close()
    with clean_redis.client() as client:
        assert client.get("gw:auth-hmac-fingerprint") == keys.secret_fingerprint(existing)

    # C is set up as documented: A's key file copied into its state folder.
    machine_c.mkdir()
    shutil.copyfile(machine_a / keys.SECRET_FILE, machine_c / keys.SECRET_FILE)
    open_store(machine_c, "redis", clean_redis.url).close()
    assert keys.load_or_create_secret(machine_c) == existing

    # B holds another key: refused, its file and Redis untouched.
    with clean_redis.client() as client:
        before = client.info("persistence")["rdb_changes_since_last_save"]
    with pytest.raises(StoreError) as refused:
        open_store(machine_b, "redis", clean_redis.url)
    message = str(refused.value)
    assert f"{machine_b / keys.SECRET_FILE} differs from the key" in message
    assert f"copy {keys.SECRET_FILE} from a machine already using this Redis into {machine_b}" in message
    assert "\n" not in message
    for secret in (existing, other):
        assert secret.hex() not in message
    assert keys.load_or_create_secret(machine_b) == other
    assert sorted(p.name for p in machine_b.iterdir()) == [keys.SECRET_FILE]  # nothing kept or replaced
    with clean_redis.client() as client:
        assert client.info("persistence")["rdb_changes_since_last_save"] == before
        assert client.get("gw:auth-hmac-fingerprint") == keys.secret_fingerprint(existing)

    # A fresh machine gets a key of its own, which is refused too, until the operator copies A's.
    machine_d = tmp_path / "d"
    with pytest.raises(StoreError, match="differs from the key"):
        open_store(machine_d, "redis", clean_redis.url)
    shutil.copyfile(machine_a / keys.SECRET_FILE, machine_d / keys.SECRET_FILE)
    open_store(machine_d, "redis", clean_redis.url).close()

    # Redis never holds the key, in hex or raw, not even once users and their hashes are there.
    store = open_store(machine_a, "redis", clean_redis.url)
    store.put_group(_group())
    store.add_user(User("1", "Иванов", "1"), (_cred(keys.credential_key(existing, "Sklad2024x")),))
    store.close()
    for secret in (existing, other):
        assert_key_not_in_redis(clean_redis, secret)

    with clean_redis.client() as client:
        client.set("gw:auth-hmac-fingerprint", "zz")
    with pytest.raises(StoreError, match="auth-hmac-fingerprint in redis://.* is damaged") as damaged:
        open_store(machine_c, "redis", clean_redis.url)
    assert "redis-cli DEL gw:auth-hmac-fingerprint, then start the first machine again" in str(damaged.value)


def test_the_key_mismatch_message_hides_the_redis_password(clean_redis: RedisServer, tmp_path: Path) -> None:
    with clean_redis.client() as client:
        client.acl_setuser("gw-test", enabled=True, passwords=["+s3cret-pw"], keys=["*"], commands=["+@all"])
    try:
        url = f"redis://gw-test:s3cret-pw@127.0.0.1:{clean_redis.port}/0"
        open_store(tmp_path / "a", "redis", url).close()
        with pytest.raises(StoreError, match=f"sharing redis://127.0.0.1:{clean_redis.port}/0 use") as refused:
            open_store(tmp_path / "b", "redis", url)
        assert "s3cret-pw" not in str(refused.value) and "gw-test" not in str(refused.value)
    finally:
        with clean_redis.client() as client:
            client.acl_deluser("gw-test")


def test_moving_users_from_sqlite_to_redis_keeps_their_passwords(clean_redis: RedisServer, tmp_path: Path) -> None:
    from gateway.accounts import Accounts
    from gateway.auth.authenticate import Authenticator
    from gateway.accounts.transfer import export_accounts, import_accounts

    secret = keys.load_or_create_secret(tmp_path)
    sqlite = SqliteStore(tmp_path / "gateway.db")
    accounts = Accounts(sqlite, secret)
    accounts.add_group("Операторы ТСД", "mobile", ("Приход",))
    accounts.add_user("Иванов", "Операторы ТСД", "Sklad2024x")
    exported = export_accounts(sqlite, secret)
    sqlite.close()

    # The documented move: the first machine on an empty Redis publishes its own key, then imports.
    redis_store = open_store(tmp_path, "redis", clean_redis.url)
    assert keys.load_or_create_secret(tmp_path) == secret
    assert import_accounts(redis_store, secret, exported, tmp_path / "users.yaml") == (1, 1)
    outcome = Authenticator(redis_store, secret, 0).verify("", "Sklad2024x", allow_barcode=False)
    assert outcome.principal is not None and outcome.principal.user.name == "Иванов"


def test_version_survives_a_flush_as_a_change(clean_redis: RedisServer) -> None:
    store = RedisStore(clean_redis.url)
    before = store.version()
    with clean_redis.client() as client:
        client.flushdb()  # everything gone, the counter too: a cache must not take it for "unchanged"
    after = store.version()
    assert after != before
    store.add_failure("ip:127.0.0.2", 1000.0, 900.0)
    assert store.version() != after
    with clean_redis.client() as client:
        client.set("gw:version", "not a number")
    with pytest.raises(StoreError, match="gw:version"):
        store.version()
