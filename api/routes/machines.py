"""GET /v1/machines (latest state of each machine) and GET /v1/machines/{id}/timeline (state intervals)."""

from __future__ import annotations

from fastapi import APIRouter

from api.core.timeline import DARK_STATUSES, UNKNOWN
from api.deps import MachineDep, NowDep, PrincipalDep, SiteDep, StoreDep, WindowDep
from api.models import (
    CountersPublic,
    CountsPublic,
    IntervalPublic,
    Link,
    MachinePublic,
    MachinesPublic,
    TimelinePublic,
    utc,
)
from api.reader import fetch_timeline, max_gap_ms
from api.routes.visibility import occupant
from shopfloor.config import Machine, SiteConfig
from shopfloor.influx import MACHINE_STATUS, Row

router = APIRouter(prefix="/machines", tags=["machines"])


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _str(value: object) -> str | None:
    # PLCs show "no job" as an empty string register.
    return value if isinstance(value, str) and value else None


def link_of(site: SiteConfig, machine: Machine, sample: Row | None, status: Row | None, now_ms: int) -> Link:
    """Return online, unreachable (the last status says so) or stale (silent longer than max gap)."""
    last_ms = sample.ts_ms if sample is not None else None
    if (
        status is not None
        and status.fields.get("status") in DARK_STATUSES
        and (last_ms is None or status.ts_ms >= last_ms)
    ):
        return "unreachable"
    heartbeat = status.fields.get("heartbeat_ms") if status is not None else None
    if last_ms is None or now_ms - last_ms > max_gap_ms(site, machine, heartbeat):
        return "stale"
    return "online"


@router.get("")
def list_machines(site: SiteDep, store: StoreDep, principal: PrincipalDep, now: NowDep) -> MachinesPublic:
    """Return every configured machine's latest state, tenant, counters and when it was last heard from."""
    now_ms = int(now.timestamp() * 1000)
    latest = store.latest(site.site.id)
    statuses = store.latest(site.site.id, MACHINE_STATUS)
    owners = site.badge_owner()
    out: list[MachinePublic] = []
    for machine in site.machines:
        row = latest.get(machine.id)
        fields = row.fields if row is not None else {}
        link = link_of(site, machine, row, statuses.get(machine.id), now_ms)
        last_state = _str(fields.get("state"))
        who = occupant(principal, _int(fields.get("badge")), owners)
        out.append(
            MachinePublic(
                id=machine.id,
                name=machine.name,
                profile=machine.profile,
                state=(last_state or UNKNOWN) if link == "online" else UNKNOWN,
                last_state=last_state,
                link=link,
                last_seen=utc(row.ts_ms) if row is not None else None,
                age_s=round((now_ms - row.ts_ms) / 1000, 3) if row is not None else None,
                tenant=who.tenant,
                occupied=who.occupied,
                badge=who.badge,
                job=who.job(_str(fields.get("job"))),
                stop_reason=_int(fields.get("stop_reason")),
                counters=CountersPublic(
                    good_count=_int(fields.get("good_count")),
                    reject_count=_int(fields.get("reject_count")),
                    energy_kwh=_float(fields.get("energy_kwh")),
                ),
                power_kw=_float(fields.get("power_kw")),
            )
        )
    return MachinesPublic(at=now, machines=out)


@router.get("/{machine_id}/timeline", responses={404: {"description": "unknown machine"}})
def machine_timeline(
    site: SiteDep, store: StoreDep, principal: PrincipalDep, machine: MachineDep, window: WindowDep
) -> TimelinePublic:
    """Return a machine's state intervals in [from, to), UNKNOWN where data is missing, with coverage."""
    timeline = fetch_timeline(store, site, machine, window.start_ms, window.end_ms)
    owners = site.badge_owner()
    intervals = []
    for interval in timeline.intervals:
        who = occupant(principal, interval.badge, owners)
        intervals.append(
            IntervalPublic(
                start=utc(interval.start_ms),
                end=utc(interval.end_ms),
                duration_s=interval.duration_ms / 1000,
                state=interval.state,
                tenant=who.tenant,
                occupied=who.occupied,
                badge=who.badge,
                job=who.job(interval.job),
                stop_reason=interval.stop_reason,
            )
        )
    return TimelinePublic(
        machine=machine.id,
        from_=utc(window.start_ms),
        to=utc(window.end_ms),
        coverage=round(timeline.coverage, 6),
        max_gap_s=site.max_gap_ms(machine) / 1000,
        intervals=intervals,
        totals=CountsPublic.of(timeline.totals()),
        unattributed=CountsPublic.of(timeline.unattributed()),
    )
