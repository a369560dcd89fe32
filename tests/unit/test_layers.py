"""The package's layers, read from its imports: no import goes up a layer, sideways between
polling, pushing and the simulator, or round in a circle.

    config → common → metrics → polling | pushing | simulator → web → app → cli

Every import counts: module level, inside functions, and under TYPE_CHECKING.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "exporter"

# Lowest first. Packages on one rank are side by side: they may not import each other.
RANKS: tuple[tuple[str, ...], ...] = (
    ("exporter",),  # the package root: its version only
    ("config",),
    ("common",),
    ("metrics",),
    ("polling", "pushing", "simulator"),
    ("web",),
    ("app",),
    ("cli",),
    ("__main__",),
)
LAYER_OF = {name: rank for rank, names in enumerate(RANKS) for name in names}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    """`exporter.polling.client` → `polling`; `exporter` → `exporter`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def imports_of(path: Path, module: str, known: Iterable[str] = ()) -> set[str]:
    """Every exporter module `path` imports, wherever the import statement is.

    `from a import b` imports module `a.b` where `known` has it, else module `a`.
    """
    known = set(known)
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                name = f"{base}.{alias.name}"
                found.add(name if name in known else base)
    return {name for name in found if name == "exporter" or name.startswith("exporter.")}


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    paths = {module_name(path): path for path in package.rglob("*.py")}
    return {
        module: {target for target in imports_of(path, module, paths) if target != module}
        for module, path in paths.items()
    }


def back_arrows(graph: Mapping[str, Iterable[str]]) -> list[str]:
    """Imports that go up a layer or sideways on one rank, as 'a -> b' lines."""
    wrong = []
    for module, targets in graph.items():
        for target in targets:
            source_layer, target_layer = layer(module), layer(target)
            if source_layer == target_layer:
                continue
            if LAYER_OF[target_layer] >= LAYER_OF[source_layer] and target_layer != "exporter":
                wrong.append(f"{module} -> {target}")
    return sorted(wrong)


def circles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_module_belongs_to_a_layer() -> None:
    unknown = sorted({layer(module) for module in import_graph()} - set(LAYER_OF))
    assert unknown == []


def test_no_import_goes_up_or_sideways() -> None:
    assert back_arrows(import_graph()) == []


def test_no_import_circle() -> None:
    assert circles(import_graph()) == []


def test_configuration_imports_nothing_else_of_the_exporter() -> None:
    graph = import_graph()
    outside = {
        f"{module} -> {target}"
        for module, targets in graph.items()
        if layer(module) == "config"
        for target in targets
        if layer(target) not in ("config", "exporter")
    }
    assert outside == set()


@pytest.mark.parametrize(
    ("graph", "arrows"),
    [
        (
            {"exporter.config.a": {"exporter.web.routes"}},
            ["exporter.config.a -> exporter.web.routes"],
        ),
        (
            {"exporter.polling.a": {"exporter.pushing.b"}},
            ["exporter.polling.a -> exporter.pushing.b"],
        ),
        ({"exporter.web.a": {"exporter.polling.b", "exporter"}}, []),
    ],
)
def test_back_arrows_are_found(graph: dict[str, set[str]], arrows: list[str]) -> None:
    assert back_arrows(graph) == arrows


def test_circles_are_found() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]


def test_imports_inside_functions_count(tmp_path: Path) -> None:
    source = tmp_path / "exporter" / "config" / "x.py"
    source.parent.mkdir(parents=True)
    source.write_text("def f():\n    from exporter.web import routes\n")
    assert imports_of(source, "exporter.config.x", {"exporter.web.routes"}) == {
        "exporter.web.routes"
    }
