"""The package as pip installs it, the image's configuration as `check-config` reads it, and the Makefile's
installs of Debian packages (`make test`: only what is missing, without recommended packages, said first)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from container_support import Image, documented_environment

from conftest import REPO


def test_the_package_installs_as_the_dockerfile_installs_it(tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile", "--target", str(target),
         str(REPO)],
        check=True, timeout=300, cwd=tmp_path,
    )
    assert (target / "gateway" / "py.typed").is_file()
    assert (target / "plugins" / "__init__.py").is_file()
    assert (target / "gateway" / "proxy" / "client.py").is_file()
    scripts = [p.name for p in (target / "bin").iterdir()]
    assert "session-gateway" in scripts


def test_the_image_configuration_passes_check_config_with_the_documented_environment() -> None:
    config = Image(REPO, REPO).configuration_source
    env = {"PATH": os.environ["PATH"], **documented_environment()}
    result = subprocess.run([sys.executable, "-m", "gateway.cli", "check-config", "--config", str(config)],
                            capture_output=True, text=True, timeout=30, cwd=REPO, env=env)
    assert result.returncode == 0, result.stderr
    assert "listen 0.0.0.0:8080" in result.stdout


# --- make test's Debian packages: a PATH whose apt-get and sudo only say what they were asked -----------------


def make_targets(tmp_path: Path, *present: str, uid: int = 0) -> list[str]:
    """Run `make browser redis` with a fake apt-get and sudo (they print what they were asked), `id -u` saying
    `uid`, and the programs `present` on PATH (Chromium's binaries there only if named); gives the lines printed."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    env = shutil.which("env")
    assert env
    (bin_dir / "env").symlink_to(env)
    fakes = {"apt-get": 'echo "apt-get $*"', "sudo": 'echo "sudo:"; exec "$@"', "id": f"echo {uid}"}
    fakes.update({name: "exit 0" for name in present})
    for name, body in fakes.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    chromium = {f"CHROMIUM={bin_dir / 'chromium'}", f"CHROMEDRIVER={bin_dir / 'chromedriver'}"}
    make = shutil.which("make")
    assert make
    result = subprocess.run([make, "--no-print-directory", "-s", "-f", str(REPO / "Makefile"), "browser", "redis",
                             *sorted(chromium)], env={"PATH": str(bin_dir)}, cwd=tmp_path, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_make_test_installs_the_missing_debian_packages_without_recommends_saying_so_first(tmp_path: Path) -> None:
    lines = make_targets(tmp_path)
    assert lines == [
        "installing Debian's chromium and chromium-driver for the browser tests",
        "apt-get update -q",
        "apt-get install -y -q --no-install-recommends chromium chromium-driver",
        "installing Debian's redis-server and redis-sentinel for the store tests",
        "apt-get update -q",
        "apt-get install -y -q --no-install-recommends redis-server redis-sentinel",
    ]


def test_make_test_installs_through_sudo_when_not_root(tmp_path: Path) -> None:
    lines = make_targets(tmp_path, "chromium", "chromedriver", uid=1000)
    assert lines == [
        "installing Debian's redis-server and redis-sentinel for the store tests",
        "sudo:", "apt-get update -q",
        "sudo:", "apt-get install -y -q --no-install-recommends redis-server redis-sentinel",
    ]


def test_make_test_installs_nothing_that_is_there(tmp_path: Path) -> None:
    assert make_targets(tmp_path, "chromium", "chromedriver", "redis-server", "redis-sentinel") == []


def test_make_test_installs_only_the_part_that_is_missing(tmp_path: Path) -> None:
    lines = make_targets(tmp_path, "chromium", "chromedriver", "redis-server")
    assert lines[0] == "installing Debian's redis-server and redis-sentinel for the store tests"
    assert [line for line in lines if line.startswith("apt-get install")] == [
        "apt-get install -y -q --no-install-recommends redis-server redis-sentinel"]


def test_make_test_depends_on_both_installs() -> None:
    test_rule = re.search(r"^test: (.*)$", (REPO / "Makefile").read_text(), re.M)
    assert test_rule and {"browser", "redis"} <= set(test_rule.group(1).split())
