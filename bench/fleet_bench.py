"""Fleet: three gateway replicas sharing one redis-server behave as one gateway; what sharing costs the hot path.

Everything on loopback: the Okta sandbox on 127.0.0.2 and the legacy app in this process, one redis-server
(persistence off) and three `session-gateway run` replicas on 127.0.0.1 with `[store] backend = "redis"`.

1. fleet_push_p99_ms: a browser signed in and warm on every replica (an hour-long cache TTL: only the push can end
   the session); its user signs out of Okta, whose event hook delivers to replica 0; the time from the sign-out
   to the first refused request on each of the other replicas, the later of the two, over `--push-trials`.
2. fleet_okta_gets_per_session_per_ttl: `--sessions` bound sessions requested round the replicas for
   `--ttls` cache TTLs; Okta's GETs of those sessions, per session per TTL. fleet_burst_okta_gets: 300 concurrent
   first requests of one bound session no replica has seen, spread over the three; Okta's GETs of it.
3. outage_revocations_lost: `--sessions` bound sessions warm on every replica; redis-server killed; half of them
   ended by Universal Logout, each through another replica; redis-server started again, empty; after 10 s, the
   (replica, revoked session) pairs still served.
4. hot_path_redis_vs_memory: instructions per warm-hit request under callgrind (the method of
   revocation_bench.py), a gateway with the memory store over one with the Redis store.

    python bench/fleet_bench.py [--push-trials 200] [--sessions 10] [--ttls 5] [--requests 1000] [--python PY]

Prints `RESULT fleet_push_p99_ms=…`, `RESULT fleet_okta_gets_per_session_per_ttl=… fleet_burst_okta_gets=…`,
`RESULT outage_revocations_lost=…` and `RESULT hot_path_redis_vs_memory=…`. Not run by CI. redis-server and
valgrind come from Debian's packages, installed when missing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import proxy_bench as pb  # noqa: E402
import revocation_bench as rb  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402

from gateway.sandbox.browser import Browser  # noqa: E402
from gateway.sandbox.fleet import Fleet, replica_config, replica_ports  # noqa: E402
from gateway.sandbox.okta.org import OktaOrg  # noqa: E402
from gateway.sandbox.stack import UNIVERSAL_LOGOUT, AppRoute, free_port, start_world  # noqa: E402
from gateway.sandbox.toml import toml_text  # noqa: E402
from gateway.sessions.binding import Binding, BindingCodec  # noqa: E402

TOKEN = "fleet-bench-token"
HOOK_SECRET = "fleet-bench-hook-secret-0123456789"
ALICE = ("alice@example.com", "Alice-bench-1")
REPLICAS = 3
HOOK_TYPES = ["user.session.end", "user.session.clear", "user.lifecycle.suspend"]


# --- the fleet ---------------------------------------------------------------------------------------------

@dataclass
class ProcessFleet(Fleet):
    processes: list[pb.Child] = field(default_factory=list)


async def start_fleet(args: argparse.Namespace, work: Path, children: list[pb.Child], redis_port: int,
                      okta: dict[str, Any]) -> ProcessFleet:
    os.environ.update(OKTA_API_TOKEN=TOKEN, GATEWAY_BINDING_KEYS=Fernet.generate_key().decode(),
                      OKTA_HOOK_SECRET=HOOK_SECRET)
    okta_port = free_port("127.0.0.2")
    org = OktaOrg(issuer=f"http://127.0.0.2:{okta_port}", api_token=TOKEN)
    org.add_user(*ALICE)
    world = await start_world([AppRoute("hr")], org=org, okta_port=okta_port, okta=okta,
                              server={"log_level": "warning", "stop_delay": 0},
                              store={"backend": "redis", "url": f"redis://127.0.0.1:{redis_port}/0"})
    fleet = ProcessFleet(world, replica_ports(world, REPLICAS))
    for i, port in enumerate(fleet.ports):
        config = replica_config(world, port)
        path = work / f"replica-{i}.toml"
        path.write_text(toml_text(config))
        child = pb.spawn([args.python, "-m", "gateway.cli", "run", "--config", str(path)], work / f"replica-{i}.err",
                         cwd=pb.REPO, env={**os.environ, "PYTHONPATH": str(pb.REPO)})
        children.append(child)
        fleet.processes.append(child)
        await wait_ready(child, port, work / f"replica-{i}.err")
    return fleet


async def wait_ready(child: pb.Child, port: int, log: Path) -> None:
    deadline = time.monotonic() + pb.READY_TIMEOUT
    while await asyncio.to_thread(pb.http_status, port, "/.gateway/readyz") != 200:
        if child.poll() is not None or time.monotonic() > deadline:
            raise pb.BenchError(f"replica on {port} did not start:\n{pb.tail(log)}")
        await asyncio.sleep(0.1)


async def stop_fleet(fleet: ProcessFleet) -> None:
    for child in fleet.processes:
        await asyncio.to_thread(pb.stop, child)
    await fleet.world.close()


def bound_cookie(fleet: Fleet, login: str, password: str) -> tuple[str, str]:
    """(Okta session id, the Cookie header of an app session bound to it), signed in through Okta's API."""
    org = fleet.org
    user = org.user(login) or org.add_user(login, password)
    session = org.start_session(user)
    codec = BindingCodec(os.environ["GATEWAY_BINDING_KEYS"].split(","))
    app_cookie = f"bench-{session.id[-8:]}"
    now = time.time()
    binding = Binding(session.id, user.id, user.login, codec.fingerprint("JSESSIONID", app_cookie), now, now)
    return session.id, f"JSESSIONID={app_cookie}; gateway_binding_hr={codec.seal(binding, 'hr')}"


async def answered(http: aiohttp.ClientSession, url: str, cookie: str) -> int:
    async with http.get(url, headers={"Cookie": cookie}, allow_redirects=False) as r:
        await r.read()
        return r.status


def okta_gets(org: OktaOrg, session_id: str) -> int:
    return sum(1 for c in org.api_calls if c.method == "GET" and c.path == f"/api/v1/sessions/{session_id}")


# --- 1. the push across replicas ---------------------------------------------------------------------------

async def push_across(fleet: Fleet, trials: int) -> list[float]:
    hook = fleet.org.add_event_hook(fleet.url("/.gateway/okta/events", 0), HOOK_TYPES, secret=HOOK_SECRET)
    if not await fleet.org.verify_hook(hook):
        raise pb.BenchError("replica 0 did not pass the event hook's verification")
    windows = []
    for _ in range(trials):
        browser = Browser(fleet)  # type: ignore[arg-type]
        try:
            if (await browser.sign_in(ALICE)).status != 200:
                raise pb.BenchError("the sign-in failed")
            for i in range(REPLICAS):
                await browser.get(fleet.url("/page/1", i))
            session = next(iter(fleet.org.sessions_of(fleet.org.user(ALICE[0]).id)))  # type: ignore[union-attr]
            signed_out = time.monotonic()
            fleet.org.sign_out(session)
            refused: dict[int, float] = {}
            for _ in range(5000):  # bounded: a few seconds' worth
                for i in (1, 2):
                    if i not in refused and (await browser.get(fleet.url("/page/1", i))).status != 200:
                        refused[i] = time.monotonic() - signed_out
                if len(refused) == 2:
                    break
            if len(refused) < 2:
                raise pb.BenchError("a replica kept serving a session ended in Okta")
            windows.append(max(refused.values()))
        finally:
            await browser.close()
    return windows


# --- 2. Okta calls for the fleet ---------------------------------------------------------------------------

async def okta_calls(fleet: Fleet, sessions: int, ttls: int, ttl: float) -> tuple[float, int]:
    bound = [bound_cookie(fleet, f"user{i}@example.com", f"User-bench-{i}") for i in range(sessions)]
    async with aiohttp.ClientSession() as http:
        started, n = time.monotonic(), 0
        while time.monotonic() - started < ttls * ttl:
            await asyncio.gather(*(answered(http, fleet.url("/page/1", (n + k) % REPLICAS), cookie)
                                   for k, (_, cookie) in enumerate(bound)))
            n += 1
            await asyncio.sleep(0.02)
        steady = sum(okta_gets(fleet.org, sid) for sid, _ in bound) / (sessions * ttls)
        sid, cookie = bound_cookie(fleet, "burst@example.com", "Burst-bench-1")
        await asyncio.gather(*(answered(http, fleet.url("/page/1", k % REPLICAS), cookie) for k in range(300)))
    return steady, okta_gets(fleet.org, sid)


# --- 3. revocations taken while Redis is away --------------------------------------------------------------

async def outage(fleet: Fleet, sessions: int, redis: str, work: Path, redis_port: int,
                 children: list[pb.Child], redis_child: pb.Child) -> int:
    users = [(f"out{i}@example.com", f"Out-bench-{i}") for i in range(sessions)]
    browsers = []
    try:
        for user in users:
            fleet.org.add_user(*user)
            browser = Browser(fleet)  # type: ignore[arg-type]
            browsers.append(browser)
            if (await browser.sign_in(user)).status != 200:
                raise pb.BenchError("a sign-in failed before the outage")
            for i in range(REPLICAS):
                if (await browser.get(fleet.url("/page/1", i))).status != 200:
                    raise pb.BenchError("a signed-in session was not served before the outage")
        pb.stop(redis_child)
        revoked = list(zip(users, browsers, strict=True))[: sessions // 2]
        async with aiohttp.ClientSession() as http:
            for k, ((login, _), _) in enumerate(revoked):  # each through another replica
                headers, body = fleet.org.universal_logout_request(fleet.gateway_url + UNIVERSAL_LOGOUT, login)
                async with http.post(fleet.url(UNIVERSAL_LOGOUT, k % REPLICAS), headers=headers, data=body) as r:
                    if r.status != 204:
                        raise pb.BenchError(f"a Universal Logout got {r.status} while Redis was away")
        pb.start_redis(redis, work, redis_port, children)  # empty: nothing was persisted
        await asyncio.sleep(10)
        lost = 0
        for _, browser in revoked:
            for i in range(REPLICAS):
                if (await browser.get(fleet.url("/page/1", i))).status == 200:
                    lost += 1
        return lost
    finally:
        for browser in browsers:
            await browser.close()


# --- 4. the hot path with the Redis store ------------------------------------------------------------------

def hot_path_ratio(args: argparse.Namespace, work: Path, children: list[pb.Child], redis_port: int) -> float:
    """Instructions per warm-hit request on the enforce route, memory store over Redis store."""
    nginx = pb.ensure_tools()[1]
    up = rb.start_upstreams(args, nginx, work, children)
    figures = {}
    for name, store in (("memory", ""), ("redis", f'\n[store]\nbackend = "redis"\n'
                                                  f'url = "redis://127.0.0.1:{redis_port}/0"\n')):
        figures[name] = rb.instructions_per_request(args, up, work, children, ("on",), store)["on"]
        print(f"# {name} store: {figures[name]:,.0f} instructions per warm-hit request (callgrind)", flush=True)
    return figures["memory"] / figures["redis"]


# --- main --------------------------------------------------------------------------------------------------

async def fleet_parts(args: argparse.Namespace, work: Path, children: list[pb.Child], redis: str) -> int:
    redis_port = free_port()
    redis_child = pb.start_redis(redis, work, redis_port, children)
    okta = {"cache_ttl": 3600, "revalidate": 0, "event_hook": {"secret": "${OKTA_HOOK_SECRET}"},
            "universal_logout": {}}
    fleet = await start_fleet(args, work, children, redis_port, okta)
    try:
        pushed = sorted(await push_across(fleet, args.push_trials))
        p99 = pushed[min(len(pushed) - 1, int(0.99 * len(pushed)))]
        print(f"# push: {len(pushed)} sign-outs, median {pushed[len(pushed) // 2] * 1000:.1f} ms", flush=True)
        print(f"RESULT fleet_push_p99_ms={p99 * 1000:.1f}", flush=True)
    finally:
        await stop_fleet(fleet)
    ttl = 2.0
    fleet = await start_fleet(args, work, children, redis_port, {"cache_ttl": ttl, "revalidate": 0})
    try:
        steady, burst = await okta_calls(fleet, args.sessions, args.ttls, ttl)
        print(f"RESULT fleet_okta_gets_per_session_per_ttl={steady:.2f} fleet_burst_okta_gets={burst}", flush=True)
    finally:
        await stop_fleet(fleet)
    fleet = await start_fleet(args, work, children, redis_port, {"cache_ttl": 3600, "universal_logout": {}})
    try:
        lost = await outage(fleet, args.sessions, redis, work, redis_port, children, redis_child)
        print(f"RESULT outage_revocations_lost={lost}", flush=True)
    finally:
        await stop_fleet(fleet)
    return redis_port


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--push-trials", type=int, default=200)
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--ttls", type=int, default=5)
    parser.add_argument("--requests", type=int, default=1000, help="requests per callgrind dump")
    parser.add_argument("--python", default=sys.executable)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    work.chmod(0o755)
    children: list[pb.Child] = []
    try:
        redis = pb.ensure_redis()
        redis_port = asyncio.run(fleet_parts(args, work, children, redis))
        ratio = hot_path_ratio(args, work, children, redis_port)
        print(f"RESULT hot_path_redis_vs_memory={ratio:.3f}", flush=True)
    except pb.BenchError as exc:
        print(f"fleet_bench: {exc}", file=sys.stderr)
        return 1
    finally:
        for child in reversed(children):
            pb.stop(child)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
