"""Labels and formats in English and Bahasa Indonesia: every key in both, exact integer rounding, dates in the zone."""

from __future__ import annotations

import ast
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.core import i18n
from api.core.i18n import (
    LABELS,
    LANGS,
    date,
    datetime_,
    hours,
    integer,
    kwh,
    label,
    percent_bp,
    period,
    quantity,
    rupiah,
    span,
    unit_price,
)

JKT = "Asia/Jakarta"  # UTC+7 all year, no DST
# 2 Nov 2026 08:00 WIB = 01:00 UTC
T = 1_793_581_200_000
H = 3_600_000


def test_every_label_has_every_language_and_no_other() -> None:
    for key, entry in LABELS.items():
        assert set(entry) == set(LANGS), key
        assert all(isinstance(entry[lang], str) and entry[lang].strip() for lang in LANGS), key


def test_labels_are_latin1_so_the_pdf_core_fonts_print_them() -> None:
    for key, entry in LABELS.items():
        for text in entry.values():
            text.encode("latin-1")  # raises on anything a core font cannot show
            assert key == key.strip()


def test_label_looks_up_one_table() -> None:
    assert label("invoice", "en") == "INVOICE"
    assert label("invoice", "id") == "FAKTUR"
    assert label("credit_note", "id") == "NOTA KREDIT"
    assert label("page_of", "id").format(page=2, pages=5) == "Halaman 2 dari 5"


def test_unknown_label_names_the_key() -> None:
    with pytest.raises(ValueError, match="no label 'invioce'"):
        label("invioce", "en")


@pytest.mark.parametrize("lang", ["fr", "EN", "", "id-ID"])
def test_unsupported_language_is_refused_everywhere(lang: str) -> None:
    message = f"language '{lang}' not supported \\(en, id\\)"
    with pytest.raises(ValueError, match=message):
        label("invoice", lang)
    with pytest.raises(ValueError, match=message):
        rupiah(1, lang)
    with pytest.raises(ValueError, match=message):
        date(T, JKT, lang)
    with pytest.raises(ValueError, match=message):
        period("2026-11", lang)


@pytest.mark.parametrize(
    ("amount", "en", "id_"),
    [
        (0, "Rp 0", "Rp 0"),
        (999, "Rp 999", "Rp 999"),
        (1000, "Rp 1,000", "Rp 1.000"),
        (1_234_567, "Rp 1,234,567", "Rp 1.234.567"),
        (100_000_000, "Rp 100,000,000", "Rp 100.000.000"),
        (-5, "-Rp 5", "-Rp 5"),
        (-1_234_567, "-Rp 1,234,567", "-Rp 1.234.567"),
        (10**15, "Rp 1,000,000,000,000,000", "Rp 1.000.000.000.000.000"),  # exact: ints, not floats
    ],
)
def test_rupiah(amount: int, en: str, id_: str) -> None:
    assert rupiah(amount, "en") == en
    assert rupiah(amount, "id") == id_


@pytest.mark.parametrize("bad", [1.5, True, "1000", None])
def test_rupiah_refuses_anything_but_int(bad: object) -> None:
    with pytest.raises(TypeError, match="amount must be an int"):
        rupiah(bad, "id")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ms", "places", "en", "id_"),
    [
        (5_400_000, 2, "1.5 h", "1,5 jam"),  # 1.5 h: trailing zero trimmed
        (7_200_000, 2, "2 h", "2 jam"),  # 2.00 -> 2
        (0, 2, "0 h", "0 jam"),
        (60_000, 2, "0.02 h", "0,02 jam"),  # 1 min = 0.01666.. h -> 0.02
        (18_000, 2, "0.01 h", "0,01 jam"),  # 18 s = 0.005 h exactly: half up -> 0.01
        (17_999, 2, "0 h", "0 jam"),  # 0.0049997 h -> 0.00 -> 0
        (11_700_000, 2, "3.25 h", "3,25 jam"),  # 195 min
        (1_800_000, 0, "1 h", "1 jam"),  # 0.5 h, no places: half up -> 1
        (-1_800_000, 0, "-1 h", "-1 jam"),  # half away from zero
        (-17_999, 2, "0 h", "0 jam"),  # rounds to zero: no "-0"
        (1234 * H + H // 2, 2, "1,234.5 h", "1.234,5 jam"),  # thousands separator
        (1, 6, "0 h", "0 jam"),  # 1 ms = 0.000000277 h -> 0.000000
        (1800, 6, "0.0005 h", "0,0005 jam"),  # 1.8 s = 0.0005 h exactly
    ],
)
def test_hours(ms: int, places: int, en: str, id_: str) -> None:
    assert hours(ms, "en", places) == en
    assert hours(ms, "id", places) == id_


@given(st.integers(min_value=-(10**13), max_value=10**13), st.integers(min_value=0, max_value=6))
def test_hours_rounds_half_away_from_zero_exactly(ms: int, places: int) -> None:
    # ground truth from Fraction: |ms| / 3.6e6 scaled, floor(x + 1/2), sign back on
    scaled = Fraction(abs(ms), H) * 10**places
    q = int(scaled + Fraction(1, 2))
    text = hours(ms, "en", places).removesuffix(" h").replace(",", "")
    value = Fraction(text)
    assert value == (q if ms >= 0 else -q) / Fraction(10**places)
    assert not text.endswith(".") and (("." not in text) or not text.endswith("0"))


@pytest.mark.parametrize("places", [-1, 7, True])
def test_hours_refuses_bad_places(places: int) -> None:
    with pytest.raises((ValueError, TypeError), match="places"):
        hours(H, "en", places)


@pytest.mark.parametrize(
    ("wh", "en", "id_"),
    [
        (12_500, "12.5 kWh", "12,5 kWh"),
        (1, "0.001 kWh", "0,001 kWh"),
        (0, "0 kWh", "0 kWh"),
        (1_234_500, "1,234.5 kWh", "1.234,5 kWh"),
    ],
)
def test_kwh(wh: int, en: str, id_: str) -> None:
    assert kwh(wh, "en") == en
    assert kwh(wh, "id") == id_


@pytest.mark.parametrize(
    ("bp", "en", "id_"),
    [
        (1100, "11%", "11%"),
        (8533, "85.33%", "85,33%"),
        (5, "0.05%", "0,05%"),
        (0, "0%", "0%"),
        (10050, "100.5%", "100,5%"),
    ],
)
def test_percent_bp_has_no_space(bp: int, en: str, id_: str) -> None:
    assert percent_bp(bp, "en") == en
    assert percent_bp(bp, "id") == id_


def test_integer_groups_thousands() -> None:
    assert integer(1_234_567, "en") == "1,234,567"
    assert integer(1_234_567, "id") == "1.234.567"
    assert integer(-1000, "id") == "-1.000"
    assert integer(12, "id") == "12"


@pytest.mark.parametrize(
    ("q", "unit", "en", "id_"),
    [
        (195, "min", "195 min", "195 menit"),
        (12_500, "Wh", "12.5 kWh", "12,5 kWh"),
        (1, "part", "1 part", "1 buah"),
        (1200, "part", "1,200 parts", "1.200 buah"),
        (1, "booking", "1 booking", "1 pemesanan"),
        (2, "booking", "2 bookings", "2 pemesanan"),
    ],
)
def test_quantity(q: int, unit: str, en: str, id_: str) -> None:
    assert quantity(q, unit, "en") == en
    assert quantity(q, unit, "id") == id_


def test_unit_price_per_unit() -> None:
    assert unit_price(150_000, "min", "id") == "Rp 150.000/jam"  # "min" lines are priced per hour
    assert unit_price(150_000, "min", "en") == "Rp 150,000/h"
    assert unit_price(1500, "Wh", "id") == "Rp 1.500/kWh"  # Wh lines are priced per kWh
    assert unit_price(500, "part", "en") == "Rp 500/part"
    assert unit_price(100_000, "booking", "id") == "Rp 100.000/pemesanan"


@pytest.mark.parametrize("unit", ["h", "kWh", "", "MIN"])
def test_unknown_unit_is_refused(unit: str) -> None:
    with pytest.raises(ValueError, match=f"unit '{unit}' unknown"):
        quantity(1, unit, "en")
    with pytest.raises(ValueError, match=f"unit '{unit}' unknown"):
        unit_price(1, unit, "en")


def test_dates_in_the_site_zone() -> None:
    assert date(T, JKT, "en") == "2 Nov 2026"
    assert date(T, JKT, "id") == "2 November 2026"
    assert datetime_(T, JKT, "en") == "2 Nov 2026 08:00"
    assert datetime_(T, JKT, "id") == "2 Nov 2026 08:00"
    # 1 Nov 2026 17:30 UTC is already 2 Nov 00:30 in Jakarta: the local date is what the tenant reads
    late = 1_793_466_000_000 + 17 * H + 30 * 60_000  # 1 Nov 00:00 WIB + 17.5 h = 1 Nov 17:30 WIB
    assert datetime_(late, JKT, "en") == "1 Nov 2026 17:30"
    assert datetime_(late, "UTC", "en") == "1 Nov 2026 10:30"
    assert date(1_793_554_200_000, JKT, "en") == "2 Nov 2026"  # 1 Nov 17:30 UTC = 2 Nov 00:30 WIB
    assert date(1_793_554_200_000, "UTC", "en") == "1 Nov 2026"


def test_indonesian_months() -> None:
    full: tuple[str, ...] = ("Januari", "Februari", "Maret", "April", "Mei", "Juni", "Juli", "Agustus")
    full += ("September", "Oktober", "November", "Desember")
    assert [period(f"2026-{m:02d}", "id") for m in range(1, 13)] == [f"{name} 2026" for name in full]
    assert period("2026-11", "en") == "November 2026"
    # 15 Aug 2026 12:00 WIB = 05:00 UTC: abbreviated "Agu" with the time, in full without
    aug = 1_786_770_000_000
    assert datetime_(aug, JKT, "id") == "15 Agu 2026 12:00"
    assert date(aug, JKT, "id") == "15 Agustus 2026"
    assert date(aug, JKT, "en") == "15 Aug 2026"


def test_span_within_a_day_and_across_midnight() -> None:
    assert span(T, T + 3 * H + 30 * 60_000, JKT, "id") == "2 Nov 2026 08:00-11:30"
    assert span(T + 14 * H, T + 22 * H, JKT, "en") == "2 Nov 2026 22:00 - 3 Nov 2026 06:00"


def test_dst_zone_uses_the_offset_of_the_day() -> None:
    # 29 Mar 2026 01:30 UTC: Berlin switched from +01:00 to +02:00 at 01:00 UTC
    ms = 1_774_747_800_000
    assert datetime_(ms, "Europe/Berlin", "en") == "29 Mar 2026 03:30"
    assert datetime_(ms - H, "Europe/Berlin", "en") == "29 Mar 2026 01:30"


@pytest.mark.parametrize("zone", ["Mars/Olympus", "../../etc/passwd", "", "asia/jakarta "])
def test_unknown_zone_is_refused(zone: str) -> None:
    with pytest.raises(ValueError, match=r"time zone .* unknown"):
        date(T, zone, "en")


@pytest.mark.parametrize("value", ["2026-13", "2026-00", "2026-1", "26-11", "2026-11-01", " 2026-11", 202611])
def test_malformed_period_is_refused(value: object) -> None:
    with pytest.raises(ValueError, match="is not YYYY-MM"):
        period(value, "en")  # type: ignore[arg-type]


def test_no_float_arithmetic_in_i18n() -> None:
    tree = ast.parse(Path(i18n.__file__).read_text())
    floats = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, float)]
    divisions = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.BinOp) and isinstance(n.op, ast.Div)]
    calls = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Name) and n.id == "float"]
    assert floats == divisions == calls == []
