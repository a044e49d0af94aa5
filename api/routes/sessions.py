"""GET /v1/sessions: each tenant session in a window with its state breakdown, parts, energy and OEE."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from api import analytics
from api.core.sessions import sessions
from api.deps import DirectoryDep, PrincipalDep, SiteDep, StoreDep, WindowDep
from api.models import BreakdownPublic, OeeRowPublic, SessionPublic, SessionsPublic, utc
from api.params import MAX_PARAM_CHARS
from api.policy import visible_rows
from api.reader import raw_timeline
from api.routes.oee import chosen_machines, chosen_tenant, single

router = APIRouter(tags=["sessions"])


@router.get("/sessions", responses={404: {"description": "unknown machine or tenant"}})
def get_sessions(
    request: Request,
    site: SiteDep,
    store: StoreDep,
    principal: PrincipalDep,
    window: WindowDep,
    directory: DirectoryDep,
    machine: Annotated[str | None, Query(max_length=MAX_PARAM_CHARS, description="only this machine")] = None,
    tenant: Annotated[str | None, Query(max_length=MAX_PARAM_CHARS, description="only this tenant's")] = None,
) -> SessionsPublic:
    """Return the sessions in [from, to) (cut to it), oldest first; tenant keys get only their own."""
    for name in ("machine", "tenant"):
        single(request, name)
    machines = chosen_machines(site, machine)
    scope = chosen_tenant(directory, principal, tenant)
    owners = directory.owners
    cycles, losses = analytics.ideal_cycles(site), analytics.loss_map(site)
    found = []
    for m in machines:
        timeline = raw_timeline(store, site, m, window.start_ms, window.end_ms).timeline
        for s in sessions(timeline, owners, machine=m.id, ideal_cycle_ms=cycles, loss_map=losses):
            if scope is None or s.tenant == scope:
                found.append((m.id, s))
    shown = {id(s) for s in visible_rows(principal, [s for _, s in found])}
    rows = [
        SessionPublic(
            machine=machine_id,
            tenant=s.tenant,
            unowned=s.tenant is None,
            badge=s.badge,
            start=utc(s.start_ms),
            end=utc(s.end_ms),
            hours=round(s.duration_ms / 3_600_000, 6),
            good=s.counts.good,
            reject=s.counts.reject,
            kwh=round(s.counts.kwh, 3),
            breakdown=BreakdownPublic(**analytics.breakdown_dict(s.breakdown)),
            oee=None if s.oee is None else OeeRowPublic(**analytics.oee_dict(s.oee)),
        )
        for machine_id, s in sorted(found, key=lambda f: (f[1].start_ms, f[0]))
        if id(s) in shown
    ]
    return SessionsPublic(from_=utc(window.start_ms), to=utc(window.end_ms), sessions=rows)
