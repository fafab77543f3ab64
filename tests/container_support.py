"""The Dockerfile, its build context and the README's `docker run` line, read as Docker reads them, and an image
built without Docker: the files the Dockerfile copies laid out under a directory that stands for the image's `/`,
and a fresh venv in it into which the Dockerfile's `pip install` runs (no Docker engine runs on these machines).

Nothing here repeats what the Dockerfile says: the tests parse it (ENV, WORKDIR, COPY, RUN's pip install, USER,
HEALTHCHECK, ENTRYPOINT, CMD), so a change of the Dockerfile is a change of what they run.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from okta_sandbox_support import API_TOKEN
from stack_support import ADMIN_TOKEN, HOOK_SECRET

from conftest import BINDING_KEY, REPO

DOCKERFILE = REPO / "Dockerfile"
README = REPO / "README.md"
SECRETS = {"OKTA_API_TOKEN": API_TOKEN, "GATEWAY_BINDING_KEYS": BINDING_KEY, "OKTA_HOOK_SECRET": HOOK_SECRET,
           "GATEWAY_ADMIN_TOKEN": ADMIN_TOKEN}


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, its arguments) in order, continuation lines joined, comments and blank lines left out."""
    found: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        keyword, _, rest = whole.partition(" ")
        found.append((keyword.upper(), rest.strip()))
    return found


@dataclass(frozen=True)
class Dockerfile:
    steps: list[tuple[str, str]]

    @classmethod
    def read(cls, path: Path = DOCKERFILE) -> Dockerfile:
        return cls(instructions(path.read_text()))

    def all(self, keyword: str) -> list[str]:
        return [rest for k, rest in self.steps if k == keyword]

    def one(self, keyword: str) -> str:
        found = self.all(keyword)
        assert len(found) == 1, f"the Dockerfile has {len(found)} {keyword} instructions"
        return found[0]

    def exec_form(self, keyword: str) -> list[str]:
        """ENTRYPOINT or CMD in exec form (a JSON array, run without a shell: signals reach the gateway)."""
        value = json.loads(self.one(keyword))
        assert isinstance(value, list) and all(isinstance(v, str) for v in value), f"{keyword} in exec form"
        return value

    @property
    def env(self) -> dict[str, str]:
        """ENV's variables, in the NAME=value form."""
        variables: dict[str, str] = {}
        for rest in self.all("ENV"):
            for word in shlex.split(rest):
                name, sep, value = word.partition("=")
                assert sep, f"ENV {rest!r}: the NAME=value form"
                variables[name] = value
        return variables

    @property
    def workdir(self) -> str:
        return self.one("WORKDIR")

    @property
    def copies(self) -> list[tuple[list[str], str]]:
        """COPY's sources and destination, each as written."""
        found = []
        for rest in self.all("COPY"):
            words = shlex.split(rest)
            assert not any(w.startswith("--") for w in words), f"COPY {rest}: no options expected"
            found.append((words[:-1], words[-1]))
        return found

    @property
    def pip_install(self) -> list[str]:
        """The arguments of the one `pip install` that RUN does."""
        commands = [m.group(1) for rest in self.all("RUN") for m in re.finditer(r"pip install ([^&;|]+)", rest)]
        assert len(commands) == 1, f"one pip install in the Dockerfile, found {commands}"
        return shlex.split(commands[0])

    @property
    def user(self) -> tuple[int, int | None]:
        user, _, group = self.one("USER").partition(":")
        assert user.isdigit() and (not group or group.isdigit()), "USER is numeric (uid[:gid])"
        return int(user), int(group) if group else None

    @property
    def healthcheck(self) -> list[str]:
        rest = self.one("HEALTHCHECK")
        _, sep, command = rest.partition("CMD ")
        assert sep, "HEALTHCHECK ... CMD [...]"
        value = json.loads(command)
        assert isinstance(value, list)
        return value


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore's patterns leave `path` (relative, with "/") out of the build context: the last
    pattern that matches the path or one of its parents decides, "!" putting it back, as Docker does."""
    parts = path.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    left_out = False
    for pattern in patterns:
        keep = pattern.startswith("!")
        glob = pattern.lstrip("!").strip("/")
        if any(fnmatch.fnmatchcase(c, glob) for c in candidates) or (
                glob.startswith("**/") and any(fnmatch.fnmatchcase(c, glob[3:]) for c in candidates)):
            left_out = not keep
    return left_out


def dockerignore() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def context_files() -> list[str]:
    """The build context: every file of the checkout that .dockerignore lets through (relative paths)."""
    patterns = dockerignore()
    found = []
    for directory, dirs, files in os.walk(REPO):
        rel_dir = Path(directory).relative_to(REPO).as_posix()
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in files:
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            if not ignored(rel, patterns):
                found.append(rel)
    return sorted(found)


def docker_run_line(readme: str) -> list[str]:
    """The words of the README's `docker run` command that starts the gateway (not the one inside `$(...)`)."""
    section = readme[readme.index("\n## Docker\n"):]
    section = section[:section.index("\n## ", 1)]
    joined = re.sub(r"\\\n\s*", " ", section)
    lines = [line.strip() for line in joined.splitlines() if line.strip().startswith("docker run ")]
    assert len(lines) == 1, f"one docker run line in the README's Docker section: {lines}"
    return shlex.split(lines[0])


def environment_of(words: list[str]) -> dict[str, str | None]:
    """`-e NAME=value` and `-e NAME` (value from the caller's environment: None) of a docker run line."""
    found: dict[str, str | None] = {}
    for flag, value in zip(words, words[1:], strict=False):
        if flag in ("-e", "--env"):
            name, sep, given = value.partition("=")
            found[name] = given if sep else None
    return found


def documented_environment(**settings: str) -> dict[str, str]:
    """The README's docker run environment: its NAME=value settings (`settings` instead for those given, such as
    the test's Okta and app), and the tests' secrets for the -e NAME ones."""
    env: dict[str, str] = {}
    for name, value in environment_of(docker_run_line(README.read_text())).items():
        env[name] = settings.get(name) or value or SECRETS[name]
    return env


@dataclass
class Image:
    """The image, built without Docker: `root` stands for its `/`, `venv` for its Python."""

    root: Path
    venv: Path
    dockerfile: Dockerfile = field(default_factory=Dockerfile.read)

    def path(self, in_image: str) -> Path:
        """Where a path of the image is on this machine (relative ones are the WORKDIR's)."""
        absolute = in_image if in_image.startswith("/") else f"{self.dockerfile.workdir}/{in_image}"
        return self.root / absolute.lstrip("/")

    def env(self, variables: dict[str, str]) -> dict[str, str]:
        """A process environment as the image's: the Dockerfile's ENV, its Python first on PATH, and `variables`."""
        return {"PATH": f"{self.venv / 'bin'}:/usr/bin:/bin", **self.dockerfile.env, **variables}

    def command(self, config: Path) -> list[str]:
        """ENTRYPOINT + CMD, with the image's configuration path replaced by `config`."""
        entrypoint, cmd = self.dockerfile.exec_form("ENTRYPOINT"), self.dockerfile.exec_form("CMD")
        program = shutil.which(entrypoint[0], path=str(self.venv / "bin"))
        assert program, f"{entrypoint[0]} is installed in the image"
        shipped = self.configuration_path
        return [program, *entrypoint[1:], *[str(config) if arg == shipped else arg for arg in cmd]]

    @property
    def configuration_path(self) -> str:
        """The path of the configuration CMD runs with (one the Dockerfile copies)."""
        cmd = self.dockerfile.exec_form("CMD")
        copied = {dest for _, dest in self.dockerfile.copies if dest.startswith("/")}
        found = [arg for arg in cmd if arg in copied]
        assert len(found) == 1, f"CMD names one configuration the Dockerfile copies: {cmd}"
        return found[0]

    @property
    def configuration_source(self) -> Path:
        """The file of this repository the image's configuration is a copy of."""
        for sources, dest in self.dockerfile.copies:
            if dest == self.configuration_path:
                assert len(sources) == 1
                return REPO / sources[0]
        raise AssertionError("the configuration is copied")


def lay_out(root: Path, dockerfile: Dockerfile) -> None:
    """Copy what each COPY copies out of the build context (as .dockerignore leaves it) to its place under root:
    a directory's contents into the destination, a file into it when it ends in "/" (or with several sources),
    else as it."""
    context = context_files()
    for sources, dest in dockerfile.copies:
        target = root / (dest if dest.startswith("/") else f"{dockerfile.workdir}/{dest}").lstrip("/")
        into_directory = dest.endswith("/") or len(sources) > 1
        for source in sources:
            prefix = source.rstrip("/") + "/"
            if (REPO / source).is_dir():
                pairs = [(rel, target / rel[len(prefix):]) for rel in context if rel.startswith(prefix)]
            else:
                pairs = [(source, target / Path(source).name if into_directory else target)] if source in context \
                    else []
            assert pairs, f"COPY {source}: nothing of it is in the build context (.dockerignore)"
            for rel, copy in pairs:
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / rel, copy)


def build_image(root: Path, timeout: float = 540) -> Image:
    """A fresh venv, the Dockerfile's files laid out, and its `pip install` run in its WORKDIR with its ENV."""
    dockerfile = Dockerfile.read()
    lay_out(root, dockerfile)
    venv = root / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(venv)], check=True, timeout=120)
    image = Image(root, venv, dockerfile)
    env = {**os.environ, **dockerfile.env}
    env.pop("PYTHONPATH", None)
    result = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                             *dockerfile.pip_install], cwd=image.path(dockerfile.workdir), env=env,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"pip install as the Dockerfile runs it failed:\n{result.stderr[-3000:]}"
    return image
