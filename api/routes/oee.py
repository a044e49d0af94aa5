"""GET /v1/oee: OEE (ISO 22400-2) by machine, tenant, job, shift and day, with the loss breakdown."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, status

from api import analytics
from api.deps import DirectoryDep, PrincipalDep, RollupsDep, SiteDep, StoreDep, WindowDep, get_machine
from api.directory import Directory
from api.models import OeePublic, OeeRowPublic, utc
from api.params import MAX_PARAM_CHARS, invalid, parse_group_by
from api.policy import NotVisible, figures_tenant
from shopfloor.config import Machine, SiteConfig
from shopfloor.contracts import is_valid_id

router = APIRouter(tags=["oee"])


def single(request: Request, name: str) -> None:
    """Refuse a query parameter given more than once (422): which one was meant is a guess."""
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise invalid(name, f"{name}: given more than once", values[:3])


def chosen_machines(site: SiteConfig, machine: str | None) -> list[Machine]:
    """The machines a query covers: the one named (404 if unknown) or all."""
    return list(site.machines) if machine is None else [get_machine(site, machine)]


def chosen_tenant(directory: Directory, principal: PrincipalDep, tenant: str | None) -> str | None:
    """The tenant whose sessions the figures cover (policy.figures_tenant); 404 for one not the caller's to see."""
    try:
        return figures_tenant(principal, tenant, directory.tenants)
    except NotVisible:
        shown = tenant if tenant is not None and is_valid_id(tenant) else (tenant or "")[:64].encode("unicode_escape")
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"tenant {shown!r} not found") from None


@router.get("/oee", responses={404: {"description": "unknown machine or tenant"}})
def get_oee(
    request: Request,
    site: SiteDep,
    store: StoreDep,
    principal: PrincipalDep,
    window: WindowDep,
    rollups: RollupsDep,
    directory: DirectoryDep,
    machine: Annotated[str | None, Query(max_length=MAX_PARAM_CHARS, description="only this machine")] = None,
    tenant: Annotated[
        str | None, Query(max_length=MAX_PARAM_CHARS, description="only this tenant's sessions (session basis)")
    ] = None,
    group_by: Annotated[
        str | None,
        Query(max_length=MAX_PARAM_CHARS, description="comma-separated: machine, tenant, job, shift, day"),
    ] = None,
) -> OeePublic:
    """Return OEE rows in [from, to); tenant keys get only their own sessions' figures."""
    for name in ("machine", "tenant", "group_by"):
        single(request, name)
    keys = parse_group_by(group_by)
    machines = chosen_machines(site, machine)
    scope = chosen_tenant(directory, principal, tenant)
    owners = directory.owners
    data = analytics.window(
        store, site, window.start_ms, window.end_ms, machines=machines, rollups=rollups, owners=owners
    )
    rows = analytics.oee_rows(site, data, group_by=keys, owners=owners, tenant=scope)
    return OeePublic(
        from_=utc(window.start_ms),
        to=utc(window.end_ms),
        group_by=list(keys),
        tenant=scope,
        loss_map_version=site.oee.loss_map.version,
        rows=[OeeRowPublic(**analytics.oee_dict(r)) for r in rows],
    )
