"""The architecture the README promises, checked on the source: dependencies point one way
(forecast_cli -> deployments -> flows -> tasks -> (lstm, storage); forecast_cli -> api -> tasks), no import loops, no
function-level imports used to dodge one, and the 5-minute path imports nothing it does not
use."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("lstm", "storage", "tasks", "flows", "deployments", "api", "forecast_cli")
#: what each package may import from the project (besides itself)
ALLOWED = {
    "lstm": set(),
    "storage": set(),
    "tasks": {"lstm", "storage"},
    "flows": {"tasks"},
    "deployments": {"flows", "tasks"},
    "api": {"tasks", "lstm", "storage"},
    "forecast_cli": {"deployments", "flows", "tasks", "api", "lstm", "storage"},
}
#: packages in which an import of these packages must sit at module level (a function-level
#: import is how an import loop hides)
NO_LOCAL_IMPORTS = ("lstm", "storage", "tasks", "flows", "api")
NOT_LOCALLY = ("lstm", "tasks", "flows")
MAX_LINES = 450


def modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            rel = path.relative_to(REPO).with_suffix("")
            name = ".".join(rel.parts)
            out[name.removesuffix(".__init__")] = path
    return out


def project_imports(
    path: Path, name: str, runtime_only: bool = False
) -> list[tuple[str, int, bool]]:
    """(imported project module, line, at module level) for every import in a file.

    Imports under `if TYPE_CHECKING:` count as module level (they are not hiding a loop:
    they never run); `runtime_only` leaves them out (for the cycle check)."""
    tree = ast.parse(path.read_text(), str(path))
    top = {id(n) for n in tree.body}
    checking: set[int] = set()
    for node in tree.body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            checking |= {id(n) for n in node.body}
    top |= checking
    pkg_parts = name.split(".")
    out = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import
                base = pkg_parts[: len(pkg_parts) - node.level + (path.name == "__init__.py")]
                targets = [".".join([*base, node.module or ""]).strip(".")]
            elif node.module:
                targets = [node.module]
                targets += [f"{node.module}.{a.name}" for a in node.names]
        if runtime_only and id(node) in checking:
            continue
        for t in targets:
            if t.split(".")[0] in PACKAGES:
                out.append((t, node.lineno, id(node) in top))
    return out


def resolve(target: str, known: dict[str, Path]) -> str | None:
    """The project module an import names (a `from pkg import name` may name a module)."""
    while target:
        if target in known:
            return target
        target = target.rpartition(".")[0]
    return None


def graph() -> dict[str, set[str]]:
    known = modules()
    edges: dict[str, set[str]] = {m: set() for m in known}
    for name, path in known.items():
        for target, _, top in project_imports(path, name, runtime_only=True):
            dep = resolve(target, known)
            if dep and dep != name and top:
                edges[name].add(dep)
    return edges


def test_dependencies_point_one_way():
    bad = []
    known = modules()
    for name, path in known.items():
        pkg = name.split(".")[0]
        for target, line, _ in project_imports(path, name):
            other = target.split(".")[0]
            if other != pkg and other not in ALLOWED[pkg]:
                bad.append(f"{path.relative_to(REPO)}:{line} imports {target}")
    assert not bad, "imports against the architecture:\n" + "\n".join(bad)


def test_no_function_level_project_imports():
    bad = []
    for name, path in modules().items():
        if name.split(".")[0] not in NO_LOCAL_IMPORTS:
            continue
        for target, line, top in project_imports(path, name):
            if not top and target.split(".")[0] in NOT_LOCALLY:
                bad.append(f"{path.relative_to(REPO)}:{line} imports {target} inside a function")
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    edges = graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(edges[node]):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep) :] + [dep])
            elif dep not in state:
                visit(dep, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [])
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_modules_stay_small_or_say_why():
    long = []
    for path in modules().values():
        lines = path.read_text().splitlines()
        if len(lines) > MAX_LINES:
            head = "\n".join(lines[:30])
            if "longer than" not in head:  # e.g. "This module is longer than 450 lines because"
                long.append(f"{path.relative_to(REPO)}: {len(lines)} lines")
    assert not long, "modules over the size bound without a reason at the top:\n" + "\n".join(long)


@pytest.mark.parametrize("module", ["flows.predict", "flows.backfill"])
def test_the_predict_path_imports_nothing_it_does_not_use(module):
    code = (
        f"import sys, {module}\n"
        "heavy = [m for m in ('matplotlib', 'sklearn', 'duckdb', 'joblib', 'scipy') "
        "if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "", f"importing {module} loads {out.stdout.strip()}"
