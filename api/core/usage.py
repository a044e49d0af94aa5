"""Usage per tenant per machine: session hours, running hours, parts and energy, with the coverage behind them.

Rows are computed from pieces (api.core.pieces), so a window's rows are the sums of its hours' (roll-ups answer
closed hours). ``sessions`` counts the sessions that begin in the window: on pieces of a block-local timeline
(hour_timelines) that is additive over adjacent windows; ``usage`` over a plain timeline counts, as it always has,
every session that touches the window (one running at the window's start begins there for a plain timeline).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from api.core.counters import Anomaly, Counts
from api.core.oee import IdealCycle, LossMap, OeeRow, oee
from api.core.owners import OwnerBook, Owners, owner_at
from api.core.pieces import Piece, pieces
from api.core.sessions import Breakdown, breakdown, no_ideal_cycle
from api.core.timeline import Timeline, cut, sum_counts

MS_PER_HOUR = 3_600_000


@dataclass(frozen=True, slots=True)
class UsageRow:
    """One tenant's use of one machine in a window."""

    tenant: str | None  # None: badges no tenant owns
    machine: str
    session_hours: float
    running_hours: float
    good: int
    reject: int
    kwh: float
    sessions: int
    coverage: float  # the machine's, over the whole window
    breakdown: Breakdown = field(default=Breakdown())  # the sessions' time by state
    oee: OeeRow | None = None  # of the sessions, on the session basis


@dataclass(frozen=True, slots=True)
class MachineTotals:
    """Everything one machine produced in a window, and how much of it no session can claim."""

    machine: str
    coverage: float
    total: Counts
    no_badge: Counts
    unattributed: Counts
    anomalies: tuple[Anomaly, ...] = ()  # counter readings not counted: the machine could not have made them


def usage_from_pieces(
    of: Iterable[Piece],
    badge_owner: OwnerBook,
    *,
    ideal_cycle_ms: IdealCycle | None = None,
    loss_map: LossMap | None = None,
    anomalies: Mapping[str, Sequence[Anomaly]] | None = None,
) -> list[UsageRow]:
    """Sum each tenant's sessions per machine from the pieces of one window; rows by tenant (unowned last), machine.

    The pieces must cover the window for each machine (as pieces() of a timeline do): coverage is their known share.
    """
    window: dict[str, list[int]] = {}  # machine -> [all ms, known ms]
    acc: dict[tuple[str | None, str], list[Piece]] = {}
    for piece in of:
        seen = window.setdefault(piece.machine, [0, 0])
        seen[0] += piece.duration_ms
        if piece.known:
            seen[1] += piece.duration_ms
        if piece.known and piece.badge != 0:
            acc.setdefault((owner_at(badge_owner, piece.badge, piece.at_ms), piece.machine), []).append(piece)
    figures = {
        (row.machine, row.tenant): row
        for row in oee(
            [p for group in acc.values() for p in group],
            ideal_cycle_ms=ideal_cycle_ms or no_ideal_cycle,
            loss_map=loss_map,
            badge_owner=badge_owner,
            group_by=("machine", "tenant"),
            basis="session",
            anomalies=anomalies,
        )
    }
    handed = _handed_over(acc, badge_owner)
    rows = []
    for (tenant, machine), mine in sorted(acc.items(), key=lambda kv: _order(*kv[0])):
        total, known = window[machine]
        duration = sum(p.duration_ms for p in mine)
        running = sum(p.duration_ms for p in mine if p.state == "RUNNING")
        rows.append(
            UsageRow(
                tenant=tenant,
                machine=machine,
                session_hours=duration / MS_PER_HOUR,
                running_hours=running / MS_PER_HOUR,
                good=sum(p.good for p in mine),
                reject=sum(p.reject for p in mine),
                kwh=sum((p.kwh for p in mine), 0.0),
                sessions=sum(p.opens for p in mine) + handed.get((tenant, machine), 0),
                coverage=known / total if total > 0 else 0.0,
                breakdown=breakdown(mine),
                oee=figures.get((machine, tenant)),
            )
        )
    return rows


def usage(
    timelines: Mapping[str, Timeline],
    badge_owner: OwnerBook,
    start_ms: int,
    end_ms: int,
    *,
    ideal_cycle_ms: IdealCycle | None = None,
    loss_map: LossMap | None = None,
) -> list[UsageRow]:
    """Sum each tenant's sessions per machine over [start_ms, end_ms); rows by tenant (unowned last), then machine."""
    all_pieces: list[Piece] = []
    for machine, timeline in timelines.items():
        all_pieces.extend(pieces(cut(timeline, start_ms, end_ms), machine))
    return usage_from_pieces(all_pieces, badge_owner, ideal_cycle_ms=ideal_cycle_ms, loss_map=loss_map)


def _handed_over(
    acc: Mapping[tuple[str | None, str], Sequence[Piece]], book: OwnerBook
) -> dict[tuple[str | None, str], int]:
    """Sessions that begin where a logged-in badge passes to another tenant: the pieces' opens count only logins.

    A badge whose pieces of a stretch starting at a transfer open nothing was logged in across it: the new owner's
    session begins there (the pieces are cut at transfers, api.analytics.window).
    """
    if not isinstance(book, Owners):
        return {}
    seen: dict[tuple[str | None, str, int, int], int] = {}  # (tenant, machine, badge, at) -> opens there
    for (tenant, machine), mine in acc.items():
        for p in mine:
            if p.at_ms in book.transfers(p.at_ms - 1, p.at_ms + 1, p.badge):
                key = (tenant, machine, p.badge, p.at_ms)
                seen[key] = seen.get(key, 0) + p.opens
    out: dict[tuple[str | None, str], int] = {}
    for (tenant, machine, _badge, _at), opens in seen.items():
        if opens == 0:
            out[(tenant, machine)] = out.get((tenant, machine), 0) + 1
    return out


def _order(tenant: str | None, machine: str) -> tuple[bool, str, str]:
    # Tenants alphabetically, then badges nobody owns.
    return (tenant is None, tenant or "", machine)


def machine_totals(machine: str, timeline: Timeline, start_ms: int, end_ms: int) -> MachineTotals:
    """Return a machine's total, no-badge and unattributed counts over [start_ms, end_ms)."""
    window = cut(timeline, start_ms, end_ms)
    no_badge = sum_counts(i.counts for i in window.increments if i.owner is not None and i.owner.badge == 0)
    return MachineTotals(machine, window.coverage, window.totals(), no_badge, window.unattributed(), window.anomalies)
