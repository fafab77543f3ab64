"""The demo as a newcomer runs it: `session-gateway demo --scripted` tells the story right, and the interactive
demo prints where everything is and stops cleanly on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from okta_sandbox_support import OKTA_HOST

from conftest import REPO
from gateway.sandbox.demo import run_scripted
from gateway.sandbox.stack import free_port


async def test_the_scripted_story_comes_out_as_told():
    lines: list[str] = []
    assert await run_scripted(okta_port=free_port(OKTA_HOST), gateway_port=free_port(), out=lines.append)
    table = "\n".join(lines)
    assert "UNEXPECTED" not in table
    signed_out_of_okta = next(line for line in lines if line.startswith("She signs out of Okta"))
    assert signed_out_of_okta.split()[5:] == ["signed", "in", "signed", "out", "signed", "out"]  # wiki, HR, Okta


def test_the_interactive_demo_prints_its_urls_and_stops_on_ctrl_c():
    port, okta_port = free_port(), free_port(OKTA_HOST)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OKTA_", "GATEWAY_"))}
    child = subprocess.Popen([sys.executable, "-m", "gateway.cli", "demo", "--port", str(port), "--okta-port",
                              str(okta_port)], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        lines = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = child.stdout.readline()  # type: ignore[union-attr]
            lines.append(line)
            if "Ctrl-C" in line or not line:
                break
        text = "".join(lines)
        assert f"http://127.0.0.1:{port}/hr/" in text and f"http://127.0.0.1:{port}/wiki/" in text
        assert "alice@example.com" in text and "/.gateway/status" in text
        child.send_signal(signal.SIGINT)
        assert child.wait(timeout=15) == 0
        assert "Traceback" not in child.stderr.read()  # type: ignore[union-attr]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


async def test_logging_out_of_an_app_in_the_demo_ends_on_that_apps_page_not_a_404():
    from gateway.sandbox.browser import Browser
    from gateway.sandbox.demo import ALICE, start_demo

    stack = await start_demo(okta_port=free_port(OKTA_HOST), gateway_port=free_port())
    browser = Browser(stack)
    try:
        assert (await browser.sign_in(ALICE, prefix="/hr", start="/hr/")).status == 200
        after = await browser.follow(await browser.get("/hr/logout"))
        assert after.status == 200 and after.url.startswith(stack.url("/hr/")), (after.status, after.url)
    finally:
        await browser.close()
        await stack.close()
