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
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from api.core.counters import Anomaly, CounterLimits, CounterTracker, Counts

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
    """Intervals covering exactly [start_ms, end_ms), and the counter increments observed in (start_ms, end_ms].

    anomalies: the counter readings in (start_ms, end_ms] the machine could not have reached (never counted).
    """

    start_ms: int
    end_ms: int
    intervals: tuple[Interval, ...]
    increments: tuple[Increment, ...] = field(default=())
    anomalies: tuple[Anomaly, ...] = field(default=())

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
        return sum_counts(i.counts for i in self.increments)

    def unattributed(self) -> Counts:
        """Increments that happened across an UNKNOWN gap and belong to no interval."""
        return sum_counts(i.counts for i in self.increments if i.owner is None)


def sum_counts(counts: Iterable[Counts]) -> Counts:
    """Add up Counts in order, as sum(counts, Counts()) does, without a Counts per step."""
    # Same additions in the same order as Counts.__add__, so float sums are bit-identical.
    good, reject, kwh = Counts().good, Counts().reject, Counts().kwh
    for c in counts:
        good, reject, kwh = good + c.good, reject + c.reject, kwh + c.kwh
    return Counts(good, reject, kwh)


def _state(value: object) -> str:
    return value if isinstance(value, str) and value in _STATES else UNKNOWN


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


Key = tuple[str, int, str | None, int | None]
_UNKNOWN_KEY: Key = (UNKNOWN, 0, None, None)
_ABSENT = object()


def _key(state: object, badge: object, job: object, stop_reason: object) -> Key:
    """Return the (state, badge, job, stop_reason) of an interval whose signals hold these raw values."""
    known = _state(state)
    if known == UNKNOWN:
        return _UNKNOWN_KEY
    # An empty job register means no job.
    return (known, _int(badge) or 0, job if isinstance(job, str) and job else None, _int(stop_reason))


def _interval(start_ms: int, end_ms: int, values: Mapping[str, object]) -> Interval:
    key = _key(values.get("state"), values.get("badge"), values.get("job"), values.get("stop_reason"))
    return Interval(start_ms, end_ms, *key)


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
    ordered = list(samples)
    # Fetched samples come strictly increasing already: then there is nothing to sort or drop.
    previous: int | None = None
    for ts, _values in ordered:
        if previous is not None and not previous < ts:
            break
        previous = ts
    else:
        return ordered
    by_ts: dict[int, SampleIn] = {}
    for ts, values in ordered:
        by_ts[ts] = (ts, values)
    return [by_ts[ts] for ts in sorted(by_ts)]


def classify(
    samples: Iterable[SampleIn], statuses: Iterable[StatusIn], max_gap_ms: int, limits: CounterLimits | None = None
) -> Timeline:
    """Classify all fetched samples into intervals and attributed increments, spanning first sample to last end.

    limits: the machine's counter limits (default: CounterLimits(), generous ceilings); a rise beyond them is an
    anomaly, reported and not counted.
    """
    if max_gap_ms <= 0:
        raise ValueError(f"max_gap_ms must be positive, got {max_gap_ms}")
    ordered = _dedupe(samples)
    if not ordered:
        return Timeline(0, 0, ())
    dark = sorted(ts for ts, status in statuses if status in DARK_STATUSES)
    n_dark = len(dark)
    next_dark = 0  # index of the first dark status after the current sample
    count = len(ordered)
    # This loop runs once per raw sample: it builds merged intervals directly (one open run) instead of an
    # Interval per sample, and an owner Interval only for samples with an increment. Results equal
    # merge([_interval(...) per sample and per gap]) exactly.
    out: list[Interval] = []
    increments: list[Increment] = []
    tracker = CounterTracker(limits)
    step = tracker.step_raw
    state: object = None
    badge: object = None
    job: object = None
    stop_reason: object = None
    key: Key = _UNKNOWN_KEY
    keys: dict[tuple[object, ...], Key] = {}
    run_start = run_end = 0
    run_key: Key | None = None  # None: no run open yet
    prev_start = prev_end = 0  # the interval of the previous sample
    prev_key: Key | None = None
    for index in range(count):
        ts, values = ordered[index]
        good, reject, kwh = step(values, ts)
        if prev_key is not None and not (good == 0 and reject == 0 and kwh == 0):
            owner = None
            if prev_key[0] != UNKNOWN and prev_end == ts:
                owner = Interval(prev_start, prev_end, *prev_key)
            increments.append(Increment(ts, Counts(good, reject, kwh), owner))
        # A missing signal keeps its previous value; only these four shape intervals.
        changed = False
        value = values.get("state", _ABSENT)
        if value is not _ABSENT:
            state, changed = value, True
        value = values.get("badge", _ABSENT)
        if value is not _ABSENT:
            badge, changed = value, True
        value = values.get("job", _ABSENT)
        if value is not _ABSENT:
            job, changed = value, True
        value = values.get("stop_reason", _ABSENT)
        if value is not _ABSENT:
            stop_reason, changed = value, True
        if changed:
            # Signals mostly repeat: look their key up. Types are part of the lookup because 1, 1.0 and True are
            # equal but classify differently; unhashable values are simply not cached.
            raw = (state, badge, job, stop_reason, type(state), type(badge), type(job), type(stop_reason))
            try:
                key = keys[raw]
            except KeyError:
                key = keys[raw] = _key(state, badge, job, stop_reason)
            except TypeError:
                key = _key(state, badge, job, stop_reason)
        limit = ts + max_gap_ms
        following = ordered[index + 1][0] if index + 1 < count else None
        if following is not None and following < limit:
            limit = following
        while next_dark < n_dark and dark[next_dark] <= ts:
            next_dark += 1
        if next_dark < n_dark and dark[next_dark] < limit:
            limit = dark[next_dark]
        prev_start, prev_end, prev_key = ts, limit, key
        # Append [ts, limit) with key, then the UNKNOWN gap [limit, following) if the sample does not reach it.
        if run_key is not None and run_end == ts and run_key == key:
            run_end = limit
        else:
            if run_key is not None:
                out.append(Interval(run_start, run_end, *run_key))
            run_start, run_end, run_key = ts, limit, key
        if following is not None and limit < following:
            if run_end == limit and run_key == _UNKNOWN_KEY:
                run_end = following
            else:
                out.append(Interval(run_start, run_end, *run_key))
                run_start, run_end, run_key = limit, following, _UNKNOWN_KEY
    assert run_key is not None
    out.append(Interval(run_start, run_end, *run_key))
    return Timeline(out[0].start_ms, out[-1].end_ms, tuple(out), tuple(increments), tuple(tracker.anomalies))


def _ts_sorted(increments: Sequence[Increment]) -> bool:
    return all(a.ts_ms <= b.ts_ms for a, b in itertools.pairwise(increments))


def increments_in(increments: Sequence[Increment], start_ms: int, end_ms: int) -> tuple[Increment, ...]:
    """Return the increments with start_ms < ts_ms <= end_ms, in their order."""
    if _ts_sorted(increments):
        lo = bisect.bisect_right(increments, start_ms, key=_ts_of)
        hi = bisect.bisect_right(increments, end_ms, lo=lo, key=_ts_of)
        return tuple(increments[lo:hi])
    return tuple(i for i in increments if start_ms < i.ts_ms <= end_ms)


def _ts_of(increment: Increment) -> int:
    return increment.ts_ms


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
        # Intervals wholly inside the window are kept as they are (equal to a copy, and cheaper).
        whole = lo == interval.start_ms and hi == interval.end_ms
        pieces.append(interval if whole else replace(interval, start_ms=lo, end_ms=hi))
        cursor = hi
    if cursor < end_ms:
        pieces.append(Interval(cursor, end_ms))
    increments = increments_in(timeline.increments, start_ms, end_ms)
    anomalies = tuple(a for a in timeline.anomalies if start_ms < a.ts_ms <= end_ms)
    return Timeline(start_ms, end_ms, tuple(merge(pieces)), increments, anomalies)


def build_timeline(
    samples: Sequence[SampleIn],
    statuses: Sequence[StatusIn],
    start_ms: int,
    end_ms: int,
    max_gap_ms: int,
    limits: CounterLimits | None = None,
) -> Timeline:
    """Classify samples (ts_ms, values) and statuses (ts_ms, status) in full, then cut to [start_ms, end_ms)."""
    return cut(classify(samples, statuses, max_gap_ms, limits), start_ms, end_ms)
