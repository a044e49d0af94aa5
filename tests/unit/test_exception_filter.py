"""Report by exception (shopfloor/reporting.py ExceptionFilter): deadbands, heartbeat key frames, every change of
discrete signals and counters. Polls are 1 s apart from T0; the heartbeat is 5 s."""

from __future__ import annotations

import pytest

from shopfloor.contracts import SignalValue
from shopfloor.reporting import Deadband, ExceptionFilter

T0 = 1_764_291_600_000
HEARTBEAT = 5_000

Poll = dict[str, SignalValue]


def run(polls: list[Poll], bands: dict[str, Deadband] | None = None, step_ms: int = 1000) -> list[Poll | None]:
    f = ExceptionFilter(HEARTBEAT, bands)
    return [f.filter(T0 + i * step_ms, poll) for i, poll in enumerate(polls)]


def test_first_poll_is_a_key_frame_then_only_changes() -> None:
    polls: list[Poll] = [
        {"state": "RUNNING", "badge": 1001, "good_count": 10, "power_kw": 7.5},
        {"state": "RUNNING", "badge": 1001, "good_count": 10, "power_kw": 7.5},
        {"state": "RUNNING", "badge": 1001, "good_count": 11, "power_kw": 7.5},
        {"state": "STOPPED", "badge": 1001, "good_count": 11, "power_kw": 7.5},
    ]
    assert run(polls) == [polls[0], None, {"good_count": 11}, {"state": "STOPPED"}]


def test_heartbeat_sends_every_signal_at_least_every_heartbeat() -> None:
    steady: Poll = {"state": "IDLE", "badge": 0, "power_kw": 0.5}
    # Polls at 0..11 s; key frames at 0 s, 5 s (5 - 0 >= 5) and 10 s.
    out = run([steady] * 12)
    assert [i for i, o in enumerate(out) if o is not None] == [0, 5, 10]
    assert all(out[i] == steady for i in (0, 5, 10))


def test_change_does_not_delay_the_heartbeat() -> None:
    # A change at 3 s is sent alone; the key frame at 5 s still carries everything.
    polls: list[Poll] = [{"state": "IDLE", "job": "J-1"}] * 3 + [{"state": "SETUP", "job": "J-1"}] * 3
    out = run(polls)
    assert out == [polls[0], None, None, {"state": "SETUP"}, None, {"state": "SETUP", "job": "J-1"}]


@pytest.mark.parametrize(
    ("band", "values", "sent"),
    [
        # Absolute deadband 0.5 kW around the last SENT value (7.0): 7.4 no, 7.6 yes (|7.6 - 7.0| = 0.6 > 0.5),
        # then around 7.6: 7.2 no (0.4), 7.0 yes (0.6).
        (Deadband(absolute=0.5), [7.0, 7.4, 7.6, 7.2, 7.0], [7.0, None, 7.6, None, 7.0]),
        # Exactly the deadband is not beyond it.
        (Deadband(absolute=0.5), [7.0, 7.5], [7.0, None]),
        # 10 % of the last sent value: 100 -> 109 no (9 <= 10), 111 yes (11 > 10); then 10 % of 111 = 11.1: 100 no
        # (11 <= 11.1), 99 yes (12 > 11.1).
        (Deadband(percent=10), [100.0, 109.0, 111.0, 100.0, 99.0], [100.0, None, 111.0, None, 99.0]),
        # Percent of zero: any change is beyond it.
        (Deadband(percent=10), [0.0, 0.001], [0.0, 0.001]),
    ],
)
def test_deadband(band: Deadband, values: list[float], sent: list[float | None]) -> None:
    out = run([{"power_kw": v} for v in values], {"power_kw": band})
    assert [None if o is None else o["power_kw"] for o in out] == sent


def test_a_meter_with_a_deadband_rides_along_with_every_change() -> None:
    band = {"energy_kwh": Deadband(absolute=0.01)}
    f = ExceptionFilter(HEARTBEAT, band, riders=frozenset({"energy_kwh"}))
    assert f.filter(T0, {"state": "RUNNING", "energy_kwh": 10.0}) == {"state": "RUNNING", "energy_kwh": 10.0}
    # +0.004 kWh: within the deadband and nothing else changed: held back.
    assert f.filter(T0 + 1000, {"state": "RUNNING", "energy_kwh": 10.004}) is None
    # The state changes: the meter's reading at that moment goes with it, so the 0.007 kWh count before the change.
    assert f.filter(T0 + 2000, {"state": "IDLE", "energy_kwh": 10.007}) == {"state": "IDLE", "energy_kwh": 10.007}
    # Beyond the deadband on its own: 10.018 - 10.007 = 0.011 > 0.01.
    assert f.filter(T0 + 3000, {"state": "IDLE", "energy_kwh": 10.018}) == {"energy_kwh": 10.018}


def test_signals_without_deadband_go_on_every_change_even_tiny() -> None:
    polls: list[Poll] = [{"energy_kwh": 12.5}, {"energy_kwh": 12.51}, {"energy_kwh": 12.51}, {"good_count": 3}]
    # good_count is new at 3 s (not in the last sent values): sent; energy_kwh vanished (a decode error): forgotten.
    assert run(polls) == [{"energy_kwh": 12.5}, {"energy_kwh": 12.51}, None, {"good_count": 3}]


def test_a_signal_that_comes_back_is_sent_again() -> None:
    polls: list[Poll] = [{"state": "IDLE", "badge": 7}, {"state": "IDLE"}, {"state": "IDLE", "badge": 7}]
    assert run(polls) == [polls[0], None, {"badge": 7}]


def test_type_change_is_a_change() -> None:
    # 1 == 1.0 == True in Python, but they are different values on the wire and in the store.
    polls: list[Poll] = [{"x": 1}, {"x": 1.0}, {"x": True}, {"x": True}]
    assert run(polls) == [{"x": 1}, {"x": 1.0}, {"x": True}, None]


def test_reset_makes_the_next_poll_a_key_frame() -> None:
    f = ExceptionFilter(HEARTBEAT)
    poll: Poll = {"state": "RUNNING", "badge": 1001}
    assert f.filter(T0, poll) == poll
    assert f.filter(T0 + 1000, poll) is None
    f.reset()
    assert f.filter(T0 + 2000, poll) == poll


def test_suppressed_counts_values_not_sent() -> None:
    f = ExceptionFilter(HEARTBEAT)
    f.filter(T0, {"a": 1, "b": 2})
    f.filter(T0 + 1000, {"a": 1, "b": 2})  # 2 suppressed
    f.filter(T0 + 2000, {"a": 1, "b": 3})  # 1 suppressed
    assert f.suppressed == 3


def test_input_is_not_modified() -> None:
    f = ExceptionFilter(HEARTBEAT)
    poll: Poll = {"a": 1}
    out = f.filter(T0, poll)
    assert out is not poll
    assert out is not None
    out["a"] = 2
    assert f.filter(T0 + 1000, {"a": 1}) is None


def test_heartbeat_must_be_positive() -> None:
    with pytest.raises(ValueError, match="heartbeat must be positive"):
        ExceptionFilter(0)
