"""The Dockerfile's install and start steps, checked outside Docker (no engine runs on these machines)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from conftest import REPO

DOCKERFILE = (REPO / "Dockerfile").read_text()


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


def test_the_image_starts_the_gateway_on_the_configuration_it_copies(tmp_path: Path) -> None:
    copied = re.search(r"^COPY conf/(\S+) (\S+)$", DOCKERFILE, re.M)
    assert copied, "the Dockerfile copies a default configuration"
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", DOCKERFILE, re.M).group(1))  # type: ignore[union-attr]
    assert cmd[:2] == ["run", "--config"] and cmd[2] == copied.group(2)
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check-config", "--config", str(REPO / "conf" / copied.group(1))],
        capture_output=True, text=True, timeout=30, cwd=REPO,
    )
    assert result.returncode == 0, result.stderr


def test_the_health_check_asks_the_gateways_own_endpoint() -> None:
    assert "http://127.0.0.1:8080/.gateway/healthz" in DOCKERFILE
    assert re.search(r"^USER (?!root)\w+", DOCKERFILE, re.M)
