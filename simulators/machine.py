"""The pure machine model: a deterministic function of (plan, seed, simulated time), with no I/O.

A MachineSim is an event-driven state machine. advance(t) processes every scripted action and internal event
(end of setup, end of a cycle, end of a stop) up to t, in time order; values(t) gives the signals at t.
Random draws happen only while processing events, in event order, so the outcome does not depend on how
often or when the model is queried.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass
from typing import NamedTuple

from shopfloor.contracts import MachineState, SignalValue
from simulators.plan import Action, ActionKind, Job, MachinePlan

S = MachineState
_NEVER = 1 << 62
# Interrupt precedence: a lower one arriving during a higher one is ignored.
_PRECEDENCE = {S.STOPPED: 1, S.MAINTENANCE: 2, S.OFF: 3}
MICROSTOP_MS = (3_000, 25_000)
MIN_BREAKDOWN_MS = 60_000


def _wrap(count: int, modulus: int | None) -> int:
    """A part counter as the PLC holds it: it wraps at the register's width (no wrap: float registers)."""
    return count % modulus if modulus is not None else count


class Interval(NamedTuple):
    """A stretch of time in which state, badge, job and stop reason were constant (end exclusive)."""

    start_ms: int
    end_ms: int
    state: MachineState
    badge: int
    job: str
    stop_reason: int


@dataclass(frozen=True, slots=True)
class TruthEvent:
    """Something injected that the intervals do not show (counter reset or wrap, badge swap)."""

    at_ms: int
    kind: str
    detail: str


@dataclass(slots=True)
class _Interrupt:
    state: MachineState
    reason: int
    until_ms: int


class MachineSim:
    """One simulated machine."""

    def __init__(self, plan: MachinePlan, seed: int, start_ms: int) -> None:
        self.plan = plan
        self.behaviour = plan.behaviour
        self._rng = random.Random(f"{seed}/{plan.machine_id}")
        self.now_ms = start_ms
        self.start_ms = start_ms
        # Counters a real PLC would already show when we start looking.
        self._good0 = self._rng.randrange(100, 20_000)
        self._reject0 = self._rng.randrange(0, 400)
        self._energy0 = round(self._rng.uniform(500.0, 5000.0), 2)
        self._good_off = 0
        self._reject_off = 0
        self._energy_off = 0.0
        self.good = 0
        self.reject = 0
        self.energy_kwh = 0.0
        self.badge = 0
        self.job = ""
        self._jobs: tuple[Job, ...] = ()
        self._job_index = 0
        self._parts_in_job = 0
        self._activity: MachineState = plan.initial_state
        self._activity_end: int | None = None
        self._interrupt: _Interrupt | None = None
        self._actions = plan.action_stream()
        self._next_at = -_NEVER  # when advance() last found the next event; only advance() changes the state
        self.intervals: list[Interval] = []
        self.interval_kw: list[float] = []  # power draw in each interval, parallel to intervals
        self._open: tuple[int, MachineState, int, str, int, float] | None = None
        self.good_ts: list[int] = []
        self.reject_ts: list[int] = []
        # Ideal cycle of the job each part was made in, parallel to good_ts / reject_ts (what OEE weighs parts by).
        self.good_ideal_ms: list[int] = []
        self.reject_ideal_ms: list[int] = []
        self.events: list[TruthEvent] = []
        self._mark()

    # -- what the outside sees -------------------------------------------------------------------------------
    @property
    def state(self) -> MachineState:
        """The state the PLC reports now."""
        return self._interrupt.state if self._interrupt is not None else self._activity

    @property
    def stop_reason(self) -> int:
        """The stop reason the PLC reports now (0 unless STOPPED)."""
        return self._interrupt.reason if self._interrupt is not None else 0

    def power_kw(self) -> float:
        """Power draw in the current state (while RUNNING, scaled by the job's power factor)."""
        state = self.state
        kw = self.behaviour.power_kw[state]
        if state is S.RUNNING:
            job = self._current_job()
            if job is not None:
                kw *= job.power_factor
        return kw

    def values(self, t_ms: int) -> dict[str, SignalValue]:
        """Signals a PLC shows at t_ms (call advance(t_ms) first)."""
        # Called for every poll of every machine (replay: millions of times), so each property is read once.
        interrupt = self._interrupt
        state, stop_reason = (interrupt.state, interrupt.reason) if interrupt is not None else (self._activity, 0)
        power = self.behaviour.power_kw[state]  # as power_kw(), without looking the state up again
        if state is S.RUNNING:
            job = self._current_job()
            if job is not None:
                power *= job.power_factor
        energy = self.energy_kwh + power * max(0, t_ms - self.now_ms) / 3_600_000
        plan = self.plan
        values: dict[str, SignalValue] = {
            "state": state._value_,  # the str itself, without the enum's property lookup
            "stop_reason": stop_reason,
            "badge": self.badge,
            "job": self.job,
            "good_count": _wrap(self._good0 + self.good + self._good_off, plan.good_modulus),
            "reject_count": _wrap(self._reject0 + self.reject + self._reject_off, plan.reject_modulus),
            "energy_kwh": max(0.0, self._energy0 + energy + self._energy_off),
            "power_kw": power,
        }
        values.update(self.behaviour.extras(state, stop_reason))
        return values

    def energy_at(self, t_ms: int) -> float:
        """True energy used since the start, up to t_ms (call advance(t_ms) first)."""
        return self.energy_kwh + self.power_kw() * max(0, t_ms - self.now_ms) / 3_600_000

    def next_event_ms(self) -> int:
        """When the next scripted action or internal event happens (a large number if never)."""
        return min(self._next_action_ms(), self._timer())

    def _next_action_ms(self) -> int:
        action = self._actions.peek()
        return action.at_ms if action is not None else _NEVER

    # -- time ------------------------------------------------------------------------------------------------
    def advance(self, t_ms: int) -> None:
        """Process everything that happens up to and including t_ms."""
        if t_ms < self._next_at:
            return  # nothing happens before the next event (polls are far more frequent than events)
        while True:
            action_at = self._next_action_ms()
            timer_at = self._timer()
            at = min(action_at, timer_at)
            if at > t_ms:
                self._next_at = at
                return
            self._integrate(at)
            if timer_at <= action_at:
                self._on_timer()
            else:
                self._apply(self._actions.pop())
            self._mark()

    def intervals_until(self, end_ms: int) -> tuple[list[Interval], list[float]]:
        """Intervals so far and their power draw, the open one cut at end_ms (call advance(end_ms - 1) first)."""
        count = bisect.bisect_left([iv.start_ms for iv in self.intervals], end_ms)
        out, kw = self.intervals[:count], self.interval_kw[:count]
        if out and out[-1].end_ms > end_ms:
            out[-1] = out[-1]._replace(end_ms=end_ms)
        if self._open is not None and self._open[0] < end_ms:
            start, state, badge, job, reason, power = self._open
            out.append(Interval(start, end_ms, state, badge, job, reason))
            kw.append(power)
        return out, kw

    def _timer(self) -> int:
        if self._interrupt is not None:
            return self._interrupt.until_ms
        return self._activity_end if self._activity_end is not None else _NEVER

    def _integrate(self, t_ms: int) -> None:
        if t_ms > self.now_ms:
            self.energy_kwh += self.power_kw() * (t_ms - self.now_ms) / 3_600_000
            self.now_ms = t_ms

    def _mark(self) -> None:
        key = (self.state, self.badge, self.job, self.stop_reason, self.power_kw())
        if self._open is not None and self._open[1:] == key:
            return
        if self._open is not None and self.now_ms > self._open[0]:
            start, state, badge, job, reason, power = self._open
            self.intervals.append(Interval(start, self.now_ms, state, badge, job, reason))
            self.interval_kw.append(power)
        self._open = (self.now_ms, *key)

    # -- internal events -------------------------------------------------------------------------------------
    def _current_job(self) -> Job | None:
        return self._jobs[self._job_index] if self._job_index < len(self._jobs) else None

    def _start_setup(self) -> None:
        job = self._current_job()
        assert job is not None
        self._activity = S.SETUP
        self.job = job.id
        self._activity_end = self.now_ms + job.setup_ms

    def _start_cycle(self) -> None:
        job = self._current_job()
        assert job is not None
        self._activity = S.RUNNING
        mean = job.cycle_ms
        cycle = self._rng.gauss(mean, job.jitter * mean) if job.jitter > 0 else mean
        self._activity_end = self.now_ms + max(100, round(min(max(cycle, 0.5 * mean), 2 * mean)))

    def _go_idle(self) -> None:
        self._activity = S.IDLE
        self._activity_end = None
        self.job = ""

    def _on_timer(self) -> None:
        if self._interrupt is not None:
            self._interrupt = None
            self._resume()
        elif self._activity is S.SETUP:
            self._start_cycle()
        elif self._activity is S.RUNNING:
            self._complete_part()
        else:
            self._activity_end = None

    def _resume(self) -> None:
        # An interrupted setup starts over; an interrupted cycle is abandoned (no part) and a new one begins.
        if self._activity is S.SETUP:
            self._start_setup()
        elif self._activity is S.RUNNING:
            self._start_cycle()

    def _complete_part(self) -> None:
        job = self._current_job()
        assert job is not None
        if self._rng.random() < job.reject_rate:
            self.reject += 1
            self.reject_ts.append(self.now_ms)
            self.reject_ideal_ms.append(job.ideal_cycle_ms)
        else:
            self.good += 1
            self.good_ts.append(self.now_ms)
            self.good_ideal_ms.append(job.ideal_cycle_ms)
        self._parts_in_job += 1
        if job.quantity is not None and self._parts_in_job >= job.quantity:
            self._job_index += 1
            self._parts_in_job = 0
            if self._current_job() is not None:
                self._start_setup()
            else:
                self._go_idle()
            return
        if self.plan.random_stops:
            draw = self._rng.random()
            p_break = job.cycle_ms / self.plan.mtbf_ms
            if draw < p_break:
                reason = self._rng.choice(self.behaviour.breakdown_reasons)
                duration = self._rng.expovariate(1 / self.plan.mttr_ms)
                duration = min(max(duration, MIN_BREAKDOWN_MS), 4 * self.plan.mttr_ms)
                self._interrupt = _Interrupt(S.STOPPED, reason, self.now_ms + round(duration))
                return
            if draw < p_break + self.plan.microstop_rate:
                reason = self._rng.choice(self.behaviour.microstop_reasons)
                duration = self._rng.uniform(*MICROSTOP_MS)
                self._interrupt = _Interrupt(S.STOPPED, reason, self.now_ms + round(duration))
                return
        self._start_cycle()

    # -- scripted actions ------------------------------------------------------------------------------------
    def _apply(self, action: Action) -> None:
        kind = action.kind
        if kind is ActionKind.LOGIN:
            self.badge = action.badge
            self._jobs = action.jobs
            self._job_index = 0
            self._parts_in_job = 0
            if self._current_job() is not None:
                self._start_setup()
        elif kind is ActionKind.WRAPUP:
            self._jobs = ()
            self._go_idle()
        elif kind is ActionKind.LOGOUT:
            self._jobs = ()
            self.badge = 0
            if self._activity is not S.IDLE:
                self._go_idle()
        elif kind in (ActionKind.BREAKDOWN, ActionKind.MAINTENANCE, ActionKind.POWER_OFF):
            state = {ActionKind.BREAKDOWN: S.STOPPED, ActionKind.MAINTENANCE: S.MAINTENANCE}.get(kind, S.OFF)
            self._interrupt_with(state, action.reason, action.until_ms)
        elif kind is ActionKind.COUNTER_RESET:
            self._good_off = -(self._good0 + self.good)
            self._reject_off = -(self._reject0 + self.reject)
            self._energy_off = -(self._energy0 + self.energy_kwh)
            self.events.append(TruthEvent(self.now_ms, "counter_reset", "part and energy counters restart at 0"))
        elif kind is ActionKind.COUNTER_WRAP:
            detail = []
            if self.plan.good_modulus is not None:
                self._good_off = self.plan.good_modulus - 3 - (self._good0 + self.good)
                detail.append(f"good_count -> {self.plan.good_modulus - 3}")
            if self.plan.reject_modulus is not None:
                self._reject_off = self.plan.reject_modulus - 3 - (self._reject0 + self.reject)
                detail.append(f"reject_count -> {self.plan.reject_modulus - 3}")
            self.events.append(TruthEvent(self.now_ms, "counter_wrap", ", ".join(detail) or "no integer counters"))
        elif kind is ActionKind.BADGE_SWAP:
            if self.badge:
                self.events.append(TruthEvent(self.now_ms, "badge_swap", f"badge {self.badge} -> {action.badge}"))
                self.badge = action.badge
            else:
                self.events.append(TruthEvent(self.now_ms, "badge_swap", "ignored: nobody logged in"))

    def _interrupt_with(self, state: MachineState, reason: int, until_ms: int) -> None:
        if until_ms <= self.now_ms:
            return
        current = self._interrupt
        if current is not None:
            if _PRECEDENCE[state] < _PRECEDENCE[current.state]:
                return
            if state is current.state:
                until_ms = max(until_ms, current.until_ms)
        self._interrupt = _Interrupt(state, reason if state is S.STOPPED else 0, until_ms)
