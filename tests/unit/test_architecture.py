"""The layout that ``docs/architecture.md`` draws, held against the code: the
import rules between layers, no import circles, and the size limits.

Imports are read from the source (every ``import``/``from`` statement,
including those inside functions and under ``TYPE_CHECKING``: a type-only
import is still a dependency of the design), never by importing anything.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "supervisor"

# Each layer may import only from the layers after it in this list (and from
# itself). A module not named here belongs to "basics".
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "entry points and the public face",
        ("supervisor.cli", "supervisor.testing", "supervisor.__main__", "supervisor.__init__"),
    ),
    ("embedded containerd", ("supervisor.daemon",)),
    ("client", ("supervisor.client",)),
    ("supervision", ("supervisor.supervision",)),
    ("plug-ins", ("supervisor.images", "supervisor.network")),
    ("domain objects", ("supervisor.domain",)),
    ("events", ("supervisor.events",)),
    ("transports", ("supervisor.backends",)),
    ("stdio, specs, stats", ("supervisor.fifo", "supervisor.spec", "supervisor.stats")),
    ("OCI image values", ("supervisor.oci",)),
    ("basics", ("supervisor",)),
]

# Imports that cross the rule on purpose, each with its reason.
ALLOWED: dict[tuple[str, str], str] = {}

MAX_FLAT = 14
MAX_FILE_LINES = 450
MAX_FUNCTION_LINES = 60


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        if "_proto" in rel.parts:
            continue
        parts = list(rel.parts)
        if parts[-1] == "__init__" and len(parts) > 1 and parts != ["supervisor", "__init__"]:
            parts = parts[:-1]
        yield ".".join(parts), path


def _package_of(name: str, path: Path) -> str:
    if path.name == "__init__.py":
        return name.removesuffix(".__init__")
    return name.rsplit(".", 1)[0]


def _known(names: set[str], target: str) -> str | None:
    if target == "supervisor._proto" or target.startswith("supervisor._proto."):
        return None  # generated bindings: not measured
    while target:
        if target in names:
            return target
        if f"{target}.__init__" in names:
            return f"{target}.__init__"
        target = target.rpartition(".")[0]
    return None


def _imports() -> dict[str, set[str]]:
    mods = dict(_modules())
    names = set(mods)
    graph: dict[str, set[str]] = {name: set() for name in names}
    for name, path in mods.items():
        package = _package_of(name, path)
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    head = ".".join(base + ([node.module] if node.module else []))
                else:
                    head = node.module or ""
                # `from pkg import mod` depends on mod; `from pkg import name`
                # on pkg (its __init__).
                targets = [
                    f"{head}.{a.name}" if f"{head}.{a.name}" in names else head for a in node.names
                ]
            for target in targets:
                if not target.startswith("supervisor"):
                    continue
                found = _known(names, target)
                if found is not None and found != name:
                    graph[name].add(found)
    return graph


def _layer(name: str) -> int:
    # The longest matching prefix decides.
    best, where = "", len(LAYERS) - 1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            matches = name == prefix or name.startswith(prefix + ".")
            if prefix != "supervisor" and matches and len(prefix) > len(best):
                best, where = prefix, index
    return where


def test_no_import_circles() -> None:
    graph = _imports()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    circles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert circles == []


def test_each_layer_imports_only_the_layers_below_it() -> None:
    wrong = []
    for name, targets in sorted(_imports().items()):
        for target in sorted(targets):
            if _layer(target) < _layer(name) and (name, target) not in ALLOWED:
                wrong.append(f"{name} -> {target}")
    assert wrong == []


def test_the_core_never_imports_daemon_cli_or_testing() -> None:
    top = ("supervisor.daemon", "supervisor.cli", "supervisor.testing")
    wrong = [
        f"{name} -> {target}"
        for name, targets in sorted(_imports().items())
        if not name.startswith(top) and name not in ("supervisor.__init__", "supervisor.__main__")
        for target in targets
        if target.startswith(top)
    ]
    assert wrong == []


def test_few_modules_lie_flat_in_the_package() -> None:
    flat = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(flat) <= MAX_FLAT, flat


@pytest.mark.parametrize("name,path", list(_modules()), ids=lambda v: str(v))
def test_files_and_functions_stay_small(name: str, path: Path) -> None:
    text = path.read_text()
    assert text.count("\n") <= MAX_FILE_LINES, f"{name}: {text.count(chr(10))} lines"
    long = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            length = (node.end_lineno or node.lineno) - start + 1
            # The docstring documents the call (a public one with many
            # arguments needs many lines); the limit is on what it does.
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                length -= (first.end_lineno or first.lineno) - first.lineno + 1
            if length > MAX_FUNCTION_LINES:
                long.append(f"{node.name}: {length} lines")
    assert long == []
