"""Usage per tenant per machine: session hours, running hours, parts and energy, with the coverage behind them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from api.core.counters import Anomaly, Counts
from api.core.sessions import sessions
from api.core.timeline import Timeline, cut, sum_counts

MS_PER_HOUR = 3_600_000


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One tenant's use of one machine in a window."""

    tenant: str
    machine: str
    session_hours: float
    running_hours: float
    good: int
    reject: int
    kwh: float
    sessions: int
    coverage: float


@dataclass(frozen=True, slots=True)
class MachineTotals:
    """Everything one machine produced in a window, and how much of it no session can claim."""

    machine: str
    coverage: float
    total: Counts
    no_badge: Counts
    unattributed: Counts
    anomalies: tuple[Anomaly, ...] = ()  # counter readings not counted: the machine could not have made them


def usage(
    timelines: Mapping[str, Timeline], badge_owner: Mapping[int, str], start_ms: int, end_ms: int
) -> list[UsageRow]:
    """Sum each tenant's sessions per machine over [start_ms, end_ms); rows sorted by tenant, then machine."""
    acc: dict[tuple[str, str], tuple[int, int, Counts, int]] = {}
    coverage: dict[str, float] = {}
    for machine, timeline in timelines.items():
        window = cut(timeline, start_ms, end_ms)
        coverage[machine] = window.coverage
        for session in sessions(window, badge_owner):
            key = (session.tenant, machine)
            dur, run, counts, n = acc.get(key, (0, 0, Counts(), 0))
            acc[key] = (dur + session.duration_ms, run + session.running_ms, counts + session.counts, n + 1)
    return [
        UsageRow(
            tenant=tenant,
            machine=machine,
            session_hours=dur / MS_PER_HOUR,
            running_hours=run / MS_PER_HOUR,
            good=counts.good,
            reject=counts.reject,
            kwh=counts.kwh,
            sessions=n,
            coverage=coverage[machine],
        )
        for (tenant, machine), (dur, run, counts, n) in sorted(acc.items())
    ]


def machine_totals(machine: str, timeline: Timeline, start_ms: int, end_ms: int) -> MachineTotals:
    """Return a machine's total, no-badge and unattributed counts over [start_ms, end_ms)."""
    window = cut(timeline, start_ms, end_ms)
    no_badge = sum_counts(i.counts for i in window.increments if i.owner is not None and i.owner.badge == 0)
    return MachineTotals(machine, window.coverage, window.totals(), no_badge, window.unattributed(), window.anomalies)
