"""Counter semantics (shopfloor/counters.py): wraps, resets and anomalies, hand-computed."""

from __future__ import annotations

import pytest

from shopfloor.counters import CounterSpec, CounterStep, CounterUnwrapper, StepKind, counter_step

T0 = 1_764_291_600_000
U16 = 65536.0


@pytest.mark.parametrize(
    ("previous", "current", "modulus", "max_increase", "expected"),
    [
        (10, 10, U16, None, CounterStep(StepKind.INCREASE, 0)),
        (10, 14, U16, None, CounterStep(StepKind.INCREASE, 4)),
        # 65535 -> 3 on a 16-bit counter: 65536 - 65535 + 3 = 4 parts, well under half the range.
        (65535, 3, U16, None, CounterStep(StepKind.WRAP, 4)),
        # 50000 -> 3: unwrapped it would be 3 + 65536 - 50000 = 15539 <= 32768, still a wrap without a limit...
        (50000, 3, U16, None, CounterStep(StepKind.WRAP, 15539)),
        # ...but not for a machine that makes at most 10 parts in the time: a reset, counted from 0 (3 parts).
        (50000, 3, U16, 10, CounterStep(StepKind.RESET, 3)),
        # 20000 -> 3: 3 + 65536 - 20000 = 45539 > 32768: a reset.
        (20000, 3, U16, None, CounterStep(StepKind.RESET, 3)),
        # A counter without a width cannot wrap: any decrease is a reset.
        (12.5, 0.25, None, None, CounterStep(StepKind.RESET, 0.25)),
        # An increase beyond what the machine can make is kept and flagged.
        (100, 59894, U16, 5, CounterStep(StepKind.INCREASE, 59794, anomaly=True)),
        # A "reset" to a preset value larger than possible is flagged too.
        (100, 90, None, 5, CounterStep(StepKind.RESET, 90, anomaly=True)),
        # Exactly the limit is plausible.
        (100, 105, U16, 5, CounterStep(StepKind.INCREASE, 5)),
    ],
)
def test_counter_step(
    previous: float, current: float, modulus: float | None, max_increase: float | None, expected: CounterStep
) -> None:
    assert counter_step(previous, current, modulus=modulus, max_increase=max_increase) == expected


def test_max_increase_from_rate() -> None:
    # 80 parts per hour over 90 s: 80 * 90 / 3600 = 2 parts.
    assert CounterSpec("good_count", U16, 80).max_increase(90_000) == 2
    assert CounterSpec("good_count", U16).max_increase(90_000) is None


def test_unwrapper_keeps_the_value_rising_across_wraps_and_passes_resets_on() -> None:
    unwrap = CounterUnwrapper([CounterSpec("good_count", U16), CounterSpec("power_kw", None)])
    readings = [65534, 65535, 2, 5, 65535, 1, 7]
    out = []
    changes = []
    for i, raw in enumerate(readings):
        values: dict[str, object] = {"good_count": raw, "state": "RUNNING"}
        changes.append(unwrap.apply(T0 + i * 1000, values))
        out.append(values["good_count"])
    # 65534, 65535; 2 wraps: 2 + 65536 = 65538; 5 + 65536 = 65541; raw 65535 is an increase: 65535 + 65536 = 131071;
    # 1 wraps again: 1 + 2 * 65536 = 131073; 7 + 2 * 65536 = 131079.
    assert out == [65534, 65535, 65538, 65541, 131071, 131073, 131079]
    assert changes == [{}, {}, {"good_count": U16}, {}, {}, {"good_count": 2 * U16}, {}]


def test_unwrapper_reset_drops_the_offset_and_offsets_survive_a_restart() -> None:
    unwrap = CounterUnwrapper([CounterSpec("good_count", U16)], offsets={"good_count": U16})
    values: dict[str, object] = {"good_count": 10}
    assert unwrap.apply(T0, values) == {}
    assert values["good_count"] == 65546  # the persisted offset applies from the first reading
    # 40000 -> 3: 3 + 65536 - 40000 = 25539 <= 32768 would be a wrap; with a 10 parts/h limit over 1 s it is a reset.
    limited = CounterUnwrapper([CounterSpec("good_count", U16, 10)], offsets={"good_count": U16})
    limited.apply(T0, {"good_count": 40000})
    values = {"good_count": 3}
    assert limited.apply(T0 + 1000, values) == {"good_count": 0.0}
    assert values["good_count"] == 3  # passed on as a reset: the value drops


def test_unwrapper_scaled_energy_wraps_in_engineering_units() -> None:
    # uint32 raw at 0.01 kWh: one wrap is 2**32 * 0.01 = 42949672.96 kWh.
    modulus = 2**32 * 0.01
    unwrap = CounterUnwrapper([CounterSpec("energy_kwh", modulus)])
    unwrap.apply(T0, {"energy_kwh": 42949672.9})
    values: dict[str, object] = {"energy_kwh": 0.04}
    assert unwrap.apply(T0 + 1000, values) == {"energy_kwh": modulus}
    assert values["energy_kwh"] == round(0.04 + modulus, 6) == 42949673.0
