"""gateway/config/store.py: [store], the memory store or Redis by URL or Sentinel; secrets only from the environment."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import ConfigError, parse
from gateway.settings import RedisSettings, StoreSettings

ROUTE = {"name": "app", "host": "*", "path": "/", "upstream": "http://127.0.0.1:9"}


def store(**table: Any) -> StoreSettings:
    return parse({"store": table, "route": [ROUTE]}, "gw.toml").store


def error(**table: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        store(**table)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("gw.toml: ")
    return message


def test_the_default_is_the_memory_store_of_this_process():
    assert parse({"route": [ROUTE]}, "gw.toml").store == StoreSettings("memory", "session-gateway", 86_400.0, None)


def test_redis_by_url_with_its_defaults():
    found = store(backend="redis", url="redis://127.0.0.1:6379/0", key_prefix="hr-app", retention=7200)
    assert (found.backend, found.key_prefix, found.retention) == ("redis", "hr-app", 7200.0)
    assert found.redis == RedisSettings(url="redis://127.0.0.1:6379/0")
    assert (found.redis.timeout, found.redis.connect_timeout) == (0.25, 1.0)


def test_redis_away_fails_readiness_only_when_the_operator_says_so():
    assert store(backend="redis", url="redis://127.0.0.1:6379/0").required_for_ready is False
    assert store(backend="redis", url="redis://127.0.0.1:6379/0", required_for_ready=True).required_for_ready is True


def test_redis_through_sentinel():
    found = store(backend="redis", sentinels=["10.0.0.1:26379", "[::1]:26380"], service_name="gateway")
    assert found.redis is not None
    assert found.redis.sentinels == (("10.0.0.1", 26379), ("::1", 26380))
    assert found.redis.service_name == "gateway"


def test_secrets_come_from_the_environment_only(monkeypatch):
    monkeypatch.setenv("REDIS_PASSWORD", "s3cret-pw")
    found = store(backend="redis", url="rediss://redis.internal:6380/0", password="${REDIS_PASSWORD}",
                  tls_ca_file="/etc/ssl/redis-ca.pem")
    assert found.redis is not None and found.redis.password == "s3cret-pw"
    assert "s3cret-pw" not in repr(found)
    message = error(backend="redis", url="redis://127.0.0.1:6379", password="s3cret-pw")
    assert "store.password: expected a reference to the environment" in message and "s3cret-pw" not in message
    message = error(backend="redis", url="redis://:s3cret-pw@127.0.0.1:6379/0")
    assert "store.url: expected a URL without a password" in message and "s3cret-pw" not in message
    monkeypatch.setenv("REDIS_URL", "redis://:s3cret-pw@127.0.0.1:6379/0")
    assert store(backend="redis", url="${REDIS_URL}").redis == RedisSettings(url="redis://:s3cret-pw@127.0.0.1:6379/0")


@pytest.mark.parametrize(("table", "key"), [
    ({"backend": "mysql"}, "store.backend"),
    ({"backend": "memory", "url": "redis://127.0.0.1:6379"}, "store.url"),
    ({"backend": "redis"}, "store.url"),
    ({"backend": "redis", "url": "http://127.0.0.1:6379"}, "store.url"),
    ({"backend": "redis", "url": "redis://127.0.0.1", "sentinels": ["a:1"], "service_name": "x"}, "store.url"),
    ({"backend": "redis", "sentinels": ["a:1"]}, "store.service_name"),
    ({"backend": "redis", "sentinels": ["a"], "service_name": "x"}, "store.sentinels"),
    ({"backend": "redis", "url": "redis://h", "service_name": "x"}, "store.service_name"),
    ({"backend": "redis", "url": "redis://h", "tls_ca_file": "/ca.pem"}, "store.tls_ca_file"),
    ({"backend": "redis", "url": "rediss://h", "tls_cert_file": "/c.pem"}, "store.tls_key_file"),
    ({"backend": "redis", "url": "redis://h", "timeout": 0}, "store.timeout"),
    ({"backend": "redis", "url": "redis://h", "key_prefix": "{x}"}, "store.key_prefix"),
    ({"backend": "redis", "url": "redis://h", "retention": 5}, "store.retention"),
    ({"backend": "redis", "url": "redis://h", "urls": "x"}, "store.urls"),
    ({"backend": "redis", "url": "redis://h", "required_for_ready": "yes"}, "store.required_for_ready"),
    ({"backend": "memory", "required_for_ready": True}, "store.required_for_ready"),
])
def test_a_bad_store_table_is_one_line_naming_the_key(table, key):
    assert f": {key}: expected" in error(**table)


def test_several_workers_need_a_shared_store():
    with pytest.raises(ConfigError) as caught:
        parse({"server": {"workers": 2}, "route": [ROUTE]}, "gw.toml")
    assert str(caught.value).startswith('gw.toml: store.backend: expected "redis" with [server] workers = 2')
    shared = parse({"server": {"workers": 2}, "store": {"backend": "redis", "url": "redis://127.0.0.1:6379"},
                    "route": [ROUTE]}, "gw.toml")
    assert shared.server.workers == 2
