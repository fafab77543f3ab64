"""The TOML reading machinery: a table read key by key, with typed reads, `${NAME}` references to the environment,
a did-you-mean for unknown keys, and the kinds of values the schema is made of (seconds, sizes, networks, URLs).

Every error is one `ConfigError` whose message names the file, the key and what was expected; a value that came
from the environment is never shown, since such values are usually secrets. Nothing here knows a key of the file:
that is the schema's (tables.py, routes.py, sessions.py).
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from yarl import URL

from ..settings import IPNetwork


class ConfigError(Exception):
    """A configuration that cannot be used; the message is meant for the operator as it is."""


T = TypeVar("T")
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SIZE = re.compile(r"^\s*(\d+)\s*(B|KiB|MiB|GiB|KB|MB|GB)?\s*$")
_SIZE_UNITS = {None: 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


class Section:
    """One table of the file, read key by key; whatever is not read is an unknown key."""

    def __init__(self, source: str, path: str, table: Mapping[str, Any]) -> None:
        self.source, self.path, self.table = source, path, table
        self.known: list[str] = []
        self.from_env: set[str] = set()

    def error(self, key: str, expected: str, value: Any = None, show_value: bool = True) -> ConfigError:
        shown = shown_key(key)
        where = f"{self.path}.{shown}" if self.path else shown
        if key in self.from_env:
            got = ", got a value from the environment (not shown)"
        else:
            got = f", got {value!r}" if show_value and value is not None else ""
        return ConfigError(f"{self.source}: {where}: expected {expected}{got}{self._misspelt(key)}")

    def _misspelt(self, key: str) -> str:
        """For a key that is missing: the unknown key of the table that looks like its misspelling, if any."""
        if key in self.table:
            return ""
        unknown = [k for k in self.table if k not in self.known]
        near = difflib.get_close_matches(key, unknown, n=1, cutoff=0.8)
        if not near:
            return ""
        return f"; it is missing, and {shown_key(near[0])} is an unknown key (a misspelling of {shown_key(key)}?)"

    def get(self, key: str, kind: type[T] | tuple[type, ...], expected: str, default: Any = None) -> Any:
        if key not in self.table:
            self.known.append(key)
            return default
        value = self.value(key)
        accepts_bool = kind is bool or (isinstance(kind, tuple) and bool in kind)
        if isinstance(value, bool) and not accepts_bool:  # TOML's true is a Python int too
            raise self.error(key, expected, value)
        if not isinstance(value, kind):
            raise self.error(key, expected, value)
        return value

    def value(self, key: str) -> Any:
        """The key's value as written, of any type, but for `${NAME}` references in a string or a list's strings,
        which are expanded (and the key remembered as from the environment). The key is known from then on."""
        self.known.append(key)
        value = self.table[key]
        if isinstance(value, str) and "${" in value:
            self.from_env.add(key)
            value = self._expand(key, value)
        elif isinstance(value, list) and any(isinstance(v, str) and "${" in v for v in value):
            self.from_env.add(key)
            value = [self._expand(key, v) if isinstance(v, str) else v for v in value]
        return value

    def check(self, key: str, value: T, ok: Callable[[T], bool], expected: str) -> T:
        if not ok(value):
            raise self.error(key, expected, value)
        return value

    def finish(self) -> None:
        for key in self.table:
            if key not in self.known:
                hint = difflib.get_close_matches(key, self.known, n=1)
                mean = f" (did you mean {hint[0]!r}?)" if hint else ""
                raise self.error(key, f"one of {', '.join(self.known)}{mean}; this key is unknown", show_value=False)

    def _expand(self, key: str, value: str) -> str:
        def variable(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in os.environ:
                self.from_env.discard(key)  # no value came: "got a value from the environment" would mislead
                raise self.error(key, f"environment variable {name} to be set", show_value=False)
            return os.environ[name]

        return ENV_REF.sub(variable, value)


def check_environment(data: Mapping[str, Any], source: str) -> None:
    """Every `${NAME}` of the file whose variable is not set, in one error raised before any key is read: an
    operator starting a container from its documented environment learns every variable it lacks at once, not
    one a restart. Keys and variables are named in the order of the file; no value is shown."""
    keys: list[str] = []
    names: list[str] = []
    for where, text in _strings(data, ""):
        unset = [name for name in ENV_REF.findall(text) if name not in os.environ]
        if unset and where not in keys:
            keys.append(where)
        names.extend(name for name in unset if name not in names)
    if not names:
        return
    variables = f"environment variable {names[0]}" if len(names) == 1 else (
        f"environment variables {', '.join(names[:-1])} and {names[-1]}")
    raise ConfigError(f"{source}: {', '.join(keys)}: expected {variables} to be set")


def _strings(value: Any, where: str) -> Iterator[tuple[str, str]]:
    """Every string of a TOML value with the key path a message names it by (a route as `route[0] (app)`), in the
    order of the file. A loop, not recursion: tomllib nests as deep as the interpreter lets it, and one more frame a
    level here would end in a RecursionError traceback instead of the file's own error."""
    pending: list[tuple[Any, str]] = [(value, where)]
    while pending:
        value, where = pending.pop()
        if isinstance(value, str):
            yield where, value
        elif isinstance(value, Mapping):
            pending.extend(reversed([(item, f"{where}.{shown_key(key)}" if where else shown_key(key))
                                     for key, item in value.items()]))
        elif isinstance(value, list):
            pending.extend(reversed([(item, _item_path(where, i, item)) for i, item in enumerate(value)]))


def _item_path(where: str, i: int, item: Any) -> str:
    if not isinstance(item, Mapping):
        return where
    name = item.get("name") if where == "route" else None
    return f"{where}[{i}] ({name})" if isinstance(name, str) else f"{where}[{i}]"


def shown_key(key: str) -> str:
    """A key as a message shows it: bare, or quoted when it is not a bare TOML key ("", "a.b", "x y")."""
    return key if _BARE_KEY.fullmatch(key) else repr(key)


def env_secret(s: Section, key: str, variable: str, why: str, *, min_length: int = 0) -> str:
    """A secret: only ever a reference to the environment, never written into the file, never shown."""
    raw = s.table.get(key)
    if not isinstance(raw, str) or not ENV_REF.fullmatch(raw):
        raise s.error(key, f'a reference to the environment such as "${{{variable}}}" ({why})', show_value=False)
    value = str(s.get(key, str, "an environment reference", ""))
    if not value and not min_length:
        s.from_env.discard(key)
        variable_set = ENV_REF.fullmatch(raw)
        name = variable_set.group(1) if variable_set else variable
        raise s.error(key, f"a value in the environment variable {name} ({why}); it is set but empty",
                      show_value=False)
    if min_length:
        s.check(key, value, lambda v: len(v) >= min_length, f"a value of at least {min_length} characters")
    return value


def subsection(parent: Section, key: str) -> Section:
    value = parent.get(key, dict, f"a table [{key}]", {})
    return Section(parent.source, key, value)


def optional_subsection(s: Section, key: str, read: Callable[[Section], T]) -> T | None:
    if key not in s.table:
        s.known.append(key)
        return None
    return read(subsection(s, key))


def seconds(s: Section, key: str, default: float) -> float:
    value = s.get(key, (int, float), "a number of seconds", default)
    return float(s.check(key, value, lambda v: 0 < v <= 86400, "a number of seconds above 0 and at most 86400"))


def optional_seconds(s: Section, key: str) -> float | None:
    if key not in s.table:
        s.known.append(key)
        return None
    return seconds(s, key, 0.0)


def size(s: Section, key: str, default: int | None) -> int | None:
    """A size in bytes, as a number or a string such as "512MiB"; 0 means no limit (None)."""
    expected = 'a size in bytes: a whole number or a string such as "512MiB" (0 for no limit)'
    value = s.get(key, (int, str), expected, default)
    if value is None:
        return None
    if isinstance(value, str):
        m = _SIZE.match(value)
        if not m:
            raise s.error(key, expected, value)
        value = int(m.group(1)) * _SIZE_UNITS[m.group(2)]
    if value < 0:
        raise s.error(key, expected, value)
    return value or None


def fraction(s: Section, key: str, default: float) -> float:
    value = s.get(key, (int, float), "a fraction from 0 to 1", default)
    return float(s.check(key, value, lambda v: 0 <= v <= 1, "a fraction from 0 to 1"))


def per_second(s: Section, key: str, default: float) -> float:
    expected = "a number per second above 0 and at most 1000"
    return float(s.check(key, s.get(key, (int, float), expected, default), lambda v: 0 < v <= 1000, expected))


def network(s: Section, key: str, value: Any) -> IPNetwork:
    try:
        if not isinstance(value, str):
            raise ValueError
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise s.error(key, 'IP addresses or networks such as "10.0.0.0/8"', value) from None


def origin_url(s: Section, key: str, value: str | None, expected: str) -> URL:
    """An http(s) origin: scheme, host and port, nothing else (no credentials, path, query or fragment)."""
    if value is None:
        raise s.error(key, expected, show_value=False)
    try:
        url = URL(value)
    except (ValueError, TypeError):
        raise s.error(key, expected, value) from None
    if url.user is not None or url.password is not None:
        raise s.error(key, expected + "; credentials in it are refused and not shown", show_value=False)
    if url.scheme not in ("http", "https") or not url.host or url.query_string or url.fragment:
        raise s.error(key, expected, value)
    if url.path not in ("", "/"):
        raise s.error(key, expected, value)
    try:
        port = url.port
    except ValueError:
        port = None
    if port is None or not 1 <= port <= 65535:
        raise s.error(key, expected + " with a port from 1 to 65535", value)
    return url.origin()


def clean_path(path: str) -> bool:
    if not path.startswith("/") or any(c in path for c in "?#\\ \t\r\n"):
        return False
    return not any(seg in (".", "..") for seg in path.split("/"))


def path_or_url(value: str) -> bool:
    if value.startswith("/") and not value.startswith("//"):
        return True
    try:
        url = URL(value)
    except ValueError:
        return False
    return url.scheme in ("http", "https") and bool(url.host)


def url_prefix(value: str) -> bool:
    try:
        url = URL(value)
    except ValueError:
        return False
    return (url.scheme in ("http", "https") and bool(url.host) and value.endswith("/") and url.user is None
            and "?" not in value and "#" not in value and "\\" not in value)
