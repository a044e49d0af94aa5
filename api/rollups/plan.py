"""Which machine-hours the roll-up job builds and which late data unbuilds: pure functions over plain data.

When an hour is closed. The roll-up of hour H is classified from the raw data in [H - context, H + 1 h + context]
(api.core.pieces), so H can be built once that whole span is in the store: at H + 1 h + context + grace, where
grace covers data still on its way (an agent publishes every minute and resends what is not committed) and the
clocks of the API and collector hosts disagreeing. Data arriving later than that is late: the collector marks its
hour (it marks every sample more than LATE_AFTER_MS old when written, which grace exceeds, so no late sample can slip
between "not marked" and "already built").

What late data at hour K unbuilds (``late_spans``):
- K itself, and the hours whose context reaches K: context <= 1 h in every shipped setting (max_gap is a heartbeat,
  at most 1 h, plus a few polls), so H-1 (its context runs into K) and H+1 (its context starts in K, and K holds its
  counter baselines); ceil(context / 1 h) hours each side in general (``neighbours``).
- Past K + n, the hours up to and including the first one the roll-ups show anything in (known time, parts, energy,
  anomalies): in between the machine was silent, so a sample or status at K is what holds the unknown reason of
  that silence (silence, unreachable, agent offline), and the first reading after the silence counts its parts from
  the counter baselines K holds. Without such an hour, every built hour after K + n.
An hour built after the late data was written already holds it and is kept (``stale_before``).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from api.core.pieces import HOUR_MS, context_ms, hour_of

DAY_MS = 24 * HOUR_MS
# The collector marks data written more than 5 min after its timestamp (collector.service.LATE_AFTER_MS); 5 min
# more for the clocks of the API and collector hosts to disagree.
DEFAULT_GRACE_MS = 600_000


@dataclass(frozen=True, slots=True)
class Span:
    """Hours [first_ms, last_ms] (both included) of one machine to unbuild if built before before_ms."""

    machine: str
    first_ms: int
    last_ms: int
    before_ms: int


@dataclass(frozen=True, slots=True)
class Run:
    """Consecutive hours [start_ms, end_ms) of one machine to build with one raw read."""

    machine: str
    start_ms: int
    end_ms: int

    @property
    def hours(self) -> int:
        """How many hours the run holds."""
        return (self.end_ms - self.start_ms) // HOUR_MS


def neighbours(max_gap_ms: int) -> int:
    """How many hours either side of an hour its classification context reaches into."""
    return max(1, math.ceil(context_ms(max_gap_ms) / HOUR_MS))


def closed_end(now_ms: int, max_gap_ms: int, grace_ms: int) -> int:
    """The first hour that is not closed at now_ms: every hour before it can be built."""
    # H is closed when H + 1 h + context + grace <= now, i.e. H + 1 h <= now - context - grace.
    return hour_of(now_ms - context_ms(max_gap_ms) - grace_ms)


def missing_hours(start_ms: int, end_ms: int, built: Collection[int]) -> list[int]:
    """The hours starting in [start_ms, end_ms) (start rounded down to its hour) that are not built."""
    return [h for h in range(hour_of(start_ms), end_ms, HOUR_MS) if h not in built]


def missing_around(start_ms: int, end_ms: int, first_ms: int, last_ms: int) -> list[int]:
    """missing_hours when every hour from first_ms to last_ms is built: only those outside that stretch."""
    lo = hour_of(start_ms)
    return [*range(lo, min(first_ms, end_ms), HOUR_MS), *range(max(last_ms + HOUR_MS, lo), end_ms, HOUR_MS)]


def stale_before(received_ms: int, seen_ms: int, tolerance_ms: int) -> int:
    """Hours built before this may lack the data of a late mark received at received_ms and first seen at seen_ms.

    The collector stamps received_ms after writing the data; seen_ms is the job's own clock when it first read the
    mark (the data was in the store by then). A build that began after either already read the data: the earlier
    bound, with received_ms allowed tolerance_ms for the collector's clock running behind. Taking the first sighting
    keeps what the job rebuilt after it when the mark is read again.
    """
    return min(seen_ms, received_ms + tolerance_ms)


def merge_marks(
    marks: Iterable[tuple[str, int, int]], reach: Mapping[str, int]
) -> dict[str, list[tuple[int, int, int]]]:
    """Join late marks (machine, hour, stale_before) into per-machine [first, last] hour spans with their neighbours.

    reach: per machine, neighbours(); a machine missing from it is skipped (not ours to build), as is a mark that is
    not an hour start. Spans that touch or overlap merge, keeping the latest stale_before (deleting more is safe).
    """
    by_machine: dict[str, list[tuple[int, int]]] = {}
    for machine, hour, before in marks:
        if machine in reach and hour % HOUR_MS == 0:
            by_machine.setdefault(machine, []).append((hour, before))
    out: dict[str, list[tuple[int, int, int]]] = {}
    for machine, items in sorted(by_machine.items()):
        n = reach[machine] * HOUR_MS
        spans: list[list[int]] = []
        for hour, before in sorted(items):
            lo, hi = hour - n, hour + n
            if spans and lo <= spans[-1][1] + HOUR_MS:
                spans[-1][1] = max(spans[-1][1], hi)
                spans[-1][2] = max(spans[-1][2], before)
            else:
                spans.append([lo, hi, before])
        out[machine] = [(lo, hi, before) for lo, hi, before in spans]
    return out


def late_span(
    machine: str, first_ms: int, last_ms: int, before_ms: int, next_busy_ms: int | None, last_built_ms: int | None
) -> Span:
    """The span late data unbuilds: [first, last] plus the silence after it up to the next hour with anything in it.

    next_busy_ms: the first built hour after last_ms showing known time, parts, energy or anomalies (None: none);
    last_built_ms: the machine's last built hour (None: nothing built).
    """
    end = last_ms
    if next_busy_ms is not None:
        end = max(end, next_busy_ms)
    elif last_built_ms is not None:
        end = max(end, last_built_ms)
    return Span(machine, first_ms, end, before_ms)


def plan_runs(missing: Mapping[str, Sequence[int]], budget_hours: int, run_hours: int = 24) -> list[Run]:
    """Runs to build next: the oldest missing hours first, a UTC day of every machine at a time, at most budget_hours.

    Day by day across machines, so a first build of a month leaves every machine's older days answered from
    roll-ups while the rest is built; within a day, one run per machine per stretch of consecutive hours (one raw
    read each), at most run_hours long.
    """
    if budget_hours < 1:
        raise ValueError(f"budget_hours must be at least 1, got {budget_hours}")
    if run_hours < 1:
        raise ValueError(f"run_hours must be at least 1, got {run_hours}")
    ordered = sorted((h - h % DAY_MS, machine, h) for machine, hours in missing.items() for h in hours)
    runs: list[Run] = []
    left = budget_hours
    for day, machine, hour in ordered:
        if left == 0:
            break
        last = runs[-1] if runs else None
        if (
            last is not None
            and last.machine == machine
            and last.end_ms == hour
            and last.start_ms - last.start_ms % DAY_MS == day
            and last.hours < run_hours
        ):
            runs[-1] = Run(machine, last.start_ms, hour + HOUR_MS)
        else:
            runs.append(Run(machine, hour, hour + HOUR_MS))
        left -= 1
    return runs


def heartbeat_runs(
    run: Run, first_heartbeat: int | None, changes: Sequence[tuple[int, int]]
) -> list[tuple[Run, int | None]]:
    """Split a run where the heartbeat in effect at an hour's end changes; each part with its heartbeat.

    An hour is classified with the heartbeat the agent last reported at or before its end, as a raw query of just
    that hour would be. first_heartbeat: in effect at the run's first hour's end; changes: (ts, heartbeat_ms) of the
    statuses after it, oldest first.
    """
    out: list[tuple[Run, int | None]] = []
    k = 0
    current = first_heartbeat
    for hour in range(run.start_ms, run.end_ms, HOUR_MS):
        while k < len(changes) and changes[k][0] <= hour + HOUR_MS:
            current = changes[k][1]
            k += 1
        if out and out[-1][1] == current and out[-1][0].end_ms == hour:
            out[-1] = (Run(run.machine, out[-1][0].start_ms, hour + HOUR_MS), current)
        else:
            out.append((Run(run.machine, hour, hour + HOUR_MS), current))
    return out
