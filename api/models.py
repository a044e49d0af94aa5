"""Public response models of the HTTP API (what clients see; the core's dataclasses stay internal)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field

from api.core import Counts

Link = Literal["online", "unreachable", "stale"]


def utc(ms: int) -> datetime:
    """Return epoch ms as an aware UTC datetime."""
    return datetime.fromtimestamp(ms / 1000, UTC)


class CountsPublic(BaseModel):
    """Parts and energy."""

    good: int
    reject: int
    kwh: float

    @classmethod
    def of(cls, counts: Counts) -> CountsPublic:
        """Build from core counts (kWh rounded to Wh)."""
        return cls(good=counts.good, reject=counts.reject, kwh=round(counts.kwh, 3))


class CountersPublic(BaseModel):
    """A machine's cumulative counters as last reported."""

    good_count: int | None = None
    reject_count: int | None = None
    energy_kwh: float | None = None


class MachinePublic(BaseModel):
    """A machine's latest state and who is using it."""

    id: str
    name: str
    profile: str
    state: str = Field(description="latest state while the link is online, else UNKNOWN")
    last_state: str | None = Field(description="the last state reported, however old")
    link: Link = Field(description="online; unreachable (PLC or agent down); stale (silent longer than max gap)")
    last_seen: datetime | None = Field(description="time of the newest sample (ISO 8601 UTC)")
    age_s: float | None = Field(description="seconds since last_seen")
    tenant: str | None = Field(description="tenant of the badge logged in; null if nobody or not yours to see")
    occupied: bool = Field(description="whether a badge is logged in")
    badge: int | None
    job: str | None
    stop_reason: int | None
    counters: CountersPublic
    power_kw: float | None


class MachinesPublic(BaseModel):
    """All configured machines."""

    at: datetime
    machines: list[MachinePublic]


class IntervalPublic(BaseModel):
    """A stretch of time with constant state, badge, job and stop reason."""

    start: datetime
    end: datetime
    duration_s: float
    state: str
    tenant: str | None
    occupied: bool
    badge: int | None
    job: str | None
    stop_reason: int | None


class TimelinePublic(BaseModel):
    """A machine's state intervals in a window, with how much of the window is known."""

    machine: str
    from_: datetime = Field(serialization_alias="from")
    to: datetime
    coverage: float = Field(description="share of the window with a known state, 0..1")
    max_gap_s: float = Field(description="silence longer than this is UNKNOWN")
    intervals: list[IntervalPublic]
    totals: CountsPublic = Field(description="counter increments observed in the window")
    unattributed: CountsPublic = Field(description="part of totals made across an UNKNOWN gap, in no interval")


class UsageRowPublic(BaseModel):
    """One tenant's use of one machine."""

    tenant: str
    machine: str
    session_hours: float
    running_hours: float
    good: int
    reject: int
    kwh: float
    sessions: int
    coverage: float


class AnomalyPublic(BaseModel):
    """A counter reading the machine could not have reached in the time since its last plausible one: not counted."""

    time: datetime
    signal: str
    previous: float = Field(description="the last plausible reading")
    value: float
    elapsed_s: float = Field(description="seconds since that reading")


class MachineTotalsPublic(BaseModel):
    """What one machine produced, including what no session claims (admin and operator only)."""

    machine: str
    coverage: float
    total: CountsPublic
    no_badge: CountsPublic = Field(description="made while no badge was logged in")
    unattributed: CountsPublic = Field(description="made across an UNKNOWN gap: nobody can say by whom")
    anomalies: list[AnomalyPublic] = Field(
        default_factory=list, description="counter anomalies in the window: reported, never counted in any figure"
    )


class UsagePublic(BaseModel):
    """Usage per tenant per machine in a window."""

    from_: datetime = Field(serialization_alias="from")
    to: datetime
    rows: list[UsageRowPublic]
    machines: list[MachineTotalsPublic] = Field(description="per-machine totals; empty for tenant keys")


class HealthPublic(BaseModel):
    """Liveness of the API and its store."""

    status: Literal["ok", "unavailable"]
    store: bool
