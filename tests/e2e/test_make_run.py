"""`make run` stops on Ctrl-C and on `kill -INT <make's pid>`: the demo ends and its ports are free again."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request

import pytest
from okta_sandbox_support import OKTA_HOST

from conftest import REPO, strict
from gateway.sandbox.stack import free_port


def start_make_run() -> tuple[subprocess.Popen[bytes], int, int]:
    """`make run` of this checkout (its venv as it is: the install step is taken as done), on free ports."""
    if shutil.which("make") is None:
        if strict():
            pytest.fail("make is not installed")
        pytest.skip("make is not installed")
    port, okta_port = free_port(), free_port(OKTA_HOST)
    make = subprocess.Popen(["make", "--no-print-directory", "-o", ".venv/.installed-demo", "run",
                             f"DEMO_ARGS=--port {port} --okta-port {okta_port}"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while True:
        assert make.poll() is None, make.stdout.read().decode() if make.stdout else ""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/.gateway/healthz", timeout=1) as r:
                if r.status == 200:
                    return make, port, okta_port
        except OSError:
            pass
        assert time.monotonic() < deadline, "the demo did not answer within 60 s"
        time.sleep(0.2)


def listening(host: str, port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a closed socket's TIME_WAIT is not a listener
        try:
            probe.bind((host, port))
        except OSError:
            return True
        return False


def stops(make: subprocess.Popen[bytes], port: int, okta_port: int) -> None:
    try:
        make.wait(15)
    except subprocess.TimeoutExpired:
        os.killpg(make.pid, signal.SIGKILL)
        make.wait()
        raise AssertionError("make run did not stop within 15 s") from None
    deadline = time.monotonic() + 5
    while True:
        try:
            os.killpg(make.pid, 0)  # the demo was in make's process group
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "the demo outlived make"
        time.sleep(0.1)
    assert not listening("127.0.0.1", port) and not listening(OKTA_HOST, okta_port)
    output = make.stdout.read().decode() if make.stdout else ""
    assert "Traceback" not in output, output


def test_kill_int_on_make_alone_stops_the_demo():
    make, port, okta_port = start_make_run()
    os.kill(make.pid, signal.SIGINT)
    stops(make, port, okta_port)


def test_ctrl_c_stops_make_run():
    make, port, okta_port = start_make_run()
    os.killpg(make.pid, signal.SIGINT)  # what a terminal does: the whole foreground process group
    stops(make, port, okta_port)
