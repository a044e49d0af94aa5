"""No float can enter the billing core: an AST scan of every module under api/core/billing/ (but i18n.py).

Flags float literals, the name float (but in isinstance checks that refuse one), true division (/ and /=), math's
float functions and float annotations (string ones too). math's integer helpers (isqrt, gcd, ...) stay allowed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BILLING = ROOT / "api" / "core" / "billing"
DISPLAY_ONLY = {"i18n.py"}  # formats figures for people; never feeds a figure back
INT_MATH = {"isqrt", "gcd", "lcm", "comb", "perm", "factorial", "prod"}


def _annotation_floats(node: ast.expr | None, line: int) -> list[str]:
    if node is None:
        return []
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        try:
            node = ast.parse(node.value, mode="eval").body
        except SyntaxError:
            return []
    return [f"line {line}: float annotation" for n in ast.walk(node) if isinstance(n, ast.Name) and n.id == "float"]


def float_uses(source: str) -> list[str]:
    """Return where source uses floats: literals, float(), '/', math float functions, float annotations."""
    found: list[str] = []
    tree = ast.parse(source)
    # isinstance(x, float) tests for a float in order to refuse it: the one use of the name that is allowed.
    checks = {
        id(n)
        for call in ast.walk(tree)
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "isinstance"
        for arg in call.args[1:]
        for n in ast.walk(arg)
    }
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Constant) and isinstance(node.value, float | complex):
            found.append(f"line {line}: float literal {node.value!r}")
        elif isinstance(node, ast.Name) and node.id == "float" and id(node) not in checks:
            found.append(f"line {line}: float")
        elif isinstance(node, ast.BinOp | ast.AugAssign) and isinstance(node.op, ast.Div):
            found.append(f"line {line}: true division '/'")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow) and isinstance(node.right, ast.UnaryOp):
            found.append(f"line {line}: power with a negative exponent")
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "math"
            and node.attr not in INT_MATH
        ):
            found.append(f"line {line}: math.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module == "math":
            found += [f"line {line}: from math import {a.name}" for a in node.names if a.name not in INT_MATH]
        elif isinstance(node, ast.Import):
            found += [f"line {line}: import {a.name}" for a in node.names if a.name in {"statistics", "numpy"}]
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = node.args
            for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
                if arg is not None:
                    found += _annotation_floats(arg.annotation, arg.lineno)
            found += _annotation_floats(node.returns, line)
        elif isinstance(node, ast.AnnAssign):
            found += _annotation_floats(node.annotation, line)
    return sorted(set(found))


MODULES = sorted(p for p in BILLING.glob("*.py") if p.name not in DISPLAY_ONLY)


def test_the_billing_modules_are_there() -> None:
    assert {p.name for p in MODULES} >= {"model.py", "money.py", "charging.py", "document.py"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_floats_in_billing(path: Path) -> None:
    assert float_uses(path.read_text()) == [], f"{path.name} uses floats"


PLANTED = [
    ("x = 0.11", "float literal 0.11"),
    ("x = 1e3", "float literal 1000.0"),
    ("x = float(a)", "line 1: float"),
    ("x = isinstance(float(a), int)", "line 1: float"),
    ("to = float\nx = to(a)", "line 1: float"),
    ("x = a / b", "true division"),
    ("a /= 2", "true division"),
    ("x = 10 ** -2", "negative exponent"),
    ("import math\nx = math.floor(a)", "math.floor"),
    ("import math\nx = math.ceil(a)", "math.ceil"),
    ("from math import ceil", "from math import ceil"),
    ("import statistics", "import statistics"),
    ("def f(a: float) -> int: ...", "float annotation"),
    ("def f(a: int) -> 'float | None': ...", "float annotation"),
    ("def f(*, a: list[float]) -> int: ...", "float annotation"),
    ("x: float = 0", "float annotation"),
    ("class A:\n    rate: float", "float annotation"),
]


@pytest.mark.parametrize(("source", "expected"), PLANTED)
def test_the_scanner_catches_a_planted_float(source: str, expected: str) -> None:
    assert any(expected in hit for hit in float_uses(source)), float_uses(source)


@pytest.mark.parametrize(
    "source",
    [
        "x = a // b",
        "q, r = divmod(a, b)",
        "import math\nx = math.isqrt(a)",
        "x = 2 ** 63 - 1",
        "def f(a: int) -> str: return f'{a:,}'",
        "text = 'a / b is 0.5'",
        "if isinstance(v, float):\n    raise TypeError(v)",
        "ok = isinstance(v, int | float)",
    ],
)
def test_the_scanner_lets_integer_code_through(source: str) -> None:
    assert float_uses(source) == []
