"""`session-gateway` as an operator runs it: exit codes, one-line errors, never a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.request

from conftest import REPO, free_port, toml_text


def cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


def test_check_config_prints_the_route_table_in_match_order():
    result = cli("check-config", "--config", "conf/gateway.example.toml")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "conf/gateway.example.toml: valid"
    rows = [line.split()[0] for line in lines[3:]]
    assert rows == ["app-api", "app"]  # the longer prefix is tried first


def test_a_bad_config_is_one_line_and_exit_status_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[route]]\nname = "a"\nupstream = "http://h:1"\npreserve_hots = true\n')
    for command in ("check-config", "run"):
        result = cli(command, "--config", str(bad))
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
        assert f"{bad}: route[0] (a).preserve_hots: expected" in result.stderr


def test_a_missing_config_is_exit_status_2(tmp_path):
    result = cli("check-config", "--config", str(tmp_path / "nope.toml"))
    assert result.returncode == 2 and "cannot read the file" in result.stderr and "Traceback" not in result.stderr


def test_a_port_in_use_is_one_line_and_exit_status_1(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        config = tmp_path / "gw.toml"
        config.write_text(toml_text([{"name": "a", "upstream": "http://127.0.0.1:1"}],
                                    server={"listen": f"127.0.0.1:{busy.getsockname()[1]}"}))
        result = cli("run", "--config", str(config))
    assert result.returncode == 1
    assert "Address already in use" in result.stderr and "Traceback" not in result.stderr


def test_several_workers_share_one_port_and_stop_together(tmp_path):
    port = free_port()
    config = tmp_path / "gw.toml"
    config.write_text(toml_text([{"name": "a", "upstream": "http://127.0.0.1:1"}],
                                server={"listen": f"127.0.0.1:{port}", "workers": 2}))
    process = subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", "--config", str(config)], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        import time

        deadline = time.monotonic() + 20
        answers = 0
        while time.monotonic() < deadline and answers < 20:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/.gateway/healthz", timeout=1) as r:
                    answers += r.status == 200
            except OSError:
                time.sleep(0.05)
        assert answers == 20
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=15)
    assert process.returncode == 0, stderr
    assert "2 worker processes" in stderr and "Traceback" not in stderr
