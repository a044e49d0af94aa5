"""Scenario files: which machines run, who logs in when, which jobs, planned downtime and injected faults.

A scenario is validated once, when loaded (errors name the file, line and field); `simulators.plan` turns it
into per-machine actions for a concrete start time.
"""

from __future__ import annotations

import itertools
import re
from datetime import datetime, time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, InitErrorDetails

from shopfloor.config import SiteConfig
from shopfloor.contracts import Id
from shopfloor.yamlfile import ConfigError, load_model, read_yaml, validation_message

MAX_DURATION_MS = 400 * 86_400_000
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
JOB_ID_PATTERN = r"^[A-Za-z0-9._-]{1,12}$"  # fits the shortest job register (press-brake-v1: 12 characters)


def parse_duration_ms(value: Any) -> int:
    """Parse 90, '90s', '2m', '1h30m', '500ms', '2d' into milliseconds; raise ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration (use e.g. 30s, 2m, 1h)")
    if isinstance(value, int | float):
        ms = round(float(value) * 1000)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            ms = round(float(text) * 1000)
        elif text and re.fullmatch(rf"(?:{_DURATION_RE.pattern})+", text):
            ms = round(sum(float(n) * _UNIT_MS[u] for n, u in _DURATION_RE.findall(text)))
        else:
            raise ValueError(f"{value!r} is not a duration (use e.g. 30s, 2m, 1h30m, 500ms, 2d)")
    else:
        raise ValueError(f"{value!r} is not a duration (use e.g. 30s, 2m, 1h)")
    if ms < 0 or ms > MAX_DURATION_MS:
        raise ValueError(f"duration {value!r} is out of range (0 .. 400d)")
    return ms


def _to_ms(value: Any) -> int:
    return parse_duration_ms(value)


def _to_at(value: Any) -> int | datetime:
    """An offset from the run's start (duration) or an absolute, tz-aware datetime."""
    if isinstance(value, str) and re.match(r"^\d{4}-\d{2}-\d{2}", value.strip()):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an ISO 8601 datetime") from exc
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"{value.isoformat()} has no time zone; write e.g. 2026-11-01T08:00:00+07:00")
        return value
    return parse_duration_ms(value)


class LocatedError(ValueError):
    """A cross-field problem of a scenario, with the path of the field it is about (for file:line messages)."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


def _fmt(ms: int) -> str:
    """Render an offset in ms as 1h2m3s."""
    seconds, rest = divmod(ms, 1000)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    text = "".join(f"{n}{u}" for n, u in ((hours, "h"), (minutes, "m"), (seconds, "s")) if n)
    return (text + (f"{rest}ms" if rest else "")) or "0s"


Duration = Annotated[int, BeforeValidator(_to_ms)]
At = Annotated[int | datetime, BeforeValidator(_to_at)]
_Strict = ConfigDict(extra="forbid", frozen=True)


class JobSpec(BaseModel):
    """A job a tenant runs: how fast parts come and how many are rejects."""

    model_config = _Strict

    id: str = Field(pattern=JOB_ID_PATTERN, description="job id shown in the job register (<= 12 characters)")
    ideal_cycle_s: float | None = Field(default=None, gt=0, le=86400, description="default: the machine's")
    cycle_s: float | None = Field(default=None, gt=0, le=86400, description="mean actual; default ideal x 1.1")
    jitter: float = Field(default=0.05, ge=0, le=0.5, description="relative standard deviation of cycle time")
    reject_rate: float = Field(default=0.02, ge=0, le=1)
    quantity: int | None = Field(default=None, ge=1, le=10_000_000, description="parts, then the next job")
    setup: Duration = Field(default=8000, description="SETUP dwell before the first part (>= 2 s)")
    power_factor: float = Field(
        default=1.0, gt=0, le=10, description="power draw while RUNNING this job, relative to the model's"
    )

    @field_validator("setup")
    @classmethod
    def _setup(cls, value: int) -> int:
        # Attribution needs the first part to complete well after the badge appears (longer than a poll).
        if value < 2000:
            raise ValueError("setup must be at least 2s, so the badge is seen before the first part completes")
        return value


class SessionSpec(BaseModel):
    """A badge login on one machine for a while, running jobs."""

    model_config = _Strict

    machine: Id
    badge: int = Field(ge=1, le=2**31 - 1)
    at: At
    duration: Duration | None = None
    until: At | None = None
    jobs: list[JobSpec] = Field(min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> SessionSpec:
        _check_refs(info, self.machine, self.badge)
        if (self.duration is None) == (self.until is None):
            raise ValueError("give exactly one of 'duration' or 'until'")
        if self.duration is not None and self.duration < 5000:
            raise ValueError("a session must last at least 5s")
        return self

    def end_offset(self) -> int | None:
        """End as an offset from the run's start, or None if it is only known as a datetime."""
        if isinstance(self.at, datetime):
            return None
        if self.duration is not None:
            return self.at + self.duration
        return self.until if isinstance(self.until, int) else None


class EventKind(StrEnum):
    """Things a scenario can inject at a given time."""

    BREAKDOWN = "breakdown"  # STOPPED with reason for duration
    MAINTENANCE = "maintenance"  # planned downtime for duration
    POWER_OFF = "power_off"  # OFF for duration
    UNREACHABLE = "unreachable"  # PLC does not answer / refuses connections for duration
    MODBUS_EXCEPTION = "modbus_exception"  # reads answered with exception `code` for duration
    SLOW_REPLIES = "slow_replies"  # reads answered `delay_s` late for duration
    COUNTER_RESET = "counter_reset"  # PLC restart: part and energy counters restart at 0
    COUNTER_WRAP = "counter_wrap"  # part counters jump to 3 below their wrap value (16-bit: 65533)
    BADGE_SWAP = "badge_swap"  # another badge takes over mid-job, without setup


_NEEDS_DURATION = {
    EventKind.BREAKDOWN,
    EventKind.MAINTENANCE,
    EventKind.POWER_OFF,
    EventKind.UNREACHABLE,
    EventKind.MODBUS_EXCEPTION,
    EventKind.SLOW_REPLIES,
}


class EventSpec(BaseModel):
    """One injected event on one machine."""

    model_config = _Strict

    at: At
    machine: Id
    event: EventKind
    duration: Duration | None = None
    reason: int | None = Field(default=None, ge=1, le=65535, description="breakdown: stop reason code")
    code: int | None = Field(default=None, ge=1, le=255, description="modbus_exception: exception code")
    delay_s: float | None = Field(default=None, gt=0, le=60, description="slow_replies: wall seconds")
    badge: int | None = Field(default=None, ge=1, le=2**31 - 1, description="badge_swap: the new badge")

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> EventSpec:
        _check_refs(info, self.machine, self.badge)
        needs = {
            EventKind.BREAKDOWN: "reason",
            EventKind.MODBUS_EXCEPTION: "code",
            EventKind.SLOW_REPLIES: "delay_s",
            EventKind.BADGE_SWAP: "badge",
        }
        field = needs.get(self.event)
        for name in ("reason", "code", "delay_s", "badge"):
            given = getattr(self, name) is not None
            if name == field and not given:
                raise ValueError(f"a {self.event} event needs '{name}'")
            if name != field and given:
                raise ValueError(f"'{name}' does not apply to a {self.event} event")
        if self.event in _NEEDS_DURATION and not self.duration:
            raise ValueError(f"a {self.event} event needs a 'duration' above 0")
        if self.event not in _NEEDS_DURATION and self.duration is not None:
            raise ValueError(f"'duration' does not apply to a {self.event} event")
        return self


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _to_time(value: Any) -> time:
    # YAML 1.1 reads an unquoted 8:00 as a sexagesimal integer (480): accept it as minutes.
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
        return time(value // 60, value % 60)
    if isinstance(value, str) and re.fullmatch(r"\d{1,2}:\d{2}", value.strip()):
        hours, minutes = (int(p) for p in value.strip().split(":"))
        if hours < 24 and minutes < 60:
            return time(hours, minutes)
    raise ValueError(f'{value!r} is not a time of day (write "08:00")')


TimeOfDay = Annotated[time, BeforeValidator(_to_time)]


class DailyKind(StrEnum):
    """What a recurring daily window is."""

    SESSION = "session"
    MAINTENANCE = "maintenance"
    OFF = "off"


class DailySpec(BaseModel):
    """A recurring window in site local time on given weekdays (DST-correct; may cross midnight)."""

    model_config = _Strict

    machine: Id
    kind: DailyKind = DailyKind.SESSION
    days: list[Weekday] = Field(default_factory=lambda: list(WEEKDAYS), min_length=1)  # type: ignore[arg-type]
    start: TimeOfDay
    end: TimeOfDay
    badge: int | None = Field(default=None, ge=1, le=2**31 - 1)
    jobs: list[JobSpec] = Field(default_factory=list, max_length=1000)

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> DailySpec:
        _check_refs(info, self.machine, self.badge)
        if self.start == self.end:
            raise ValueError("start and end are equal; a daily window needs a length")
        if self.kind is DailyKind.SESSION:
            if self.badge is None or not self.jobs:
                raise ValueError("a daily session needs 'badge' and 'jobs'")
        elif self.badge is not None or self.jobs:
            raise ValueError(f"a daily {self.kind} window takes no 'badge' or 'jobs'")
        return self


class MachineOptions(BaseModel):
    """Per-machine randomness and starting state."""

    model_config = _Strict

    mtbf: Duration | None = Field(default=None, description="mean running time between random breakdowns")
    mttr: Duration | None = Field(default=None, description="mean time to repair a random breakdown")
    microstop_rate: float | None = Field(default=None, ge=0, le=1, description="chance of a microstop per cycle")
    initial_state: Literal["IDLE", "OFF"] = "IDLE"


class Scenario(BaseModel):
    """A scripted period of a facility's life."""

    model_config = _Strict

    name: str = Field(default="scenario", max_length=100)
    description: str = ""
    duration: Duration = Field(description="length of the run, from its start (with repeat: of one repetition)")
    repeat: bool = Field(default=False, description="start over every 'duration', indefinitely")
    machines: Literal["all"] | list[Id] = Field(default="all", description="machines to serve, or all")
    random_stops: bool = Field(default=True, description="random breakdowns and microstops while running")
    machine_options: dict[Id, MachineOptions] = Field(default_factory=dict)
    sessions: list[SessionSpec] = Field(default_factory=list, max_length=100_000)
    daily: list[DailySpec] = Field(default_factory=list, max_length=10_000)
    events: list[EventSpec] = Field(default_factory=list, max_length=100_000)

    @field_validator("duration")
    @classmethod
    def _duration(cls, value: int) -> int:
        if value < 1000:
            raise ValueError("a scenario must last at least 1s")
        return value

    @field_validator("machines")
    @classmethod
    def _machines(cls, value: Literal["all"] | list[str], info: ValidationInfo) -> Literal["all"] | list[str]:
        site = _site(info)
        if site is not None and value != "all":
            for machine in value:
                _check_machine(site, machine)
        return value

    @field_validator("machine_options")
    @classmethod
    def _options(cls, value: dict[str, MachineOptions], info: ValidationInfo) -> dict[str, MachineOptions]:
        site = _site(info)
        if site is not None:
            for machine in value:
                _check_machine(site, machine)
        return value

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> Scenario:
        if self.machines != "all" and len(set(self.machines)) != len(self.machines):
            raise ValueError("'machines' lists a machine twice")
        served = None if self.machines == "all" else set(self.machines)
        items: list[tuple[str, int, SessionSpec | DailySpec | EventSpec]] = [
            *(("sessions", i, s) for i, s in enumerate(self.sessions)),
            *(("daily", i, d) for i, d in enumerate(self.daily)),
            *(("events", i, e) for i, e in enumerate(self.events)),
        ]
        for what, index, item in items:
            if served is not None and item.machine not in served:
                raise LocatedError((what, index, "machine"), f"machine {item.machine!r} is not in 'machines'")
        if served is not None:
            for machine in self.machine_options:
                if machine not in served:
                    raise LocatedError(("machine_options", machine), f"machine {machine!r} is not in 'machines'")
        self._check_overlaps()
        if self.repeat:
            self._check_repeatable()
        return self

    def _check_overlaps(self) -> None:
        # Sessions given as offsets can be checked now; daily windows and datetimes only once a start is known.
        spans: dict[str, list[tuple[int, int, int]]] = {}
        for index, session in enumerate(self.sessions):
            end = session.end_offset()
            if end is not None and not isinstance(session.at, datetime):
                spans.setdefault(session.machine, []).append((session.at, end, index))
        for machine, found in spans.items():
            found.sort()
            for (s1, e1, i1), (s2, _e2, i2) in itertools.pairwise(found):
                if s2 < e1:
                    raise LocatedError(
                        ("sessions", i2, "at"),
                        f"on {machine}, this session starts at {_fmt(s2)} while sessions[{i1}] "
                        f"({_fmt(s1)} .. {_fmt(e1)}) is still logged in; sessions on one machine must not overlap",
                    )

    def _check_repeatable(self) -> None:
        period = _fmt(self.duration)
        why = f"in a repeating scenario everything happens within 'duration' ({period}), then starts over"
        for index, session in enumerate(self.sessions):
            for name in ("at", "until"):
                if isinstance(getattr(session, name), datetime):
                    raise LocatedError(("sessions", index, name), f"{why}: use an offset (e.g. 2h30m), not a datetime")
            end = session.end_offset()
            if end is not None and end > self.duration:
                raise LocatedError(("sessions", index), f"ends at {_fmt(end)}, after {period}; {why}")
        for index, event in enumerate(self.events):
            if isinstance(event.at, datetime):
                raise LocatedError(("events", index, "at"), f"{why}: use an offset (e.g. 2h30m), not a datetime")
            if event.at >= self.duration or event.at + (event.duration or 0) > self.duration:
                raise LocatedError(("events", index), f"ends at {_fmt(event.at + (event.duration or 0))}; {why}")
        scripted = {s.machine for s in self.sessions}
        for index, daily in enumerate(self.daily):
            if daily.kind is DailyKind.SESSION and daily.machine in scripted:
                raise LocatedError(
                    ("daily", index, "machine"),
                    f"{daily.machine} also has one-off sessions; in a repeating scenario a machine's sessions "
                    "come either from 'sessions' (repeated) or from 'daily' (by the clock), not both",
                )

    def served(self, site: SiteConfig) -> list[str]:
        """Ids of the site machines this scenario serves, in site order."""
        if self.machines == "all":
            return [m.id for m in site.machines]
        wanted = set(self.machines)
        return [m.id for m in site.machines if m.id in wanted]


def _site(info: ValidationInfo) -> SiteConfig | None:
    site = (info.context or {}).get("site")
    return site if isinstance(site, SiteConfig) else None


def _check_refs(info: ValidationInfo, machine: str, badge: int | None) -> None:
    site = _site(info)
    if site is None:
        return
    _check_machine(site, machine)
    if badge is not None and badge not in site.badge_owner():
        raise ValueError(f"badge {badge} belongs to no tenant of site {site.site.id!r}")


def _check_machine(site: SiteConfig, machine: str) -> None:
    if site.machine(machine) is None:
        known = ", ".join(m.id for m in site.machines)
        raise ValueError(f"machine {machine!r} is not in site {site.site.id!r} (known: {known})")


def check_against_site(scenario: Scenario, site: SiteConfig) -> None:
    """Check every machine and badge the scenario names exists in site; raise ValueError otherwise."""
    owners = site.badge_owner()
    for index, session in enumerate(scenario.sessions):
        _check_machine(site, session.machine)
        if session.badge not in owners:
            raise ValueError(f"sessions[{index}]: badge {session.badge} belongs to no tenant of the site")
    for index, daily in enumerate(scenario.daily):
        _check_machine(site, daily.machine)
        if daily.badge is not None and daily.badge not in owners:
            raise ValueError(f"daily[{index}]: badge {daily.badge} belongs to no tenant of the site")
    for index, event in enumerate(scenario.events):
        _check_machine(site, event.machine)
        if event.badge is not None and event.badge not in owners:
            raise ValueError(f"events[{index}]: badge {event.badge} belongs to no tenant of the site")
    for machine in scenario.machine_options:
        _check_machine(site, machine)
    jobs = [("sessions", i, s.machine, s.jobs) for i, s in enumerate(scenario.sessions)]
    jobs += [("daily", i, d.machine, d.jobs or []) for i, d in enumerate(scenario.daily)]
    for where, index, machine_id, specs in jobs:
        served = site.machine(machine_id)
        for job in specs:
            declared = served.job_cycle_times_s.get(job.id) if served is not None else None
            # The analytics score a job against the site file's ideal cycle: a scenario saying otherwise would make
            # its ground truth disagree with every figure computed from its data.
            if declared is not None and job.ideal_cycle_s is not None and job.ideal_cycle_s != declared:
                raise ValueError(
                    f"{where}[{index}]: job {job.id!r} has ideal_cycle_s {job.ideal_cycle_s:g} but the site declares "
                    f"{declared:g} s for it on {machine_id} (job_cycle_times_s); leave it out or make them equal"
                )


def load_scenario(path: str | Path, site: SiteConfig | None = None) -> Scenario:
    """Load and validate a scenario file (against site, if given); raise ConfigError naming file, line and field."""
    path = Path(path)
    try:
        return load_model(path, Scenario, context={"site": site} if site is not None else None)
    except ConfigError as exc:
        cause = exc.__cause__
        if not isinstance(cause, ValidationError) or not any(_located(e) for e in cause.errors()):
            raise
        # Cross-field checks run on the whole scenario; point their message at the field they are about.
        _, lines = read_yaml(path)
        errors: list[InitErrorDetails] = []
        for err in cause.errors():
            located = _located(err)
            loc = (*err["loc"], *located.loc) if located is not None else tuple(err["loc"])
            message = str(located) if located is not None else err["msg"].removeprefix("Value error, ")
            errors.append({"type": "value_error", "loc": loc, "input": err["input"], "ctx": {"error": message}})
        located_exc = ValidationError.from_exception_data("Scenario", errors)
        raise ConfigError(validation_message(path, located_exc, lines)) from exc


def _located(err: ErrorDetails) -> LocatedError | None:
    error = (err.get("ctx") or {}).get("error")
    return error if isinstance(error, LocatedError) else None


def scenarios_dir() -> Path:
    """Folder of the scenarios shipped with the package."""
    return Path(__file__).parent / "scenarios"


def default_scenario_path() -> Path:
    """The packaged demo scenario (default of `shopfloor simulate` and `shopfloor demo`)."""
    return scenarios_dir() / "demo.yaml"


def packaged_scenario(name: str) -> Path:
    """Path of a shipped scenario by name (e.g. 'demo'); raise ConfigError if there is none."""
    path = scenarios_dir() / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in scenarios_dir().glob("*.yaml")))
        raise ConfigError(f"no packaged scenario {name!r} (known: {known})")
    return path


__all__ = [
    "ConfigError",
    "DailyKind",
    "DailySpec",
    "EventKind",
    "EventSpec",
    "JobSpec",
    "LocatedError",
    "MachineOptions",
    "Scenario",
    "SessionSpec",
    "check_against_site",
    "default_scenario_path",
    "load_scenario",
    "packaged_scenario",
    "parse_duration_ms",
    "scenarios_dir",
]
