"""Line protocol rendering and InfluxQL quoting."""

from __future__ import annotations

import pytest

from shopfloor.influx import Point, quote_ident, quote_literal, to_line


@pytest.mark.parametrize(
    ("point", "line"),
    [
        (
            Point("telemetry", {"site": "bdg", "machine": "cnc-01"}, {"state": "RUNNING", "good_count": 812}, 17),
            'telemetry,machine=cnc-01,site=bdg good_count=812i,state="RUNNING" 17',
        ),
        # Canonical float signals are always floats, even when the value is whole.
        (
            Point("telemetry", {"site": "bdg", "machine": "m"}, {"energy_kwh": 12, "power_kw": 0.5}, 1),
            "telemetry,machine=m,site=bdg energy_kwh=12.0,power_kw=0.5 1",
        ),
        (
            Point("telemetry", {"site": "a b", "machine": "x,y=z"}, {"job": 'say "hi"\\'}, 1),
            'telemetry,machine=x\\,y\\=z,site=a\\ b job="say \\"hi\\"\\\\" 1',
        ),
        (Point("m", {"site": ""}, {"ok": True, "ratio": 0.25}, 1), "m ok=true,ratio=0.25 1"),
    ],
)
def test_to_line(point: Point, line: str) -> None:
    assert to_line(point) == line


def test_to_line_refuses_empty_and_non_finite() -> None:
    with pytest.raises(ValueError):
        to_line(Point("m", {}, {}, 1))
    with pytest.raises(ValueError):
        to_line(Point("m", {}, {"x": float("nan")}, 1))


def test_quoting() -> None:
    assert quote_literal("it's") == "'it\\'s'"
    assert quote_literal("a\\'; DROP DATABASE x") == "'a\\\\\\'; DROP DATABASE x'"
    assert quote_ident('we"ird') == '"we\\"ird"'
