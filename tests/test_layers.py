"""The layers of the tree (docs/architecture.md): every import statement of gateway/ and plugins/, wherever it
stands (at the top, inside a function, under TYPE_CHECKING), points down the layer map, and no packages import
each other in a circle."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Bottom first. A unit (a package of gateway/, a top-level module of gateway/, the root `gateway` itself, or
# plugins/) may import units of lower layers only, never one of its own layer or above.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("gateway", "gateway.plugin", "gateway.answers", "gateway.metrics", "gateway.buckets", "gateway.logs"),
    ("gateway.settings",),
    ("gateway.routing", "gateway.okta", "gateway.store"),
    ("gateway.proxy",),
    ("gateway.sessions",),
    ("gateway.revocation", "plugins"),
    ("gateway.enforcement",),
    ("gateway.config", "gateway.status", "gateway.health", "gateway.dispatch"),
    ("gateway.admin", "gateway.metrics_listener", "gateway.reload"),
    ("gateway.server",),
    ("gateway.run",),
    ("gateway.sandbox",),
    ("gateway.cli",),
)
LAYER_OF = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}


def unit_of(module: str) -> str:
    """The unit a dotted module name belongs to: `gateway.sessions.policy` -> `gateway.sessions`."""
    parts = module.split(".")
    if parts[0] == "plugins":
        return "plugins"
    return ".".join(parts[:2])


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    base = ROOT.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imports_of(path: Path) -> Iterator[tuple[int, str]]:
    """(line, module imported) for every import statement of ours in the file, resolved to absolute names."""
    module = module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from .. import answers` imports the module gateway.answers, not the package gateway
            names = [f"{target}.{a.name}" if is_module(f"{target}.{a.name}") else target for a in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] in ("gateway", "plugins"):
                yield node.lineno, name


def edges() -> dict[tuple[str, str], str]:
    """unit -> unit imported, with one place that does it (file:line) for the message."""
    found: dict[tuple[str, str], str] = {}
    for path in sorted([*ROOT.glob("gateway/**/*.py"), *ROOT.glob("plugins/**/*.py")]):
        source = unit_of(module_name(path))
        for line, name in imports_of(path):
            target = unit_of(name)
            if target != source:
                found.setdefault((source, target), f"{path.relative_to(ROOT)}:{line}")
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one unit (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def graph_of(pairs: dict[tuple[str, str], str]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for source, target in pairs:
        graph.setdefault(source, set()).add(target)
    return graph


def test_no_packages_import_each_other_in_a_circle():
    found = edges()
    circles = cycles(graph_of(found))
    detail = [f"{' <-> '.join(c)}: " + ", ".join(f"{s} -> {t} ({where})" for (s, t), where in found.items()
                                                  if s in c and t in c) for c in circles]
    assert not circles, "import cycles between packages:\n" + "\n".join(detail)


def test_every_unit_has_a_place_in_the_layer_map():
    units = {unit_of(module_name(p)) for p in [*ROOT.glob("gateway/**/*.py"), *ROOT.glob("plugins/**/*.py")]}
    assert units - set(LAYER_OF) == set(), "add the new package or module to LAYERS and to docs/architecture.md"


def test_every_import_points_down_the_layers():
    upward = [f"{s} (layer {LAYER_OF[s]}) imports {t} (layer {LAYER_OF[t]}) at {where}"
              for (s, t), where in edges().items() if LAYER_OF.get(t, -1) >= LAYER_OF.get(s, -1)]
    assert not upward, "imports that do not point down the layer map:\n" + "\n".join(upward)


def test_the_architecture_document_shows_the_same_layers():
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    for unit in LAYER_OF:
        assert f"`{unit}`" in text, f"docs/architecture.md does not place {unit}"


# --- the checker itself must be able to fail ------------------------------------------------------------------------


def test_the_cycle_finder_finds_a_circle_and_nothing_in_a_tree():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b", "c"}, "b": {"c"}}) == []


@pytest.mark.parametrize(("source", "statement", "expected"), [
    ("gateway/proxy/http.py", "from .. import answers", "gateway.answers"),
    ("gateway/proxy/http.py", "from ..settings import IPNetwork", "gateway.settings"),
    ("gateway/sessions/__init__.py", "from .policy import decide", "gateway.sessions.policy"),
    ("gateway/plugin.py", "def f():\n    from plugins import SOURCES", "plugins"),
    ("gateway/plugin.py", "import plugins.sources", "plugins.sources"),
])
def test_import_statements_are_resolved_wherever_they_stand(tmp_path, monkeypatch, source, statement, expected):
    path = ROOT / source
    monkeypatch.setattr(Path, "read_text", lambda self, encoding=None: statement if self == path else "")
    assert [name for _, name in imports_of(path)] == [expected]
