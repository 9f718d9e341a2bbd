"""The code stays typed and clean: the check API type-checks in strict mode, everything with the
project's mypy settings, and ruff finds nothing. (The tools come with the tox environments.)"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)


@pytest.mark.skipif(shutil.which("ruff") is None and not (Path(sys.executable).parent / "ruff").exists(),
                    reason="ruff is not installed in this environment")
def test_ruff_is_clean() -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    done = _run(ruff, "check", ".")
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("args", [("--strict", "conformance/checks"), ("conformance", "reference_executors")],
                         ids=["checks-strict", "project"])
def test_mypy_is_clean(args: tuple[str, ...]) -> None:
    pytest.importorskip("mypy")
    with tempfile.TemporaryDirectory() as cache:
        done = _run(sys.executable, "-m", "mypy", "--cache-dir", cache, *args)
    assert done.returncode == 0, done.stdout + done.stderr


def _module_graph() -> dict[str, set[str]]:
    """conformance's modules and the conformance modules each imports at run time (lazy imports inside
    functions included; ``if TYPE_CHECKING:`` blocks and the package root -- the public facade, which
    re-exports lazily -- excluded)."""
    import ast

    package = REPO / "conformance"
    modules = {}
    for path in package.rglob("*.py"):
        if "_seam_site" in path.parts:
            continue
        name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        modules[name] = path

    def imported(path: Path) -> set[str]:
        found: set[str] = set()

        class Visitor(ast.NodeVisitor):
            def visit_If(self, node: ast.If) -> None:
                if "TYPE_CHECKING" in ast.unparse(node.test):
                    for child in node.orelse:
                        self.visit(child)
                    return
                self.generic_visit(node)

            def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
                if node.module and node.module.startswith("conformance"):
                    for alias in node.names:
                        full = f"{node.module}.{alias.name}"
                        found.add(full if full in modules else node.module)

            def visit_Import(self, node: ast.Import) -> None:
                found.update(a.name for a in node.names if a.name.startswith("conformance"))

        Visitor().visit(ast.parse(path.read_text()))
        return found

    return {name: (imported(path) & set(modules)) - {name, "conformance"} for name, path in modules.items()}


def test_no_import_cycles() -> None:
    graph = _module_graph()
    cycles = []
    for start in graph:
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in graph[node]:
                if nxt == start:
                    cycles.append(" -> ".join([*path, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    assert not cycles, "import cycles:\n" + "\n".join(sorted(set(cycles))[:10])


def test_every_module_says_its_job() -> None:
    import ast

    missing = [str(p.relative_to(REPO)) for p in sorted((REPO / "conformance").rglob("*.py"))
               if "_seam_site" not in p.parts and not ast.get_docstring(ast.parse(p.read_text()))]
    assert not missing, f"modules without a docstring saying their one job: {missing}"
