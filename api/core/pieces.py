"""A machine's time cut into uniform pieces: what usage, OEE and the roll-ups are all computed from.

Block-local classification (one rule, so results never depend on the query window and roll-ups are exact):
the timeline of UTC hour H is classified from the samples and statuses in [H - context, H + 1 h + context] plus,
for each signal of BASELINE_SIGNALS (the counters, and the state, badge, job and stop reason whose values lapse),
the newest sample before H - context that holds it, and then cut to [H, H + 1 h). A window is the concatenation of
its hours. context_ms = max(max_gap_ms, MIN_CONTEXT_MS), and the microstop threshold of any loss map is at most
MIN_CONTEXT_MS, so whether a stop is a microstop is decided the same from every hour it touches.

A Piece aggregates the time of one hour (or of one stretch of it between calendar boundaries or window edges:
at_ms is that stretch's start) that shares state, UNKNOWN reason, badge, job, stop reason and stop length.

Details of the rule (``hour_timelines``):
- A baseline enters the classification with only the signal it is the baseline of (a sample at that time carrying
  nothing else), so an hour's figures are the same whether it came from the fetched samples or from the store's
  last-before query, whole or not. With them every value at H - context, and when it lapses, is known as from all
  data (api.core.timeline), so the hour itself is classified as from all data (a property test holds it), but for
  two things the context does not carry over: a counter's history before it (a suspect reading after an anomaly),
  and, before the context, samples holding none of BASELINE_SIGNALS (they prove the link alive after a dark status,
  which matters to the hour only if nothing arrives for the whole context before it).
- Statuses enter if they lie in the context; from before it, of each source (the machine's status, each agent's
  status) the newest and the newest of each dark status, and every outbox loss that the newest baseline does not
  end (a loss lasts until the first sample after its until_ms).
- What an hour's classification saw around the hour is kept with its timeline (``HourlyTimeline``): each STOPPED
  part's whole-stop length (``stop_ms``; a stop the context clips is longer than the context, so longer than any
  microstop threshold) and the instants where a session begins (``opens``: its badge was not there just before).

Pieces (``pieces``): the time of each stretch is summed by key; the counter increment observed at ts belongs to the
stretch with start < ts <= end (the window rule) and to the key of the interval holding just before ts (the
interval it happened in). Increments the timeline could not attribute (owner None: an UNKNOWN gap lies before them)
land on the UNKNOWN piece holding just before ts, the gap they crossed: a piece with state UNKNOWN and parts is
what "unattributed" means. (Should the timeline ever leave such an increment before a known interval, it goes to a
piece of its own, state UNKNOWN, reason "unattributed", duration 0.) A piece's stop reason is None unless its state
is STOPPED.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from api.core.counters import COUNTERS, Anomaly, CounterLimits
from api.core.timeline import (
    DARK_STATUSES,
    FOREVER_MS,
    SHAPING_SIGNALS,
    UNKNOWN,
    Increment,
    Interval,
    SampleIn,
    StatusEvent,
    StatusIn,
    Timeline,
    classify,
    cut,
    merge,
)

HOUR_MS = 3_600_000
MIN_CONTEXT_MS = 600_000  # 10 min: the longest microstop threshold a loss map may set
STOPPED = "STOPPED"
UNATTRIBUTED = "unattributed"
# The signals whose newest sample before an hour's context enters its classification (api.core.timeline: then
# every value, and when it lapses, is known from the context's start on).
BASELINE_SIGNALS: tuple[str, ...] = (*SHAPING_SIGNALS, *COUNTERS)


def context_ms(max_gap_ms: int) -> int:
    """How far around an hour its classification looks."""
    return max(max_gap_ms, MIN_CONTEXT_MS)


def hour_of(ts_ms: int) -> int:
    """Start of the UTC hour holding ts_ms."""
    return ts_ms - ts_ms % HOUR_MS


@dataclass(frozen=True, slots=True)
class Piece:
    """Time of one machine in one uniform stretch with one set of signals, and what it produced there."""

    machine: str
    at_ms: int  # start of the uniform stretch this piece lies in: its hour's start or a boundary inside the hour
    state: str  # OFF, IDLE, SETUP, RUNNING, STOPPED, MAINTENANCE or UNKNOWN
    reason: str | None  # why UNKNOWN (silence, unreachable, agent-offline, outbox-loss, no-data); None when known
    badge: int  # 0: nobody logged in
    job: str | None
    stop_reason: int | None
    stop_ms: int  # STOPPED: length of the whole stop this time belongs to, as far as the context shows; else 0
    duration_ms: int
    good: int = 0
    reject: int = 0
    kwh: float = 0.0
    opens: int = 0  # sessions (runs of one non-zero badge) that begin in this piece

    @property
    def known(self) -> bool:
        """Whether the state is known (not UNKNOWN)."""
        return self.state != UNKNOWN

    @property
    def produced(self) -> int:
        """Good plus reject parts."""
        return self.good + self.reject


@dataclass(frozen=True, slots=True)
class HourSummary:
    """Everything one machine's closed hour contributes to any figure: what a roll-up stores."""

    machine: str
    hour_ms: int
    pieces: tuple[Piece, ...]
    anomalies: tuple[Anomaly, ...] = ()


@dataclass(frozen=True, slots=True)
class StopSpan:
    """STOPPED time [start_ms, end_ms) inside one hour, and the length of the whole stop it belongs to."""

    start_ms: int
    end_ms: int
    stop_ms: int


@dataclass(frozen=True, slots=True)
class HourlyTimeline(Timeline):
    """A timeline classified hour by hour (block-local), with what each hour's classification saw around it.

    stops: the STOPPED time of the window, in time order, each part with its whole stop's length.
    opens: the instants in the window where a session begins, ascending.
    """

    stops: tuple[StopSpan, ...] = field(default=())
    opens: tuple[int, ...] = field(default=())


# --- block-local classification ------------------------------------------------------------------------------------


def _dedupe(samples: Iterable[SampleIn]) -> list[SampleIn]:
    # As classify does: sorted by time, of two samples with one timestamp the later one given wins.
    ordered = list(samples)
    if all(a[0] < b[0] for a, b in itertools.pairwise(ordered)):
        return ordered
    by_ts: dict[int, SampleIn] = {}
    for ts, values in ordered:
        by_ts[ts] = (ts, values)
    return [by_ts[ts] for ts in sorted(by_ts)]


def _status_ts(event: object) -> int:
    ts = event[0] if isinstance(event, tuple) and event else getattr(event, "ts_ms", None)
    if not isinstance(ts, int) or isinstance(ts, bool):
        raise TypeError(f"status {event!r}: needs an integer time (ts_ms)")
    return ts


def _status_source(event: StatusIn) -> tuple[str, str | None]:
    # Statuses of one source replace each other: the machine's status (whichever agent reported it), each agent's.
    if isinstance(event, StatusEvent) and event.kind == "agent":
        return ("agent", event.agent)
    return ("machine", None)


def _status(event: StatusIn) -> str:
    return event.status if isinstance(event, StatusEvent) else event[1]


def _dark(event: StatusIn) -> bool:
    return _status(event) in DARK_STATUSES


def _until(event: StatusIn) -> int | None:
    return event.until_ms if isinstance(event, StatusEvent) else None


class _Statuses:
    """Statuses in time order, to hand each hour those in its context and those before it that still shape it."""

    def __init__(self, statuses: Iterable[StatusIn]) -> None:
        indexed = sorted(enumerate(statuses), key=lambda ie: (_status_ts(ie[1]), ie[0]))
        self.events = [e for _, e in indexed]
        self.times = [_status_ts(e) for e in self.events]
        newest: dict[tuple[str, str | None], list[int]] = {}
        dark: dict[tuple[str, str | None, str], list[int]] = {}
        for index, event in enumerate(self.events):
            newest.setdefault(_status_source(event), []).append(index)
            if _dark(event):
                dark.setdefault((*_status_source(event), _status(event)), []).append(index)
        self.lists = [*newest.values(), *dark.values()]
        # Outbox losses by their end: the ones reaching into a context are found without scanning them all.
        self.losses = sorted((until, i) for i, e in enumerate(self.events) if (until := _until(e)) is not None)

    def around(self, lo: int, hi: int, settled_ms: int | None) -> list[StatusIn]:
        """The statuses with lo <= ts <= hi, after those before lo that shape it, in time order.

        Before lo: of each source (the machine, each agent) the newest status and the newest of each dark status,
        and every outbox loss lasting until settled_ms or later (a loss lasts until the first sample after its
        until_ms; settled_ms, the newest sample before lo the classification sees, ends every loss before it; None:
        there is none).
        """
        first = bisect.bisect_left(self.times, lo)
        last = bisect.bisect_right(self.times, hi)
        before: set[int] = set()
        for indices in self.lists:
            k = bisect.bisect_left(indices, first) - 1
            if k >= 0:
                before.add(indices[k])
        since = settled_ms if settled_ms is not None else -FOREVER_MS
        for _until_ms, index in self.losses[bisect.bisect_left(self.losses, (since, -1)) :]:
            if index < first:
                before.add(index)
        return [self.events[i] for i in sorted(before)] + self.events[first:last]


class _Baselines:
    """Find, for hour after hour, the newest sample before the context holding each baseline signal.

    Contexts only move forward, so each search looks back only over the samples since the previous one's context
    start (a signal every sample carries is found at once); what it does not find there the previous result knows.
    """

    def __init__(self, ordered: Sequence[SampleIn]) -> None:
        self.ordered = ordered
        self.since = 0  # the previous search's first index
        self.newest: dict[str, int] = {}  # signal -> index of its newest sample before self.since

    def before(self, first: int) -> list[SampleIn]:
        """The baselines before index first (first never decreases), each as a sample holding only its signal."""
        ordered, since = self.ordered, self.since
        newest: dict[str, int] = {}
        for signal in BASELINE_SIGNALS:
            i = first - 1
            while i >= since and signal not in ordered[i][1]:
                i -= 1
            if i >= since:
                newest[signal] = i
            elif signal in self.newest:
                newest[signal] = self.newest[signal]
        self.since, self.newest = max(first, since), newest
        by_ts: dict[int, dict[str, object]] = {}
        for signal, index in newest.items():
            ts, values = ordered[index]
            by_ts.setdefault(ts, {})[signal] = values[signal]
        return [(ts, by_ts[ts]) for ts in sorted(by_ts)]


def _stop_spans(intervals: Sequence[Interval], lo: int, hi: int) -> list[StopSpan]:
    """The STOPPED time in [lo, hi), each part with the length of its whole run of STOPPED as classified."""
    out: list[StopSpan] = []
    run_start = run_end = 0
    running = False
    for interval in [*intervals, None]:
        if interval is not None and interval.state == STOPPED and running and run_end == interval.start_ms:
            run_end = interval.end_ms
            continue
        if running and run_start < hi and run_end > lo:
            out.append(StopSpan(max(run_start, lo), min(run_end, hi), run_end - run_start))
        running = interval is not None and interval.state == STOPPED
        if interval is not None and running:
            run_start, run_end = interval.start_ms, interval.end_ms
    return out


def _opens(intervals: Sequence[Interval], lo: int, hi: int) -> list[int]:
    """The instants in [lo, hi) where a run of one non-zero badge (a session) begins."""
    out: list[int] = []
    previous: Interval | None = None
    for interval in intervals:
        if interval.known and interval.badge != 0 and lo <= interval.start_ms < hi:
            continues = (
                previous is not None
                and previous.end_ms == interval.start_ms
                and previous.known
                and previous.badge == interval.badge
            )
            if not continues:
                out.append(interval.start_ms)
        previous = interval
    return out


def hour_timelines(
    samples: Sequence[SampleIn],
    statuses: Sequence[StatusIn],
    start_ms: int,
    end_ms: int,
    max_gap_ms: int | Callable[[int], int],
    limits: CounterLimits | None = None,
) -> HourlyTimeline:
    """Classify each UTC hour touching [start_ms, end_ms) block-locally and join the hours into one timeline.

    max_gap_ms: the silence allowance, or a function of an hour's start giving that hour's (the heartbeat the agent
    reported by the hour's end: each hour is classified as a query of just that hour would classify it).

    Give everything from a fetch start F <= hour_of(start_ms) - context_ms(max_gap_ms) through the last hour's end
    plus the context: the samples (ts_ms, values) from F, after the newest sample before F holding each of
    BASELINE_SIGNALS (store.last_before); the statuses (as classify takes them) from F, after, of each source, the
    newest status before F and the newest of each dark status, and every outbox loss with until_ms at or after the
    newest of those baseline samples (all of them if there is none). More is harmless: each hour takes from them
    what its rule says, so the result does not depend on F.
    """
    if end_ms <= start_ms:
        raise ValueError(f"window end {end_ms} must be after its start {start_ms}")
    gap_of = max_gap_ms if callable(max_gap_ms) else (lambda _hour, gap=max_gap_ms: gap)
    ordered = _dedupe(samples)
    times = [ts for ts, _ in ordered]
    # "Holds it" as the store's last_before means it: the signal is in the sample (a reading the counter then
    # refuses is no baseline, from either source alike).
    finder = _Baselines(ordered)
    events = _Statuses(statuses)
    intervals: list[Interval] = []
    increments: list[Increment] = []
    anomalies: list[Anomaly] = []
    stops: list[StopSpan] = []
    opens: list[int] = []
    for hour in range(hour_of(start_ms), end_ms, HOUR_MS):
        gap = gap_of(hour)
        if gap <= 0:
            raise ValueError(f"max_gap_ms must be positive, got {gap} for the hour at {hour}")
        ctx = context_ms(gap)
        lo, hi = hour - ctx, hour + HOUR_MS + ctx
        first, last = bisect.bisect_left(times, lo), bisect.bisect_right(times, hi)
        if first < finder.since:  # a longer allowance than the previous hour's reaches further back: search anew
            finder = _Baselines(ordered)
        baselines = finder.before(first)
        settled = baselines[-1][0] if baselines else None
        classified = classify([*baselines, *ordered[first:last]], events.around(lo, hi, settled), gap, limits)
        a, b = max(hour, start_ms), min(hour + HOUR_MS, end_ms)
        part = cut(classified, a, b)
        intervals.extend(part.intervals)
        increments.extend(part.increments)
        anomalies.extend(part.anomalies)
        stops.extend(_stop_spans(classified.intervals, a, b))
        opens.extend(_opens(classified.intervals, a, b))
    return HourlyTimeline(
        start_ms=start_ms,
        end_ms=end_ms,
        intervals=tuple(merge(intervals)),
        increments=tuple(increments),
        anomalies=tuple(anomalies),
        stops=tuple(stops),
        opens=tuple(opens),
    )


def clip(timeline: Timeline, start_ms: int, end_ms: int) -> HourlyTimeline:
    """Cut a timeline to [start_ms, end_ms), keeping what its classification saw (stop lengths, session starts).

    A plain Timeline's stop lengths and session starts are taken from the timeline itself, before the cut.
    """
    stops, opens = marks(timeline)
    part = cut(timeline, start_ms, end_ms)
    return HourlyTimeline(
        start_ms=part.start_ms,
        end_ms=part.end_ms,
        intervals=part.intervals,
        increments=part.increments,
        anomalies=part.anomalies,
        stops=tuple(
            StopSpan(max(s.start_ms, start_ms), min(s.end_ms, end_ms), s.stop_ms)
            for s in stops
            if s.start_ms < end_ms and s.end_ms > start_ms
        ),
        opens=tuple(t for t in opens if start_ms <= t < end_ms),
    )


def marks(timeline: Timeline) -> tuple[tuple[StopSpan, ...], tuple[int, ...]]:
    """Return a timeline's stop spans and session starts (a plain Timeline's as its own intervals show them)."""
    if isinstance(timeline, HourlyTimeline):
        return timeline.stops, timeline.opens
    lo, hi = timeline.start_ms, timeline.end_ms
    return tuple(_stop_spans(timeline.intervals, lo, hi)), tuple(_opens(timeline.intervals, lo, hi))


# --- pieces --------------------------------------------------------------------------------------------------------

PieceKey = tuple[str, str | None, int, str | None, int | None, int]  # state, reason, badge, job, stop reason, stop
_UNATTRIBUTED_KEY: PieceKey = (UNKNOWN, UNATTRIBUTED, 0, None, None, 0)


def _edges(start_ms: int, end_ms: int, cuts: Iterable[int]) -> list[int]:
    first_hour = hour_of(start_ms) + (HOUR_MS if start_ms % HOUR_MS else 0)
    inner = {c for c in cuts if start_ms < c < end_ms}
    return sorted({start_ms, end_ms, *range(first_hour, end_ms, HOUR_MS), *inner})


def _key(interval: Interval, stop_ms: int) -> PieceKey:
    stopped = interval.state == STOPPED
    return (
        interval.state,
        interval.reason,
        interval.badge,
        interval.job,
        # Only STOPPED time has a stop reason: a register still holding the last one while running splits nothing.
        interval.stop_reason if stopped else None,
        stop_ms,
    )


class _Stops:
    """Stop spans in time order, to look up the stop length at an instant or over a stretch."""

    def __init__(self, spans: Sequence[StopSpan]) -> None:
        self.spans = sorted(spans, key=lambda s: s.start_ms)
        self.starts = [s.start_ms for s in self.spans]

    def parts(self, lo: int, hi: int) -> list[tuple[int, int, int]]:
        """Split STOPPED time [lo, hi) by the spans over it: (start, end, stop length) each."""
        out: list[tuple[int, int, int]] = []
        cursor = lo
        k = max(0, bisect.bisect_right(self.starts, lo) - 1)
        while cursor < hi and k < len(self.spans):
            span = self.spans[k]
            k += 1
            if span.end_ms <= cursor:
                continue
            if span.start_ms >= hi:
                break
            if span.start_ms > cursor:  # not covered by a span: not expected; its own length stands in
                out.append((cursor, span.start_ms, span.start_ms - cursor))
                cursor = span.start_ms
            end = min(span.end_ms, hi)
            out.append((cursor, end, span.stop_ms))
            cursor = end
        if cursor < hi:
            out.append((cursor, hi, hi - cursor))
        return out

    def span(self, ts: int) -> StopSpan | None:
        """The span holding instant ts, if any."""
        k = bisect.bisect_right(self.starts, ts) - 1
        if k >= 0 and self.spans[k].start_ms <= ts < self.spans[k].end_ms:
            return self.spans[k]
        return None


def pieces(timeline: Timeline, machine: str, cuts: Iterable[int] = ()) -> list[Piece]:
    """Cut a timeline at hour starts and at cuts (calendar boundaries, window edges) and sum each stretch by key.

    Pieces come in time order of their stretches; within one, in the order their keys first hold.
    """
    start, end = timeline.start_ms, timeline.end_ms
    if end <= start:
        return []
    edges = _edges(start, end, cuts)
    spans, opens = marks(timeline)
    stops = _Stops(spans)
    intervals = timeline.intervals
    acc: dict[tuple[int, PieceKey], list[Any]] = {}  # (stretch, key) -> [duration, good, reject, kwh, opens]

    def slot(stretch: int, key: PieceKey) -> list[Any]:
        entry = acc.get((stretch, key))
        if entry is None:
            entry = acc[(stretch, key)] = [0, 0, 0, 0.0, 0]
        return entry

    stretch = 0
    for interval in intervals:
        lo, hi = max(interval.start_ms, start), min(interval.end_ms, end)
        while lo < hi:
            while edges[stretch + 1] <= lo:
                stretch += 1
            upto = min(hi, edges[stretch + 1])
            if interval.state == STOPPED:
                for a, b, stop_ms in stops.parts(lo, upto):
                    slot(stretch, _key(interval, stop_ms))[0] += b - a
            else:
                slot(stretch, _key(interval, 0))[0] += upto - lo
            lo = upto
    starts = [i.start_ms for i in intervals]

    def locate(ts: int) -> tuple[PieceKey | None, int, int]:
        """The key of the interval holding instant ts, and the range [lo, hi) around ts where that key holds."""
        k = bisect.bisect_right(starts, ts) - 1
        if k < 0 or not intervals[k].start_ms <= ts < intervals[k].end_ms:
            return None, ts, ts + 1
        interval = intervals[k]
        lo, hi = interval.start_ms, interval.end_ms
        if interval.state != STOPPED:
            return _key(interval, 0), lo, hi
        span = stops.span(ts)
        if span is None:
            return _key(interval, 0), ts, ts + 1
        return _key(interval, span.stop_ms), max(lo, span.start_ms), min(hi, span.end_ms)

    # Increments come in time order and mostly many to one interval: the stretch, key and slot of the previous one
    # are reused while its ts lies in the same (lo, hi] (that stretch, and ts - 1 in that key's range).
    last = len(edges) - 1
    lo = hi = 0
    entry: list[Any] | None = None
    unowned: list[Any] | None = None
    key: PieceKey | None = None
    k = 0
    for increment in timeline.increments:
        ts = increment.ts_ms
        if not lo < ts <= hi:
            k = bisect.bisect_left(edges, ts) - 1  # edges[k] < ts <= edges[k + 1]
            if not 0 <= k < last:
                lo = hi = 0
                continue
            key, held_lo, held_hi = locate(ts - 1)
            lo, hi = max(edges[k], held_lo), min(edges[k + 1], held_hi)
            entry = slot(k, key) if key is not None else None
            unowned = None
        if key is None or (increment.owner is None and key[0] != UNKNOWN):
            if unowned is None:
                unowned = slot(k, _UNATTRIBUTED_KEY)
            target = unowned
        else:
            assert entry is not None
            target = entry
        counts = increment.counts
        target[1] += counts.good
        target[2] += counts.reject
        target[3] += counts.kwh
    for ts in opens:
        k = bisect.bisect_right(edges, ts) - 1
        key = locate(ts)[0]
        if key is not None and 0 <= k < last:
            slot(k, key)[4] += 1
    ordered = sorted(acc.items(), key=lambda item: item[0][0])  # stable: keys within a stretch keep their order
    return [
        Piece(machine, edges[k], *key, duration_ms=d, good=g, reject=r, kwh=kwh, opens=n)
        for (k, key), (d, g, r, kwh, n) in ordered
    ]


def hour_summary(timeline: Timeline, machine: str, hour_ms: int) -> HourSummary:
    """Summarise one closed hour of a block-local timeline (hour_timelines over a window holding the hour)."""
    if hour_ms % HOUR_MS:
        raise ValueError(f"hour {hour_ms} is not the start of a UTC hour")
    if not timeline.start_ms <= hour_ms <= timeline.end_ms - HOUR_MS:
        raise ValueError(f"hour {hour_ms} is not wholly inside the timeline [{timeline.start_ms}, {timeline.end_ms})")
    part = clip(timeline, hour_ms, hour_ms + HOUR_MS)
    return HourSummary(machine, hour_ms, tuple(pieces(part, machine)), part.anomalies)


def hour_summaries(timeline: Timeline, machine: str) -> list[HourSummary]:
    """Summarise every whole UTC hour of a block-local timeline."""
    first = hour_of(timeline.start_ms) + (HOUR_MS if timeline.start_ms % HOUR_MS else 0)
    return [hour_summary(timeline, machine, h) for h in range(first, timeline.end_ms - HOUR_MS + 1, HOUR_MS)]
