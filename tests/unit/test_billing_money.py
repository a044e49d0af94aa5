"""Integer money: largest-remainder splits, half-away-from-zero rounding, rounding up to a step."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.core.billing.money import ceil_div, ceil_to, mul_div, split, tax

keys = st.text(alphabet="abcdefxyz", min_size=1, max_size=4)
weight_lists = st.lists(st.tuples(keys, st.integers(0, 10**6)), min_size=1, max_size=12, unique_by=lambda kw: kw[0])
totals = st.integers(-(10**12), 10**12)


# --- split, by hand -----------------------------------------------------------------------------------------------


def test_split_even() -> None:
    # 100 over 1:1 -> 50, 50, nothing left over.
    assert split(100, [("a", 1), ("b", 1)]) == {"a": 50, "b": 50}


def test_split_leftover_goes_to_largest_remainder() -> None:
    # 100 over 1:2 (W=3): floors 33 (rem 1), 66 (rem 2); one rupiah left -> b (remainder 2 > 1): 33, 67.
    assert split(100, [("a", 1), ("b", 2)]) == {"a": 33, "b": 67}


def test_split_ties_go_to_the_smaller_key() -> None:
    # 100 over 1:1:1: floors 33 each, remainders all 1, one left -> smallest key "a".
    assert split(100, [("c", 1), ("a", 1), ("b", 1)]) == {"a": 34, "b": 33, "c": 33}
    # 101 over 1:1:1: two left -> "a" and "b".
    assert split(101, [("b", 1), ("c", 1), ("a", 1)]) == {"a": 34, "b": 34, "c": 33}


def test_split_negative_total_mirrors() -> None:
    # -100 over 1:2 is -(33, 67), not floor(-33.3) = -34 etc.
    assert split(-100, [("a", 1), ("b", 2)]) == {"a": -33, "b": -67}
    assert split(-100, [("c", 1), ("a", 1), ("b", 1)]) == {"a": -34, "b": -33, "c": -33}


def test_split_zero_weight_gets_nothing() -> None:
    # 10 over 0:3:0 -> all to b; 7 over 1:0:1 -> 3 r1, 0, 3 r1; one left -> "a".
    assert split(10, [("a", 0), ("b", 3), ("c", 0)]) == {"a": 0, "b": 10, "c": 0}
    assert split(7, [("a", 1), ("b", 0), ("c", 1)]) == {"a": 4, "b": 0, "c": 3}


def test_split_facility_key_sorts_first() -> None:
    # The capacity policy's facility key starts with NUL, so it wins a tie: 1 over 1:1 -> facility.
    assert split(1, [("acme", 1), ("\x00facility", 1)]) == {"acme": 0, "\x00facility": 1}


def test_split_refuses_bad_weights() -> None:
    with pytest.raises(ValueError, match="sum to 0"):
        split(100, [("a", 0), ("b", 0)])
    with pytest.raises(ValueError, match="sum to 0"):
        split(100, [])
    with pytest.raises(ValueError, match="'b' must be >= 0"):
        split(100, [("a", 1), ("b", -1)])
    with pytest.raises(ValueError, match="twice"):
        split(100, [("a", 1), ("a", 2)])


# --- split, properties --------------------------------------------------------------------------------------------


@given(totals, weight_lists)
def test_split_sums_exactly_and_each_share_is_within_one_of_exact(total: int, weights: list[tuple[str, int]]) -> None:
    whole = sum(w for _, w in weights)
    if whole == 0:
        with pytest.raises(ValueError):
            split(total, weights)
        return
    shares = split(total, weights)
    assert sum(shares.values()) == total
    assert set(shares) == {k for k, _ in weights}
    for key, weight in weights:
        exact = Fraction(total * weight, whole)
        assert abs(shares[key] - exact) < 1
        if weight == 0:
            assert shares[key] == 0


@given(totals, weight_lists.flatmap(lambda w: st.tuples(st.just(w), st.permutations(w))))
def test_split_ignores_the_order_of_weights(
    total: int, pair: tuple[list[tuple[str, int]], list[tuple[str, int]]]
) -> None:
    weights, shuffled = pair
    if sum(w for _, w in weights) == 0:
        return
    assert split(total, weights) == split(total, shuffled)


@given(totals, weight_lists)
def test_split_mirror(total: int, weights: list[tuple[str, int]]) -> None:
    if sum(w for _, w in weights) == 0:
        return
    assert split(-total, weights) == {k: -v for k, v in split(total, weights).items()}


@given(st.integers(0, 10**9), st.integers(1, 50))
def test_split_equal_weights_tie_break_is_by_key(total: int, n: int) -> None:
    names = [f"k{i:02d}" for i in range(n)]
    shares = split(total, [(k, 1) for k in reversed(names)])
    base, left = divmod(total, n)
    assert [shares[k] for k in names] == [base + 1] * left + [base] * (n - left)


# --- tax and mul_div ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "rate_bp", "expected"),
    [
        (100_000, 1100, 11_000),  # 11 % of 100 000 exactly
        (50, 1100, 6),  # 5.5 -> 6 (half away from zero)
        (-50, 1100, -6),  # -5.5 -> -6: the credit note is the exact negation
        (45, 1100, 5),  # 4.95 -> 5
        (-45, 1100, -5),
        (44, 1100, 5),  # 4.84 -> 5
        (40, 1100, 4),  # 4.4 -> 4
        (-40, 1100, -4),
        (1, 5000, 1),  # 0.5 -> 1
        (-1, 5000, -1),  # -0.5 -> -1
        (1, 4999, 0),  # 0.4999 -> 0
        (0, 1100, 0),
        (123_457, 0, 0),
        (123_457, 1200, 14_815),  # 14 814.84 -> 14 815
    ],
)
def test_tax_half_away_from_zero(amount: int, rate_bp: int, expected: int) -> None:
    assert tax(amount, rate_bp) == expected


def test_tax_refuses_a_negative_rate() -> None:
    with pytest.raises(ValueError, match=">= 0 bp"):
        tax(100, -1)


@given(st.integers(-(10**15), 10**15), st.integers(0, 10_000))
def test_tax_is_symmetric_and_nearest(amount: int, rate_bp: int) -> None:
    assert tax(-amount, rate_bp) == -tax(amount, rate_bp)
    exact = Fraction(amount * rate_bp, 10_000)
    assert abs(tax(amount, rate_bp) - exact) <= Fraction(1, 2)


@pytest.mark.parametrize(
    ("a", "b", "c", "expected"),
    [
        (60_000, 42, 60, 42_000),  # Rp 60 000/h x 42 min
        (75_000, 1, 60, 1250),
        (50_000, 7, 60, 5833),  # 5833.33 -> 5833
        (50_000, 11, 60, 9167),  # 9166.67 -> 9167
        (1, 1, 2, 1),  # 0.5 -> 1
        (-1, 1, 2, -1),  # -0.5 -> -1
        (1, -1, 2, -1),
        (1, 1, -2, -1),
        (-1, -1, 2, 1),
        (3, 1, 2, 2),  # 1.5 -> 2
        (5, 1, 2, 3),  # 2.5 -> 3 (not banker's 2)
        (1, 1, 3, 0),
    ],
)
def test_mul_div(a: int, b: int, c: int, expected: int) -> None:
    assert mul_div(a, b, c) == expected


@given(st.integers(-(10**15), 10**15), st.integers(-(10**6), 10**6), st.integers(-(10**9), 10**9).filter(bool))
def test_mul_div_is_nearest_with_halves_away(a: int, b: int, c: int) -> None:
    exact = Fraction(a * b, c)
    got = mul_div(a, b, c)
    assert abs(got - exact) <= Fraction(1, 2)
    if abs(got - exact) == Fraction(1, 2):
        assert abs(got) > abs(exact)


def test_mul_div_refuses_zero_divisor() -> None:
    with pytest.raises(ValueError, match="divisor is 0"):
        mul_div(1, 1, 0)


@pytest.mark.parametrize(
    ("value", "step", "expected"),
    [(0, 6, 0), (1, 6, 6), (6, 6, 6), (7, 6, 12), (42, 1, 42), (-5, 6, 0), (-6, 6, -6)],
)
def test_ceil_to(value: int, step: int, expected: int) -> None:
    assert ceil_to(value, step) == expected


def test_ceil_refuses_bad_steps() -> None:
    with pytest.raises(ValueError, match="step must be > 0"):
        ceil_to(5, 0)
    with pytest.raises(ValueError, match="divisor must be > 0"):
        ceil_div(5, -1)
    assert ceil_div(60_001, 60_000) == 2
    assert ceil_div(60_000, 60_000) == 1
