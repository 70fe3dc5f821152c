"""The packages' import rules, read from the code with the standard library's ``ast``.

MTA's packages are roles (``worker``, ``bot``, ``api``, ``replica``), the contracts they share
(``shared``), and the composition root (``mta``), which alone may import every role. The rules:

- ``shared`` imports no role and not ``mta``; no role imports ``mta``;
- ``bot`` and ``worker`` import nothing from each other; ``replica`` and ``worker`` neither;
  ``api`` imports nothing from ``worker`` (it reads Redis through ``shared.contracts``);
- no import cycle among the modules of these packages (tests and benches left out).

Every import statement counts, wherever it stands: at the top, inside a function (a deferred
import still ties the packages together) and under ``if TYPE_CHECKING:`` (for the cycle check too:
a circle that only type checking walks is still two modules that need each other; a Protocol on
the importing side breaks it, as ``replica.state.RunningScenario`` does). An edge goes to
the most specific module named (``from worker import bookings`` is an edge to
``worker.bookings``; ``from worker.bookings import run`` to ``worker.bookings``); the parent
packages' ``__init__`` modules an import also runs are not edges, as in import-linter and pydeps.

Tried: ``from worker.budget import WINDOW_S`` put into ``shared/contracts.py``, and
``from worker import actors`` into ``worker/bookings.py`` (the old circle): the first fails
``test_layer_rules`` naming the line, the second ``test_no_import_cycles`` printing the cycle; so
does ``replica/state.py`` importing ``ScenarioRunner`` again under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mta", "shared", "worker", "bot", "api", "replica")
ROLES = frozenset({"worker", "bot", "api", "replica"})

FORBIDDEN: dict[str, frozenset[str]] = {
    "shared": ROLES | {"mta"},
    "worker": frozenset({"bot", "replica", "mta", "api"}),
    "bot": frozenset({"worker", "replica", "mta", "api"}),
    "api": frozenset({"worker", "bot", "replica", "mta"}),
    "replica": frozenset({"worker", "bot", "api", "mta"}),
    "mta": frozenset(),
}
"""Top-level packages each package may not import (the composition root ``mta`` may import all)."""


@dataclass(frozen=True)
class Import:
    source: str
    """The importing module, dotted."""
    target: str
    """The imported module, dotted (the most specific module the statement names)."""
    path: Path
    line: int
    typing_only: bool
    """Under ``if TYPE_CHECKING:`` (or ``if typing.TYPE_CHECKING:``)."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    """Every module of the six packages, by dotted name."""
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts and "versions" in path.parts:
                continue  # Alembic revision scripts: run by Alembic, never imported
            modules[module_name(path)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, typing_only: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    """Every node below ``node``, with whether it sits in the body of an ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                yield stmt, True
                yield from _walk(stmt, True)
            for stmt in child.orelse:
                yield stmt, typing_only
                yield from _walk(stmt, typing_only)
            continue
        yield child, typing_only
        yield from _walk(child, typing_only)


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    """The imports of one module that name a module of the project."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    found: list[Import] = []

    def add(target: str, node: ast.stmt, typing_only: bool) -> None:
        if target.split(".")[0] in PACKAGES and target != name:
            found.append(Import(name, target, path, node.lineno, typing_only))

    for node, typing_only in _walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node, typing_only)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = name.split(".") if is_package else name.split(".")[:-1]
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join([*base_parts, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                add(candidate if candidate in modules else base, node, typing_only)
    return found


def all_imports() -> list[Import]:
    modules = project_modules()
    return [imp for name, path in modules.items() for imp in imports_of(name, path, modules)]


def layer_violations(imports: list[Import]) -> list[str]:
    bad = []
    for imp in imports:
        source_top, target_top = imp.source.split(".")[0], imp.target.split(".")[0]
        if target_top in FORBIDDEN[source_top]:
            where = f"{imp.path.relative_to(ROOT)}:{imp.line}"
            rule = f"{source_top} may not import {target_top}"
            bad.append(f"{where}: {imp.source} imports {imp.target} ({rule})")
    return bad


def find_cycles(imports: list[Import], *, typing_too: bool = True) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted;
    ``typing_too=False`` leaves imports under ``TYPE_CHECKING`` out."""
    graph: dict[str, set[str]] = {}
    for imp in imports:
        if typing_too or not imp.typing_only:
            graph.setdefault(imp.source, set()).add(imp.target)
            graph.setdefault(imp.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0

    def visit(start: str) -> None:
        # iterative Tarjan: the graph is deep enough to make recursion a risk
        nonlocal counter
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_layer_rules() -> None:
    """shared knows no role; bot/worker, replica/worker and api/worker do not import each other;
    nothing imports the composition root. Asserted: no import statement anywhere breaks that."""
    assert layer_violations(all_imports()) == []


def test_no_import_cycles() -> None:
    """No two modules of the packages import each other, directly or round a longer circle, not
    even for type checking. Asserted: no strongly connected component."""
    assert find_cycles(all_imports()) == []


def test_the_checker_sees_deferred_typing_and_relative_imports(tmp_path: Path) -> None:
    """The checker itself: an import inside a function, one under ``TYPE_CHECKING`` and a relative
    one are all found; a circle through a TYPE_CHECKING import is a cycle unless left out."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "from .sibling import thing\n"
        "if TYPE_CHECKING:\n"
        "    from worker.runtime import Runtime\n"
        "def f():\n"
        "    import bot.app\n"
    )
    path = ROOT / "shared" / "probe_for_import_rules.py"
    modules = {"shared.sibling": path, "worker.runtime": path, "bot.app": path}
    tree_path = tmp_path / "probe.py"
    tree_path.write_text(source)
    found = imports_of("shared.probe", tree_path, modules)
    assert {(i.target, i.typing_only) for i in found} == {
        ("shared.sibling", False),
        ("worker.runtime", True),
        ("bot.app", False),
    }
    fake = [Import(i.source, i.target, path, i.line, i.typing_only) for i in found]
    assert len(layer_violations(fake)) == 2
    typed_back = Import("worker.runtime", "shared.probe", path, 1, False)
    assert find_cycles([*fake, typed_back]) == [["shared.probe", "worker.runtime"]]
    assert find_cycles([*fake, typed_back], typing_too=False) == []
    runtime_back = Import("bot.app", "shared.probe", path, 1, False)
    assert find_cycles([*fake, runtime_back]) == [["bot.app", "shared.probe"]]
