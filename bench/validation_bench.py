"""Session validation: Okta calls per session per TTL under concurrency, calls while rate-limited, warm-hit cost.

Runs the Okta sandbox on 127.0.0.2 and the gateway's validator in this process, over real loopback HTTP.

    python bench/validation_bench.py [--shared]

Prints `RESULT okta_calls_per_session_per_ttl_c<N>=<calls>` for N = 1, 100 and 1000 concurrent clients, the
worst of them as `okta_calls_per_session_per_ttl`,
`RESULT okta_calls_while_rate_limited=<calls>` and, last, `RESULT validate_hit_us=<microseconds>`.

With `--shared`, the same against a fleet: it starts a redis-server of its own (Debian's, on a free loopback port,
persistence off) and three validators (three replicas: each its own client, cache and link) sharing it, and prints
`RESULT shared_okta_calls_per_session_per_ttl_c<N>=<calls>` (the N clients spread over the three) and their worst
as `shared_okta_calls_per_session_per_ttl`, `RESULT shared_burst_okta_calls=<calls>` (300 concurrent first
lookups of one session over the three), and `RESULT validate_hit_us=<microseconds>` of a validator with the
shared layer (a warm hit never reaches it: the figure should match the one without).
Not run by CI.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp import web  # noqa: E402
from yarl import URL  # noqa: E402

from gateway.metrics import Metrics  # noqa: E402
from gateway.okta.client import OktaClient  # noqa: E402
from gateway.sandbox.okta.app import build_okta_app  # noqa: E402
from gateway.sandbox.okta.org import OktaOrg  # noqa: E402
from gateway.sessions.cache import ValidationCache  # noqa: E402
from gateway.sessions.validation import SessionValidator  # noqa: E402
from gateway.settings import CachePolicy, RedisSettings, StoreSettings  # noqa: E402
from gateway.store.redis import RedisLink  # noqa: E402
from gateway.store.redis_sessions import RedisSessions  # noqa: E402

HOST = "127.0.0.2"
TOKEN = "bench-token"
TTL = 60.0
WINDOWS = 3  # TTL windows simulated per concurrency level


async def main() -> None:
    port = _free_port()
    org = OktaOrg(issuer=f"http://{HOST}:{port}", api_token=TOKEN, rate_limit_per_minute=1_000_000)
    runner = web.AppRunner(build_okta_app(org), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, HOST, port).start()
    try:
        org.add_user("bench@example.com", "pw")
        if "--shared" in sys.argv:
            with redis_server() as url:
                await shared_main(org, port, url)
            return
        worst = 0.0
        for clients in (1, 100, 1000):
            calls = await calls_per_session_per_ttl(org, port, clients)
            worst = max(worst, calls)
            print(f"RESULT okta_calls_per_session_per_ttl_c{clients}={calls:g}")
        print(f"RESULT okta_calls_per_session_per_ttl={worst:g}")
        print(f"RESULT okta_calls_while_rate_limited={await calls_while_rate_limited(org, port)}")
        print(f"RESULT validate_hit_us={await validate_hit_us(org, port):.2f}")
    finally:
        await runner.cleanup()


async def shared_main(org: OktaOrg, port: int, url: str) -> None:
    worst = 0.0
    for clients in (1, 100, 1000):
        calls = await fleet_calls_per_session_per_ttl(org, port, url, clients)
        worst = max(worst, calls)
        print(f"RESULT shared_okta_calls_per_session_per_ttl_c{clients}={calls:g}")
    print(f"RESULT shared_okta_calls_per_session_per_ttl={worst:g}")
    print(f"RESULT shared_burst_okta_calls={await fleet_burst_calls(org, port, url)}")
    print(f"RESULT validate_hit_us={await validate_hit_us(org, port, url):.2f}")


async def validator_for(org: OktaOrg, port: int, redis_url: str | None = None) -> SessionValidator:
    def clock() -> float:
        return org.clock.now().timestamp()

    metrics = Metrics()
    client = OktaClient(URL(f"http://{HOST}:{port}"), TOKEN, metrics=metrics, clock=clock)
    await client.start()
    shared = None
    if redis_url is not None:
        link = RedisLink(StoreSettings("redis", "bench", 3600.0, RedisSettings(url=redis_url)), metrics)
        await link.start()
        shared = RedisSessions(link, okta_timeout=5.0)
    return SessionValidator(client, ValidationCache(CachePolicy(ttl=TTL, revalidate=TTL / 4)), metrics, clock=clock,
                            shared=shared)


async def close(validator: SessionValidator) -> None:
    await validator.close()
    await validator.client.close()
    if isinstance(validator.shared, RedisSessions):
        await validator.shared._link.close()


async def fleet_calls_per_session_per_ttl(org: OktaOrg, port: int, url: str, clients: int) -> float:
    """As calls_per_session_per_ttl, with the `clients` concurrent callers spread over three replicas."""
    fleet = [await validator_for(org, port, url) for _ in range(3)]
    sessions = [org.sign_in("bench@example.com") for _ in range(10)]
    before = len(org.api_calls)
    steps = 20
    for _ in range(WINDOWS * steps):
        await asyncio.gather(*(fleet[i % 3].validate(s.id) for s in sessions for i in range(clients)))
        await settled(fleet)  # background revalidations, and their writes to Redis, land before the clock moves on
        org.clock.advance(TTL / steps)
    await settled(fleet)
    calls = len(org.api_calls) - before
    for validator in fleet:
        await close(validator)
    return calls / (len(sessions) * WINDOWS)


async def settled(fleet: list[SessionValidator]) -> None:
    for validator in fleet:
        await asyncio.gather(*validator._inflight.values(), return_exceptions=True)
    for validator in fleet:
        await asyncio.gather(*validator._writes, return_exceptions=True)


async def fleet_burst_calls(org: OktaOrg, port: int, url: str) -> int:
    """Okta calls for 300 concurrent first lookups of one session spread over three replicas (Okta answering in
    50 ms, so that they all arrive while the first is out)."""
    fleet = [await validator_for(org, port, url) for _ in range(3)]
    session = org.sign_in("bench@example.com")
    before = len(org.api_calls)
    org.faults.latency = 0.05
    await asyncio.gather(*(fleet[i % 3].validate(session.id) for i in range(300)))
    org.faults.latency = 0.0
    for validator in fleet:
        await close(validator)
    return len(org.api_calls) - before


async def calls_per_session_per_ttl(org: OktaOrg, port: int, clients: int) -> float:
    """`clients` concurrent callers each validate 10 sessions, 20 times a TTL, over WINDOWS TTLs of the org's clock."""
    validator = await validator_for(org, port)
    sessions = [org.sign_in("bench@example.com") for _ in range(10)]
    before = len(org.api_calls)
    steps = 20
    for _ in range(WINDOWS * steps):
        await asyncio.gather(*(validator.validate(s.id) for s in sessions for _ in range(clients)))
        await asyncio.sleep(0.01)  # a background revalidation lands before the clock moves on
        org.clock.advance(TTL / steps)
    await asyncio.sleep(0.2)  # background refreshes land
    calls = len(org.api_calls) - before
    await close(validator)
    return calls / (len(sessions) * WINDOWS)


async def calls_while_rate_limited(org: OktaOrg, port: int) -> int:
    """After one 429, how many calls reach Okta before the reset, whatever the load."""
    validator = await validator_for(org, port)
    sessions = [org.sign_in("bench@example.com") for _ in range(50)]
    org.faults.rate_limited = True
    await validator.validate(sessions[0].id)
    org.faults.rate_limited = False
    before = len(org.api_calls)
    for _ in range(20):
        await asyncio.gather(*(validator.validate(s.id) for s in sessions))
    calls = len(org.api_calls) - before
    await close(validator)
    return calls


async def validate_hit_us(org: OktaOrg, port: int, redis_url: str | None = None) -> float:
    """Median cost of one warm-cache validation, in microseconds, over 5 runs of 100,000."""
    validator = await validator_for(org, port, redis_url)
    session = org.sign_in("bench@example.com")
    await validator.validate(session.id)
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(100_000):
            await validator.validate(session.id)
        runs.append((time.perf_counter() - started) / 100_000 * 1e6)
    await close(validator)
    return statistics.median(runs)


@contextmanager
def redis_server() -> Iterator[str]:
    """A redis-server of the bench's own on a free loopback port, persistence off; its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        sys.exit("--shared needs redis-server (Debian's redis-server package; `make redis` installs it)")
    with tempfile.TemporaryDirectory() as workdir:
        port = _free_port("127.0.0.1")
        process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                    "--appendonly", "no", "--dir", workdir], stdout=subprocess.DEVNULL)
        try:
            _wait_listening(port)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.kill()
            process.wait()


def _wait_listening(port: int) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _free_port(host: str = HOST) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())
