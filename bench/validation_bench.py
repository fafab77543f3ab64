"""Session validation: Okta calls per session per TTL under concurrency, calls while rate-limited, warm-hit cost.

Runs the Okta sandbox on 127.0.0.2 and the gateway's validator in this process, over real loopback HTTP.

    python bench/validation_bench.py

Prints `RESULT okta_calls_per_session_per_ttl_c<N>=<calls>` for N = 1, 100 and 1000 concurrent clients, the
worst of them as `okta_calls_per_session_per_ttl`,
`RESULT okta_calls_while_rate_limited=<calls>` and, last, `RESULT validate_hit_us=<microseconds>`.
Not run by CI.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import sys
import time
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
from gateway.settings import CachePolicy  # noqa: E402

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


async def validator_for(org: OktaOrg, port: int) -> SessionValidator:
    def clock() -> float:
        return org.clock.now().timestamp()

    metrics = Metrics()
    client = OktaClient(URL(f"http://{HOST}:{port}"), TOKEN, metrics=metrics, clock=clock)
    await client.start()
    return SessionValidator(client, ValidationCache(CachePolicy(ttl=TTL, revalidate=TTL / 4)), metrics, clock=clock)


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
    await validator.close()
    await validator.client.close()
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
    await validator.close()
    await validator.client.close()
    return calls


async def validate_hit_us(org: OktaOrg, port: int) -> float:
    """Median cost of one warm-cache validation, in microseconds, over 5 runs of 100,000."""
    validator = await validator_for(org, port)
    session = org.sign_in("bench@example.com")
    await validator.validate(session.id)
    runs = []
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(100_000):
            await validator.validate(session.id)
        runs.append((time.perf_counter() - started) / 100_000 * 1e6)
    await validator.close()
    await validator.client.close()
    return statistics.median(runs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main())
