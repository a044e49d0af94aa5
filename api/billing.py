"""The billing shell: telemetry and business data in, the charging core's Inputs out (api.core.billing).

One period of one site: every machine's raw timeline over the period is split into tenant sessions by the usage
core (api.core.sessions); sessions of one badge separated only by UNKNOWN time become one usage record (the gap is
UNKNOWN time in it, shown and never billed); each record's time is put in billing categories with the loss map
(STOPPED time whose stop reason the loss map books as a breakdown is the facility's, however short). Capacity is
the shift calendar's planned time. The API and `shopfloor report invoice` both build their inputs here, so their
figures are equal for the same data.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from api import analytics
from api.core.billing.charging import Inputs
from api.core.billing.model import Booking, Capacity, Category, CostPool, Policy, Tariff, UsageRecord
from api.core.counters import Anomaly
from api.core.oee import LossMap
from api.core.owners import BadgeSpan, Owners
from api.core.pieces import Piece
from api.core.sessions import Session, sessions
from api.core.timeline import Timeline
from api.reader import raw_timeline
from shopfloor.calendar import zone_of
from shopfloor.config import Machine, SiteConfig
from shopfloor.store import TimeSeriesStore

PERIOD = re.compile(r"^(20[0-9]{2})-(0[1-9]|1[0-2])$")
WH_PER_KWH = 1000
BP = 10_000

_STATE_CATEGORY = {
    "RUNNING": Category.RUNNING,
    "SETUP": Category.SETUP,
    "IDLE": Category.IDLE,
    "OFF": Category.OFF,
    "MAINTENANCE": Category.MAINTENANCE,
}
_ORDER = list(Category)


class PeriodError(ValueError):
    """A billing period that is not YYYY-MM (2000..2099)."""


@dataclass(frozen=True, slots=True)
class Period:
    """A calendar month in the site's zone, [start_ms, end_ms)."""

    name: str
    start_ms: int
    end_ms: int
    year: int


def period_of(name: str, zone_name: str) -> Period:
    """The month called name ("2026-11") in the IANA zone; PeriodError for anything else."""
    match = PERIOD.fullmatch(name) if isinstance(name, str) and len(name) == 7 else None
    if match is None:
        shown = str(name)[:20].encode("unicode_escape").decode()
        raise PeriodError(f"period '{shown}' is not a month YYYY-MM between 2000-01 and 2099-12")
    year, month = int(match[1]), int(match[2])
    zone = zone_of(zone_name)
    start = datetime(year, month, 1, tzinfo=zone)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=zone)
    return Period(name, int(start.timestamp() * 1000), int(end.timestamp() * 1000), year)


def category_of(piece: Piece, loss_map: LossMap) -> Category:
    """The billing category of a piece's time: the loss map decides which STOPPED time is a breakdown."""
    found = _STATE_CATEGORY.get(piece.state)
    if found is not None:
        return found
    if piece.state == "STOPPED":
        # Whatever its length: a short stop OEE books as a microstop (speed loss) is still the machine's fault when
        # the loss map calls its reason a breakdown, and a tenant never pays for the machine's faults.
        code = piece.stop_reason
        category = loss_map.stop_reasons.get(code) if code is not None else None
        category = category or loss_map.states.get("STOPPED", "other")
        return Category.BREAKDOWN if category == "breakdown" else Category.STOPPED
    return Category.UNKNOWN


@dataclass
class _Run:
    badge: int
    tenant: str
    start_ms: int
    end_ms: int
    parts: list[Session]


def _only_unknown(timeline: Timeline, start_ms: int, end_ms: int) -> bool:
    """Whether [start_ms, end_ms) holds nothing but UNKNOWN time."""
    return all(
        not i.known for i in timeline.intervals if i.start_ms < end_ms and i.end_ms > start_ms and i.end_ms > i.start_ms
    )


def _runs(timeline: Timeline, found: Sequence[Session], owners: Owners) -> list[_Run]:
    runs: list[_Run] = []
    for s in sorted(found, key=lambda s: s.start_ms):
        if s.tenant is None:
            continue  # a badge nobody owns: nobody to bill (usage shows it as unowned)
        last = runs[-1] if runs else None
        if (
            last is not None
            and last.badge == s.badge
            and last.tenant == s.tenant
            and not owners.transfers(last.end_ms - 1, s.start_ms + 1, s.badge)
            and _only_unknown(timeline, last.end_ms, s.start_ms)
        ):
            last.end_ms = s.end_ms
            last.parts.append(s)
        else:
            runs.append(_Run(s.badge, s.tenant, s.start_ms, s.end_ms, [s]))
    return runs


def machine_records(
    timeline: Timeline,
    machine: Machine,
    owners: Owners,
    *,
    loss_map: LossMap,
    site: SiteConfig,
) -> list[UsageRecord]:
    """Usage records of one machine's timeline (already cut to the period)."""
    found = sessions(
        timeline, owners, machine=machine.id, ideal_cycle_ms=analytics.ideal_cycles(site), loss_map=loss_map
    )
    out = []
    for run in _runs(timeline, found, owners):
        time: dict[Category, int] = {}
        for s in run.parts:
            for piece in s.pieces:
                c = category_of(piece, loss_map)
                time[c] = time.get(c, 0) + piece.duration_ms
        covered = sum(time.values())
        if run.end_ms - run.start_ms > covered:
            time[Category.UNKNOWN] = time.get(Category.UNKNOWN, 0) + (run.end_ms - run.start_ms - covered)
        good = sum(s.counts.good for s in run.parts)
        reject = sum(s.counts.reject for s in run.parts)
        kwh = sum(s.counts.kwh for s in run.parts)
        oee_bp = _oee_bp(run.parts)
        out.append(
            UsageRecord(
                id=f"{site.site.id}/{machine.id}/{run.badge}/{run.start_ms}",
                tenant=run.tenant,
                machine=machine.id,
                machine_class=machine.profile,
                badge=run.badge,
                start_ms=run.start_ms,
                end_ms=run.end_ms,
                time_ms=tuple((c, time[c]) for c in _ORDER if time.get(c)),
                good=good,
                reject=reject,
                energy_wh=max(0, round(kwh * WH_PER_KWH)),
                anomalies=_anomalies(timeline.anomalies, run),
                oee_bp=oee_bp,
            )
        )
    return out


def _oee_bp(parts: Sequence[Session]) -> int | None:
    """The run's OEE in basis points: its parts' OEE weighted by their session time (one part: its own)."""
    rated = [(s.oee.oee, s.duration_ms) for s in parts if s.oee is not None and s.oee.oee is not None]
    total = sum(ms for _, ms in rated)
    if not rated or total <= 0:
        return None
    return round(sum(v * ms for v, ms in rated) / total * BP)


def _anomalies(anomalies: Iterable[Anomaly], run: _Run) -> int:
    return sum(1 for a in anomalies if a.badge == run.badge and run.start_ms < a.ts_ms <= run.end_ms)


def usage_records(
    store: TimeSeriesStore,
    site: SiteConfig,
    owners: Owners,
    start_ms: int,
    end_ms: int,
    *,
    machines: Sequence[Machine] | None = None,
) -> list[UsageRecord]:
    """Every tenant's usage records of [start_ms, end_ms), machines in site order, each machine's by start."""
    losses = analytics.loss_map(site)
    out: list[UsageRecord] = []
    for machine in site.machines if machines is None else machines:
        timeline = raw_timeline(store, site, machine, start_ms, end_ms).timeline
        out.extend(machine_records(timeline, machine, owners, loss_map=losses, site=site))
    return out


def capacities(site: SiteConfig, start_ms: int, end_ms: int) -> tuple[Capacity, ...]:
    """Each machine's practical capacity in [start_ms, end_ms): the shift calendar's planned time."""
    calendar = site.calendar_model()
    return tuple(
        Capacity(m.id, sum(p.duration_ms for p in calendar.planned(start_ms, end_ms, m.id))) for m in site.machines
    )


class BillingSetup(Protocol):
    """The business data charging needs besides telemetry (api.db.repo.billing_data from the DB, or
    api.db.billingfile.to_core from billing.yaml offline)."""

    @property
    def owners(self) -> Sequence[BadgeSpan]: ...
    @property
    def bookings(self) -> Sequence[Booking]: ...
    @property
    def tariffs(self) -> Sequence[Tariff]: ...
    @property
    def pools(self) -> Sequence[CostPool]: ...
    @property
    def policy(self) -> Policy: ...


def billing_inputs(store: TimeSeriesStore, site: SiteConfig, setup: BillingSetup, period: Period) -> Inputs:
    """Everything charging reads for one period: usage records from telemetry, the rest from setup."""
    owners = Owners(setup.owners)
    records = usage_records(store, site, owners, period.start_ms, period.end_ms)
    return Inputs(
        period=period.name,
        period_start_ms=period.start_ms,
        period_end_ms=period.end_ms,
        records=tuple(records),
        bookings=tuple(b for b in setup.bookings if period.start_ms <= b.start_ms < period.end_ms),
        tariffs=tuple(setup.tariffs),
        pools=tuple(p for p in setup.pools if p.period == period.name),
        capacity=capacities(site, period.start_ms, period.end_ms),
        policy=setup.policy,
        loss_map_version=site.oee.loss_map.version,
        machine_classes=tuple((m.id, m.profile) for m in site.machines),
    )


@dataclass(frozen=True, slots=True)
class Lag:
    """A machine whose data does not yet reach the watermark."""

    machine: str
    newest_ms: int | None  # its newest sample, None if it has none


def lagging(store: TimeSeriesStore, site: SiteConfig, period: Period, grace_min: int) -> list[Lag]:
    """Machines whose newest data is not past period end + grace: the period cannot be closed yet for them.

    A machine's newest data is its newest sample or its agent's newest status of it (a PLC unreachable across the
    period's end still has its agent reporting that it is: the agent has said all it will about the period).
    """
    mark = period.end_ms + grace_min * 60_000
    newest = dict(store.newest_ts(site.site.id))
    for machine, row in store.latest_statuses(site.site.id).items():
        newest[machine] = max(newest.get(machine, row.ts_ms), row.ts_ms)
    return [Lag(m.id, newest.get(m.id)) for m in site.machines if newest.get(m.id, -1) < mark]


def zone(site: SiteConfig) -> zoneinfo.ZoneInfo:
    """The site's time zone."""
    return zone_of(site.calendar_model().zone)
