"""Tenant sessions: runs of intervals with the same non-zero badge, mapped to tenants at compute time."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Mapping
from dataclasses import dataclass

from api.core.counters import Counts
from api.core.timeline import Increment, Timeline, sum_counts

UNKNOWN_TENANT = "unknown"


@dataclass(frozen=True, slots=True)
class Session:
    """One badge logged in on one machine without interruption, within a timeline's window."""

    tenant: str
    badge: int
    start_ms: int
    end_ms: int
    running_ms: int
    counts: Counts

    @property
    def duration_ms(self) -> int:
        """Length of the session in ms."""
        return self.end_ms - self.start_ms


def tenant_of(badge: int, badge_owner: Mapping[int, str]) -> str:
    """Return the tenant of a badge, 'unknown' for badges no tenant owns."""
    return badge_owner.get(badge, UNKNOWN_TENANT)


def sessions(timeline: Timeline, badge_owner: Mapping[int, str]) -> list[Session]:
    """Split a timeline into sessions; an UNKNOWN stretch or a badge change ends a session.

    A session's counts are the attributed increments whose interval lies in it: the increment at sample ts belongs
    to the interval holding just before ts (see api.core.timeline).
    """
    runs: list[tuple[int, int, int, int]] = []  # badge, start, end, running ms
    for interval in timeline.intervals:
        if not interval.known or interval.badge == 0:
            continue
        running = interval.duration_ms if interval.state == "RUNNING" else 0
        if runs and runs[-1][0] == interval.badge and runs[-1][2] == interval.start_ms:
            badge, start, _end, run_ms = runs[-1]
            runs[-1] = (badge, start, interval.end_ms, run_ms + running)
        else:
            runs.append((interval.badge, interval.start_ms, interval.end_ms, running))
    out: list[Session] = []
    increments = timeline.increments
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
        out.append(Session(tenant_of(badge, badge_owner), badge, start, end, running_ms, counts))
    return out


def _ts_of(increment: Increment) -> int:
    return increment.ts_ms
