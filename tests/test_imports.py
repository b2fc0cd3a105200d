"""The import graph of the ``runtime`` package has no cycles.

Every module of the package (``runtime/bench/`` excepted) is parsed, never imported,
and every ``import`` / ``from ... import`` it contains becomes an edge: at module
level *and* inside functions and methods (a deferred import is still a dependency:
it only moves the cycle to run time). Imports under ``if TYPE_CHECKING:`` (typing's
or the local ``TYPE_CHECKING = False`` idiom) are left out: they never run.

How an import statement becomes edges (to modules of this package only):

* ``import a.b.c``: an edge to ``a.b.c`` (a package means its ``__init__``);
* ``from X import name``: an edge to ``X.name`` when that is a submodule, and to ``X``
  (its ``__init__``, for a package) -- except when ``X`` is a package enclosing the
  importing module and every name imported is a submodule: that package is already
  being imported, so ``from . import _sibling`` depends on the sibling only.

Strings are not imports: the lazy-export tables of ``runtime/__init__.py`` and
``runtime/amqp/__init__.py`` (names mapped to module strings, imported on first use by
``runtime/_lazy.py``) and the source code handed to workers are not edges.
"""

from __future__ import annotations

import ast
import importlib.util
import os
from pathlib import Path

PACKAGE = "runtime"
# The package under test: the checkout's, or the installed wheel's (scripts/test.sh runs the
# suite from a copy of the tree without runtime/ against the wheel).
ROOT = Path(importlib.util.find_spec(PACKAGE).origin).resolve().parent  # type: ignore[arg-type]
EXCLUDED = ("runtime.bench",)

# Edges: importer -> {imported: [line numbers of the statements]}
Graph = dict[str, dict[str, list[int]]]


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _excluded(name: str) -> bool:
    return any(name == prefix or name.startswith(prefix + ".") for prefix in EXCLUDED)


def discover(root: Path = ROOT) -> dict[str, Path]:
    """Module name -> file, for every module of the package (a package directory wins
    over a same-named ``.py``, as it does for the import system)."""
    modules: dict[str, Path] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for filename in sorted(filenames):
            if not filename.endswith(".py"):
                continue
            path = Path(dirpath, filename)
            name = _module_name(path, root)
            if _excluded(name):
                continue
            if name in modules and modules[name].name == "__init__.py":
                continue
            modules[name] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    """``TYPE_CHECKING`` or ``typing.TYPE_CHECKING`` (any ``X.TYPE_CHECKING``)."""
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)


def _imports(
    tree: ast.AST, *, typing: bool = False, deferred: bool = True
) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement that can run: anywhere, except in ``if TYPE_CHECKING:`` bodies
    (their ``else:`` branches run, and so does the body of ``if not TYPE_CHECKING:``).

    ``typing``: those under ``TYPE_CHECKING`` too; ``deferred=False``: only those that run
    when the module is imported (none inside functions).
    """
    found: list[ast.Import | ast.ImportFrom] = []
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
            continue
        if not deferred and isinstance(node, _FUNCTIONS):
            continue
        if isinstance(node, ast.If) and not typing:
            test = node.test
            if _is_type_checking(test):
                todo.extend(node.orelse)
                continue
            if (
                isinstance(test, ast.UnaryOp)
                and isinstance(test.op, ast.Not)
                and _is_type_checking(test.operand)
            ):
                todo.extend(node.body)
                continue
        todo.extend(ast.iter_child_nodes(node))
    return found


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module name ``from <...> import`` refers to."""
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    if not is_package:
        base.pop()
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def _ours(name: str) -> bool:
    return name == PACKAGE or name.startswith(PACKAGE + ".")


def build_graph(modules: dict[str, Path], *, typing: bool = False, deferred: bool = True) -> Graph:
    """Importer -> imported -> lines (see the module's docstring; ``typing`` and ``deferred``
    as for :func:`_imports`)."""
    graph: Graph = {name: {} for name in modules}
    for importer, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        edges = graph[importer]

        def enclosing(package: str, importer: str = importer) -> bool:
            """Already being imported whenever ``importer`` runs: itself or a parent package."""
            return importer == package or importer.startswith(package + ".")

        def edge(
            target: str, line: int, importer: str = importer, edges: dict[str, list[int]] = edges
        ) -> None:
            # Importing a.b.c runs a/__init__ and a/b/__init__ first.
            parts = target.split(".")
            for n in range(1, len(parts)):
                parent = ".".join(parts[:n])
                if not enclosing(parent) and parent in modules:
                    edges.setdefault(parent, []).append(line)
            if target in modules and target != importer:  # a package's own names: no edge
                edges.setdefault(target, []).append(line)

        for node in _imports(tree, typing=typing, deferred=deferred):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if _ours(alias.name) and not _excluded(alias.name):
                        edge(alias.name, node.lineno)
                continue
            source = _resolve(importer, is_package, node)
            if not _ours(source) or _excluded(source):
                continue
            submodules = [
                f"{source}.{alias.name}"
                for alias in node.names
                if f"{source}.{alias.name}" in modules
            ]
            for target in submodules:
                edge(target, node.lineno)
            if not enclosing(source) or len(submodules) < len(node.names):
                edge(source, node.lineno)
    for edges in graph.values():
        for lines in edges.values():
            lines.sort()
    return graph


def strongly_connected(graph: Graph) -> list[list[str]]:
    """Tarjan's algorithm (iterative): the components of two or more modules (a cycle),
    each sorted, in a stable order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, list[str]]] = [(start, sorted(graph[start]))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            if successors:
                succ = successors.pop(0)
                if succ not in index:
                    index[succ] = low[succ] = counter
                    counter += 1
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, sorted(graph[succ])))
                elif succ in on_stack:
                    low[node] = min(low[node], index[succ])
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
                    found.append(sorted(component))
    return sorted(found)


def shortest_cycle(graph: Graph, component: list[str]) -> list[str]:
    """One shortest cycle through the first module of ``component`` (breadth-first)."""
    members = set(component)
    start = component[0]
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for succ in sorted(graph[node]):
                if succ not in members:
                    continue
                if succ == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [*reversed(path), start]
                if succ not in parents:
                    parents[succ] = node
                    nxt.append(succ)
        frontier = nxt
    return [start, start]  # pragma: no cover - a component always has a cycle


def describe(graph: Graph, modules: dict[str, Path], component: list[str]) -> str:
    def where(name: str) -> str:
        path = modules[name]
        return str(path.relative_to(ROOT.parent)) if path.is_relative_to(ROOT) else str(path)

    cycle = shortest_cycle(graph, component)
    lines = [f"cycle among {len(component)} module(s): {', '.join(component)}"]
    lines.append("  e.g. " + " -> ".join(cycle))
    members = set(component)
    for importer in component:
        for target in sorted(set(graph[importer]) & members):
            at = ", ".join(str(n) for n in graph[importer][target])
            lines.append(f"    {where(importer)}:{at} imports {target}")
    return "\n".join(lines)


def cycles() -> list[str]:
    modules = discover()
    graph = build_graph(modules)
    return [describe(graph, modules, c) for c in strongly_connected(graph)]


def test_the_package_has_no_import_cycle() -> None:
    found = cycles()
    assert not found, "import cycles in runtime/:\n\n" + "\n\n".join(found)


def _reachable(graph: Graph, start: str) -> set[str]:
    seen = {start}
    todo = [start]
    while todo:
        for succ in graph[todo.pop()]:
            if succ not in seen:
                seen.add(succ)
                todo.append(succ)
    return seen


def test_a_fresh_worker_imports_only_the_worker_modules_at_boot() -> None:
    """What ``import runtime._worker`` runs in every new worker, before its first job: each
    module more costs every worker start-up time (measured in a fresh subinterpreter)."""
    graph = build_graph(discover(), deferred=False)
    boot = _reachable(graph, PACKAGE) | _reachable(graph, "runtime._worker")
    assert boot == {
        "runtime",
        "runtime._lazy",
        "runtime._worker",
        "runtime._wire",
        "runtime._context",
    }


def test_the_layers_below_the_worker_loop() -> None:
    """``_context`` is a leaf; ``_wire`` imports only the exception codec (on first use),
    which imports only ``_context`` and the errors; the hub knows no inbox and no ops
    module, not even for type checking."""
    graph = build_graph(discover())
    assert set(graph["runtime._context"]) == set()
    assert set(graph["runtime._wire"]) <= {"runtime._exc_transfer"}
    assert set(graph["runtime._exc_transfer"]) <= {"runtime._context", "runtime._errors"}
    typed = build_graph(discover(), typing=True)
    hub = set(typed["runtime._hub"])
    assert "runtime._inbox" not in hub
    assert not {m for m in hub if m == "runtime.ops" or m.startswith("runtime.ops.")}
    for backend in ("_interp", "_process", "_thread", "_handle"):
        assert "runtime.backends" not in typed[f"runtime.backends.{backend}"], backend


# ---------------------------------------------------------------------- the checker itself
def _graph_of(tmp_path: Path, files: dict[str, str]) -> dict[str, Path]:
    root = tmp_path / PACKAGE
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return discover(root)


def test_the_checker_sees_deferred_relative_and_package_imports(tmp_path: Path) -> None:
    modules = _graph_of(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "def f():\n    from .b import x\n",
            "b.py": (
                "TYPE_CHECKING = False\n"
                "if TYPE_CHECKING:\n    from . import a\nelse:\n    from .pkg import thing\n"
            ),
            "c.py": (
                "import typing\nif typing.TYPE_CHECKING:\n    import runtime.a\n"
                "if not typing.TYPE_CHECKING:\n    from .pkg.helper import z\n"
            ),
            "d.py": "import runtime.pkg.sub\n",
            "pkg/__init__.py": "def g():\n    from . import sub\n",
            "pkg/sub.py": "from .. import a, c\nfrom . import helper\nfrom .helper import y\n",
            "pkg/helper.py": "from . import thing\n",
            "bench/__init__.py": "from runtime import a\n",
        },
    )
    graph = build_graph(modules)
    assert set(graph) == {
        "runtime",
        "runtime.a",
        "runtime.b",
        "runtime.c",
        "runtime.d",
        "runtime.pkg",
        "runtime.pkg.sub",
        "runtime.pkg.helper",
    }
    assert set(graph["runtime.a"]) == {"runtime.b"}
    assert set(graph["runtime.b"]) == {"runtime.pkg"}  # not a: TYPE_CHECKING only
    # A submodule's parent packages run first (the enclosing ones are running already).
    assert set(graph["runtime.c"]) == {"runtime.pkg", "runtime.pkg.helper"}
    assert set(graph["runtime.d"]) == {"runtime.pkg", "runtime.pkg.sub"}
    assert set(graph["runtime.pkg"]) == {"runtime.pkg.sub"}
    # Siblings and an enclosing package's submodules: not the package's __init__ itself.
    assert set(graph["runtime.pkg.sub"]) == {"runtime.a", "runtime.c", "runtime.pkg.helper"}
    # A name that is no submodule comes from the package's __init__.
    assert set(graph["runtime.pkg.helper"]) == {"runtime.pkg"}
    cycle = ["runtime.a", "runtime.b", "runtime.c", "runtime.pkg", "runtime.pkg.helper"]
    assert strongly_connected(graph) == [[*cycle, "runtime.pkg.sub"]]
    assert shortest_cycle(graph, [*cycle, "runtime.pkg.sub"]) == [
        "runtime.a",
        "runtime.b",
        "runtime.pkg",
        "runtime.pkg.sub",
        "runtime.a",
    ]
    typed = build_graph(modules, typing=True)
    assert set(typed["runtime.b"]) == {"runtime.a", "runtime.pkg"}
    assert "runtime.a" in typed["runtime.c"]
    at_import = build_graph(modules, deferred=False)
    assert set(at_import["runtime.a"]) == set()
    assert set(at_import["runtime.pkg"]) == set()
