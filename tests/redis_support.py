"""Real redis-server and redis-sentinel processes for the tests: each on a free loopback port, persistence off, in
a directory of its own; a test may kill one, hang it (SIGSTOP), let it go on (SIGCONT) or restart it empty.

Debian's redis-server and redis-sentinel are what `make test` installs; without them a test that needs Redis
skips, except in CI (GATEWAY_TESTS_STRICT=1), where it fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from gateway.sandbox.stack import free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_SENTINEL = shutil.which("redis-sentinel") or "/usr/bin/redis-sentinel"


def need(binary: str) -> None:
    if not os.access(binary, os.X_OK):
        message = f"{binary} is missing (make test installs Debian's redis-server and redis-sentinel)"
        if os.environ.get("GATEWAY_TESTS_STRICT") == "1":
            pytest.fail(message)
        pytest.skip(message)


class RedisProcess:
    """One redis-server (or, with `sentinel_of`, one redis-sentinel watching it) on 127.0.0.1."""

    def __init__(self, workdir: Path, *, port: int | None = None, replica_of: RedisProcess | None = None,
                 sentinel_of: RedisProcess | None = None, service: str = "gateway") -> None:
        self.port = port or free_port()
        self.dir = workdir / f"redis-{self.port}"
        self.replica_of, self.sentinel_of, self.service = replica_of, sentinel_of, service
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        """Start (or start again, empty: nothing is persisted)."""
        need(REDIS_SENTINEL if self.sentinel_of else REDIS_SERVER)
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)
        if self.sentinel_of is not None:
            conf = self.dir / "sentinel.conf"
            conf.write_text(f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\n"
                            f"sentinel monitor {self.service} 127.0.0.1 {self.sentinel_of.port} 1\n"
                            f"sentinel down-after-milliseconds {self.service} 500\n"
                            f"sentinel failover-timeout {self.service} 2000\n")
            command = [REDIS_SENTINEL, str(conf)]
        else:
            command = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                       "--appendonly", "no", "--dir", str(self.dir), "--protected-mode", "no"]
            if self.replica_of is not None:
                command += ["--replicaof", "127.0.0.1", str(self.replica_of.port)]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_listening()
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def hang(self) -> None:
        """SIGSTOP: the port still accepts connections, nothing answers."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def restart_empty(self) -> None:
        self.kill()
        self.start()

    def command(self, *args: str) -> str:
        """One command through redis-cli-free plain RESP (so the tests need no client of their own)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as conn:
            conn.sendall(_resp(args))
            return _read_reply(conn.makefile("rb"))

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"redis on port {self.port} exited with {self.process.returncode}")
            try:
                if self.command("PING") == "PONG":
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"redis on port {self.port} did not start")


def _resp(args: tuple[str, ...]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode()
        out.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(out)


def _read_reply(stream: object) -> str:
    line = stream.readline()  # type: ignore[attr-defined]
    kind, rest = line[:1], line[1:-2].decode()
    if kind in (b"+", b":"):
        return rest
    if kind == b"-":
        return "ERR " + rest
    if kind == b"$":
        return "" if rest == "-1" else stream.read(int(rest) + 2)[:-2].decode()  # type: ignore[attr-defined]
    if kind == b"*":
        return "\n".join(_read_reply(stream) for _ in range(max(int(rest), 0)))
    raise RuntimeError(f"unexpected reply {line!r}")
