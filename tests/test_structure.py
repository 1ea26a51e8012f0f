"""The package's structure: a layered import graph, no private reach-ins, small files, mypy clean.

These read the source tree (``python/mixedmodels`` next to this ``tests/``)
with ``ast``; nothing is imported.

What the import checks count, for each module of the package:

- *runtime* imports: ``import``/``from ... import`` statements of package
  modules executed when the module is imported: at module level or in a
  class body, outside ``if TYPE_CHECKING:``. These must form a DAG.
- *function-level* imports: the same statements inside a function (imports
  made lazily to dodge a cycle). There must be none.
- *TYPE_CHECKING* imports: inside ``if TYPE_CHECKING:``; they run only under
  a type checker and may point back up the graph (a computing module names
  the result type). Counted, not restricted.

Third-party and standard-library imports are not counted.
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "mixedmodels"
SOURCE = ROOT / "python" / PACKAGE
CORE = f"{PACKAGE}._core"  # the Rust extension
MAX_PY_LINES = 500
MAX_RS_LINES = 600

pytestmark = pytest.mark.skipif(not SOURCE.is_dir(), reason=f"no source tree at {SOURCE}")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_modules() -> dict[str, Path]:
    """The package's modules; an extension module counts through its ``.pyi`` stub."""
    modules = {module_name(p): p for p in sorted(SOURCE.rglob("*.pyi"))}
    modules.update({module_name(p): p for p in sorted(SOURCE.rglob("*.py"))})
    return modules


def is_dunder(name: str) -> bool:
    return name.startswith("__") and name.endswith("__")


def is_private(name: str) -> bool:
    return name.startswith("_") and not is_dunder(name)


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


@dataclass
class ModuleImports:
    """The package modules one module imports, by kind, and its private imports."""

    runtime: set[str] = field(default_factory=set)
    function_level: list[tuple[int, str]] = field(default_factory=list)
    type_checking: set[str] = field(default_factory=set)
    private_names: list[tuple[int, str]] = field(default_factory=list)
    core_names: set[str] = field(default_factory=set)
    """Names imported from the extension module (``"*"`` for the module itself)."""


class ImportCollector(ast.NodeVisitor):
    def __init__(self, name: str, is_package: bool, modules: set[str]):
        self.name = name
        self.package = name if is_package else name.rpartition(".")[0]
        self.modules = modules
        self.out = ModuleImports()
        self.in_function = 0
        self.in_type_checking = 0

    def visit_If(self, node: ast.If) -> None:
        if is_type_checking(node.test):
            self.in_type_checking += 1
            for stmt in node.body:
                self.visit(stmt)
            self.in_type_checking -= 1
            for stmt in node.orelse:
                self.visit(stmt)
        else:
            self.generic_visit(node)

    def _function(self, node: ast.AST) -> None:
        self.in_function += 1
        self.generic_visit(node)
        self.in_function -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def _add(self, lineno: int, target: str) -> None:
        if target not in self.modules or target == self.name:
            return
        if self.in_type_checking:
            self.out.type_checking.add(target)
        elif self.in_function:
            self.out.function_level.append((lineno, target))
        else:
            self.out.runtime.add(target)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(node.lineno, alias.name)
            if alias.name == CORE:
                self.out.core_names.add("*")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".")
            if node.level > 1:
                base = base[: -(node.level - 1)]
            source = ".".join(base + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        if not (source == PACKAGE or source.startswith(PACKAGE + ".")):
            return
        for alias in node.names:
            submodule = f"{source}.{alias.name}"
            if submodule == CORE:
                self.out.core_names.add("*")
            elif source == CORE:
                self.out.core_names.add(alias.name)
            if submodule in self.modules:  # from . import design
                self._add(node.lineno, submodule)
                continue
            self._add(node.lineno, source)
            if is_private(alias.name):
                self.out.private_names.append((node.lineno, f"{source}.{alias.name}"))


def collect_imports() -> dict[str, ModuleImports]:
    modules = source_modules()
    out = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        collector = ImportCollector(name, path.name == "__init__.py", set(modules))
        collector.visit(tree)
        out[name] = collector.out
    return out


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the graph as a list of nodes (first = last), or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_runtime_imports_form_a_dag_with_no_function_level_imports():
    imports = collect_imports()
    runtime = {m: i.runtime for m, i in imports.items()}
    cycle = find_cycle(runtime)
    assert cycle is None, "import cycle among runtime module-level imports: " + " -> ".join(cycle)
    lazy = [f"{m}:{line} imports {t}" for m, i in imports.items() for line, t in i.function_level]
    assert lazy == [], "function-level imports of package modules:\n" + "\n".join(lazy)
    # the graph has the layers it is meant to have
    assert "mixedmodels.results" in runtime["mixedmodels.model"]
    for computing in ("inference", "matrices", "predict", "profile"):
        assert f"mixedmodels.{computing}" in runtime["mixedmodels.results"]
        assert "mixedmodels.results" not in runtime[f"mixedmodels.{computing}"]
    # and the core's Workspace is reached through one module (others may read __version__)
    core_users = sorted(m for m, i in imports.items() if i.core_names - {"__version__"})
    assert core_users == ["mixedmodels._state"], core_users


def test_only_the_type_checker_imports_point_back():
    imports = collect_imports()
    runtime = {m: set(i.runtime) for m, i in imports.items()}
    with_type_checking = {m: runtime[m] | i.type_checking for m, i in imports.items()}
    # TYPE_CHECKING imports are what closes the cycles a type checker sees
    assert find_cycle(with_type_checking) is not None
    assert sum(len(i.type_checking) for i in imports.values()) > 0


class PrivateReads(ast.NodeVisitor):
    """Reads of underscore attributes that the module does not define itself."""

    def __init__(self) -> None:
        self.defined: set[str] = set()
        self.reads: list[tuple[int, str]] = []

    def collect_definitions(self, tree: ast.Module) -> None:
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                self.defined.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                self.defined.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                self.defined.add(node.id)
            elif isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets
            ):
                for const in ast.walk(node.value):
                    if isinstance(const, ast.Constant) and isinstance(const.value, str):
                        self.defined.add(const.value)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.ctx, ast.Load) and is_private(node.attr):
            own = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            if not own and node.attr not in self.defined:
                self.reads.append((node.lineno, ast.unparse(node)))
        self.generic_visit(node)


def test_no_module_reads_another_modules_private_names():
    problems = []
    for name, path in source_modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        reads = PrivateReads()
        reads.collect_definitions(tree)
        reads.visit(tree)
        problems += [f"{name}:{line} reads {expr}" for line, expr in reads.reads]
    for name, imp in collect_imports().items():
        problems += [f"{name}:{line} imports private {what}" for line, what in imp.private_names]
    assert problems == [], "\n".join(problems)


def test_python_modules_are_small():
    sizes = {p: len(p.read_text(encoding="utf-8").splitlines()) for p in SOURCE.rglob("*.py")}
    big = {str(p.relative_to(ROOT)): n for p, n in sizes.items() if n > MAX_PY_LINES}
    assert big == {}, f"modules over {MAX_PY_LINES} lines: {big}"


def test_rust_files_are_small():
    rust = ROOT / "rust"
    if not rust.is_dir():
        pytest.skip(f"no Rust sources at {rust}")
    sizes = {p: len(p.read_text(encoding="utf-8").splitlines()) for p in rust.rglob("*.rs")}
    big = {str(p.relative_to(ROOT)): n for p, n in sizes.items() if n > MAX_RS_LINES}
    assert big == {}, f"Rust files over {MAX_RS_LINES} lines: {big}"


def test_mypy_reports_no_errors():
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (pip install '.[test]' installs it)")
    r = subprocess.run(
        [sys.executable, "-m", "mypy", str(SOURCE)],
        cwd=ROOT,  # mypy reads its settings from pyproject.toml's [tool.mypy]
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_checks_see_what_they_should():
    # guard against a checker that passes because it reads nothing
    modules = source_modules()
    assert {"mixedmodels", "mixedmodels.results", "mixedmodels.datasets"} <= set(modules)
    assert "mixedmodels._core" in modules  # through _core.pyi
    graph = defaultdict(set, {"a": {"b"}, "b": {"c"}, "c": {"a"}})
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    tree = ast.parse("def f(fit):\n    return fit.model._ws\n")
    reads = PrivateReads()
    reads.collect_definitions(tree)
    reads.visit(tree)
    assert reads.reads == [(2, "fit.model._ws")]
