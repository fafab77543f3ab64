"""Revocation: how soon an Okta sign-out reaches the app session, and what enforcement costs in throughput.

1. pull_revocation_window_s and push_revocation_p99_ms: the whole stack in this process (Okta sandbox on
   127.0.0.2, the legacy app and the gateway on 127.0.0.1, real wall clock), a browser signed in through SAML
   requesting a page every 10 ms; the user signs out of Okta at a random moment of the cache's TTL; the window is
   the time from the sign-out to the first refused request. Polling only (no event hook): several trials, the
   worst reported beside the TTL. Then with an event hook and an hour-long cache TTL, many trials: from each
   sign-out (the moment the sandbox starts the delivery) to the first refused request, its 99th percentile.
2. enforce_vs_off: one gateway process with two routes to the same nginx static upstream (1 KiB file), one with
   policy enforce and one with policy off; wrk sends a bound session's cookies (a real Okta session in the sandbox,
   a real sealed binding) to each in turn, in ten rounds, same settings as bench/proxy_bench.py. The gateway is one
   CPU-bound process (alone on CPU 0), so its throughput is the inverse of its cost per request. That cost is
   counted three ways: instructions per request under callgrind (the RESULT figure: repeatable to 0.1 %, where
   this shared machine's speed drifts 10-20 % within a minute), and, under wrk, the median of paired rounds' ratios
   of CPU time per request (from /proc) and of requests/s.

    python bench/revocation_bench.py [--duration 10s] [--connections 64] [--trials 5]
    python bench/revocation_bench.py --instructions-only    # the callgrind counts alone, about a minute

Prints `RESULT pull_revocation_window_s=<worst> cache_ttl_s=<ttl>`, `RESULT push_revocation_p99_ms=<ms>` and
`RESULT enforce_vs_off=<ratio>
enforce_vs_off_cpu=<ratio> enforce_vs_off_rps=<ratio>`. Not run by
CI. wrk, nginx and valgrind come from Debian's packages, installed when missing.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import proxy_bench as pb  # noqa: E402
from cryptography.fernet import Fernet  # noqa: E402

from gateway.sandbox.browser import Browser  # noqa: E402
from gateway.sandbox.okta.org import OktaOrg  # noqa: E402
from gateway.sandbox.stack import AppRoute, free_port, start_stack  # noqa: E402
from gateway.sessions.binding import Binding, BindingCodec  # noqa: E402

TTL = 5.0
TOKEN = "revocation-bench-token"
ALICE = ("alice@example.com", "Alice-bench-1")


# --- 1. the pull window -------------------------------------------------------------------------------------

async def pull_window(trials: int) -> float:
    os.environ["OKTA_API_TOKEN"] = TOKEN
    os.environ["GATEWAY_BINDING_KEYS"] = Fernet.generate_key().decode()
    port = free_port("127.0.0.2")
    org = OktaOrg(issuer=f"http://127.0.0.2:{port}", api_token=TOKEN)
    org.add_user(*ALICE)
    stack = await start_stack([AppRoute("hr")], org=org, okta_port=port,
                              okta={"cache_ttl": TTL}, server={"log_level": "warning"})
    worst = 0.0
    try:
        for _ in range(trials):
            browser = Browser(stack)
            try:
                assert (await browser.sign_in(ALICE)).status == 200
                await asyncio.sleep(random.uniform(0, TTL))
                session = next(iter(org.sessions_of(org.user(ALICE[0]).id)))  # type: ignore[union-attr]
                signed_out = time.monotonic()
                org.sign_out(session)
                for _ in range(int(4 * TTL / 0.01)):  # bounded: the window is at most the TTL and a request
                    if (await browser.get("/page/1")).status != 200:
                        break
                    await asyncio.sleep(0.01)
                window = time.monotonic() - signed_out
                worst = max(worst, window)
                print(f"# trial: refused {window:.3f} s after the Okta sign-out", flush=True)
            finally:
                await browser.close()
    finally:
        await stack.close()
    return worst


# --- 1b. the push window -----------------------------------------------------------------------------------

HOOK_SECRET = "revocation-bench-hook-secret-0123456789"


async def push_window(trials: int) -> list[float]:
    """Seconds from each hook delivery's start to the first refused request, with a cache that would vouch for
    an hour: only the push can end the session."""
    os.environ["OKTA_API_TOKEN"] = TOKEN
    os.environ["GATEWAY_BINDING_KEYS"] = Fernet.generate_key().decode()
    os.environ["OKTA_HOOK_SECRET"] = HOOK_SECRET
    port = free_port("127.0.0.2")
    org = OktaOrg(issuer=f"http://127.0.0.2:{port}", api_token=TOKEN)
    org.add_user(*ALICE)
    stack = await start_stack([AppRoute("hr")], org=org, okta_port=port, server={"log_level": "warning"},
                              okta={"cache_ttl": 3600, "event_hook": {"secret": "${OKTA_HOOK_SECRET}"}})
    hook = org.add_event_hook(stack.url("/.gateway/okta/events"), ["user.session.end"], secret=HOOK_SECRET)
    windows = []
    try:
        if not await org.verify_hook(hook):
            raise pb.BenchError("the gateway did not pass the event hook's verification")
        for _ in range(trials):
            browser = Browser(stack)
            try:
                assert (await browser.sign_in(ALICE)).status == 200
                session = next(iter(org.sessions_of(org.user(ALICE[0]).id)))  # type: ignore[union-attr]
                signed_out = time.monotonic()
                org.sign_out(session)  # the delivery starts now, in the background
                for _ in range(5000):  # bounded: a second's worth of requests at most
                    if (await browser.get("/page/1")).status != 200:
                        break
                windows.append(time.monotonic() - signed_out)
            finally:
                await browser.close()
    finally:
        await stack.close()
    return windows


# --- 2. enforce against off ---------------------------------------------------------------------------------

def gateway_conf(port: int, okta_port: int, upstream_port: int, extra: str = "", *, workers: int = 1,
                 cache_ttl: float = 60.0) -> str:
    routes = ""
    for name, policy in (("on", "enforce"), ("off", "off")):
        routes += f"""
[[route]]
name = "{name}"
path = "/{name}"
rewrite = "/"
upstream = "http://127.0.0.1:{upstream_port}"
policy = "{policy}"
app_profile = "servlet"
"""
    return f"""\
[server]
listen = "127.0.0.1:{port}"
workers = {workers}
access_log = false
log_level = "warning"
stop_delay = 0  # a benchmark stops at once: no load balancer to drain

[okta]
org_url = "http://127.0.0.2:{okta_port}"
api_token = "${{OKTA_API_TOKEN}}"
cache_ttl = {cache_ttl:g}

[binding]
keys = "${{GATEWAY_BINDING_KEYS}}"
{extra}{routes}"""


def okta_session(okta_port: int) -> tuple[str, str, str]:
    """Sign in through the sandbox's API: (session id, user id, login)."""
    def post(path: str, body: dict[str, str]) -> dict[str, str]:
        request = urllib.request.Request(f"http://127.0.0.2:{okta_port}{path}", json.dumps(body).encode(),
                                         {"Content-Type": "application/json", "Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310 - loopback only
            return json.loads(answer.read())  # type: ignore[no-any-return]

    token = post("/api/v1/authn", {"username": "alice@example.com", "password": "Alice-demo-1"})["sessionToken"]
    session = post("/api/v1/sessions", {"sessionToken": token})
    return session["id"], session["userId"], session["login"]


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk_run(wrk: str, pin: list[str], args: argparse.Namespace, url: str, cookie: str,
            pid: int) -> tuple[pb.WrkResult, float]:
    """(wrk's result, the gateway's CPU microseconds per request) for one measured run after a warm-up."""
    base = [*pin, wrk, "--threads", str(args.threads), "--connections", str(args.connections),
            "-H", f"Cookie: {cookie}"]
    pb.subprocess.run([*base, "--duration", pb.WARMUP, url], capture_output=True, timeout=120, check=True)
    cpu = cpu_seconds(pid)
    out = pb.subprocess.run([*base, "--duration", args.duration, "--latency", url], capture_output=True, text=True,
                            timeout=pb.duration_seconds(args.duration) + 60, check=True)
    cpu = cpu_seconds(pid) - cpu
    done = re.search(r"(\d+) requests in", out.stdout)
    if done is None:
        raise pb.BenchError(f"no request count in wrk's output:\n{out.stdout}")
    return pb.parse_wrk(out.stdout), cpu / int(done.group(1)) * 1e6


@dataclass
class Upstreams:
    """nginx serving the file, the Okta sandbox with a signed-in session, and the binding key: what both gateway
    measurements share."""

    env: dict[str, str]
    nginx_port: int
    okta_port: int
    codec: BindingCodec
    session: tuple[str, str, str]  # id, user id, login

    def cookie(self) -> str:
        """A bound app session's cookies, sealed now (a fresh binding: no re-seal happens within a run)."""
        now = time.time()
        session_id, user_id, login = self.session
        binding = Binding(session_id, user_id, login, self.codec.fingerprint("JSESSIONID", "bench"), now, now)
        return f"JSESSIONID=bench; gateway_binding={self.codec.seal(binding, 'on')}"


def start_upstreams(args: argparse.Namespace, nginx: str, work: Path, children: list[pb.Child]) -> Upstreams:
    direct, spare = free_port(), free_port()
    children.append(pb.start_nginx(nginx, work, direct, spare))
    pb.wait_for_port(direct, children[-1], work / "error.log")
    return start_okta(args, direct, work, children)


def start_okta(args: argparse.Namespace, nginx_port: int, work: Path, children: list[pb.Child]) -> Upstreams:
    """The Okta sandbox with a signed-in session and a fresh binding key, for gateways in front of `nginx_port`
    (bench/proxy_bench.py's enforce route uses it with its own nginx)."""
    key = Fernet.generate_key().decode()
    env = {**os.environ, "OKTA_API_TOKEN": TOKEN, "GATEWAY_BINDING_KEYS": key, "PYTHONPATH": str(pb.REPO),
           "PYTHONHASHSEED": "0"}
    okta_port = free_port("127.0.0.2")
    children.append(pb.spawn([args.python, "-m", "gateway.cli", "sandbox", "okta", "--host", "127.0.0.2", "--port",
                              str(okta_port)], work / "okta.err", cwd=pb.REPO, env=env))
    for _ in range(100):
        if pb.http_status_at("127.0.0.2", okta_port, "/login/login.htm") == 200:
            break
        time.sleep(0.1)
    return Upstreams(env, nginx_port, okta_port, BindingCodec([key]), okta_session(okta_port))


def start_gateway(args: argparse.Namespace, up: Upstreams, work: Path, children: list[pb.Child],
                  prefix: list[str], ready_timeout: float, extra: str = "", *, workers: int = 1,
                  cache_ttl: float = 60.0) -> tuple[pb.Child, int]:
    port = free_port()
    config = work / f"gateway-{port}.toml"
    config.write_text(gateway_conf(port, up.okta_port, up.nginx_port, extra, workers=workers, cache_ttl=cache_ttl))
    child = pb.spawn([*prefix, args.python, "-m", "gateway.cli", "run", "--config", str(config)],
                     work / f"gateway-{port}.err", cwd=pb.REPO, env=up.env)
    children.append(child)
    deadline = time.monotonic() + ready_timeout
    while pb.http_status(port, "/.gateway/readyz") != 200:
        if child.poll() is not None or time.monotonic() > deadline:
            raise pb.BenchError(f"the gateway did not start; its stderr:\n{pb.tail(work / f'gateway-{port}.err')}")
        time.sleep(0.2)
    return child, port


def enforce_vs_off_wrk(args: argparse.Namespace, up: Upstreams, wrk: str, work: Path,
                       children: list[pb.Child]) -> tuple[float, float]:
    """(median paired ratio of CPU time per request, median paired ratio of requests/s) under wrk."""
    pin = pb.wrk_pin()
    alone = ["taskset", "-c", "0"] if pin else []  # the gateway on a CPU of its own; wrk and nginx on the other
    gateway, port = start_gateway(args, up, work, children, alone, pb.READY_TIMEOUT)
    rps: dict[str, list[float]] = {"on": [], "off": []}
    cpu: dict[str, list[float]] = {"on": [], "off": []}
    for _ in range(args.rounds):
        for name in ("off", "on"):
            result, us = wrk_run(wrk, pin, args, f"http://127.0.0.1:{port}/{name}{pb.URL_PATH}", up.cookie(),
                                 gateway.pid)
            if result.non_2xx:
                raise pb.BenchError(f"route {name} answered {result.non_2xx} non-2xx: the binding was refused")
            rps[name].append(result.rps)
            cpu[name].append(us)
            print(pb.result_line(f"gateway, policy {name}", result) + f"   {us:6.1f} us CPU/request", flush=True)
    pb.stop(gateway)
    return (statistics.median(off / on for off, on in zip(cpu["off"], cpu["on"], strict=True)),
            statistics.median(on / off for off, on in zip(rps["off"], rps["on"], strict=True)))


def enforce_vs_off_instructions(args: argparse.Namespace, up: Upstreams, work: Path,
                                children: list[pb.Child]) -> float:
    """The ratio of instructions per request, off over enforce, counted by callgrind: repeatable to 0.1 %."""
    per_request = instructions_per_request(args, up, work, children, ("off", "on"))
    return per_request["off"] / per_request["on"]


def instructions_per_request(args: argparse.Namespace, up: Upstreams, work: Path, children: list[pb.Child],
                             routes: tuple[str, ...], extra: str = "") -> dict[str, float]:
    """Instructions per request of each route (the lower of two dumps of `args.requests` requests), counted by
    callgrind in one gateway whose configuration has `extra` too. Each batch sends a binding sealed just before it:
    one older than a minute would be re-sealed on every request (wrk and this client never take the new one)."""
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        pb.subprocess.run(["apt-get", "install", "-y", "valgrind"], check=True, timeout=900,
                          env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    out = work / f"callgrind-{time.monotonic_ns()}.out"
    gateway, port = start_gateway(args, up, work, children, ["valgrind", "--tool=callgrind",
                                                             f"--callgrind-out-file={out}"], 600, extra)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def send(path: str, count: int, cookie: str) -> None:
        for _ in range(count):
            connection.request("GET", path, headers={"Cookie": cookie, "Accept": "*/*"})
            answer = connection.getresponse()
            answer.read()
            if answer.status != 200:
                raise pb.BenchError(f"{path} answered {answer.status} under callgrind")

    def dump() -> int:
        """Instructions since the last dump."""
        before = set(work.glob(f"{out.name}*"))
        pb.subprocess.run(["callgrind_control", "--dump", str(gateway.pid)], capture_output=True, check=True,
                          timeout=120)
        for _ in range(200):
            fresh = set(work.glob(f"{out.name}*")) - before
            if fresh:
                text = max(fresh, key=lambda f: f.stat().st_mtime).read_text()
                found = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
                if found:
                    return int(found.group(1))
            time.sleep(0.1)
        raise pb.BenchError("callgrind wrote no dump")

    for name in routes:
        send(f"/{name}{pb.URL_PATH}", 300, up.cookie())
    dump()
    per_request: dict[str, list[float]] = {name: [] for name in routes}
    for _ in range(2):
        for name in routes:
            cookie = up.cookie()
            send(f"/{name}{pb.URL_PATH}", 1, cookie)  # the batch's fresh Cookie header is read once, uncounted
            dump()
            send(f"/{name}{pb.URL_PATH}", args.requests, cookie)
            per_request[name].append(dump() / args.requests)
            print(f"gateway, policy {name:<4} {per_request[name][-1]:>12,.0f} instructions/request (callgrind)",
                  flush=True)
    connection.close()
    pb.stop(gateway)
    return {name: min(counts) for name, counts in per_request.items()}


T = TypeVar("T")


def with_upstreams(args: argparse.Namespace, measure: Callable[[Upstreams, str, Path, list[pb.Child]], T]) -> T | None:
    """`measure(upstreams, wrk, work, children)` in a fresh work directory, everything it started stopped after;
    None (the failure reported) when a server did not start or a measurement went wrong."""
    work = Path(tempfile.mkdtemp(prefix="revocation-bench-"))
    work.chmod(0o755)
    children: list[pb.Child] = []
    try:
        wrk, nginx = pb.ensure_tools()
        return measure(start_upstreams(args, nginx, work, children), wrk, work, children)
    except pb.BenchError as exc:
        print(f"revocation_bench: {exc}", file=sys.stderr)
        return None
    finally:
        for child in reversed(children):
            pb.stop(child)
        shutil.rmtree(work, ignore_errors=True)


def instructions_only(args: argparse.Namespace) -> int:
    """`RESULT enforce_vs_off=... off_instructions=... enforce_instructions=...`, counted by callgrind alone."""
    per_request = with_upstreams(args, lambda up, wrk, work, children: instructions_per_request(
        args, up, work, children, ("off", "on")))
    if per_request is None:
        return 1
    print(f"RESULT enforce_vs_off={per_request['off'] / per_request['on']:.4f} "
          f"off_instructions={per_request['off']:.0f} enforce_instructions={per_request['on']:.0f}", flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", default="4s", help="of each measured wrk run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--trials", type=int, default=5, help="sign-outs timed for the pull window")
    parser.add_argument("--push-trials", type=int, default=200, help="sign-outs timed for the push window")
    parser.add_argument("--rounds", type=int, default=10, help="wrk runs of each policy")
    parser.add_argument("--requests", type=int, default=1000, help="requests of each policy counted by callgrind")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--instructions-only", action="store_true",
                        help="count the instructions per request of each policy and nothing else (about a minute): "
                             "the figure for a commit message")
    args = parser.parse_args()
    if args.instructions_only:
        return instructions_only(args)
    window = asyncio.run(pull_window(args.trials))
    print(f"RESULT pull_revocation_window_s={window:.3f} cache_ttl_s={TTL:g}", flush=True)
    pushed = sorted(asyncio.run(push_window(args.push_trials)))
    p99 = pushed[min(len(pushed) - 1, int(0.99 * len(pushed)))]
    print(f"# push: {len(pushed)} sign-outs, median {statistics.median(pushed) * 1000:.1f} ms, "
          f"worst {pushed[-1] * 1000:.1f} ms", flush=True)
    print(f"RESULT push_revocation_p99_ms={p99 * 1000:.1f}", flush=True)
    ratios = with_upstreams(args, lambda up, wrk, work, children: (
        *enforce_vs_off_wrk(args, up, wrk, work, children), enforce_vs_off_instructions(args, up, work, children)))
    if ratios is None:
        return 1
    cpu_ratio, rps_ratio, instructions = ratios
    print(f"RESULT enforce_vs_off={instructions:.3f} enforce_vs_off_cpu={cpu_ratio:.3f} "
          f"enforce_vs_off_rps={rps_ratio:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
