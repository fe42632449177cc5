"""The package's import graph: no cycle, the store free of the runtime, the quantizer free of it too.

The graph is read from the source with :mod:`ast`, so it holds every import, the ones inside
functions as well as the ones at the top of a module: an import inside a function that closes a
cycle is still a cycle (it only runs later), and that is how this package used to be held
together. Imports under ``if TYPE_CHECKING:`` never run and are left out.

An edge ``a -> b`` says that running ``a`` can import ``b``:

* ``import edgernn.x.y`` and ``from edgernn.x import y`` (relative or absolute) point at the
  submodule ``edgernn.x.y`` when there is one; ``from edgernn.x import name`` of anything else
  points at ``edgernn.x`` itself -- the name comes from its ``__init__`` (or module), which must
  have run that far: ``from . import __version__`` depends on the package's ``__init__``;
* importing a submodule also runs its packages' ``__init__`` files, so it points at them too --
  except the packages that hold the importing module: Python has run (or is running) those before
  the module's first line, and importing a submodule of a package whose ``__init__`` has not
  finished works; only taking a name from that ``__init__`` depends on it (the case above).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = "edgernn"
ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / PACKAGE


def _module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(SOURCE.rglob("*.py")) if "__pycache__" not in p.parts}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST):
    """Every Import / ImportFrom in ``tree``, at any depth, but not under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
        else:
            stack.extend(ast.iter_child_nodes(node))


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:k]) for k in range(1, len(parts))]


def _targets(module: str, is_package: bool, node, modules) -> list[str]:
    """The modules ``node`` names explicitly (before adding the packages they sit in)."""
    if isinstance(node, ast.Import):
        found = []
        for alias in node.names:
            if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                parts = alias.name.split(".")
                found.append(next(".".join(parts[:k]) for k in range(len(parts), 0, -1)
                                  if ".".join(parts[:k]) in modules))
        return found
    if node.level:
        package = module if is_package else module.rpartition(".")[0]
        base_parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
        base = ".".join(base_parts + ([node.module] if node.module else []))
    else:
        base = node.module or ""
        if base != PACKAGE and not base.startswith(PACKAGE + "."):
            return []
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]


def import_graph() -> dict[str, dict[str, str]]:
    """``{module: {imported module: "file:line" of the first import making the edge}}``."""
    modules = _modules()
    graph: dict[str, dict[str, str]] = {}
    for module, path in modules.items():
        edges = graph.setdefault(module, {})
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        own_packages = set(_ancestors(module)) | {module}
        for node in _import_nodes(tree):
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            for target in _targets(module, path.name == "__init__.py", node, modules):
                implied = [a for a in _ancestors(target) if a not in own_packages]
                for dependency in [target] + implied:
                    if dependency != module:
                        edges.setdefault(dependency, where)
    return graph


def _format(path: list[str], graph) -> str:
    return "\n".join(f"  {a} -> {b}   ({graph[a][b]})" for a, b in zip(path, path[1:]))


def find_cycle(graph) -> list[str] | None:
    """One cycle as ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def find_path(graph, sources, target) -> list[str] | None:
    """A path from any of ``sources`` to ``target``, or None (breadth first: a shortest one)."""
    previous = {s: None for s in sources}
    queue = list(sources)
    while queue:
        node = queue.pop(0)
        if node == target:
            path = [node]
            while previous[path[-1]] is not None:
                path.append(previous[path[-1]])
            return path[::-1]
        for nxt in sorted(graph.get(node, ())):
            if nxt not in previous:
                previous[nxt] = node
                queue.append(nxt)
    return None


def test_the_graph_is_read():
    """The reader sees what it must: a relative submodule import, a name from an __init__, an
    absolute import, an import inside a function, and the packages of an imported submodule."""
    graph = import_graph()
    assert "edgernn.ir" in graph["edgernn.store"]                      # from . import ir
    assert "edgernn.quantize.fixedpoint" in graph["edgernn.quantize.spec"]  # from . import fixedpoint as fx
    assert "edgernn" in graph["edgernn.cli"]                           # from . import load, in a function
    assert "edgernn.runtime" in graph["edgernn"]                       # in __getattr__
    assert {"edgernn.kernels.aot", "edgernn.kernels"} <= set(graph["edgernn.runtime"])  # from .kernels import aot
    assert "edgernn.quantize" not in graph["edgernn.quantize.spec"]    # its own package: not an edge


def test_no_import_cycle():
    graph = import_graph()
    cycle = find_cycle(graph)
    if cycle:
        print("import cycle:\n" + _format(cycle, graph))
    assert cycle is None, "import cycle:\n" + _format(cycle, graph)


def test_the_quantizer_does_not_import_the_runtime():
    graph = import_graph()
    quantizer = [m for m in graph if m == "edgernn.quantize" or m.startswith("edgernn.quantize.")]
    assert quantizer
    path = find_path(graph, quantizer, "edgernn.runtime")
    assert path is None, "the quantizer reaches the runtime:\n" + _format(path, graph)


def _fresh_imports(statement: str, modules: tuple[str, ...]) -> list[str]:
    """Which of ``modules`` a fresh interpreter holds after running ``statement``."""
    code = f"import sys\n{statement}\nprint(' '.join(m for m in {modules!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_the_store_does_not_import_the_runtime_nor_numba():
    assert _fresh_imports("import edgernn.store", ("edgernn.runtime", "numba")) == []


def test_importing_the_package_stays_light():
    """``import edgernn`` imports neither the runtime nor Numba; the quantizer imports Numba, not the runtime."""
    assert _fresh_imports("import edgernn", ("edgernn.runtime", "numba")) == []
    assert _fresh_imports("import edgernn.quantize", ("edgernn.runtime",)) == []
