"""Public response models of the HTTP API (what clients see; the core's dataclasses stay internal)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api.core import Counts
from api.policy import Link as Link  # re-exported: the policy module owns it
from api.policy import MachineView, TotalsScope


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
    """A machine's cumulative counters as last reported (all null for tenant keys: they are every tenant's history)."""

    good_count: int | None = None
    reject_count: int | None = None
    energy_kwh: float | None = None


class MachinePublic(BaseModel):
    """A machine's latest state and who is using it."""

    id: str
    name: str
    profile: str
    state: str | None = Field(
        description="latest state while the link is online, else UNKNOWN; null: another tenant's, not yours to see"
    )
    last_state: str | None = Field(description="the last state reported, however old; null as state")
    link: Link = Field(description="online; unreachable (PLC or agent down); stale (silent longer than max gap)")
    last_seen: datetime | None = Field(description="time of the newest sample (ISO 8601 UTC); null as state")
    age_s: float | None = Field(description="seconds since last_seen")
    tenant: str | None = Field(description="tenant of the badge logged in; null if nobody, unowned or not yours")
    occupied: bool = Field(description="whether a badge is logged in")
    unowned: bool = Field(description="the badge logged in belongs to no tenant (shown to admin/operator only)")
    badge: int | None
    job: str | None
    stop_reason: int | None
    counters: CountersPublic
    power_kw: float | None

    @classmethod
    def of_view(cls, machine: str, name: str, profile: str, view: MachineView, now_ms: int) -> MachinePublic:
        """The public form of a (masked) machine view at now_ms: GET /v1/machines and the live stream both use it."""
        seen = view.last_seen_ms
        return cls(
            id=machine,
            name=name,
            profile=profile,
            state=view.state,
            last_state=view.last_state,
            link=view.link,
            last_seen=utc(seen) if seen is not None else None,
            age_s=round(max(0, now_ms - seen) / 1000, 3) if seen is not None else None,
            tenant=view.occupancy.tenant,
            occupied=view.occupancy.occupied,
            unowned=view.occupancy.unowned,
            badge=view.occupancy.badge,
            job=view.job,
            stop_reason=view.stop_reason,
            counters=CountersPublic(
                good_count=view.counters.good_count,
                reject_count=view.counters.reject_count,
                energy_kwh=view.counters.energy_kwh,
            ),
            power_kw=view.power_kw,
        )


class MachinesPublic(BaseModel):
    """All configured machines."""

    at: datetime
    machines: list[MachinePublic]


class IntervalPublic(BaseModel):
    """A stretch of time with constant state, badge, job and stop reason."""

    start: datetime
    end: datetime
    duration_s: float
    state: str | None = Field(description="null: another tenant's (or an unowned badge's) session, not yours to see")
    tenant: str | None = Field(description="null if nobody, unowned or not yours to see")
    occupied: bool
    unowned: bool = Field(description="the badge belongs to no tenant (shown to admin/operator only)")
    badge: int | None
    job: str | None
    stop_reason: int | None
    reason: str | None = Field(
        default=None,
        description="why the state is UNKNOWN: silence, unreachable (PLC), agent-offline, outbox-loss, no-data",
    )


class TimelinePublic(BaseModel):
    """A machine's state intervals in a window, with how much of the window is known."""

    machine: str
    from_: datetime = Field(serialization_alias="from")
    to: datetime
    coverage: float = Field(description="share of the window with a known state, 0..1")
    max_gap_s: float = Field(description="silence longer than this is UNKNOWN")
    intervals: list[IntervalPublic]
    totals: CountsPublic = Field(
        description="counter increments in the window: the machine's (totals_scope machine) or, for tenant keys, "
        "the sum of the caller's own sessions' counts (totals_scope own_sessions)"
    )
    totals_scope: TotalsScope
    unattributed: CountsPublic | None = Field(
        description="part of the machine's totals made across an UNKNOWN gap, in no interval; null for tenant keys"
    )


class UsageRowPublic(BaseModel):
    """One tenant's use of one machine (tenant null and unowned true: badges no tenant owns)."""

    tenant: str | None
    unowned: bool
    machine: str
    session_hours: float
    running_hours: float
    good: int
    reject: int
    kwh: float
    sessions: int = Field(description="sessions that begin in the window")
    coverage: float
    breakdown: BreakdownPublic
    oee: float | None = Field(description="OEE of the sessions (session basis); null where undefined")
    availability: float | None
    effectiveness: float | None
    quality: float | None
    flags: list[str]


class BreakdownPublic(BaseModel):
    """Session time by state, in hours; stopped time by stop reason ("none": no reason given)."""

    running_hours: float
    setup_hours: float
    idle_hours: float
    stopped_hours: dict[str, float]
    off_hours: float
    maintenance_hours: float
    unknown_hours: float


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


class OeeRowPublic(BaseModel):
    """OEE (ISO 22400-2) of one group: the group's keys, then times in seconds, counts, ratios and losses."""

    model_config = ConfigDict(extra="allow")  # the group keys (machine, tenant, job, shift, day) asked for

    basis: Literal["calendar", "session"] = Field(
        description="calendar: PBT is planned busy time; session: the tenant's session time"
    )
    pbt_s: float = Field(description="planned busy time")
    apt_s: float = Field(description="actual production time: running plus microstops")
    running_s: float
    unknown_s: float = Field(description="UNKNOWN time inside PBT")
    unplanned_s: float = Field(description="the group's time outside PBT")
    coverage: float | None = Field(description="known share of PBT")
    produced: int
    good: int
    reject: int
    ideal_s: float = Field(description="ideal cycle x produced")
    ideal_good_s: float = Field(description="ideal cycle x good: what the losses leave of PBT")
    unattributed_good: int = Field(description="made across UNKNOWN time: reported, not scored")
    unattributed_reject: int
    unplanned_produced: int
    availability: float | None
    effectiveness: float | None = Field(description="above 1 is returned as is and flagged")
    quality: float | None
    oee: float | None
    losses: dict[str, float] = Field(description="seconds by loss; they sum with ideal_good_s to pbt_s")
    flags: list[str]
    anomalies: int = Field(description="counter anomalies where this row's time lies: never counted")
    loss_map_version: str


class OeePublic(BaseModel):
    """OEE rows of a window."""

    from_: datetime = Field(serialization_alias="from")
    to: datetime
    group_by: list[str]
    tenant: str | None = Field(description="the tenant whose sessions the rows cover; null: all")
    loss_map_version: str
    rows: list[OeeRowPublic]


class SessionPublic(BaseModel):
    """One badge logged in on one machine without interruption (cut to the window)."""

    machine: str
    tenant: str | None
    unowned: bool
    badge: int
    start: datetime
    end: datetime
    hours: float
    good: int
    reject: int
    kwh: float
    breakdown: BreakdownPublic
    oee: OeeRowPublic | None = Field(description="the session's OEE on the session basis")


class SessionsPublic(BaseModel):
    """Sessions in a window, oldest first."""

    from_: datetime = Field(serialization_alias="from")
    to: datetime
    sessions: list[SessionPublic]
