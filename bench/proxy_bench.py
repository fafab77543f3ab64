"""Proxy throughput: one 1 KiB static file, served three ways under identical wrk settings.

1. nginx direct: an nginx server block serving `1k.bin` from disk (the upstream);
2. nginx proxy_pass: a second server block in the same nginx (one worker) proxying to the first through an
   `upstream {}` block with `keepalive 64`, `proxy_http_version 1.1` and `proxy_set_header Connection ""`;
3. the gateway: `python -m gateway.cli run --config <tmp>.toml`, one route `/` to the same upstream, access log off;
4. the same gateway with its access log on, in each format of `--access-logs` (default json: `[server] access_log
   = true`, `[log] format = "json"`), its lines written to a file as a collector's agent would read them;
5. the enforce route: another gateway (bench/revocation_bench.py's configuration: a route `/on` with policy enforce,
   rewritten to `/`, in front of the same nginx-served file, access log off) and a bound session: a real sign-in
   through the Okta sandbox (127.0.0.2) and a real sealed binding, sent by wrk as `Cookie:` (revocation_bench's
   `start_okta` and `Upstreams.cookie`). The warm-up makes the one Okta call; the validation cache holds for an
   hour (`cache_ttl = 3600`), so no revalidation falls inside a run. The binding is sealed just before each wrk
   run of this route (warm-up and measured run together): a binding whose last activity is older than
   `touch_every` (60 s, the most the gateway allows) is re-sealed on every request, as wrk never takes the new
   cookie. So the route's runs are capped at ENFORCE_MAX_RUN seconds (with `--duration` above it they are
   measured for that long, and a `#` line says so): every measured request is the warm hit, the Cookie header and
   the cache entry of the last decision (`holds_until()`);
6. at one connection (`wrk --connections 1`, the latency a lone user sees): nginx proxy_pass, the gateway's `off`
   route and the enforce route; then a second nginx, a process of its own proxying to the first. The first
   nginx's proxy_pass reaches its file server within its own worker, with no process to wake between them; the
   gateway's hop to nginx wakes one process and then the other, and so does the second nginx's: its p50 is the
   hop's own cost, which the gateway cannot avoid, apart from what the gateway's code adds. With `--awake`, a
   nice-19 busy loop on every CPU keeps them from idling during these runs (on a virtual machine an idle CPU's
   wake-up costs tens of microseconds a hop, more than the servers' own work).

Each target gets a 2 s wrk warm-up (not reported), then a measured `wrk --latency` run. wrk is pinned to CPU 1
when the machine has two CPUs or more; the servers are not pinned. Everything listens on 127.0.0.1 only, on free
ports, and every child process is stopped (SIGTERM, then SIGKILL after 5 s) and the temp dir removed at the end.
wrk and nginx come from the Debian packages `wrk` and `nginx-light`, installed with apt-get when missing.

The gateways use the memory store, or with `--store redis` the fleet's Redis store: a redis-server this bench starts
on a free loopback port (persistence off; Debian's `redis-server`, installed when missing), each gateway its own
database. `--workers` above 1 implies `--store redis`, since the gateway refuses more workers with the memory store.
A `#` line says how many CPUs the gateway had: with fewer than workers + 1 (wrk takes one), the figure of N workers
is not what N cores give.

    python bench/proxy_bench.py [--duration 10s] [--connections 64] [--threads 1] [--workers 1] [--python PY]
                                [--store memory|redis] [--access-logs json[,text]|none] [--awake]

Prints a few `#` header lines, one line per target (requests/s, p50 and p99 latency), a `# targets:` line (the
floors of issue 14, printed beside the figures and never checked), then
`RESULT gateway_vs_nginx=<ratio> gateway_vs_direct=<ratio> gateway_p99_ms=<ms>` (ratios of requests/s),
`RESULT enforce_vs_nginx=<ratio> enforce_rps=<n> enforce_p99_ms=<ms>` (the enforce route against nginx proxy_pass),
`RESULT added_p50_us=<us> enforce_added_p50_us=<us> nginx_p50_us=<us>` (at one connection: the p50 of the `off`
route and of the enforce route minus nginx proxy_pass's p50, in microseconds), `RESULT added_over_hop_p50_us=<us>
enforce_added_over_hop_p50_us=<us> hop_p50_us=<us>` (the same over the second nginx's p50) and, per access log format,
`RESULT gateway_rps=<n> gateway_json_logs_rps=<n> json_logs_vs_off=<ratio>` and the same for the gateway's CPU
time per request (`gateway_cpu_us`, `gateway_json_logs_cpu_us`, `json_logs_cpu_vs_off`, from /proc: steadier
than requests/s on a machine that other work shares). The exit status is 1 when a
gateway answered any non-2xx/3xx response (its figure is then flagged in its line) or a server could not be
started. Not run by CI. The enforce route needs the project's environment (the Okta sandbox, the binding's
cryptography): run the script with the interpreter of the virtualenv, as `make bench` does.
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

REPO = Path(__file__).resolve().parent.parent
URL_PATH = "/1k.bin"
FILE_SIZE = 1024
WARMUP = "2s"
READY_TIMEOUT = 20.0  # seconds for the gateway's /.gateway/readyz to answer 200
PORT_TIMEOUT = 10.0  # seconds for nginx to accept connections
STOP_GRACE = 5.0  # seconds between SIGTERM and SIGKILL
WRK_CPU = 1
LOG_FORMATS = ("json", "text")
STORES = ("memory", "redis")
ENFORCE_PATH = "/on"  # revocation_bench's enforce route, rewritten to "/" upstream
ENFORCE_CACHE_TTL = 3600.0  # seconds: no revalidation within the bench
ENFORCE_MAX_RUN = 50  # seconds of a measured run of the enforce route: with the warm-up, well within touch_every
TARGETS = ("# targets (issue 14; printed, not checked): gateway_vs_nginx>=0.33 enforce_vs_nginx>=0.31 "
           "gateway_p99_ms<=6 added_p50_us<=90")

Child = subprocess.Popen[bytes]


class BenchError(Exception):
    """Something that stops the benchmark; the message is printed and the exit status is 1."""


@dataclass(frozen=True)
class WrkResult:
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    socket_errors: dict[str, int]
    requests: int = 0
    cpu_us: float | None = None  # CPU time of the server's processes per request answered, in microseconds

    @property
    def socket_error_total(self) -> int:
        return sum(self.socket_errors.values())


# --- command line ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--duration", default="10s", type=_duration, help="measured wrk run, e.g. 10s, 1m")
    parser.add_argument("--connections", default=64, type=_positive, help="wrk connections (default 64)")
    parser.add_argument("--threads", default=1, type=_positive, help="wrk threads (default 1)")
    parser.add_argument("--workers", default=1, type=_positive, help="gateway worker processes (default 1)")
    parser.add_argument("--store", choices=STORES, default=None,
                        help="the gateways' store: memory (the default with 1 worker) or redis (a redis-server this "
                             "bench starts on loopback; the default, and the only choice, with more workers)")
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs the gateway")
    parser.add_argument("--awake", action="store_true",
                        help="keep every CPU busy at the lowest priority (nice 19) during the one-connection runs, "
                             "so that their latency is the servers' and not an idle CPU's wake-up")
    parser.add_argument("--access-logs", default="json", type=_log_formats,
                        help="access log formats to measure the gateway with besides logs off: json, text, "
                             "json,text or none (default json)")
    args = parser.parse_args(argv)
    if args.store is None:
        args.store = "redis" if args.workers > 1 else "memory"
    elif args.store == "memory" and args.workers > 1:
        parser.error("--workers above 1 needs --store redis: the gateway refuses workers > 1 with the memory store")
    return args


def _log_formats(text: str) -> tuple[str, ...]:
    formats = tuple(f for f in text.split(",") if f and f != "none")
    if any(f not in LOG_FORMATS for f in formats):
        raise argparse.ArgumentTypeError(f"not a list of access log formats: {text!r} (json, text, json,text, none)")
    return formats


def _duration(text: str) -> str:
    if not re.fullmatch(r"\d+[smh]?", text) or duration_seconds(text) <= 0:
        raise argparse.ArgumentTypeError(f"not a wrk duration: {text!r} (use e.g. 10s, 1m)")
    return text


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text}")
    return value


def duration_seconds(text: str) -> int:
    """Seconds in a wrk duration ("10", "10s", "2m", "1h")."""
    match = re.fullmatch(r"(\d+)([smh]?)", text)
    if match is None:
        raise ValueError(text)
    return int(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


# --- tools ----------------------------------------------------------------------------------------------------


def which(tool: str) -> str | None:
    """`tool` on $PATH, or in the sbin/bin directories (nginx lives in /usr/sbin, often not on a user's PATH)."""
    return shutil.which(tool) or shutil.which(tool, path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin")


def ensure_tools() -> tuple[str, str]:
    """Paths of wrk and nginx, installing the Debian packages when either is missing."""
    if which("wrk") is None or which("nginx") is None:
        print("# installing wrk and nginx-light with apt-get", flush=True)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update"], check=True, env=env, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "wrk", "nginx-light"], check=True, env=env, timeout=900)
    wrk, nginx = which("wrk"), which("nginx")
    if wrk is None or nginx is None:
        raise BenchError("wrk or nginx is still missing after apt-get install")
    return wrk, nginx


def nginx_version(nginx: str) -> tuple[int, ...]:
    out = subprocess.run([nginx, "-v"], capture_output=True, text=True, timeout=10)
    match = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", out.stderr + out.stdout)
    return tuple(int(part) for part in match.groups()) if match else (0, 0, 0)


def python_version(python: str) -> str:
    out = subprocess.run([python, "-c", "import platform; print(platform.python_version())"],
                         capture_output=True, text=True, timeout=30)
    return out.stdout.strip() or "unknown"


def wrk_pin() -> list[str]:
    """`taskset -c 1` when taskset exists and there are two CPUs or more (and CPU 1 is ours), else nothing."""
    cpus = os.sched_getaffinity(0)
    if shutil.which("taskset") and len(cpus) >= 2 and WRK_CPU in cpus:
        return ["taskset", "-c", str(WRK_CPU)]
    return []


def cpu_note(workers: int, cpus: int, pinned: bool) -> str:
    """The `#` line on the CPUs the gateway had: its workers share every CPU with nginx, and with wrk's when wrk is
    pinned, so with fewer than workers + 1 CPUs the figure of N workers is not what N cores of their own give."""
    note = f"# the gateway ({workers_text(workers)}) had {cpus} CPU{'s' if cpus > 1 else ''}, " + (
        "wrk's among them" if pinned else "shared with wrk")
    if workers > 1 and cpus < workers + 1:
        return (f"{note}; fewer than workers + 1 = {workers + 1}, so the {workers}-worker figure is not what "
                f"{workers} cores give: the workers, nginx and wrk share them with nothing to spare")
    return note


def cpu_list(cpus: set[int]) -> str:
    """"0-3,6" for {0, 1, 2, 3, 6}."""
    ranges: list[str] = []
    for cpu in sorted(cpus):
        if ranges and int(ranges[-1].split("-")[-1]) == cpu - 1:
            ranges[-1] = f"{ranges[-1].split('-')[0]}-{cpu}"
        else:
            ranges.append(str(cpu))
    return ",".join(ranges)


# --- processes ------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spawn(argv: list[str], log: Path, *, cwd: Path | None = None, env: dict[str, str] | None = None) -> Child:
    """A child in its own process group (so that its own children can be stopped with it), output to `log`."""
    with log.open("wb") as out:
        return subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def stop(child: Child) -> None:
    """SIGTERM to the child's process group, SIGKILL after STOP_GRACE seconds; then reap what is left."""
    if child.poll() is None:
        _signal_group(child, signal.SIGTERM)
        try:
            child.wait(STOP_GRACE)
        except subprocess.TimeoutExpired:
            _signal_group(child, signal.SIGKILL)
            child.wait()
    _signal_group(child, signal.SIGKILL)  # grandchildren the leader left behind, if any


def _signal_group(child: Child, signum: int) -> None:
    try:
        os.killpg(child.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _raise_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # so that the `finally` in main() stops the children


def tail(path: Path, limit: int = 8000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return ""


# --- nginx ----------------------------------------------------------------------------------------------------


def nginx_conf(work: Path, direct_port: int, proxy_port: int, *, hop: bool = False) -> str:
    """One nginx worker serving the file on `direct_port` and proxying to it on `proxy_port`; with `hop`, a second
    nginx (its files under work/hop) that only proxies, from `proxy_port` to the first's `direct_port`: the same
    hop between two processes that the gateway makes, where the first nginx's proxy_pass reaches its file server
    within its own worker."""
    home = work / "hop" if hop else work
    temp = home / "temp"
    file_server = "" if hop else f"""
    server {{
        listen 127.0.0.1:{direct_port};
        root {work}/html;
    }}
"""
    return f"""\
daemon off;
master_process on;
worker_processes 1;
error_log {work}/{"hop-error.log" if hop else "error.log"};
pid {home}/nginx.pid;

events {{ worker_connections 4096; }}

http {{
    access_log off;
    default_type application/octet-stream;
    client_body_temp_path {temp}/client_body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    keepalive_requests 1000000;
{file_server}
    upstream bench_static {{
        server 127.0.0.1:{direct_port};
        keepalive 64;
        keepalive_requests 1000000;
    }}

    server {{
        listen 127.0.0.1:{proxy_port};
        location / {{
            proxy_pass http://bench_static;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""


def start_nginx_hop(nginx: str, work: Path, direct_port: int, hop_port: int) -> Child:
    (work / "hop" / "temp").mkdir(parents=True)
    conf = work / "hop" / "nginx.conf"
    conf.write_text(nginx_conf(work, direct_port, hop_port, hop=True))
    argv = [nginx, "-c", str(conf), "-p", f"{work}/hop/"]
    if nginx_version(nginx) >= (1, 19, 5):
        argv += ["-e", str(work / "hop-error.log")]
    return spawn(argv, work / "hop-nginx.out")


def start_nginx(nginx: str, work: Path, direct_port: int, proxy_port: int) -> Child:
    html = work / "html"
    html.mkdir()
    html.chmod(0o755)
    page = html / URL_PATH.lstrip("/")
    page.write_bytes(os.urandom(FILE_SIZE))
    page.chmod(0o644)  # nginx's worker may run as an unprivileged user
    (work / "temp").mkdir()
    conf = work / "nginx.conf"
    conf.write_text(nginx_conf(work, direct_port, proxy_port))
    argv = [nginx, "-c", str(conf), "-p", f"{work}/"]
    if nginx_version(nginx) >= (1, 19, 5):
        argv += ["-e", str(work / "error.log")]  # the log used before the configuration is read
    return spawn(argv, work / "nginx.out")


def wait_for_port(port: int, child: Child, log: Path, name: str = "nginx") -> None:
    deadline = time.monotonic() + PORT_TIMEOUT
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise BenchError(f"{name} exited with status {child.returncode}:\n{tail(log)}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise BenchError(f"nothing accepts connections on 127.0.0.1:{port} after {PORT_TIMEOUT:g} s:\n{tail(log)}")


# --- redis ----------------------------------------------------------------------------------------------------


def ensure_redis() -> str:
    """The path of redis-server, installing Debian's package when it is missing."""
    found = shutil.which("redis-server")
    if found is None:
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "redis-server"], check=True,
                       timeout=900, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        found = shutil.which("redis-server")
    if found is None:
        raise BenchError("redis-server is missing and could not be installed")
    return found


def start_redis(redis: str, work: Path, port: int, children: list[Child]) -> Child:
    """A redis-server on 127.0.0.1:`port`, persistence off, stopped with `children` at the end."""
    child = spawn([redis, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                   "--dir", str(work)], work / f"redis-{port}.log")
    children.append(child)
    wait_for_port(port, child, work / f"redis-{port}.log", "redis-server")
    return child


def store_conf(redis_port: int | None, db: int = 0) -> str:
    """The `[store]` table of a gateway: none (the memory store) without a redis port, else Redis database `db`
    (each gateway its own, so that none reads another's state)."""
    if redis_port is None:
        return ""
    return f'\n[store]\nbackend = "redis"\nurl = "redis://127.0.0.1:{redis_port}/{db}"\n'


# --- gateway --------------------------------------------------------------------------------------------------


def gateway_conf(port: int, upstream_port: int, workers: int, log_format: str | None = None, store: str = "") -> str:
    """One route to the upstream; with `log_format`, an access line per request in that format (INFO lets them
    through), else no access log."""
    logs = f'log_level = "info"\naccess_log = true\n\n[log]\nformat = "{log_format}"' if log_format else (
        'log_level = "warning"\naccess_log = false')
    return f"""\
[server]
listen = "127.0.0.1:{port}"
workers = {workers}
stop_delay = 0  # a benchmark stops at once: no load balancer to drain
{logs}
{store}
[[route]]
name = "static"
host = "*"
path = "/"
upstream = "http://127.0.0.1:{upstream_port}"
"""


def gateway_name(log_format: str | None) -> str:
    return f"gateway-{log_format}-logs" if log_format else "gateway"


def gateway_err(work: Path, log_format: str | None) -> Path:
    return work / f"{gateway_name(log_format)}.err"


def start_gateway(python: str, work: Path, port: int, upstream_port: int, workers: int,
                  log_format: str | None = None, store: str = "") -> Child:
    name = gateway_name(log_format)
    config = work / f"{name}.toml"
    config.write_text(gateway_conf(port, upstream_port, workers, log_format, store))
    pythonpath = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(pythonpath)}
    argv = [python, "-m", "gateway.cli", "run", "--config", str(config)]
    return spawn(argv, work / f"{name}.err", cwd=REPO, env=env)


def http_status(port: int, path: str) -> int | None:
    """The status of one GET to 127.0.0.1 over a fresh connection, or None when there is no answer."""
    return http_status_at("127.0.0.1", port, path)


def http_status_at(host: str, port: int, path: str) -> int | None:
    request = f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode()
    try:
        with socket.create_connection((host, port), timeout=1) as sock:
            sock.sendall(request)
            head = sock.recv(64)
    except OSError:
        return None
    match = re.match(rb"HTTP/1\.[01] (\d{3})", head)
    return int(match.group(1)) if match else None


def wait_for_gateway(child: Child, port: int, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise BenchError(f"the gateway exited with status {child.returncode}; its stderr:\n{tail(log)}")
        if http_status(port, "/.gateway/readyz") == 200:
            return
        time.sleep(0.1)
    raise BenchError(f"the gateway was not ready within {READY_TIMEOUT:g} s; its stderr:\n{tail(log)}")


# --- wrk ------------------------------------------------------------------------------------------------------


def run_wrk(wrk: str, pin: list[str], args: argparse.Namespace, port: int, duration: str, latency: bool,
            path: str = URL_PATH, cookie: str | None = None) -> str:
    argv = [*pin, wrk, "--threads", str(args.threads), "--connections", str(args.connections),
            "--duration", duration, *(["--latency"] if latency else []),
            *(["--header", f"Cookie: {cookie}"] if cookie else []), f"http://127.0.0.1:{port}{path}"]
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=duration_seconds(duration) + 60)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"wrk did not finish: {' '.join(argv)}") from exc
    if out.returncode != 0:
        raise BenchError(f"wrk failed ({out.returncode}): {' '.join(argv)}\n{out.stdout}{out.stderr}")
    return out.stdout


def to_ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}[unit]


def parse_wrk(out: str) -> WrkResult:
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M)
    if rps is None:
        raise BenchError(f"no Requests/sec in wrk's output:\n{out}")
    percentiles: dict[str, float] = {}
    for pct in ("50", "99"):
        match = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s|m|h)\s*$", out, re.M)
        percentiles[pct] = to_ms(match.group(1), match.group(2)) if match else float("nan")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    socket_errors = dict(zip(("connect", "read", "write", "timeout"),
                             (int(n) for n in errors.groups()) if errors else (0, 0, 0, 0), strict=True))
    total = re.search(r"^\s*(\d+) requests in", out, re.M)
    return WrkResult(float(rps.group(1)), percentiles["50"], percentiles["99"],
                     int(non_2xx.group(1)) if non_2xx else 0, socket_errors, int(total.group(1)) if total else 0)


def measure(wrk: str, pin: list[str], args: argparse.Namespace, port: int, group: int | None = None,
            path: str = URL_PATH, cookie: str | None = None) -> WrkResult:
    """wrk's figures; with `group` (a process group id), also the CPU time its processes spent per request: on a
    machine shared with other work, a steadier figure than requests/s."""
    run_wrk(wrk, pin, args, port, WARMUP, latency=False, path=path, cookie=cookie)
    before = group_cpu_seconds(group) if group is not None else 0.0
    result = parse_wrk(run_wrk(wrk, pin, args, port, args.duration, latency=True, path=path, cookie=cookie))
    if group is None or not result.requests:
        return result
    spent = group_cpu_seconds(group) - before
    return dataclasses.replace(result, cpu_us=spent / result.requests * 1e6)


def group_cpu_seconds(group: int) -> float:
    """User and system CPU seconds of the live processes of a process group (from /proc/<pid>/stat)."""
    ticks = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[2]) == group:  # pgrp; utime and stime follow at 12 and 13 (stat's fields 14 and 15)
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def result_line(name: str, result: WrkResult, *, loud: bool = False) -> str:
    line = f"{name:<36} {result.rps:>11,.0f} req/s   p50 {result.p50_ms:8.3f} ms   p99 {result.p99_ms:8.3f} ms"
    if result.non_2xx:
        line += f"   non-2xx/3xx: {result.non_2xx}"
        if loud:
            line += "   !!! THE GATEWAY ANSWERED ERRORS: THIS FIGURE IS NOT A PROXY MEASUREMENT !!!"
    if result.cpu_us is not None:
        line += f"   cpu {result.cpu_us:6.1f} us/req"
    if result.socket_error_total:
        line += "   socket errors: " + ", ".join(f"{kind} {n}" for kind, n in result.socket_errors.items())
    return line


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b > 0 else "nan"


def workers_text(workers: int) -> str:
    return f"{workers} worker{'s' if workers > 1 else ''}"


def added_p50_us(result: WrkResult, base: WrkResult) -> float:
    """What `result` adds to `base` at the median, in microseconds."""
    return (result.p50_ms - base.p50_ms) * 1000


def queueing_ms(result: WrkResult, connections: int) -> float:
    """The mean latency that `connections` always-busy clients see at `result`'s throughput, whatever the server
    (Little's law: connections = throughput x latency): no percentile can be below it for long, so a p99 target
    under it asks for throughput first, and p99 over this is the tail the server itself adds."""
    return connections / result.rps * 1000 if result.rps > 0 else float("nan")


def enforce_duration(duration: str) -> str:
    """The measured run of the enforce route: `duration`, at most ENFORCE_MAX_RUN seconds (see the docstring)."""
    return duration if duration_seconds(duration) <= ENFORCE_MAX_RUN else f"{ENFORCE_MAX_RUN}s"


# --- the enforce route ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Enforcing:
    """The gateway of the enforce route, and how to seal a bound session's cookies for it."""

    child: Child
    port: int
    err: Path  # its stderr
    cookie: Callable[[], str]  # sealed when called: the binding's last activity is now


def start_enforcing(args: argparse.Namespace, work: Path, upstream_port: int, children: list[Child],
                    store: str = "") -> Enforcing:
    """The Okta sandbox, a signed-in session and a gateway whose route `/on` enforces in front of `upstream_port`,
    built by revocation_bench's helpers (imported here: they need the project's environment)."""
    try:
        import revocation_bench as rb
    except ImportError as exc:
        raise BenchError(f"the enforce route needs the project's environment ({exc}): run this script with the "
                         "virtualenv's python (make bench)") from exc
    up = rb.start_okta(args, upstream_port, work, children)
    child, port = rb.start_gateway(args, up, work, children, [], READY_TIMEOUT, store, workers=args.workers,
                                   cache_ttl=ENFORCE_CACHE_TTL)
    return Enforcing(child, port, work / f"gateway-{port}.err", up.cookie)  # the log rb.start_gateway writes


def measure_enforcing(wrk: str, pin: list[str], args: argparse.Namespace, enforcing: Enforcing) -> WrkResult:
    """One warm-up and one measured run of the enforce route, with a binding sealed just before them. A request
    before and one after show that the binding was forwarded without a re-seal all along: wrk counts the redirect
    that refuses a binding as a success."""
    capped = argparse.Namespace(**{**vars(args), "duration": enforce_duration(args.duration)})
    path, cookie = ENFORCE_PATH + URL_PATH, enforcing.cookie()
    check_forwarded(enforcing.port, path, cookie, "before")
    result = measure(wrk, pin, capped, enforcing.port, enforcing.child.pid, path, cookie)
    check_forwarded(enforcing.port, path, cookie, "after")
    return result


def check_forwarded(port: int, path: str, cookie: str, when: str) -> None:
    """One GET with `cookie` must be forwarded (200) without a Set-Cookie (no re-seal)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers={"Cookie": cookie})
        answer = connection.getresponse()
        answer.read()
    except OSError as exc:
        raise BenchError(f"the enforce route did not answer {when} its run: {exc}") from exc
    finally:
        connection.close()
    resealed = answer.getheader("Set-Cookie") is not None
    if answer.status != 200 or resealed:
        raise BenchError(f"the enforce route answered {answer.status}{' with a Set-Cookie' if resealed else ''} "
                         f"{when} its run: the binding was refused or re-sealed, so its figure is not the warm hit")


# --- main -----------------------------------------------------------------------------------------------------


def print_header(args: argparse.Namespace, nginx: str, pin: list[str]) -> None:
    cpus = os.sched_getaffinity(0)
    print(f"# proxy_bench {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    print(f"# nproc {len(cpus)} (cpu_count {os.cpu_count()}), python {sys.version.split()[0]} (this script), "
          f"python {python_version(args.python)} ({args.python}, the gateway), "
          f"nginx {'.'.join(map(str, nginx_version(nginx)))}")
    print(f"# wrk --threads {args.threads} --connections {args.connections} --duration {args.duration} --latency "
          f"http://127.0.0.1:PORT{URL_PATH} ({FILE_SIZE} B), after a {WARMUP} warm-up run per target")
    if enforce_duration(args.duration) != args.duration:
        print(f"# the enforce route is measured for {enforce_duration(args.duration)} a run, not {args.duration}: "
              "a longer run would outlive its binding's touch_every and re-seal on every request")
    print(f"# store: {args.store}" + (" (a redis-server this bench started on 127.0.0.1, persistence off, one "
                                      "database per gateway)" if args.store == "redis" else ""))
    servers = f"nginx (1 worker) and the gateway ({workers_text(args.workers)})"
    if pin:
        print(f"# CPUs: wrk pinned to CPU {pin[-1]} ({' '.join(pin)}); {servers} unpinned on CPUs {cpu_list(cpus)}")
    else:
        print(f"# CPUs: nothing pinned (one CPU or no taskset); wrk and {servers} share CPUs {cpu_list(cpus)}")
    print(cpu_note(args.workers, len(cpus), bool(pin)))
    sys.stdout.flush()


def run(args: argparse.Namespace, work: Path, children: list[Child]) -> int:
    wrk, nginx = ensure_tools()
    pin = wrk_pin()
    print_header(args, nginx, pin)

    direct_port, proxy_port = free_port(), free_port()
    nginx_child = start_nginx(nginx, work, direct_port, proxy_port)
    children.append(nginx_child)
    for port in (direct_port, proxy_port):
        wait_for_port(port, nginx_child, work / "error.log")
    hop_port = free_port()
    hop_child = start_nginx_hop(nginx, work, direct_port, hop_port)
    children.append(hop_child)
    wait_for_port(hop_port, hop_child, work / "hop-error.log", "the second nginx")
    redis_port = start_store(args, work, children)
    gateways: dict[str | None, tuple[Child, int]] = {}
    for db, log_format in enumerate((None, *args.access_logs)):
        port, store = free_port(), store_conf(redis_port, db)
        gateways[log_format] = start_gateway(args.python, work, port, direct_port, args.workers, log_format,
                                             store), port
        children.append(gateways[log_format][0])
    enforcing = start_enforcing(args, work, direct_port, children, store_conf(redis_port, len(gateways)))
    for log_format, (child, port) in gateways.items():
        wait_for_gateway(child, port, gateway_err(work, log_format))

    workers = workers_text(args.workers)
    targets = [("nginx direct", direct_port), ("nginx proxy_pass (1 worker)", proxy_port),
               *((f"gateway ({workers}{f', {f} access log' if f else ''})", port) for f, (_, port) in gateways.items())]
    gateway_ports = {port for _, port in gateways.values()}
    groups = {port: child.pid for child, port in gateways.values()}  # each is its own process group (spawn)
    results: list[WrkResult] = []
    for name, port in targets:
        result = measure(wrk, pin, args, port, groups.get(port))
        results.append(result)
        print(result_line(name, result, loud=port in gateway_ports), flush=True)
    enforced = measure_enforcing(wrk, pin, args, enforcing)
    print(result_line(f"gateway ({workers}, enforce route)", enforced, loud=True), flush=True)
    spinners = keep_cpus_awake(work) if args.awake else []
    try:
        single = one_connection(wrk, pin, args, proxy_port, gateways[None], enforcing)
        hop_1 = measure(wrk, pin, argparse.Namespace(**{**vars(args), "connections": 1}), hop_port)
        print(result_line("1 connection: nginx, own process", hop_1), flush=True)
    finally:
        for spinner in spinners:
            stop(spinner)
    logs = [*((child, gateway_err(work, f)) for f, (child, _) in gateways.items()), (enforcing.child, enforcing.err)]
    for child, err in logs:
        if child.poll() is not None:
            raise BenchError(f"a gateway exited during the run; its stderr:\n{tail(err)}")

    direct, proxied, through_gateway, *logging = results
    print(TARGETS, flush=True)
    print(f"RESULT gateway_vs_nginx={ratio(through_gateway.rps, proxied.rps)} "
          f"gateway_vs_direct={ratio(through_gateway.rps, direct.rps)} gateway_p99_ms={through_gateway.p99_ms:.2f}",
          flush=True)
    print(f"RESULT enforce_vs_nginx={ratio(enforced.rps, proxied.rps)} enforce_rps={enforced.rps:.0f} "
          f"enforce_p99_ms={enforced.p99_ms:.2f}", flush=True)
    floor = queueing_ms(through_gateway, args.connections)
    print(f"RESULT gateway_queueing_ms={floor:.2f} gateway_p99_over_queueing={through_gateway.p99_ms / floor:.2f} "
          f"gateway_p99_over_p50={ratio(through_gateway.p99_ms, through_gateway.p50_ms)}", flush=True)
    nginx_1, off_1, enforce_1 = single
    print(f"RESULT added_p50_us={added_p50_us(off_1, nginx_1):.0f} "
          f"enforce_added_p50_us={added_p50_us(enforce_1, nginx_1):.0f} nginx_p50_us={nginx_1.p50_ms * 1000:.0f}",
          flush=True)
    print(f"RESULT added_over_hop_p50_us={added_p50_us(off_1, hop_1):.0f} "
          f"enforce_added_over_hop_p50_us={added_p50_us(enforce_1, hop_1):.0f} "
          f"hop_p50_us={hop_1.p50_ms * 1000:.0f}", flush=True)
    off_cpu = through_gateway.cpu_us or 0.0
    for f, logged in zip(args.access_logs, logging, strict=True):
        cpu = logged.cpu_us or 0.0
        print(f"RESULT gateway_rps={through_gateway.rps:.0f} gateway_{f}_logs_rps={logged.rps:.0f} "
              f"{f}_logs_vs_off={ratio(logged.rps, through_gateway.rps)}", flush=True)
        print(f"RESULT gateway_cpu_us={off_cpu:.1f} gateway_{f}_logs_cpu_us={cpu:.1f} "
              f"{f}_logs_cpu_vs_off={ratio(cpu, off_cpu)}", flush=True)
    return 1 if any(r.non_2xx for r in (through_gateway, *logging, enforced, off_1, enforce_1)) else 0


def keep_cpus_awake(work: Path) -> list[Child]:
    """A busy loop at nice 19 on every CPU. On a virtual machine an idle CPU halts, and waking it costs tens of
    microseconds (at one connection, on every hop of every request). These loops take only what the servers leave.
    `# awake` says so in the output."""
    cpus = sorted(os.sched_getaffinity(0))
    print(f"# awake: a nice-19 busy loop on CPUs {cpu_list(set(cpus))} during the one-connection runs", flush=True)
    pinned = shutil.which("taskset") is not None
    return [spawn([*(["taskset", "-c", str(cpu)] if pinned else []), "nice", "-n", "19", sys.executable, "-c",
                   "while True: pass"], work / f"awake-{cpu}.out") for cpu in cpus]


def start_store(args: argparse.Namespace, work: Path, children: list[Child]) -> int | None:
    """With `--store redis`, the port of a redis-server started for the gateways (stopped with `children`)."""
    if args.store != "redis":
        return None
    port = free_port()
    start_redis(ensure_redis(), work, port, children)
    return port


def one_connection(wrk: str, pin: list[str], args: argparse.Namespace, proxy_port: int, gateway: tuple[Child, int],
                   enforcing: Enforcing) -> tuple[WrkResult, WrkResult, WrkResult]:
    """nginx proxy_pass, the gateway's `off` route and the enforce route under `wrk --connections 1`: the latency
    a lone client sees, where the gateway's cost per request is not hidden behind other connections' work."""
    single = argparse.Namespace(**{**vars(args), "connections": 1})
    child, port = gateway
    workers = workers_text(args.workers)
    results = (measure(wrk, pin, single, proxy_port), measure(wrk, pin, single, port, child.pid),
               measure_enforcing(wrk, pin, single, enforcing))
    names = ("1 connection: nginx proxy_pass", f"1 connection: gateway ({workers})",
             "1 connection: gateway, enforce route")
    for name, result in zip(names, results, strict=True):
        print(result_line(name, result, loud="gateway" in name), flush=True)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    work = Path(tempfile.mkdtemp(prefix="proxy-bench-"))
    work.chmod(0o755)  # nginx's worker may run as an unprivileged user and must reach html/
    children: list[Child] = []
    try:
        return run(args, work, children)
    except BenchError as exc:
        sys.stdout.flush()
        print(f"proxy_bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("proxy_bench: interrupted", file=sys.stderr)
        return 130
    finally:
        for child in reversed(children):
            stop(child)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.modules.setdefault("proxy_bench", sys.modules[__name__])  # the module revocation_bench imports: one BenchError
    sys.exit(main())
