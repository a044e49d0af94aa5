"""GET /v1/usage: per tenant per machine session hours, running hours, parts and energy."""

from __future__ import annotations

from fastapi import APIRouter

from api.core import machine_totals, usage
from api.deps import PrincipalDep, SiteDep, StoreDep, WindowDep
from api.models import AnomalyPublic, CountsPublic, MachineTotalsPublic, UsagePublic, UsageRowPublic, utc
from api.reader import fetch_timelines
from shopfloor.config import Role

router = APIRouter(tags=["usage"])


@router.get("/usage")
def get_usage(site: SiteDep, store: StoreDep, principal: PrincipalDep, window: WindowDep) -> UsagePublic:
    """Return usage rows in [from, to); tenant keys get only their own tenant's rows."""
    timelines = fetch_timelines(store, site, window.start_ms, window.end_ms)
    rows = [
        UsageRowPublic(
            tenant=row.tenant,
            machine=row.machine,
            session_hours=round(row.session_hours, 6),
            running_hours=round(row.running_hours, 6),
            good=row.good,
            reject=row.reject,
            kwh=round(row.kwh, 3),
            sessions=row.sessions,
            coverage=round(row.coverage, 6),
        )
        for row in usage(timelines, site.badge_owner(), window.start_ms, window.end_ms)
        if principal.sees(row.tenant)
    ]
    machines = []
    if principal.role is not Role.TENANT:
        for machine_id, timeline in timelines.items():
            totals = machine_totals(machine_id, timeline, window.start_ms, window.end_ms)
            machines.append(
                MachineTotalsPublic(
                    machine=machine_id,
                    coverage=round(totals.coverage, 6),
                    total=CountsPublic.of(totals.total),
                    no_badge=CountsPublic.of(totals.no_badge),
                    unattributed=CountsPublic.of(totals.unattributed),
                    anomalies=[
                        AnomalyPublic(
                            time=utc(a.ts_ms),
                            signal=a.signal,
                            previous=a.previous,
                            value=a.value,
                            elapsed_s=a.elapsed_ms / 1000,
                        )
                        for a in totals.anomalies
                    ],
                )
            )
    return UsagePublic(from_=utc(window.start_ms), to=utc(window.end_ms), rows=rows, machines=machines)
