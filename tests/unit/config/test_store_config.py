"""The ``store`` section's Sentinel keys: read, and refused with the key and the fix when wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config
from tests.unit.config.test_config import GOOD, write


def test_sentinel_keys_are_read(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD + """\
store:
  backend: redis
  sentinels: ["10.0.0.1:26379", "10.0.0.2:26379", "[fd00::3]:26379"]
  sentinel_master: gateway
  password: s3cret-redis
  sentinel_password: s3cret-sentinel
  db: 2
"""))
    store = cfg.store
    assert store.sentinels == ("10.0.0.1:26379", "10.0.0.2:26379", "[fd00::3]:26379")
    assert (store.sentinel_master, store.password, store.sentinel_password, store.db) == (
        "gateway", "s3cret-redis", "s3cret-sentinel", 2)
    assert "s3cret" not in repr(store)  # never in a log line that prints the settings


@pytest.mark.parametrize(("section", "key", "words"), [
    ("{backend: redis, sentinels: ['10.0.0.1:26379']}", "store.sentinel_master", "is required"),
    ("{backend: redis, sentinel_master: gateway}", "store.sentinels", "is required"),
    ("{backend: redis, sentinels: ['10.0.0.1'], sentinel_master: gateway}", "store.sentinels[0]", "host:port"),
    ("{backend: redis, sentinels: ['h:1'], sentinel_master: g, redis_url: 'redis://h'}", "store.redis_url",
     "exclude each other"),
    ("{backend: redis}", "store.redis_url", "sentinels"),
])
def test_wrong_sentinel_settings_name_the_key(tmp_path: Path, section: str, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, GOOD + f"store: {section}\n"))
    assert key in str(info.value) and words in str(info.value)
