"""The analytics core stays pure: it imports only the standard library, itself and pure kernel modules.

A pure kernel module (shopfloor.counters: one counter semantics for the agent, the replay and the analytics) imports
only the standard library itself, which is checked here too.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "api" / "core"
PURE_KERNEL = {"shopfloor.counters", "shopfloor.calendar"}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", sorted(CORE.rglob("*.py")), ids=lambda p: str(p.relative_to(CORE)))
def test_core_imports_only_stdlib(path: Path) -> None:
    allowed = {"api", "shopfloor", "__future__"}
    foreign = {r for r in imported_roots(path) if r not in sys.stdlib_module_names and r not in allowed}
    assert foreign == set(), f"{path.name} imports {foreign}"
    modules = {n.module for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ImportFrom) and n.module}
    assert all(m.startswith("api.core") for m in modules if m.startswith("api")), modules
    assert {m for m in modules if m.startswith("shopfloor")} <= PURE_KERNEL, modules


@pytest.mark.parametrize("module", sorted(PURE_KERNEL))
def test_the_kernel_modules_the_core_uses_are_pure(module: str) -> None:
    path = ROOT.joinpath(*module.split(".")).with_suffix(".py")
    foreign = {r for r in imported_roots(path) if r not in sys.stdlib_module_names and r != "__future__"}
    assert foreign == set(), f"{module} imports {foreign}"


def test_core_files_exist() -> None:
    expected = {"timeline.py", "counters.py", "pieces.py", "sessions.py", "usage.py", "oee.py"}
    assert {p.name for p in CORE.glob("*.py")} >= expected
