"""Samples -> a piecewise-constant timeline per machine, with UNKNOWN wherever data is missing.

Rules (DESIGN.md, Analytics):
- Each sample's state, badge, job and stop reason hold from its timestamp until the next sample, but never longer
  than ``max_gap_ms``; past that the time is UNKNOWN, never the last state stretched.
- A machine status ``unreachable`` or ``offline`` makes the time from that status until the next sample UNKNOWN.
- A signal missing from a sample keeps its previous value (a sample is still a heartbeat); a sample without a valid
  ``state`` at all makes its interval UNKNOWN.
- Adjacent intervals with equal (state, badge, job, stop_reason) merge.
- The whole fetched data is classified first (``classify``), then cut to the window (``cut``), so a result never
  depends on the query window. Fetch with a look-back of at least ``max_gap_ms`` so the state at the window start
  is known.

Counter increments (see ``Increment``): the increment of a cumulative counter observed at sample i happened while
the interval of sample i-1 held, so it belongs to that interval (its badge, state and job). It counts in a window
when sample i's timestamp is in (start, end]. If the interval of sample i-1 does not reach sample i (an UNKNOWN gap
lies between them: too long a silence, PLC unreachable, agent offline) the parts were still really made, but nobody
can say by whom: the increment is kept with ``owner=None`` ("unattributed"), counts in the machine's totals and in no
session, so nothing is silently lost.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from api.core.counters import CounterTracker, Counts

UNKNOWN = "UNKNOWN"
_STATES = frozenset({"OFF", "IDLE", "SETUP", "RUNNING", "STOPPED", "MAINTENANCE"})
# Link statuses after which nothing is known until the next sample.
DARK_STATUSES = frozenset({"unreachable", "offline"})

SampleIn = tuple[int, Mapping[str, object]]
StatusIn = tuple[int, str]


@dataclass(frozen=True, slots=True)
class Interval:
    """A stretch [start_ms, end_ms) in which a machine's state, badge, job and stop reason were constant."""

    start_ms: int
    end_ms: int
    state: str = UNKNOWN
    badge: int = 0
    job: str | None = None
    stop_reason: int | None = None

    @property
    def known(self) -> bool:
        """Whether the state is known (not UNKNOWN)."""
        return self.state != UNKNOWN

    @property
    def duration_ms(self) -> int:
        """Length of the interval in ms."""
        return self.end_ms - self.start_ms

    @property
    def key(self) -> tuple[str, int, str | None, int | None]:
        """What must be equal for two adjacent intervals to merge."""
        return (self.state, self.badge, self.job, self.stop_reason)


@dataclass(frozen=True, slots=True)
class Increment:
    """Counter increments observed at sample ts_ms; owner is the interval they happened in, None if unattributed."""

    ts_ms: int
    counts: Counts
    owner: Interval | None


@dataclass(frozen=True, slots=True)
class Timeline:
    """Intervals covering exactly [start_ms, end_ms), and the counter increments observed in (start_ms, end_ms]."""

    start_ms: int
    end_ms: int
    intervals: tuple[Interval, ...]
    increments: tuple[Increment, ...] = field(default=())

    @property
    def window_ms(self) -> int:
        """Length of the window in ms."""
        return self.end_ms - self.start_ms

    @property
    def known_ms(self) -> int:
        """Time with a known state, in ms."""
        return sum(i.duration_ms for i in self.intervals if i.known)

    @property
    def coverage(self) -> float:
        """Share of the window whose state is known (0..1)."""
        return self.known_ms / self.window_ms if self.window_ms > 0 else 0.0

    def totals(self) -> Counts:
        """Every increment in the window, attributed or not."""
        return sum((i.counts for i in self.increments), Counts())

    def unattributed(self) -> Counts:
        """Increments that happened across an UNKNOWN gap and belong to no interval."""
        return sum((i.counts for i in self.increments if i.owner is None), Counts())


def _state(value: object) -> str:
    return value if isinstance(value, str) and value in _STATES else UNKNOWN


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _interval(start_ms: int, end_ms: int, values: Mapping[str, object]) -> Interval:
    state = _state(values.get("state"))
    if state == UNKNOWN:
        return Interval(start_ms, end_ms)
    job = values.get("job")
    return Interval(
        start_ms,
        end_ms,
        state,
        badge=_int(values.get("badge")) or 0,
        job=job if isinstance(job, str) and job else None,  # an empty job register means no job
        stop_reason=_int(values.get("stop_reason")),
    )


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Merge touching intervals with equal (state, badge, job, stop_reason); drop empty ones."""
    out: list[Interval] = []
    for interval in intervals:
        if interval.duration_ms <= 0:
            continue
        if out and out[-1].end_ms == interval.start_ms and out[-1].key == interval.key:
            out[-1] = replace(out[-1], end_ms=interval.end_ms)
        else:
            out.append(interval)
    return out


def _dedupe(samples: Iterable[SampleIn]) -> list[SampleIn]:
    # Sorted by time; of two samples with the same timestamp the later one given wins.
    by_ts: dict[int, SampleIn] = {}
    for ts, values in samples:
        by_ts[ts] = (ts, values)
    return [by_ts[ts] for ts in sorted(by_ts)]


def classify(samples: Iterable[SampleIn], statuses: Iterable[StatusIn], max_gap_ms: int) -> Timeline:
    """Classify all fetched samples into intervals and attributed increments, spanning first sample to last end."""
    if max_gap_ms <= 0:
        raise ValueError(f"max_gap_ms must be positive, got {max_gap_ms}")
    ordered = _dedupe(samples)
    dark = sorted(ts for ts, status in statuses if status in DARK_STATUSES)
    raw: list[Interval] = []
    increments: list[Increment] = []
    current: dict[str, object] = {}
    tracker = CounterTracker()
    previous: Interval | None = None
    for index, (ts, values) in enumerate(ordered):
        counts = tracker.step(values)
        if previous is not None and not counts.is_zero:
            owner = previous if previous.known and previous.end_ms == ts else None
            increments.append(Increment(ts, counts, owner))
        current.update(values)
        limit = ts + max_gap_ms
        if index + 1 < len(ordered):
            limit = min(limit, ordered[index + 1][0])
        first_dark = bisect.bisect_right(dark, ts)
        if first_dark < len(dark):
            limit = min(limit, dark[first_dark])
        previous = _interval(ts, limit, current)
        raw.append(previous)
        if index + 1 < len(ordered) and limit < ordered[index + 1][0]:
            raw.append(Interval(limit, ordered[index + 1][0]))
    if not raw:
        return Timeline(0, 0, ())
    return Timeline(raw[0].start_ms, raw[-1].end_ms, tuple(merge(raw)), tuple(increments))


def cut(timeline: Timeline, start_ms: int, end_ms: int) -> Timeline:
    """Cut a timeline to [start_ms, end_ms): clip intervals, fill what it does not cover with UNKNOWN."""
    if end_ms <= start_ms:
        raise ValueError(f"window end {end_ms} must be after its start {start_ms}")
    pieces: list[Interval] = []
    cursor = start_ms
    for interval in timeline.intervals:
        lo, hi = max(interval.start_ms, start_ms), min(interval.end_ms, end_ms)
        if lo >= hi:
            continue
        if lo > cursor:
            pieces.append(Interval(cursor, lo))
        pieces.append(replace(interval, start_ms=lo, end_ms=hi))
        cursor = hi
    if cursor < end_ms:
        pieces.append(Interval(cursor, end_ms))
    increments = tuple(i for i in timeline.increments if start_ms < i.ts_ms <= end_ms)
    return Timeline(start_ms, end_ms, tuple(merge(pieces)), increments)


def build_timeline(
    samples: Sequence[SampleIn], statuses: Sequence[StatusIn], start_ms: int, end_ms: int, max_gap_ms: int
) -> Timeline:
    """Classify samples (ts_ms, values) and statuses (ts_ms, status) in full, then cut to [start_ms, end_ms)."""
    return cut(classify(samples, statuses, max_gap_ms), start_ms, end_ms)
