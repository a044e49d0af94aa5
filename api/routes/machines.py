"""GET /v1/machines (latest state of each machine) and GET /v1/machines/{id}/timeline (state intervals)."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import APIRouter

from api.core import sessions
from api.core.owners import OwnerBook
from api.core.timeline import DARK_STATUSES, UNKNOWN
from api.deps import DirectoryDep, MachineDep, NowDep, PrincipalDep, SiteDep, StoreDep, WindowDep
from api.models import (
    CountsPublic,
    IntervalPublic,
    Link,
    MachinePublic,
    MachinesPublic,
    TimelinePublic,
    utc,
)
from api.policy import (
    Counters,
    IntervalView,
    MachineView,
    Occupancy,
    mask_intervals,
    mask_machine,
    timeline_figures,
)
from api.reader import agents_of, max_gap_ms, raw_timeline
from shopfloor.config import Machine, SiteConfig
from shopfloor.store import Row

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


def agent_offline(
    site: SiteConfig, machine: Machine, sample: Row | None, status: Row | None, agents: Mapping[str, Row]
) -> bool:
    """Whether an agent serving machine said it is offline (or its last will did) after the machine's newest sample."""
    served = list(agents_of(site, machine))
    if not served and status is not None and isinstance(status.fields.get("agent"), str):
        served = [str(status.fields["agent"])]  # an open registry: the agent that reported the machine
    last_ms = sample.ts_ms if sample is not None else None
    for agent in served:
        row = agents.get(agent)
        if row is not None and row.fields.get("status") in DARK_STATUSES and (last_ms is None or row.ts_ms >= last_ms):
            return True
    return False


def machine_view(
    site: SiteConfig,
    machine: Machine,
    sample: Row | None,
    status: Row | None,
    now_ms: int,
    badge_owner: OwnerBook,
    agents: Mapping[str, Row] | None = None,
) -> MachineView:
    """Return what the store says of a machine now, unmasked (mask_machine decides what a caller sees).

    agents: the latest status of each agent; a machine whose agent went offline after its newest sample is
    unreachable (its state UNKNOWN) until it reports again.
    """
    fields = sample.fields if sample is not None else {}
    link = link_of(site, machine, sample, status, now_ms)
    if agents is not None and agent_offline(site, machine, sample, status, agents):
        link = "unreachable"
    last_state = _str(fields.get("state"))
    return MachineView(
        machine=machine.id,
        link=link,
        state=(last_state or UNKNOWN) if link == "online" else UNKNOWN,
        last_state=last_state,
        last_seen_ms=sample.ts_ms if sample is not None else None,
        occupancy=Occupancy.of(_int(fields.get("badge")), badge_owner, sample.ts_ms if sample is not None else now_ms),
        job=_str(fields.get("job")),
        stop_reason=_int(fields.get("stop_reason")),
        counters=Counters(
            good_count=_int(fields.get("good_count")),
            reject_count=_int(fields.get("reject_count")),
            energy_kwh=_float(fields.get("energy_kwh")),
        ),
        power_kw=_float(fields.get("power_kw")),
    )


@router.get("")
def list_machines(
    site: SiteDep, store: StoreDep, principal: PrincipalDep, now: NowDep, directory: DirectoryDep
) -> MachinesPublic:
    """Return every configured machine's latest state, occupant and counters, as far as the caller may see them."""
    now_ms = int(now.timestamp() * 1000)
    latest = store.latest(site.site.id)
    statuses = store.latest_statuses(site.site.id)
    agents = store.latest_agent_statuses(site.site.id)
    owners = directory.owners
    out: list[MachinePublic] = []
    for machine in site.machines:
        raw = machine_view(site, machine, latest.get(machine.id), statuses.get(machine.id), now_ms, owners, agents)
        view = mask_machine(principal, raw)
        out.append(MachinePublic.of_view(machine.id, machine.name, machine.profile, view, now_ms))
    return MachinesPublic(at=now, machines=out)


@router.get("/{machine_id}/timeline", responses={404: {"description": "unknown machine"}})
def machine_timeline(
    site: SiteDep,
    store: StoreDep,
    principal: PrincipalDep,
    machine: MachineDep,
    window: WindowDep,
    directory: DirectoryDep,
) -> TimelinePublic:
    """Return a machine's state intervals in [from, to), UNKNOWN where data is missing, with coverage."""
    raw = raw_timeline(store, site, machine, window.start_ms, window.end_ms)
    timeline = raw.timeline
    owners = directory.owners
    views = mask_intervals(
        principal,
        (
            IntervalView(
                i.start_ms,
                i.end_ms,
                i.state,
                Occupancy.of(i.badge, owners, i.start_ms),
                job=i.job,
                stop_reason=i.stop_reason,
                reason=i.reason,
            )
            for i in timeline.intervals
        ),
    )
    figures = timeline_figures(principal, timeline, sessions(timeline, owners))
    return TimelinePublic(
        machine=machine.id,
        from_=utc(window.start_ms),
        to=utc(window.end_ms),
        coverage=round(timeline.coverage, 6),
        max_gap_s=raw.max_gap_ms / 1000,
        intervals=[
            IntervalPublic(
                start=utc(v.start_ms),
                end=utc(v.end_ms),
                duration_s=(v.end_ms - v.start_ms) / 1000,
                state=v.state,
                tenant=v.occupancy.tenant,
                occupied=v.occupancy.occupied,
                unowned=v.occupancy.unowned,
                badge=v.occupancy.badge,
                job=v.job,
                stop_reason=v.stop_reason,
                reason=v.reason,
            )
            for v in views
        ],
        totals=CountsPublic.of(figures.totals),
        totals_scope=figures.scope,
        unattributed=CountsPublic.of(figures.unattributed) if figures.unattributed is not None else None,
    )
