"""Integer money arithmetic: exact splits, rounding half away from zero, rounding up to a step. No floats.

Rounding half away from zero is symmetric (f(-x) == -f(x)), so a credit note that negates an invoice's amounts
also negates its taxes exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

from api.core.billing.model import BP


def mul_div(a: int, b: int, c: int) -> int:
    """Return a * b / c rounded to the nearest integer, halves away from zero."""
    if c == 0:
        raise ValueError("mul_div: divisor is 0")
    n = a * b
    negative = (n < 0) != (c < 0)
    q, r = divmod(abs(n), abs(c))
    if 2 * r >= abs(c):
        q += 1
    return -q if negative else q


def tax(amount: int, rate_bp: int) -> int:
    """Return the tax on amount at rate_bp basis points, rounded half away from zero."""
    if rate_bp < 0:
        raise ValueError(f"tax rate must be >= 0 bp, got {rate_bp}")
    return mul_div(amount, rate_bp, BP)


def ceil_div(a: int, b: int) -> int:
    """Return a / b rounded up (towards +infinity); b must be positive."""
    if b <= 0:
        raise ValueError(f"ceil_div: divisor must be > 0, got {b}")
    return -(-a // b)


def ceil_to(value: int, step: int) -> int:
    """Round value up to the next multiple of step (step > 0)."""
    if step <= 0:
        raise ValueError(f"ceil_to: step must be > 0, got {step}")
    return ceil_div(value, step) * step


def split(total: int, weights: Sequence[tuple[str, int]]) -> dict[str, int]:
    """Split total over keys by integer weights, largest remainder; the parts always sum to total.

    Each key first gets floor(|total| * w / W). The rupiah left over go one each to the keys with the largest
    remainders (|total| * w mod W); equal remainders go to the smaller key first (str order, ascending). A key
    of weight 0 gets 0. A negative total is split as its absolute value and negated (split(-t) == -split(t)),
    so every share is within 1 of the exact quotient either way.
    """
    seen: set[str] = set()
    for key, weight in weights:
        if key in seen:
            raise ValueError(f"split: key {key!r} appears twice")
        seen.add(key)
        if weight < 0:
            raise ValueError(f"split: weight of {key!r} must be >= 0, got {weight}")
    whole = sum(w for _, w in weights)
    if whole == 0:
        raise ValueError("split: the weights sum to 0; there is nothing to split by")
    sign = -1 if total < 0 else 1
    magnitude = abs(total)
    shares: dict[str, int] = {}
    remainders: list[tuple[int, str]] = []
    for key, weight in weights:
        share, remainder = divmod(magnitude * weight, whole)
        shares[key] = share
        remainders.append((remainder, key))
    left = magnitude - sum(shares.values())
    # left < number of keys with a positive remainder, so a weight-0 key (remainder 0) never gets a rupiah.
    for _, key in sorted(remainders, key=lambda rk: (-rk[0], rk[1]))[:left]:
        shares[key] += 1
    return {key: sign * share for key, share in shares.items()}
