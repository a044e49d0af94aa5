"""The figures of a window, as the API and the offline report both give them: one shell, so their numbers are equal.

Reads pieces through api.figures (roll-ups where they answer, raw data elsewhere), feeds them to the pure core with
the site's configuration (calendar, loss map, ideal cycles, badge owners) and turns the results into plain rows
(dicts of JSON types) with the field names of the HTTP API and of `shopfloor report`.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from api.core.counters import Anomaly, Counts
from api.core.oee import IdealCycle, LossMap, OeeRow, oee
from api.core.owners import OwnerBook, Owners
from api.core.pieces import Piece
from api.core.sessions import Breakdown
from api.core.usage import UsageRow, usage_from_pieces
from api.figures import MachineFigures, RollupReader, gather
from shopfloor.calendar import Calendar, Label, Stretch
from shopfloor.config import Machine, SiteConfig
from shopfloor.store import TimeSeriesStore

MS_PER_S = 1000


def loss_map(site: SiteConfig) -> LossMap:
    """The site's loss map as the core takes it."""
    spec = site.oee.loss_map
    return LossMap(
        version=spec.version,
        microstop_max_ms=round(spec.microstop_max_s * MS_PER_S),
        states={str(k): str(v) for k, v in spec.states.items()},
        stop_reasons={int(k): str(v) for k, v in spec.stop_reasons.items()},
    )


def ideal_cycles(site: SiteConfig) -> IdealCycle:
    """ideal_cycle_ms(machine, job): the job's own ideal cycle (None if the site gives none), or the machine's."""
    machines = {m.id: m for m in site.machines}

    def ideal_cycle_ms(machine_id: str, job: str | None) -> int | None:
        machine = machines.get(machine_id)
        if machine is None:
            return None
        if job is None:
            return round(machine.ideal_cycle_time_s * MS_PER_S)
        own = machine.job_cycle_times_s.get(job)
        return round(own * MS_PER_S) if own is not None else None

    return ideal_cycle_ms


@dataclass(frozen=True, slots=True)
class Window:
    """What a window's figures are computed from."""

    start_ms: int
    end_ms: int
    figures: Mapping[str, MachineFigures]

    @property
    def pieces(self) -> list[Piece]:
        """Every machine's pieces."""
        return [p for f in self.figures.values() for p in f.pieces]

    @property
    def anomalies(self) -> dict[str, Sequence[Anomaly]]:
        """Counter anomalies per machine."""
        return {m: f.anomalies for m, f in self.figures.items()}


def window(
    store: TimeSeriesStore,
    site: SiteConfig,
    start_ms: int,
    end_ms: int,
    *,
    machines: Sequence[Machine] | None = None,
    rollups: RollupReader | None = None,
    owners: Owners | None = None,
) -> Window:
    """Gather the pieces of [start_ms, end_ms) for machines (default: all), cut where a badge changes owner."""
    transfers = owners.transfers(start_ms, end_ms) if owners is not None else []
    figures = gather(
        store,
        site,
        start_ms,
        end_ms,
        calendar=site.calendar_model(),
        machines=machines,
        rollups=rollups,
        extra_cuts=transfers,
    )
    return Window(start_ms, end_ms, figures)


def labeller(calendar: Calendar, start_ms: int, end_ms: int) -> Callable[[int, str], Label]:
    """calendar.label for instants in [start_ms, end_ms), from its stretches computed once per window.

    Machines without downtime of their own share the site-wide stretches: a month of 50 machines asks the calendar
    a handful of times instead of once per machine-hour.
    """
    own = {m for d in calendar.downtime if d.machines for m in d.machines}
    cache: dict[str | None, tuple[list[int], list[Stretch]]] = {}

    def label(at_ms: int, machine: str) -> Label:
        key = machine if machine in own else None
        entry = cache.get(key)
        if entry is None:
            stretches = calendar.stretches(start_ms, end_ms, key)
            entry = cache[key] = ([s.start_ms for s in stretches], stretches)
        starts, stretches = entry
        k = bisect.bisect_right(starts, at_ms) - 1
        if k >= 0 and at_ms < stretches[k].end_ms:
            return stretches[k].label
        return calendar.label(at_ms, machine)  # outside the window: ask the calendar itself

    return label


def oee_rows(
    site: SiteConfig, data: Window, *, group_by: Sequence[str], owners: OwnerBook, tenant: str | None = None
) -> list[OeeRow]:
    """OEE rows of a window grouped by group_by; with tenant, only that tenant's sessions (session basis)."""
    calendar = site.calendar_model()
    return oee(
        data.pieces,
        ideal_cycle_ms=ideal_cycles(site),
        labels=labeller(calendar, data.start_ms, data.end_ms),
        loss_map=loss_map(site),
        badge_owner=owners,
        group_by=group_by,
        tenant=tenant,
        anomalies=data.anomalies,
    )


def usage_rows(site: SiteConfig, data: Window, owners: OwnerBook) -> list[UsageRow]:
    """Usage per tenant per machine of a window, with each row's state breakdown and session OEE."""
    return usage_from_pieces(
        data.pieces,
        owners,
        ideal_cycle_ms=ideal_cycles(site),
        loss_map=loss_map(site),
        anomalies=data.anomalies,
    )


@dataclass(frozen=True, slots=True)
class Totals:
    """What one machine produced in a window, and how much of it no session can claim."""

    machine: str
    coverage: float
    total: Counts
    no_badge: Counts
    unattributed: Counts
    anomalies: tuple[Anomaly, ...]


def machine_totals(data: Window) -> list[Totals]:
    """Per machine: all counts, those made with no badge logged in and those made across UNKNOWN time."""
    out = []
    for machine, figures in data.figures.items():
        total = no_badge = unattributed = Counts()
        known = span = 0
        for p in figures.pieces:
            counts = Counts(p.good, p.reject, p.kwh)
            total += counts
            span += p.duration_ms
            if not p.known:
                unattributed += counts
            else:
                known += p.duration_ms
                if p.badge == 0:
                    no_badge += counts
        coverage = known / span if span else 0.0
        out.append(Totals(machine, coverage, total, no_badge, unattributed, tuple(figures.anomalies)))
    return out


# ---- rows as JSON --------------------------------------------------------------------------------------------------


def _s(ms: int) -> float:
    return ms / MS_PER_S


def _ratio(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _key(value: object) -> Any:
    return value.isoformat() if isinstance(value, date) else value


def oee_dict(row: OeeRow) -> dict[str, Any]:
    """An OEE row with its group keys first, times in seconds, losses in seconds by category."""
    keys = {k: _key(getattr(row, k)) for k in row.group_by}
    if "tenant" in row.group_by:
        keys["unowned"] = row.tenant is None
    return {
        **keys,
        "basis": row.basis,
        "pbt_s": _s(row.pbt_ms),
        "apt_s": _s(row.apt_ms),
        "running_s": _s(row.running_ms),
        "unknown_s": _s(row.unknown_ms),
        "unplanned_s": _s(row.unplanned_ms),
        "coverage": _ratio(row.coverage),
        "produced": row.produced,
        "good": row.good,
        "reject": row.reject,
        "ideal_s": _s(row.ideal_ms),
        "ideal_good_s": _s(row.ideal_good_ms),
        "unattributed_good": row.unattributed_good,
        "unattributed_reject": row.unattributed_reject,
        "unplanned_produced": row.unplanned_produced,
        "availability": _ratio(row.availability),
        "effectiveness": _ratio(row.effectiveness),
        "quality": _ratio(row.quality),
        "oee": _ratio(row.oee),
        "losses": {k: _s(v) for k, v in row.losses.items()},
        "flags": list(row.flags),
        "anomalies": row.anomalies,
        "loss_map_version": row.loss_map_version,
    }


def breakdown_dict(b: Breakdown) -> dict[str, Any]:
    """A state breakdown in hours; stopped time by stop reason ("none" for no reason)."""
    h = 3_600_000
    return {
        "running_hours": round(b.running_ms / h, 6),
        "setup_hours": round(b.setup_ms / h, 6),
        "idle_hours": round(b.idle_ms / h, 6),
        "stopped_hours": {("none" if r is None else str(r)): round(ms / h, 6) for r, ms in b.stopped_ms},
        "off_hours": round(b.off_ms / h, 6),
        "maintenance_hours": round(b.maintenance_ms / h, 6),
        "unknown_hours": round(b.unknown_ms / h, 6),
    }


def usage_dict(row: UsageRow) -> dict[str, Any]:
    """A usage row with its breakdown and session OEE."""
    figures = row.oee
    return {
        "tenant": row.tenant,
        "unowned": row.tenant is None,
        "machine": row.machine,
        "session_hours": round(row.session_hours, 6),
        "running_hours": round(row.running_hours, 6),
        "good": row.good,
        "reject": row.reject,
        "kwh": round(row.kwh, 3),
        "sessions": row.sessions,
        "coverage": round(row.coverage, 6),
        "breakdown": breakdown_dict(row.breakdown),
        "oee": None if figures is None else _ratio(figures.oee),
        "availability": None if figures is None else _ratio(figures.availability),
        "effectiveness": None if figures is None else _ratio(figures.effectiveness),
        "quality": None if figures is None else _ratio(figures.quality),
        "flags": [] if figures is None else list(figures.flags),
    }
