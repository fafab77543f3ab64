"""Reloading the configuration while the gateway serves: what changed, and the one way a new file takes effect.

A reload (SIGHUP, `session-gateway reload`, or a change of the file with `[server] watch_config = true`) loads and
validates the whole file first (gateway.config.load). A bad file changes nothing: its one-line ConfigError is
logged at ERROR and `session_gateway_config_reloads_total{result="failed"}` counts it. A good one is handed to `apply`
(server.py: a new generation of routes, pools and enforcers swapped in at once, and the admin token, hook secret,
cache settings and log level), then one INFO line says what changed, naming no secret.

Some keys take effect only at a restart (`RESTART`): the listening socket, the processes, the prefix of the
gateway's own endpoints, the store, the access log, the Okta client; a reload that changes them applies everything
else and logs a WARNING naming them. A change of `[okta] org_url`, or adding or removing `[okta]`, refuses the
reload whole: the validation cache, the revocation state and the open-socket registry belong to one org, and a route
must never run unenforced, or checked against another org, until a restart.

The pid file (`[server] pid_file`) is how `session-gateway reload` finds the gateway: written when the gateway
listens, removed when it stops, and trusted only when it is a regular file nobody else may write and the process
it names is `session-gateway run` (or `python -m gateway.cli run`) of the same configuration file.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from pathlib import Path

from .config import ConfigError, Settings, load
from .metrics import Metrics

log = logging.getLogger("gateway")

Apply = Callable[[Settings], Awaitable[None]]

# [server] keys read once at start (host and port: `listen`); [okta] keys a reload applies
_SERVER_RESTART = ("host", "port", "workers", "prefix", "access_log", "header_timeout", "shutdown_timeout",
                   "pid_file")
_OKTA_APPLIED = ("cache", "event_hook")  # the hook's presence is compared apart: its secret and header apply
_OKTA_KEYS = {"low_headroom": "rate_limit_low_headroom", "stretch": "rate_limit_stretch"}  # field -> key
_DEBOUNCE_MS, _STEP_MS = 1600, 200  # watchfiles: a burst of writes (an editor's save) ends after 200 ms of quiet


@dataclass(frozen=True, slots=True)
class Changes:
    """What a new configuration changes, as an operator reads it (no secret, only that one changed)."""

    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    other: tuple[str, ...] = ()  # "binding keys rotated", "log level info -> debug", ...
    restart: tuple[str, ...] = ()  # keys that need a restart to take effect
    refused: str | None = None  # why the reload cannot be applied at all

    def summary(self) -> str:
        parts = [f"routes {what}: {', '.join(names)}" for what, names in
                 (("added", self.added), ("removed", self.removed), ("changed", self.changed)) if names]
        parts.extend(self.other)
        return "; ".join(parts) or "nothing changed"


def changes(old: Settings, new: Settings) -> Changes:
    """The difference between the running configuration and a new one."""
    if (old.okta is None) != (new.okta is None):
        what = "added" if new.okta is not None else "removed"
        return Changes(refused=f"[okta] was {what}: a restart is needed to start or stop validating sessions")
    if old.okta is not None and new.okta is not None and old.okta.org_url != new.okta.org_url:
        return Changes(refused="[okta] org_url changed: the validation cache and revocation state belong to one "
                       "org, so a restart is needed")
    before = {r.name: r for r in old.routes.routes}
    after = {r.name: r for r in new.routes.routes}
    other: list[str] = []
    if old.binding_keys != new.binding_keys:
        kept = len(set(old.binding_keys) & set(new.binding_keys))
        first = "a new first key" if new.binding_keys[:1] != old.binding_keys[:1] else "the same first key"
        other.append(f"binding keys rotated ({len(new.binding_keys)} keys, {first}, {kept} kept)")
    if old.server.log_level != new.server.log_level:
        other.append(f"log level {old.server.log_level} -> {new.server.log_level}")
    if old.log != new.log:
        other.append(f"log format {old.log.format} -> {new.log.format}")
    if old.admin_token is not None and new.admin_token is not None and old.admin_token != new.admin_token:
        other.append("admin token changed")
    hooks = (old.okta.event_hook, new.okta.event_hook) if old.okta and new.okta else (None, None)
    if hooks[0] is not None and hooks[1] is not None and hooks[0] != hooks[1]:
        other.append("event hook secret or header changed")
    if old.okta and new.okta and old.okta.cache != new.okta.cache:
        other.append("validation cache settings changed (for entries made from now on)")
    for key, label in (("trusted_proxies", "trusted proxies"), ("body_timeout", "body_timeout"),
                       ("body_min_rate", "body_min_rate"), ("stop_delay", "stop_delay"),
                       ("watch_config", "watch_config")):
        if getattr(old.server, key) != getattr(new.server, key):
            other.append(f"{label} changed")
    if old.proxy != new.proxy:
        other.append("[proxy] changed (new upstream pools)")
    return Changes(
        added=tuple(n for n in after if n not in before), removed=tuple(n for n in before if n not in after),
        changed=tuple(n for n in after if n in before and before[n] != after[n]), other=tuple(other),
        restart=needs_restart(old, new))


def needs_restart(old: Settings, new: Settings) -> tuple[str, ...]:
    """The keys whose change takes effect only at a restart."""
    keys = [f"server.{'listen' if k in ('host', 'port') else k}" for k in _SERVER_RESTART
            if getattr(old.server, k) != getattr(new.server, k)]
    if old.store != new.store:
        keys.append("store")
    if (old.admin_token is None) != (new.admin_token is None):
        keys.append("admin (the table added or removed)")
    if old.okta is not None and new.okta is not None:
        keys.extend(f"okta.{_OKTA_KEYS.get(f.name, f.name)}" for f in fields(old.okta)
                    if f.name not in _OKTA_APPLIED and getattr(old.okta, f.name) != getattr(new.okta, f.name))
        if (old.okta.event_hook is None) != (new.okta.event_hook is None):
            keys.append("okta.event_hook (the table added or removed)")
    if getattr(old, "metrics", None) != getattr(new, "metrics", None):  # its own listener, opened at start
        keys.append("metrics")
    return tuple(dict.fromkeys(keys))  # host and port are both "server.listen"


class Reloader:
    """Reloads one configuration file into a running gateway: one reload at a time, a request made meanwhile
    runs once more after it (so that the last version of the file is the one that stays)."""

    def __init__(self, settings: Settings, apply: Apply, metrics: Metrics) -> None:
        self.settings = settings
        self._apply, self._metrics = apply, metrics
        self._running: asyncio.Task[None] | None = None
        self._again = False
        self._watching: asyncio.Task[None] | None = None

    @property
    def path(self) -> str:
        return self.settings.source

    def request(self, why: str = "SIGHUP") -> None:
        """Reload soon (from a signal handler or the file watcher): never two at once."""
        if self._running is not None and not self._running.done():
            self._again = True
            return
        self._running = asyncio.get_running_loop().create_task(self._run(why))

    async def _run(self, why: str) -> None:
        await self.reload(why)
        while self._again:
            self._again = False
            await self.reload(why)

    async def reload(self, why: str = "SIGHUP") -> bool:
        """Load, validate and apply the file; whether it took effect."""
        try:
            new = await asyncio.to_thread(load, self.path)
        except ConfigError as exc:
            return self._failed(f"configuration reload ({why}) failed, nothing changed: {exc}")
        found = changes(self.settings, new)
        if found.refused is not None:
            return self._failed(f"configuration reload ({why}) refused, nothing changed: {new.source}: "
                                f"{found.refused}")
        try:
            await self._apply(new)
        except Exception as exc:  # building the new generation failed: the old one still serves
            log.error("configuration reload (%s) failed, nothing changed: %s: %s", why, new.source,
                      f"{type(exc).__name__}: {exc}"[:300])
            self._metrics.config_reloads.labels("failed").inc()
            return False
        self.settings = new
        self._metrics.config_reloads.labels("ok").inc()
        log.info("configuration reloaded (%s) from %s: %s", why, new.source, found.summary())
        if found.restart:
            log.warning("configuration reload: %s changed but needs a restart to take effect; everything else "
                        "took effect", ", ".join(found.restart))
        self.watch(new.server.watch_config)
        return True

    def _failed(self, line: str) -> bool:
        log.error("%s", line)
        self._metrics.config_reloads.labels("failed").inc()
        return False

    # --- watch_config --------------------------------------------------------------------------------------

    def watch(self, on: bool) -> None:
        """Start or stop watching the file for changes (a `[binding] keys_file` is read again by any reload, but
        its change alone is none)."""
        if on and (self._watching is None or self._watching.done()):
            self._watching = asyncio.get_running_loop().create_task(self._watch(Path(self.path).absolute()))
        elif not on and self._watching is not None:
            self._watching.cancel()
            self._watching = None

    async def _watch(self, config: Path) -> None:
        from watchfiles import awatch

        # the directories, not the file: an editor that saves by renaming a new file over the old one replaces
        # the inode a watch on the file would follow. Both the one the path names and the one its symlinks lead
        # to: a Kubernetes ConfigMap is gateway.toml -> ..data/gateway.toml, ..data -> ..<timestamp>/, and an
        # update swaps ..data to a new directory and removes the old one, so the watch starts again on the new one
        while True:
            target = _real(config)
            folders = {f for f in (config.parent, target.parent) if f.is_dir()}
            names = {config, target}
            watching = awatch(*folders, debounce=_DEBOUNCE_MS, step=_STEP_MS, recursive=False, watch_filter=None)
            async with contextlib.aclosing(watching):  # a watch left for the collector keeps its thread
                async for found in watching:
                    moved = _real(config) != target
                    if moved or any(Path(path) in names for _, path in found):
                        self.request("file changed")
                    if moved:
                        break

    async def close(self) -> None:
        self.watch(False)
        for task in (self._running,):
            if task is not None and not task.done():
                await asyncio.gather(task, return_exceptions=True)


def _real(path: Path) -> Path:
    """Where the path's symlinks lead now (a few stat calls: no thread needed)."""
    return Path(os.path.realpath(path))


# --- the pid file ---------------------------------------------------------------------------------------------


def write_pid_file(path: str) -> None:
    """This process's id, written whole (a temporary file renamed over it), readable by all, writable by us."""
    target = Path(path)
    try:
        # a name no one can plant a symlink at beforehand (mkstemp opens with O_EXCL), in a directory others may
        # write
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        try:
            os.fchmod(fd, 0o644)
            os.write(fd, f"{os.getpid()}\n".encode())
        finally:
            os.close(fd)
        try:
            os.replace(temporary, target)
        except OSError:
            os.unlink(temporary)
            raise
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write the pid file {path}: {exc.strerror}") from None


def remove_pid_file(path: str) -> None:
    """Remove the pid file if it still names this process."""
    try:
        if Path(path).read_text().strip() == str(os.getpid()):
            Path(path).unlink()
    except OSError:
        pass


class NoGateway(Exception):
    """The pid file names no session-gateway serving this configuration."""


def gateway_pid(pid_file: str, config: str) -> int:
    """The pid of the `session-gateway run` serving `config`, as its pid file says, once checked: the file is a
    regular file of ours (or root's) that no one else may write, and the process it names runs `run` of the same
    configuration file."""
    try:
        info = os.lstat(pid_file)
    except OSError as exc:
        raise NoGateway(f"cannot read the pid file {pid_file}: {exc.strerror} (is the gateway running?)") from None
    if not stat.S_ISREG(info.st_mode) or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) or \
            info.st_uid not in (os.getuid(), 0):
        raise NoGateway(f"the pid file {pid_file} is not a regular file of this user's that only its owner may "
                        "write: not trusted")
    text = Path(pid_file).read_text(errors="replace").strip()
    if not text.isascii() or not text.isdigit() or not 1 < int(text) < 2**22:
        raise NoGateway(f"the pid file {pid_file} holds no process id")
    pid = int(text)
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        raise NoGateway(f"process {pid} (from {pid_file}) is not running, or not ours") from None
    if not _runs(argv, cwd, config):
        raise NoGateway(f"process {pid} (from {pid_file}) is not session-gateway run --config {config}")
    return pid


def _runs(argv: list[bytes], cwd: str, config: str) -> bool:
    """Whether a command line is the gateway's `run` of this configuration file."""
    words = [a.decode(errors="replace") for a in argv if a]
    is_gateway = any(w.endswith("session-gateway") for w in words) or "gateway.cli" in words
    spelled = [w.removeprefix("--config=") for w in words if w.startswith("--config=")]  # argparse takes both
    if not is_gateway or "run" not in words or ("--config" not in words and not spelled):
        return False
    i = words.index("--config") if "--config" in words else -1
    given = spelled[0] if i < 0 else words[i + 1] if i + 1 < len(words) else ""
    return os.path.realpath(os.path.join(cwd, given)) == os.path.realpath(config)
