"""The import graph, read with ast: imports run downward only, and each layer keeps to its job.

    cli, server, the public API (api, dataset, torch)     top
      -> capabilities: loading, tracking, training, evaluation, sweeps, reporting, access,
         explore, serving, queue, demo
         (each may use those listed before it)
      -> store, data, ml                      (store may use data's types)
      -> db
      -> errors, config, results, _version

Lazy imports inside functions count: they are dependencies all the same.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

import signdb

ROOT = Path(signdb.__file__).parent

FOUNDATION = {"errors", "config", "results", "_version"}
CAPABILITIES = [
    "loading", "tracking", "training", "evaluation", "sweeps", "reporting", "access", "explore",
    "serving", "queue", "housekeeping", "demo",
]  # fmt: skip
TOP = {"__init__", "__main__", "cli", "api", "dataset", "torch", "server"}
LEVEL = {
    **dict.fromkeys(FOUNDATION, 0),
    "db": 1,
    "store": 2,
    "data": 2,
    "ml": 2,
    **{c: 3 for c in CAPABILITIES},
    **dict.fromkeys(TOP, 4),
}
#: Allowed imports between packages of one level (besides a package's own modules).
SIDEWAYS = (
    {("store", "data"), ("config", "errors"), ("results", "errors")}
    | {(a, b) for i, a in enumerate(CAPABILITIES) for b in CAPABILITIES[:i]}
    | {(a, b) for a in TOP for b in TOP if b != "__main__"}
)


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        out[".".join(["signdb", *parts]) if parts != ["__init__"] else "signdb"] = path
    return out


MODULES = _modules()


def _imports(path: Path, module: str) -> set[str]:
    """Every signdb module (and every top-level third-party package) ``path`` imports."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            # ``from signdb.x import y`` depends on the submodule signdb.x.y when
            # there is one, else on signdb.x itself.
            subs = {f"{name}.{a.name}" for a in node.names} & set(MODULES)
            found.update(subs)
            if len(subs) < len(node.names):
                found.add(name)
    return found


def _resolve(name: str) -> str | None:
    """The signdb module a dotted import name refers to (the longest existing prefix)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in MODULES:
            return candidate
        parts.pop()
    return None


def _package(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


GRAPH: dict[str, set[str]] = {}
THIRD_PARTY: dict[str, set[str]] = defaultdict(set)
for _mod, _path in MODULES.items():
    names = _imports(_path, _mod)
    GRAPH[_mod] = {r for n in names if n.startswith("signdb") and (r := _resolve(n)) and r != _mod}
    THIRD_PARTY[_mod] = {n.split(".")[0] for n in names if not n.startswith("signdb")}


def test_every_package_has_a_layer() -> None:
    unknown = {_package(m) for m in MODULES} - set(LEVEL)
    assert not unknown, f"add these packages to a layer in this test: {unknown}"


def test_imports_run_downward_only() -> None:
    bad = []
    for module, deps in GRAPH.items():
        src = _package(module)
        for dep in deps:
            dst = _package(dep)
            if dst == src:
                continue
            if LEVEL[dst] < LEVEL[src] or (src, dst) in SIDEWAYS:
                continue
            bad.append(f"{module} -> {dep}")
    assert bad == [], "imports against the layering:\n" + "\n".join(sorted(bad))


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

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
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return cycles


def test_no_import_cycles() -> None:
    real = [c for c in find_cycles(GRAPH) if not _only_package_reexports(c)]
    assert real == [], f"import cycles: {real}"


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def _only_package_reexports(component: list[str]) -> bool:
    """A cycle that closes only through a package __init__ re-exporting its own submodules."""
    packages = {m for m in component if MODULES[m].name == "__init__.py"}
    for m in component:
        for dep in GRAPH[m] & set(component):
            if dep in packages and m.startswith(dep + "."):
                continue  # a submodule importing its own package (for a sibling)
            if m in packages and dep.startswith(m + "."):
                continue  # a package importing its own submodule
            return False
    return True


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [("ml", {"sqlalchemy", "psycopg", "click"}), ("store", {"click"}), ("data", {"sqlalchemy"})],
)
def test_layers_keep_to_their_job(package: str, forbidden: set[str]) -> None:
    bad = {
        m: sorted(THIRD_PARTY[m] & forbidden)
        for m in MODULES
        if _package(m) == package and THIRD_PARTY[m] & forbidden
    }
    assert bad == {}


def test_only_cli_prints() -> None:
    bad = []
    for module, path in MODULES.items():
        if _package(module) == "cli":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            if isinstance(f, ast.Name) and f.id == "print":
                bad.append(f"{module}:{node.lineno} print()")
            elif isinstance(f, ast.Attribute) and f.attr in ("echo", "secho"):
                bad.append(f"{module}:{node.lineno} {f.attr}()")
            elif (
                isinstance(f, ast.Attribute)
                and f.attr == "write"
                and isinstance(f.value, ast.Attribute)
                and f.value.attr in ("stdout", "stderr")
            ):
                bad.append(f"{module}:{node.lineno} sys.{f.value.attr}.write()")
    assert bad == []


def test_the_checks_see_a_violation(tmp_path: Path) -> None:
    """The import reader finds relative and absolute imports, or the tests above prove nothing."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import signdb.store.runs\nfrom signdb.cli import main\nfrom . import errors\n"
        "def f():\n    from signdb.ml.base import Classifier\n"
    )
    names = _imports(probe, "signdb.store.probe")
    assert {"signdb.store.runs", "signdb.cli", "signdb.store", "signdb.ml.base"} <= names
