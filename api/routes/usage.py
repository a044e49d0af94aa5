"""GET /v1/usage: per tenant per machine session hours, running hours, parts, energy, state breakdown and OEE."""

from __future__ import annotations

from fastapi import APIRouter

from api import analytics
from api.deps import DirectoryDep, PrincipalDep, RollupsDep, SiteDep, StoreDep, WindowDep
from api.models import AnomalyPublic, CountsPublic, MachineTotalsPublic, UsagePublic, UsageRowPublic, utc
from api.policy import can_see_machine_totals, visible_rows

router = APIRouter(tags=["usage"])


@router.get("/usage")
def get_usage(
    site: SiteDep,
    store: StoreDep,
    principal: PrincipalDep,
    window: WindowDep,
    rollups: RollupsDep,
    directory: DirectoryDep,
) -> UsagePublic:
    """Return usage rows in [from, to); tenant keys get only their own tenant's rows and no machine totals."""
    owners = directory.owners
    data = analytics.window(store, site, window.start_ms, window.end_ms, rollups=rollups, owners=owners)
    rows = [
        UsageRowPublic(**analytics.usage_dict(row))
        for row in visible_rows(principal, analytics.usage_rows(site, data, owners))
    ]
    machines = []
    if can_see_machine_totals(principal):
        for totals in analytics.machine_totals(data):
            machines.append(
                MachineTotalsPublic(
                    machine=totals.machine,
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
