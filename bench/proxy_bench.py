"""Proxy throughput: a 1 KiB static file from nginx directly, through nginx proxy_pass, and through the gateway.

Every target is measured with the same wrk settings (pinned to the last CPU when there are two or more), after a
short warm-up. nginx runs with one worker, as does the gateway for the headline ratio; the gateway is then measured
again with `--workers` processes sharing its port, for the figure an operator gets from the whole machine.

    python bench/proxy_bench.py [--duration 10s] [--connections 64] [--workers 2]

The last line is `RESULT gateway_vs_nginx=<ratio> gateway_vs_direct=<ratio>` (one worker each). Not run by CI.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PATH = "/1k.bin"


@dataclass(frozen=True)
class Measurement:
    name: str
    rps: float
    p50_ms: float
    p99_ms: float
    bad: int

    def line(self) -> str:
        warning = f"  !! {self.bad} non-2xx/3xx answers or socket errors" if self.bad else ""
        return (f"{self.name:<28} {self.rps:>10.0f} req/s   p50 {self.p50_ms:7.2f} ms   "
                f"p99 {self.p99_ms:7.2f} ms{warning}")


def main() -> int:
    args = _arguments()
    _ensure_tools()
    work = Path(tempfile.mkdtemp(prefix="proxy-bench-"))
    work.chmod(0o755)  # nginx's workers run unprivileged and must read the file
    children: list[subprocess.Popen[bytes]] = []
    try:
        direct_port, proxy_port = _free_port(), _free_port()
        children.append(_start_nginx(work, direct_port, proxy_port))
        _wait_for_port(direct_port)
        _wait_for_port(proxy_port)
        pin = _wrk_pin()
        print(f"# {time.strftime('%Y-%m-%d %H:%M:%S')}  nproc={os.cpu_count()}  python={platform.python_version()}")
        print(f"# wrk -t{args.threads} -c{args.connections} -d{args.duration} --latency {PATH}"
              f"{'  (wrk on CPU ' + pin[-1] + ', servers unpinned)' if pin else ''}")
        results = [
            _measure(args, pin, "nginx direct", direct_port),
            _measure(args, pin, "nginx proxy_pass (1 worker)", proxy_port),
        ]
        for workers in dict.fromkeys((1, args.workers)):
            port = _free_port()
            gateway = _start_gateway(args.python, work, port, direct_port, workers)
            children.append(gateway)
            _wait_for_ready(gateway, port)
            results.append(_measure(args, pin, f"gateway ({workers} worker{'s' if workers > 1 else ''})", port))
            _stop(gateway)
        for result in results:
            print(result.line())
        direct, nginx, gateway, *more = results
        for extra in more:
            print(f"RESULT gateway_{extra.name.split('(')[1].split()[0]}workers_vs_nginx={extra.rps / nginx.rps:.2f}")
        print(f"RESULT gateway_vs_nginx={gateway.rps / nginx.rps:.2f} gateway_vs_direct={gateway.rps / direct.rps:.2f}")
        return 0
    finally:
        for child in children:
            _stop(child)
        shutil.rmtree(work, ignore_errors=True)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", default="10s")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=min(os.cpu_count() or 1, 2),
                        help="gateway processes for the second gateway run (default: 2, or 1 on one CPU)")
    parser.add_argument("--python", default=sys.executable, help="the interpreter that runs the gateway")
    return parser.parse_args()


def _ensure_tools() -> None:
    missing = [pkg for tool, pkg in (("wrk", "wrk"), ("nginx", "nginx-light")) if not _which(tool)]
    if missing:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})


def _which(tool: str) -> str | None:
    return shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/usr/bin")


def _start_nginx(work: Path, direct_port: int, proxy_port: int) -> subprocess.Popen[bytes]:
    (work / "html").mkdir()
    (work / "html" / PATH.lstrip("/")).write_bytes(os.urandom(1024))
    temp = work / "temp"
    temp.mkdir()
    conf = work / "nginx.conf"
    conf.write_text(f"""
daemon off; master_process on; worker_processes 1;
error_log {work}/error.log; pid {work}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {temp}/body; proxy_temp_path {temp}/proxy; fastcgi_temp_path {temp}/fastcgi;
  uwsgi_temp_path {temp}/uwsgi; scgi_temp_path {temp}/scgi;
  keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{direct_port}; root {work}/html; }}
  upstream static {{ server 127.0.0.1:{direct_port}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{proxy_port};
    location / {{ proxy_pass http://static; proxy_http_version 1.1; proxy_set_header Connection ""; }}
  }}
}}
""")
    return subprocess.Popen([_which("nginx") or "nginx", "-c", str(conf), "-p", str(work)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _start_gateway(python: str, work: Path, port: int, upstream_port: int, workers: int) -> subprocess.Popen[bytes]:
    config = work / f"gateway-{workers}.toml"
    config.write_text(f"""
[server]
listen = "127.0.0.1:{port}"
workers = {workers}
access_log = false
log_level = "warning"

[[route]]
name = "static"
host = "*"
path = "/"
upstream = "http://127.0.0.1:{upstream_port}"
""")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([python, "-m", "gateway.cli", "run", "--config", str(config)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_for_ready(process: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"the gateway exited:\n{process.stderr.read().decode() if process.stderr else ''}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/.gateway/readyz", timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    _stop(process)
    sys.exit(f"the gateway was not ready within 20 s:\n{process.stderr.read().decode() if process.stderr else ''}")


def _measure(args: argparse.Namespace, pin: list[str], name: str, port: int) -> Measurement:
    url = f"http://127.0.0.1:{port}{PATH}"
    common = [*pin, "wrk", f"-t{args.threads}", f"-c{args.connections}"]
    subprocess.run([*common, "-d2s", url], check=True, capture_output=True, timeout=60)
    out = subprocess.run([*common, f"-d{args.duration}", "--latency", url], check=True, capture_output=True,
                         text=True, timeout=600).stdout
    return _parse_wrk(name, out)


def _parse_wrk(name: str, out: str) -> Measurement:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+([\d.]+)(us|ms|s)\s*$", out, re.M))
    p99 = _ms(re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M))
    bad = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if socket_errors:
        bad += sum(int(n) for n in socket_errors.groups())
    return Measurement(name, rps, p50, p99, bad)


def _ms(match: re.Match[str] | None) -> float:
    if match is None:
        return float("nan")
    value, unit = float(match.group(1)), match.group(2)
    return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value


def _wrk_pin() -> list[str]:
    cpus = os.cpu_count() or 1
    return ["taskset", "-c", str(cpus - 1)] if cpus >= 2 and shutil.which("taskset") else []


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on 127.0.0.1:{port}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


if __name__ == "__main__":
    sys.exit(main())
