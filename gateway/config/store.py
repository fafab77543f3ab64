"""The schema of [store]: the memory store (one process), or Redis by URL or through Sentinel."""

from __future__ import annotations

import re

from yarl import URL

from ..settings import RedisSettings, StoreSettings
from .reader import ENV_REF, Section, env_secret, seconds

_BACKENDS = ("memory", "redis")
_SCHEMES = ("redis", "rediss", "unix")
_KEY_PREFIX = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_REDIS_KEYS = ("url", "sentinels", "service_name", "username", "password", "sentinel_password", "tls",
               "tls_ca_file", "tls_cert_file", "tls_key_file", "connect_timeout", "timeout", "required_for_ready")


def read_store(s: Section) -> StoreSettings:
    backend = s.check("backend", s.get("backend", str, '"memory" or "redis"', "memory"), lambda b: b in _BACKENDS,
                      '"memory" (this process only) or "redis" (shared by every worker and replica)')
    prefix = s.check("key_prefix", s.get("key_prefix", str, "a key prefix", "session-gateway"),
                     lambda p: _KEY_PREFIX.fullmatch(p) is not None,
                     "1 to 64 letters, digits and _ . : - (no braces: it becomes the keys' hash tag)")
    retention = s.check("retention", seconds(s, "retention", 86_400.0), lambda v: v >= 60,
                        "at least 60 seconds (as long as the longest cache TTL or idle timeout, at least)")
    if backend == "memory":
        present = [k for k in _REDIS_KEYS if k in s.table]
        if present:
            raise s.error(present[0], 'nothing, unless backend = "redis"', show_value=False)
        s.finish()
        return StoreSettings(backend, prefix, retention)
    redis = _redis(s)
    required = s.get("required_for_ready", bool, "true or false", False)
    s.finish()
    return StoreSettings(backend, prefix, retention, redis, required_for_ready=required)


def _redis(s: Section) -> RedisSettings:
    url = _url(s)
    sentinels = _sentinels(s)
    service = s.get("service_name", str, "the name Sentinel knows the primary by", None)
    if (url is None) == (not sentinels):
        raise s.error("url", 'either url (redis://, rediss:// or unix://) or sentinels with service_name',
                      show_value=False)
    if sentinels and not service:
        raise s.error("service_name", "the name Sentinel knows the primary by (its `sentinel monitor` name)",
                      show_value=False)
    if url is not None and service is not None:
        raise s.error("service_name", "nothing with url (it names the Sentinel service)", show_value=False)
    username = s.get("username", str, "a Redis user name (ACL)", None)
    password = _optional_secret(s, "password", "REDIS_PASSWORD")
    sentinel_password = _optional_secret(s, "sentinel_password", "REDIS_SENTINEL_PASSWORD")
    tls = s.get("tls", bool, "true or false", False)
    if tls and url is not None:
        raise s.error("tls", "nothing with url (rediss:// says TLS)", show_value=False)
    files = {k: s.get(k, str, "a path to a PEM file", None) for k in ("tls_ca_file", "tls_cert_file", "tls_key_file")}
    uses_tls = tls or (url is not None and url.startswith("rediss://"))
    for key, path in files.items():
        if path is not None and not uses_tls:
            raise s.error(key, 'nothing unless the URL is rediss:// (or tls = true with Sentinel)', show_value=False)
    if (files["tls_cert_file"] is None) != (files["tls_key_file"] is None):
        raise s.error("tls_key_file", "tls_cert_file and tls_key_file together", show_value=False)
    connect_timeout = s.check("connect_timeout", seconds(s, "connect_timeout", 1.0), lambda v: 0 < v <= 30,
                              "more than 0 and at most 30 seconds")
    timeout = s.check("timeout", seconds(s, "timeout", 0.25), lambda v: 0 < v <= 10,
                      "more than 0 and at most 10 seconds (each Redis command; a request never waits longer)")
    return RedisSettings(url=url, sentinels=sentinels, service_name=service, username=username, password=password,
                         sentinel_password=sentinel_password, tls_ca_file=files["tls_ca_file"],
                         tls_cert_file=files["tls_cert_file"], tls_key_file=files["tls_key_file"], tls=tls,
                         connect_timeout=connect_timeout, timeout=timeout)


def _url(s: Section) -> str | None:
    raw = s.table.get("url")
    value: str | None = s.get("url", str, "a Redis URL such as \"redis://127.0.0.1:6379/0\"", None)
    if value is None:
        return None
    try:
        url = URL(value)
    except ValueError:
        raise s.error("url", "a Redis URL such as \"redis://127.0.0.1:6379/0\"", show_value=False) from None
    if url.scheme not in _SCHEMES or (url.scheme != "unix" and not url.host) or (url.scheme == "unix" and not url.path):
        raise s.error("url", "a redis://host:port/db, rediss://host:port/db or unix:///path/to/socket URL",
                      show_value=False)
    if url.password and not (isinstance(raw, str) and ENV_REF.fullmatch(raw)):
        raise s.error("url", 'a URL without a password: give it as password = "${REDIS_PASSWORD}", or the whole '
                      'URL as "${REDIS_URL}" (a secret written into the file would travel with it)',
                      show_value=False)
    return value


def _sentinels(s: Section) -> tuple[tuple[str, int], ...]:
    listed = s.get("sentinels", list, 'a list of "host:port" addresses of Sentinels', [])
    found = []
    for item in listed:
        host, _, port = item.rpartition(":") if isinstance(item, str) else ("", "", "")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise s.error("sentinels", 'a list of "host:port" addresses of Sentinels', item)
        found.append((host.strip("[]"), int(port)))
    return tuple(found)


def _optional_secret(s: Section, key: str, variable: str) -> str | None:
    if key not in s.table:
        s.known.append(key)
        return None
    return env_secret(s, key, variable, "a secret written into the file would travel with it")
