"""Tenant sessions: runs of intervals with the same non-zero badge, mapped to tenants at compute time.

A badge no tenant owns maps to tenant None, never to a placeholder name (a tenant may be called anything).
Each session carries its time by state (``Breakdown``) and its OEE on the session basis (PBT = the session).
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

from api.core.counters import Counts
from api.core.oee import IdealCycle, LossMap, OeeRow, oee
from api.core.owners import OwnerBook, as_owners, owner_at
from api.core.pieces import STOPPED, Piece, pieces
from api.core.timeline import UNKNOWN, Increment, Timeline, sum_counts

MS_PER_HOUR = 3_600_000


@dataclass(frozen=True, slots=True)
class Breakdown:
    """Time by state in ms; STOPPED time by stop reason ((reason, ms) pairs, no reason first, then ascending)."""

    running_ms: int = 0
    setup_ms: int = 0
    idle_ms: int = 0
    stopped_ms: tuple[tuple[int | None, int], ...] = field(default=())
    off_ms: int = 0
    maintenance_ms: int = 0
    unknown_ms: int = 0  # sessions end at UNKNOWN time, so a session's (and a usage row's) is always 0

    @property
    def stopped_total_ms(self) -> int:
        """All STOPPED time, whatever the reason."""
        return sum(ms for _, ms in self.stopped_ms)

    @property
    def total_ms(self) -> int:
        """All the time this breakdown covers."""
        return (
            self.running_ms
            + self.setup_ms
            + self.idle_ms
            + self.stopped_total_ms
            + self.off_ms
            + self.maintenance_ms
            + self.unknown_ms
        )


_STATE_FIELDS = {
    "RUNNING": "running_ms",
    "SETUP": "setup_ms",
    "IDLE": "idle_ms",
    "OFF": "off_ms",
    "MAINTENANCE": "maintenance_ms",
    UNKNOWN: "unknown_ms",
}


def breakdown(of: Iterable[Piece]) -> Breakdown:
    """Sum pieces' time by state (and STOPPED time by stop reason)."""
    by_state = dict.fromkeys(_STATE_FIELDS.values(), 0)
    stopped: dict[int | None, int] = {}
    for piece in of:
        if piece.state == STOPPED:
            stopped[piece.stop_reason] = stopped.get(piece.stop_reason, 0) + piece.duration_ms
        else:
            # A state the timeline does not know is UNKNOWN there already; anything else would be a new state.
            by_state[_STATE_FIELDS.get(piece.state, "unknown_ms")] += piece.duration_ms
    reasons = sorted(stopped, key=lambda r: (r is not None, r or 0))
    return Breakdown(stopped_ms=tuple((r, stopped[r]) for r in reasons if stopped[r]), **by_state)


@dataclass(frozen=True, slots=True)
class Session:
    """One badge logged in on one machine without interruption, within a timeline's window."""

    tenant: str | None  # None: a badge no tenant owns
    badge: int
    start_ms: int
    end_ms: int
    running_ms: int
    counts: Counts
    breakdown: Breakdown = field(default=Breakdown())
    oee: OeeRow | None = None  # on the session basis; None only for a session no piece lies in
    pieces: tuple[Piece, ...] = field(default=(), compare=False, repr=False)  # its known pieces (billing reads them)

    @property
    def duration_ms(self) -> int:
        """Length of the session in ms."""
        return self.end_ms - self.start_ms


def tenant_of(badge: int, badge_owner: OwnerBook, at_ms: int = 0) -> str | None:
    """Return the tenant of a badge (at at_ms), None for badges no tenant owns (never a placeholder name)."""
    return owner_at(badge_owner, badge, at_ms)


def no_ideal_cycle(machine: str, job: str | None) -> int | None:
    """Know no ideal cycle (OEE then has no effectiveness, and says so)."""
    return None


def sessions(
    timeline: Timeline,
    badge_owner: OwnerBook,
    *,
    machine: str = "",
    ideal_cycle_ms: IdealCycle | None = None,
    loss_map: LossMap | None = None,
) -> list[Session]:
    """Split a timeline into sessions; an UNKNOWN stretch or a badge change ends a session.

    A session's counts are the attributed increments whose interval lies in it: the increment at sample ts belongs
    to the interval holding just before ts (see api.core.timeline). Its breakdown and OEE come from the timeline's
    pieces (api.core.pieces) between its start and end.
    """
    book = as_owners(badge_owner)
    runs: list[tuple[int, int, int, int]] = []  # badge, start, end, running ms
    for interval in timeline.intervals:
        if not interval.known or interval.badge == 0:
            continue
        # A badge that moves to another tenant inside the interval ends one tenant's session there.
        transfers = book.transfers(interval.start_ms - 1, interval.end_ms, interval.badge)
        edges = [interval.start_ms, *(t for t in transfers if t > interval.start_ms), interval.end_ms]
        for lo, hi in itertools.pairwise(edges):
            running = hi - lo if interval.state == "RUNNING" else 0
            joins = runs and runs[-1][0] == interval.badge and runs[-1][2] == lo and lo not in transfers
            if joins:
                badge, start, _end, run_ms = runs[-1]
                runs[-1] = (badge, start, hi, run_ms + running)
            else:
                runs.append((interval.badge, lo, hi, running))
    out: list[Session] = []
    if not runs:
        return out
    increments = timeline.increments
    # Pieces cut at every session edge: each session's are those whose stretch starts inside it.
    cut_at = sorted({t for _, start, end, _ in runs for t in (start, end)})
    all_pieces = pieces(timeline, machine, cut_at)
    at_starts = [p.at_ms for p in all_pieces]
    # Increments are in time order (classify and cut keep them so): each session then sums only its own slice,
    # instead of every session scanning every increment. Same increments, same order, same float sums.
    ordered = all(a.ts_ms <= b.ts_ms for a, b in itertools.pairwise(increments))
    for badge, start, end, running_ms in runs:
        if ordered:
            lo = bisect.bisect_right(increments, start, key=_ts_of)
            mine = increments[lo : bisect.bisect_right(increments, end, lo=lo, key=_ts_of)]
        else:
            mine = increments
        # The increment happened in the instant before inc.ts_ms, inside its owner interval.
        counts = sum_counts(
            inc.counts
            for inc in mine
            if inc.owner is not None and inc.owner.badge == badge and start < inc.ts_ms <= end
        )
        own = [
            p
            for p in all_pieces[bisect.bisect_left(at_starts, start) : bisect.bisect_left(at_starts, end)]
            if p.badge == badge and p.known
        ]
        figures = oee(
            own,
            ideal_cycle_ms=ideal_cycle_ms or no_ideal_cycle,
            loss_map=loss_map,
            badge_owner=badge_owner,
            group_by=("machine", "tenant") if machine else ("tenant",),
            basis="session",
        )
        out.append(
            Session(
                book.at(badge, start),
                badge,
                start,
                end,
                running_ms,
                counts,
                breakdown(own),
                figures[0] if figures else None,
                tuple(own),
            )
        )
    return out


def _ts_of(increment: Increment) -> int:
    return increment.ts_ms
