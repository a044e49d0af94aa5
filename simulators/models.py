"""How each machine model behaves: power per state, stop reasons, typical reliability and its extra signals.

Adding a model is adding one row to BEHAVIOURS; a profile without a row gets GENERIC.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from shopfloor.contracts import MachineState, SignalValue

S = MachineState
Extras = Callable[[MachineState, int], dict[str, SignalValue]]


def _no_extras(state: MachineState, stop_reason: int) -> dict[str, SignalValue]:
    return {"alarms": 0}


def _cnc_extras(state: MachineState, stop_reason: int) -> dict[str, SignalValue]:
    # bit 0 door open (operator at the table), bit 2 axis overload (spindle fault).
    alarms = (1 if state is S.SETUP else 0) | (4 if stop_reason == 4 else 0)
    return {"alarms": alarms, "spindle_rpm": 8000 if state is S.RUNNING else 0}


def _laser_extras(state: MachineState, stop_reason: int) -> dict[str, SignalValue]:
    alarms = (1 if stop_reason == 12 else 0) | (2 if stop_reason == 14 else 0)
    return {"alarms": alarms, "laser_power_pct": 85 if state is S.RUNNING else 0}


def _press_extras(state: MachineState, stop_reason: int) -> dict[str, SignalValue]:
    alarms = 1 if stop_reason == 24 else 0
    temp = 25.0 if state is S.OFF else (180.0 if state is S.MAINTENANCE else 220.0)
    return {"alarms": alarms, "mould_temp_c": temp}


def _brake_extras(state: MachineState, stop_reason: int) -> dict[str, SignalValue]:
    return {"alarms": 0, "tonnage_t": 62.5 if state is S.RUNNING else 0.0}


@dataclass(frozen=True, slots=True)
class Behaviour:
    """Behaviour of one machine model."""

    model: str
    power_kw: dict[MachineState, float]
    breakdown_reasons: tuple[int, ...]
    microstop_reasons: tuple[int, ...]
    mtbf_ms: int = 4 * 3_600_000  # mean RUNNING time between random breakdowns
    mttr_ms: int = 15 * 60_000
    microstop_rate: float = 0.01  # chance of a microstop after each cycle
    extras: Extras = field(default=_no_extras)


def _power(off: float, idle: float, setup: float, running: float, stopped: float, maint: float) -> dict[S, float]:
    return {S.OFF: off, S.IDLE: idle, S.SETUP: setup, S.RUNNING: running, S.STOPPED: stopped, S.MAINTENANCE: maint}


GENERIC = Behaviour("generic", _power(0.0, 1.0, 1.5, 5.0, 1.0, 0.3), (1,), (2,))
BEHAVIOURS: dict[str, Behaviour] = {
    "cnc-mill-v1": Behaviour(
        "cnc-mill-v1", _power(0.0, 1.5, 2.5, 11.0, 1.2, 0.5), (1, 4, 3), (2, 5), extras=_cnc_extras
    ),
    "fiber-laser-v1": Behaviour(
        "fiber-laser-v1", _power(0.0, 4.0, 5.0, 28.0, 3.5, 0.8), (11, 12, 14), (13,), extras=_laser_extras
    ),
    "injection-press-v1": Behaviour(
        "injection-press-v1",
        _power(0.0, 6.0, 8.0, 18.0, 6.0, 1.0),
        (21, 24, 22),
        (23,),
        mtbf_ms=6 * 3_600_000,
        extras=_press_extras,
    ),
    "press-brake-v1": Behaviour(
        "press-brake-v1", _power(0.0, 0.8, 1.2, 4.5, 0.8, 0.3), (33,), (31, 32), extras=_brake_extras
    ),
}


def behaviour_for(model: str) -> Behaviour:
    """The behaviour of a profile model (GENERIC if the model has no row)."""
    return BEHAVIOURS.get(model, GENERIC)
