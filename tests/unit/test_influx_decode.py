"""How InfluxStore turns a series of a query answer into samples, and keeps the GC off only while it decodes."""

from __future__ import annotations

import gc
import threading
from typing import Any

import pytest

from shopfloor.gcpause import GcPause
from shopfloor.influx import _decode
from shopfloor.store import Sample

SERIES: dict[str, Any] = {
    "name": "telemetry",
    "columns": ["time", "energy_kwh", "good_count", "site", "state", "temp_c"],
    "values": [
        # A whole float comes as 2, not 2.0; a false and a zero are values, a null is "not carried".
        [1000, 2, 0, "bdg", "RUNNING", 40],
        [2000, None, None, "bdg", None, 40.5],
        [3000, 2.25, 1, "bdg", "", None],
        [4000, None, False, None, None, None],
    ],
}


def fresh() -> dict[str, Any]:
    return {**SERIES, "values": [list(row) for row in SERIES["values"]]}


@pytest.mark.parametrize(
    ("floats", "skip", "expected"),
    [
        (
            ["energy_kwh", "temp_c"],
            ["site"],
            [
                (1000, {"energy_kwh": 2.0, "good_count": 0, "state": "RUNNING", "temp_c": 40.0}),
                (2000, {"temp_c": 40.5}),
                (3000, {"energy_kwh": 2.25, "good_count": 1, "state": ""}),
                (4000, {"good_count": False}),  # a bool in an int column is not touched
            ],
        ),
        # Nothing declared float: whole numbers stay as JSON gave them; site is a field when not skipped.
        (
            [],
            [],
            [
                (1000, {"energy_kwh": 2, "good_count": 0, "site": "bdg", "state": "RUNNING", "temp_c": 40}),
                (2000, {"site": "bdg", "temp_c": 40.5}),
                (3000, {"energy_kwh": 2.25, "good_count": 1, "site": "bdg", "state": ""}),
                (4000, {"good_count": False}),
            ],
        ),
    ],
)
def test_decode_rows(floats: list[str], skip: list[str], expected: list[tuple[int, dict[str, Any]]]) -> None:
    got = _decode(fresh(), floats, skip)
    assert got == expected
    assert [{k: type(v) for k, v in f.items()} for _, f in got] == [
        {k: type(v) for k, v in f.items()} for _, f in expected
    ]


def test_decode_appends_to_out_and_takes_empty_series() -> None:
    out: list[Sample] = [(1, {"x": 1})]
    assert _decode({"columns": ["time", "x"], "values": [[2, 2]]}, out=out) is out
    assert out == [(1, {"x": 1}), (2, {"x": 2})]
    assert _decode({"columns": ["time", "x"]}) == []
    assert _decode({"columns": ["x", "time"], "values": [[5, 9]]}) == [(9, {"x": 5})]  # time need not come first


@pytest.mark.parametrize("enabled", [True, False])
def test_gc_is_off_while_any_read_decodes_and_as_it_was_after(enabled: bool) -> None:
    pause = GcPause()
    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        inside = threading.Event()
        release = threading.Event()

        def other_read() -> None:
            with pause.paused():
                inside.set()
                release.wait(5)

        thread = threading.Thread(target=other_read)
        with pause.paused():
            assert not gc.isenabled()
            thread.start()
            assert inside.wait(5)
        assert not gc.isenabled()  # the other read still decodes
        release.set()
        thread.join(5)
        assert gc.isenabled() is enabled
        with pytest.raises(RuntimeError), pause.paused():
            raise RuntimeError("a read that fails")
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()
