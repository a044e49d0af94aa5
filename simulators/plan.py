"""Turn a Scenario into concrete, time-stamped actions per machine for a run starting at a given instant.

Pure: no I/O, no clock. Offsets become start_ms + offset; daily windows are expanded in the site's time zone.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from enum import IntEnum, StrEnum

from shopfloor.calendar import local_windows
from shopfloor.config import SiteConfig
from shopfloor.contracts import MachineState
from shopfloor.yamlfile import ConfigError
from simulators.models import Behaviour, behaviour_for
from simulators.scenario import (
    MAX_DURATION_MS,
    WEEKDAYS,
    DailyKind,
    EventKind,
    JobSpec,
    Scenario,
    check_against_site,
)

WRAPUP_MS = 2000  # the machine is IDLE this long before the badge is cleared at logout
REPEAT_HORIZON_MS = MAX_DURATION_MS  # a repeating scenario served live runs this long (400 days), or until stopped


class ActionKind(IntEnum):
    """Scripted machine actions; the value orders actions that fall on the same millisecond."""

    WRAPUP = 0
    LOGOUT = 1
    POWER_OFF = 2
    MAINTENANCE = 3
    BREAKDOWN = 4
    COUNTER_RESET = 5
    COUNTER_WRAP = 6
    LOGIN = 7
    BADGE_SWAP = 8


@dataclass(frozen=True, slots=True)
class Job:
    """A job with every default resolved, times in ms."""

    id: str
    ideal_cycle_ms: int
    cycle_ms: int
    jitter: float
    reject_rate: float
    quantity: int | None
    setup_ms: int
    power_factor: float = 1.0


@dataclass(frozen=True, slots=True, order=True)
class Action:
    """One scripted thing that happens to a machine at at_ms."""

    at_ms: int
    kind: ActionKind
    seq: int
    badge: int = field(default=0, compare=False)
    jobs: tuple[Job, ...] = field(default=(), compare=False)
    reason: int = field(default=0, compare=False)
    until_ms: int = field(default=0, compare=False)

    def shifted(self, by_ms: int) -> Action:
        """The same action by_ms later (a later repetition of a repeating scenario)."""
        until = self.until_ms + by_ms if self.until_ms else 0
        return Action(self.at_ms + by_ms, self.kind, self.seq, self.badge, self.jobs, self.reason, until)


class FaultKind(StrEnum):
    """Faults of the PLC's network side; the machine itself keeps working."""

    UNREACHABLE = "unreachable"
    MODBUS_EXCEPTION = "modbus_exception"
    SLOW_REPLIES = "slow_replies"


@dataclass(frozen=True, slots=True)
class Fault:
    """A window in which a machine's PLC misbehaves on the network."""

    machine: str
    start_ms: int
    end_ms: int
    kind: FaultKind
    code: int = 0
    delay_s: float = 0.0

    def shifted(self, by_ms: int, end_ms: int) -> Fault:
        """The same window by_ms later, cut at end_ms."""
        return Fault(
            self.machine, self.start_ms + by_ms, min(self.end_ms + by_ms, end_ms), self.kind, self.code, self.delay_s
        )


@dataclass(frozen=True, slots=True)
class MachinePlan:
    """Everything one machine will be told to do, plus its random behaviour."""

    machine_id: str
    model: str
    behaviour: Behaviour
    actions: tuple[Action, ...]
    random_stops: bool
    mtbf_ms: int
    mttr_ms: int
    microstop_rate: float
    initial_state: MachineState
    good_modulus: int | None  # part counters wrap at this value (None: they do not, e.g. float registers)
    reject_modulus: int | None
    periodic: tuple[Action, ...] = ()  # a repeating scenario's actions of its first repetition, sorted
    period_ms: int = 0  # periodic repeats every period_ms (0: nothing repeats)

    def action_stream(self) -> ActionStream:
        """The machine's actions in time order: the one-off ones merged with every repetition of the periodic."""
        return ActionStream(self.actions, self.periodic, self.period_ms)


class ActionStream:
    """Scripted actions in time order; repetitions are made when needed, so a repeating run costs no memory."""

    def __init__(self, fixed: tuple[Action, ...], periodic: tuple[Action, ...], period_ms: int) -> None:
        self._fixed, self._periodic, self._period = fixed, periodic if period_ms > 0 else (), period_ms
        self._i = 0  # next one-off action
        self._j = 0  # next periodic action, counted across repetitions
        self._next_periodic: Action | None = self._make(0)

    def _make(self, j: int) -> Action | None:
        if not self._periodic:
            return None
        rep, index = divmod(j, len(self._periodic))
        return self._periodic[index].shifted(rep * self._period)

    def peek(self) -> Action | None:
        """The next action, or None if there is none."""
        fixed = self._fixed[self._i] if self._i < len(self._fixed) else None
        periodic = self._next_periodic
        if fixed is None or (periodic is not None and periodic < fixed):
            return periodic
        return fixed

    def pop(self) -> Action:
        """Take the next action (there must be one)."""
        action = self.peek()
        assert action is not None
        if action is self._next_periodic:
            self._j += 1
            self._next_periodic = self._make(self._j)
        else:
            self._i += 1
        return action


@dataclass(frozen=True, slots=True)
class Plan:
    """A scenario made concrete for one run."""

    start_ms: int
    end_ms: int
    machines: dict[str, MachinePlan]
    faults: tuple[Fault, ...]  # one-off windows
    badge_owner: dict[int, str]
    periodic_faults: tuple[Fault, ...] = ()  # a repeating scenario's windows of its first repetition
    period_ms: int = 0

    def faults_in(self, t0_ms: int, t1_ms: int) -> list[Fault]:
        """Every fault window overlapping [t0_ms, t1_ms), repetitions included, ordered by start."""
        out = [f for f in self.faults if f.start_ms < t1_ms and f.end_ms > t0_ms]
        if self.periodic_faults and self.period_ms > 0:
            # Periodic windows lie within their repetition, so only repetitions overlapping the range matter.
            first = max(0, (t0_ms - self.start_ms) // self.period_ms - 1)
            last = (min(t1_ms, self.end_ms) - 1 - self.start_ms) // self.period_ms
            for rep in range(first, last + 1):
                for fault in self.periodic_faults:
                    shifted = fault.shifted(rep * self.period_ms, self.end_ms)
                    if shifted.start_ms < min(t1_ms, self.end_ms) and shifted.end_ms > t0_ms:
                        out.append(shifted)
        out.sort(key=lambda f: (f.start_ms, f.machine))
        return out


def _abs_ms(at: int | datetime, start_ms: int) -> int:
    if isinstance(at, datetime):
        return int(at.timestamp() * 1000)
    return start_ms + at


def _job(spec: JobSpec, site_ideal_s: float) -> Job:
    # The site file's ideal cycle (per job, else the machine's) is what the analytics score against; a scenario may
    # set its own for a job the site does not list (check_against_site refuses one that contradicts the site).
    ideal = spec.ideal_cycle_s if spec.ideal_cycle_s is not None else site_ideal_s
    cycle = spec.cycle_s if spec.cycle_s is not None else ideal * 1.1
    return Job(
        id=spec.id,
        ideal_cycle_ms=round(ideal * 1000),
        cycle_ms=max(100, round(cycle * 1000)),
        jitter=spec.jitter,
        reject_rate=spec.reject_rate,
        quantity=spec.quantity,
        setup_ms=spec.setup,
        power_factor=spec.power_factor,
    )


def _modulus(site: SiteConfig, profile_name: str, signal: str) -> int | None:
    """Where the machine's part counter wraps (the profile's counter width), None if it does not."""
    spec = site.profile(profile_name).register(signal)
    if spec is None or spec.modulus is None or spec.scale != 1.0:
        return None
    return int(spec.modulus)


def daily_windows(
    days: list[str], start: time, end: time, tz: str, t_from_ms: int, t_to_ms: int
) -> list[tuple[int, int]]:
    """Expand a daily local-time window into (start_ms, end_ms) pairs overlapping [t_from_ms, t_to_ms).

    One implementation with the shift calendar (shopfloor.calendar.local_windows), so the simulator's working
    hours and the calendar's planned time agree on every DST day.
    """
    weekdays = frozenset(WEEKDAYS.index(d) for d in days)
    return [(w.start_ms, w.end_ms) for w in local_windows(tz, start, end, weekdays, t_from_ms, t_to_ms)]


def build_plan(site: SiteConfig, scenario: Scenario, start_ms: int, end_ms: int | None = None) -> Plan:
    """Make scenario concrete for a run over [start_ms, end_ms).

    The default end is start + duration, or, for a repeating scenario, start + REPEAT_HORIZON_MS. A repeating
    scenario's sessions and events are planned once, for its first repetition; ActionStream and faults_in
    shift them by whole periods when needed.
    """
    try:
        check_against_site(scenario, site)
    except ValueError as exc:
        raise ConfigError(f"scenario {scenario.name!r} does not fit site {site.site.id!r}: {exc}") from exc
    period = scenario.duration if scenario.repeat else 0
    end = end_ms if end_ms is not None else start_ms + (REPEAT_HORIZON_MS if period else scenario.duration)
    served = scenario.served(site)
    actions: dict[str, list[Action]] = {m: [] for m in served}
    periodic: dict[str, list[Action]] = {m: [] for m in served}
    sessions: dict[str, list[tuple[int, int, int, str]]] = {m: [] for m in served}
    seq = 0

    def add(machine: str, at: int, kind: ActionKind, repeat: bool = False, **kw: object) -> None:
        nonlocal seq
        seq += 1
        (periodic if repeat else actions)[machine].append(Action(at, kind, seq, **kw))  # type: ignore[arg-type]

    def add_session(
        machine: str, badge: int, s: int, e: int, jobs: list[JobSpec], where: str, repeat: bool = False
    ) -> None:
        served = site.machine(machine)
        assert served is not None  # check_against_site refused unknown machines
        if not repeat:
            if e <= start_ms or s >= end:
                return
            sessions[machine].append((s, e, badge, where))  # periodic ones were checked when the file was loaded
        wrap = min(WRAPUP_MS, (e - s) // 4)
        add(
            machine,
            s,
            ActionKind.LOGIN,
            repeat,
            badge=badge,
            jobs=tuple(_job(j, site.ideal_cycle_s(served, j.id)) for j in jobs),
        )
        add(machine, e - wrap, ActionKind.WRAPUP, repeat)
        add(machine, e, ActionKind.LOGOUT, repeat)

    for index, session in enumerate(scenario.sessions):
        s = _abs_ms(session.at, start_ms)
        e = s + session.duration if session.duration is not None else _abs_ms(session.until, start_ms)  # type: ignore[arg-type]
        if e <= s:
            raise ConfigError(f"scenario {scenario.name!r}: sessions[{index}] ends before it starts")
        add_session(session.machine, session.badge, s, e, session.jobs, f"sessions[{index}]", bool(period))
    for index, daily in enumerate(scenario.daily):
        windows = daily_windows(list(daily.days), daily.start, daily.end, site.site.timezone, start_ms, end)
        for s, e in windows:
            if daily.kind is DailyKind.SESSION:
                assert daily.badge is not None
                add_session(daily.machine, daily.badge, s, e, daily.jobs, f"daily[{index}]")
            elif daily.kind is DailyKind.MAINTENANCE:
                add(daily.machine, s, ActionKind.MAINTENANCE, until_ms=e)
            else:
                add(daily.machine, s, ActionKind.POWER_OFF, until_ms=e)
    for machine_id, spans in sessions.items():
        spans.sort()
        for (s1, e1, b1, w1), (s2, _e2, b2, w2) in itertools.pairwise(spans):
            if s2 < e1:
                raise ConfigError(
                    f"scenario {scenario.name!r}: on {machine_id}, {w2} (badge {b2}) starts at "
                    f"{_iso(s2)} while {w1} (badge {b1}, {_iso(s1)} .. {_iso(e1)}) is still logged in; "
                    "sessions on one machine must not overlap"
                )
    faults: list[Fault] = []
    periodic_faults: list[Fault] = []
    simple = {
        EventKind.BREAKDOWN: ActionKind.BREAKDOWN,
        EventKind.MAINTENANCE: ActionKind.MAINTENANCE,
        EventKind.POWER_OFF: ActionKind.POWER_OFF,
        EventKind.COUNTER_RESET: ActionKind.COUNTER_RESET,
        EventKind.COUNTER_WRAP: ActionKind.COUNTER_WRAP,
        EventKind.BADGE_SWAP: ActionKind.BADGE_SWAP,
    }
    for event in scenario.events:
        at = _abs_ms(event.at, start_ms)
        until = at + (event.duration or 0)
        if not period and (at >= end or (until <= start_ms and event.duration)):
            continue
        if event.event in simple:
            add(
                event.machine,
                at,
                simple[event.event],
                bool(period),
                reason=event.reason or 0,
                badge=event.badge or 0,
                until_ms=until,
            )
        else:
            fault = Fault(
                event.machine,
                at,
                until if period else min(until, end),
                FaultKind(event.event.value),
                code=event.code or 0,
                delay_s=event.delay_s or 0.0,
            )
            (periodic_faults if period else faults).append(fault)
    plans: dict[str, MachinePlan] = {}
    for machine_id in served:
        machine = site.machine(machine_id)
        assert machine is not None
        behaviour = behaviour_for(machine.profile)
        opts = scenario.machine_options.get(machine_id)
        plans[machine_id] = MachinePlan(
            machine_id=machine_id,
            model=machine.profile,
            behaviour=behaviour,
            actions=tuple(sorted(actions[machine_id])),
            random_stops=scenario.random_stops,
            mtbf_ms=(opts.mtbf if opts and opts.mtbf else behaviour.mtbf_ms),
            mttr_ms=(opts.mttr if opts and opts.mttr else behaviour.mttr_ms),
            microstop_rate=(
                opts.microstop_rate if opts and opts.microstop_rate is not None else behaviour.microstop_rate
            ),
            initial_state=MachineState(opts.initial_state) if opts else MachineState.IDLE,
            good_modulus=_modulus(site, machine.profile, "good_count"),
            reject_modulus=_modulus(site, machine.profile, "reject_count"),
            periodic=tuple(sorted(periodic[machine_id])),
            period_ms=period,
        )
    faults.sort(key=lambda f: (f.start_ms, f.machine))
    periodic_faults.sort(key=lambda f: (f.start_ms, f.machine))
    return Plan(start_ms, end, plans, tuple(faults), site.badge_owner(), tuple(periodic_faults), period)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")
