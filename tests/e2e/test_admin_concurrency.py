"""Concurrent administration: `gateway user add` and `group remove` run at once as separate
processes, on one SQLite state folder and on one real Redis. Ids are allocated in the insert's own
atomic step, so every add succeeds with its own id, and a group is never removed with a user in it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from gateway.store import open_store
from tests.harness import REPO, Standin, _env, base_entry, gateway_config
from tests.redis_server import RedisServer, start_redis

PASSWORD = "Sklad2024x"


def write_config(directory: Path, standin: Standin, **overrides: object) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    config = gateway_config(directory, standin, bases=[base_entry(standin, "b1", user_auth=True)], **overrides)
    path = directory / "gateway.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    return path


def at_once(config: Path, commands: list[list[str]], inputs: list[str | None]) -> list[subprocess.CompletedProcess[str]]:
    """Start every command before waiting for any of them."""
    processes = [subprocess.Popen([sys.executable, "-m", "gateway", "-c", str(config), *args],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, encoding="utf-8", env=_env(), cwd=REPO)
                 for args in commands]
    done = []
    for process, args, text in zip(processes, commands, inputs):
        out, err = process.communicate(text, timeout=120)
        done.append(subprocess.CompletedProcess(args, process.returncode, out, err))
    return done


def run(config: Path, *args: str, input: str | None = None) -> str:
    done = at_once(config, [list(args)], [input])[0]
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(params=["sqlite", "redis"])
def config(request: pytest.FixtureRequest, tmp_path: Path, standin: Standin) -> Iterator[Path]:
    if request.param == "sqlite":
        yield write_config(tmp_path / "gw", standin)
        return
    server: RedisServer = start_redis(tmp_path / "redis")
    try:
        yield write_config(tmp_path / "gw", standin, store={"backend": "redis", "redis_url": server.url})
    finally:
        server.stop()


def test_20_concurrent_user_adds_all_succeed_with_distinct_ids(config: Path) -> None:
    run(config, "group", "add", "Операторы", "--role", "mobile", "--doc-type", "Поступление")
    done = at_once(config, [["user", "add", f"Оператор{i}", "--group", "Операторы", "--password-stdin"]
                            for i in range(20)], [f"{PASSWORD}{i}\n" for i in range(20)])
    assert [d.returncode for d in done] == [0] * 20, [d.stderr for d in done if d.returncode]
    cfg = yaml.safe_load(config.read_text(encoding="utf-8"))
    store = open_store(config.parent / cfg["state_dir"], cfg.get("store", {}).get("backend", "sqlite"),
                       cfg.get("store", {}).get("redis_url"))
    try:
        users = store.list_users()
    finally:
        store.close()
    assert len(users) == 20 and len({u.id for u in users}) == 20
    assert sorted(int(u.id) for u in users) == list(range(1, 21))


def test_concurrent_group_removal_and_user_adds_never_leave_a_user_in_a_removed_group(
        tmp_path: Path, standin: Standin) -> None:
    # SQLite only: the Redis store makes the same check in the same script as the insert, and the
    # test above already runs twenty processes against it.
    config = write_config(tmp_path / "gw", standin)
    run(config, "group", "add", "Временная", "--role", "mobile", "--doc-type", "Поступление")
    commands = [["user", "add", f"Сезонный{i}", "--group", "Временная", "--password-stdin"] for i in range(9)]
    commands.insert(4, ["group", "remove", "Временная"])
    done = at_once(config, commands, [f"{PASSWORD}{i}\n" for i in range(len(commands))])
    cfg = yaml.safe_load(config.read_text(encoding="utf-8"))
    store = open_store(config.parent / cfg["state_dir"], cfg.get("store", {}).get("backend", "sqlite"),
                       cfg.get("store", {}).get("redis_url"))
    try:
        groups = {g.id for g in store.list_groups()}
        users = store.list_users()
    finally:
        store.close()
    assert all(u.group_id in groups for u in users)  # nobody in a group that is gone
    removed = done[4].returncode == 0
    assert removed == (not groups)
    if removed:
        assert users == []  # a user added first would have kept the group; none came after it
    else:
        assert "still has" in done[4].stderr and users
    adds_ok = sum(d.returncode == 0 for i, d in enumerate(done) if i != 4)
    assert adds_ok == len(users)
