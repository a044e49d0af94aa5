"""Samples and statuses -> a piecewise-constant timeline per machine, UNKNOWN (with its reason) where data is missing.

Rules (DESIGN.md, Analytics). Samples are reported by exception: a sample carries the signals that changed, and every
signal at least once per heartbeat.
- A value of state, badge, job or stop reason holds from its sample until the next value of that signal, but never
  longer than ``max_gap_ms`` (the heartbeat allowance) after it. A sample without that signal still proves the link
  alive and the other values keep holding; once a value is older than ``max_gap_ms`` the time is UNKNOWN
  (``silence``) until the signal reports again. Time past every value's allowance (nothing arrives) is silence too.
- Which values must hold: the state always; badge, job and stop reason from their first value on (a machine whose
  profile has no job register never sends one).
- A machine status ``unreachable`` makes the time from it until the next sample UNKNOWN (``unreachable``); an agent's
  own status ``offline`` (a ``StatusEvent`` of kind "agent": a clean stop or its last will; a machine status
  ``offline`` too) makes it ``agent-offline``. An ``online`` status ends neither: only a sample does. A status at a
  sample's own timestamp comes before that sample.
- An outbox loss (a machine status ``unreachable`` with ``until_ms``, the last dropped sample's ts) makes
  [ts_ms, first sample after until_ms) UNKNOWN (``outbox-loss``), stored samples inside included: their values
  still carry forward and their counter increments still count (unattributed, by the rule below).
- A sample with an invalid state makes its own stretch UNKNOWN (``no-data``); so is the time before the first sample
  or status, time while no state has come yet, and what a cut window holds that the timeline does not cover.
- Where reasons overlap the strongest is reported: outbox-loss > agent-offline > unreachable > silence > no-data.
  A stated fact beats an inference, and the broader outage beats the narrower (with the agent gone, nobody watches
  the PLC). Within one gap between samples a reason, once in force, holds until the next sample.
- Adjacent intervals with equal (state, badge, job, stop_reason, reason) merge.
- The whole fetched data is classified first (``classify``), then cut to the window (``cut``), so a result never
  depends on the query window. The classified timeline is open-ended: what holds after the last sample (silence, or
  the status in force) holds until ``FOREVER_MS``, as a later sample would show it.
- What to fetch for a window [start, end) so that it is classified exactly as from all data: the samples from
  start - max_gap_ms (the look-back) through end; before the look-back, the newest sample holding each of
  SHAPING_SIGNALS and each counter, and the newest sample of all (at t); the statuses after t through end (machine
  and agent); and every outbox loss with ts <= t and until >= t (still open at t).

Counter increments (see ``Increment``): the increment of a cumulative counter observed at sample i happened while
the interval of sample i-1 held, so it belongs to that interval (its badge, state and job). It counts in a window
when sample i's timestamp is in (start, end]. If the interval of sample i-1 does not reach sample i (an UNKNOWN gap
lies between them: too long a silence, PLC unreachable, agent offline, outbox loss) the parts were still really
made, but nobody can say by whom: the increment is kept with ``owner=None`` ("unattributed"), counts in the
machine's totals and in no session, so nothing is silently lost.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Literal

from api.core.counters import Anomaly, CounterLimits, CounterTracker, Counts

UNKNOWN = "UNKNOWN"
_STATES = frozenset({"OFF", "IDLE", "SETUP", "RUNNING", "STOPPED", "MAINTENANCE"})
# Link statuses after which nothing is known until the next sample.
DARK_STATUSES = frozenset({"unreachable", "offline"})

# Why the state is UNKNOWN, weakest first: where several reasons apply, the strongest is reported.
NO_DATA = "no-data"
SILENCE = "silence"
UNREACHABLE = "unreachable"
AGENT_OFFLINE = "agent-offline"
OUTBOX_LOSS = "outbox-loss"
REASONS = (NO_DATA, SILENCE, UNREACHABLE, AGENT_OFFLINE, OUTBOX_LOSS)
_NO_DATA, _SILENCE, _UNREACHABLE, _AGENT_OFFLINE, _OUTBOX_LOSS = range(len(REASONS))
# Where a classified timeline ends: what holds after the last sample holds until a later sample says otherwise.
FOREVER_MS = 2**63 - 1
_NEVER = -FOREVER_MS
# The signals that shape intervals (the state must always hold, the others once they appear): a fetch needs each
# one's newest sample before its look-back.
SHAPING_SIGNALS = ("state", "badge", "job", "stop_reason")

StatusKind = Literal["machine", "agent"]


@dataclass(frozen=True, slots=True)
class Interval:
    """A stretch [start_ms, end_ms) in which a machine's state, badge, job and stop reason were constant.

    reason: why the state is UNKNOWN (one of REASONS); None when the state is known (an UNKNOWN interval made
    without one counts as no-data).
    """

    start_ms: int
    end_ms: int
    state: str = UNKNOWN
    badge: int = 0
    job: str | None = None
    stop_reason: int | None = None
    reason: str | None = None

    @property
    def known(self) -> bool:
        """Whether the state is known (not UNKNOWN)."""
        return self.state != UNKNOWN

    @property
    def duration_ms(self) -> int:
        """Length of the interval in ms."""
        return self.end_ms - self.start_ms

    @property
    def key(self) -> tuple[str, int, str | None, int | None, str | None]:
        """What must be equal for two adjacent intervals to merge."""
        return (self.state, self.badge, self.job, self.stop_reason, self.reason)


@dataclass(frozen=True, slots=True)
class StatusEvent:
    """A stored link status: of the machine (its agent's view of the PLC) or of the agent serving it.

    until_ms: on a machine status ``unreachable``, an outbox loss up to this ts (the last dropped sample's);
    ignored on any other status. An until_ms before ts_ms counts as ts_ms.
    agent: the agent that reported it (for callers that sort statuses by source; classify does not read it).
    """

    ts_ms: int
    kind: StatusKind
    status: str
    until_ms: int | None = None
    agent: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("machine", "agent"):
            raise ValueError(f"status kind must be 'machine' or 'agent', got {self.kind!r}")

    @classmethod
    def from_fields(
        cls, ts_ms: int, kind: StatusKind, fields: Mapping[str, object], agent: str | None = None
    ) -> StatusEvent:
        """Build the event of a stored status row from its fields (status, until, agent; others are ignored).

        agent: the agent where the row holds it as a tag, not a field (agent statuses); else fields' agent.
        """
        until, reported = fields.get("until"), fields.get("agent")
        return cls(
            ts_ms,
            kind,
            str(fields.get("status", "")),
            until if isinstance(until, int) and not isinstance(until, bool) else None,
            agent if agent is not None else reported if isinstance(reported, str) else None,
        )


SampleIn = tuple[int, Mapping[str, object]]
# A StatusEvent, or (ts_ms, status) of a machine status as callers passed before StatusEvent existed.
StatusIn = StatusEvent | tuple[int, str]


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

    def unknown_by_reason(self) -> dict[str, int]:
        """Time with an UNKNOWN state per reason in ms: every reason of REASONS, weakest first, zero where none."""
        out = dict.fromkeys(REASONS, 0)
        for interval in self.intervals:
            if not interval.known:
                reason = interval.reason or NO_DATA
                out[reason] = out.get(reason, 0) + interval.duration_ms
        return out

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


Key = tuple[str, int, str | None, int | None, str | None]
# The key of an UNKNOWN stretch per reason rank.
_UNKNOWN_KEYS: tuple[Key, ...] = tuple((UNKNOWN, 0, None, None, reason) for reason in REASONS)
_ABSENT = object()
_COUNTS_KEPT = 4096  # distinct increments classify remembers (energy readings keep making new ones)


def _key(state: object, badge: object, job: object, stop_reason: object) -> Key:
    """Return the key of an interval whose signals hold these raw values (no-data if the state is not valid)."""
    known = _state(state)
    if known == UNKNOWN:
        return _UNKNOWN_KEYS[_NO_DATA]
    # An empty job register means no job.
    return (known, _int(badge) or 0, job if isinstance(job, str) and job else None, _int(stop_reason), None)


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Merge touching intervals with equal (state, badge, job, stop_reason, reason); drop empty ones."""
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


def _events(statuses: Iterable[StatusIn]) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Split statuses into dark events (ts, reason rank) and outbox losses (ts, until), each sorted."""
    dark: list[tuple[int, int]] = []
    losses: list[tuple[int, int]] = []
    for status in statuses:
        if isinstance(status, StatusEvent):
            ts, kind, value, until = status.ts_ms, status.kind, status.status, status.until_ms
        else:
            (ts, value), kind, until = status, "machine", None
        if value not in DARK_STATUSES:
            continue
        if kind == "agent" or value == "offline":
            dark.append((ts, _AGENT_OFFLINE))
        elif until is not None:
            losses.append((ts, max(ts, until)))
        else:
            dark.append((ts, _UNREACHABLE))
    dark.sort()
    losses.sort()
    return dark, losses


def _gap(
    start: int, end: int, rank: int, dark: Sequence[tuple[int, int]], j: int, losses: Sequence[tuple[int, int]], k: int
) -> list[tuple[int, int, Key]]:
    """Cover [start, end) with UNKNOWN pieces: reason rank from start on, raised by each dark[j:] and losses[k:]
    event before end (none of them lies before start)."""
    pieces: list[tuple[int, int, Key]] = []
    cursor = start
    n_dark, n_loss = len(dark), len(losses)
    while True:
        at_dark = dark[j][0] if j < n_dark else FOREVER_MS
        at_loss = losses[k][0] if k < n_loss else FOREVER_MS
        if at_dark <= at_loss:
            at = at_dark
            if at >= end:
                break
            raised = dark[j][1]
            j += 1
        else:
            at = at_loss
            if at >= end:
                break
            raised = _OUTBOX_LOSS
            k += 1
        if at > cursor:
            pieces.append((cursor, at, _UNKNOWN_KEYS[rank]))
            cursor = at
        if raised > rank:
            rank = raised
    if cursor < end:
        pieces.append((cursor, end, _UNKNOWN_KEYS[rank]))
    return pieces


# A frozen dataclass's __init__ sets each field through object.__setattr__: with an owner Interval and an Increment
# per sample that carries a counter, that was a fifth of classification's time. _owned builds the same objects
# (equal, immutable, no __post_init__ to skip) by setting their slots directly, in half the time.
_new = object.__new__
_SET_INTERVAL = tuple(getattr(Interval, f.name).__set__ for f in fields(Interval))
_SET_INCREMENT = tuple(getattr(Increment, f.name).__set__ for f in fields(Increment))
assert [f.name for f in fields(Interval)] == ["start_ms", "end_ms", "state", "badge", "job", "stop_reason", "reason"]
assert [f.name for f in fields(Increment)] == ["ts_ms", "counts", "owner"]


def _owned(ts: int, counts: Counts, start: int, end: int, key: Key) -> Increment:
    """Increment(ts, counts, Interval(start, end, *key)), built slot by slot."""
    owner = _new(Interval)
    set_start, set_end, set_state, set_badge, set_job, set_stop, set_reason = _SET_INTERVAL
    set_start(owner, start)
    set_end(owner, end)
    set_state(owner, key[0])
    set_badge(owner, key[1])
    set_job(owner, key[2])
    set_stop(owner, key[3])
    set_reason(owner, key[4])
    increment = _new(Increment)
    set_ts, set_counts, set_owner = _SET_INCREMENT
    set_ts(increment, ts)
    set_counts(increment, counts)
    set_owner(increment, owner)
    return increment


def classify(
    samples: Iterable[SampleIn],
    statuses: Iterable[StatusIn],
    max_gap_ms: int,
    limits: CounterLimits | None = None,
) -> Timeline:
    """Classify all fetched samples and statuses into intervals and attributed increments, open-ended.

    The timeline runs from the first sample or status to FOREVER_MS (see the module docstring); cut it to a window.
    limits: the machine's counter limits (default: CounterLimits(), generous ceilings); a rise beyond them is an
    anomaly, reported and not counted.
    """
    if max_gap_ms <= 0:
        raise ValueError(f"max_gap_ms must be positive, got {max_gap_ms}")
    ordered = _dedupe(samples)
    dark, losses = _events(statuses)
    if not ordered and not dark and not losses:
        return Timeline(0, 0, ())
    n_dark, n_loss = len(dark), len(losses)
    count = len(ordered)
    out: list[Interval] = []
    run_start = run_end = 0
    run_key: Key | None = None  # None: no run open yet
    # Before the first sample: from the first status on, what the statuses say (nothing ends them).
    first = ordered[0][0] if ordered else FOREVER_MS
    head = min(dark[0][0] if dark else FOREVER_MS, losses[0][0] if losses else FOREVER_MS)
    pieces = _gap(head, first, _NO_DATA, dark, 0, losses, 0) if head < first else []
    for piece_start, piece_end, piece_key in pieces:
        if run_key == piece_key:
            run_end = piece_end
        else:
            if run_key is not None:
                out.append(Interval(run_start, run_end, *run_key))
            run_start, run_end, run_key = piece_start, piece_end, piece_key
    # This loop runs once per raw sample: it builds merged intervals directly (one open run) instead of an
    # Interval per sample, and an owner Interval only for samples with an increment. Pieces are contiguous, so a
    # piece extends the open run exactly when their keys are equal. Statuses are looked at only when the next
    # one is due (next_event); a sample whose values hold until the next sample takes the short path.
    increments: list[Increment] = []
    tracker = CounterTracker(limits)
    step = tracker.step_raw
    state: object = None
    badge: object = None
    job: object = None
    stop_reason: object = None
    # When each signal last had a value. The state must always hold; the others hold nothing (and never lapse)
    # until their first value.
    seen_state = _NEVER
    seen_badge = seen_job = seen_stop = FOREVER_MS
    expiry = _NEVER  # when the oldest held value lapses
    key: Key = _UNKNOWN_KEYS[_NO_DATA]
    keys: dict[tuple[object, ...], Key] = {}
    next_dark = next_loss = 0  # the first status after the current sample, of each kind
    loss_until = _NEVER  # samples up to here are inside an outbox loss that began at or before the current sample
    next_event = _NEVER  # the first status after the current sample (_NEVER: not looked up yet)
    prev_start = prev_end = 0  # the known stretch of the previous sample
    prev_key: Key | None = None
    found = tracker.anomalies  # the tracker appends to it; each new one learns whose session it fell in
    n_found = 0
    # Increments repeat (a part, a hundredth of a kWh): one Counts per distinct value, shared (it is immutable).
    counts_of: dict[tuple[int, int, float], Counts] = {}
    for index in range(count):
        ts, values = ordered[index]
        stepped = step(values, ts)
        good, reject, kwh = stepped
        if len(found) != n_found:
            # The reading happened in the interval of the previous sample, as an increment would: its badge (None
            # when that interval is UNKNOWN or does not reach the reading).
            badge = prev_key[1] if prev_key is not None and prev_key[0] != UNKNOWN and prev_end == ts else None
            found[n_found:] = [replace(a, badge=badge) for a in found[n_found:]]
            n_found = len(found)
        if prev_key is not None and not (good == 0 and reject == 0 and kwh == 0):
            counts = counts_of.get(stepped)
            if counts is None:
                if len(counts_of) >= _COUNTS_KEPT:
                    counts_of.clear()
                counts = counts_of[stepped] = Counts(good, reject, kwh)
            if prev_key[0] != UNKNOWN and prev_end == ts:
                increments.append(_owned(ts, counts, prev_start, prev_end, prev_key))
            else:
                increments.append(Increment(ts, counts, None))
        # A missing signal keeps its previous value; only these four shape intervals.
        changed = False
        value = values.get("state", _ABSENT)
        if value is not _ABSENT:
            state, seen_state, changed = value, ts, True
        value = values.get("badge", _ABSENT)
        if value is not _ABSENT:
            badge, seen_badge, changed = value, ts, True
        value = values.get("job", _ABSENT)
        if value is not _ABSENT:
            job, seen_job, changed = value, ts, True
        value = values.get("stop_reason", _ABSENT)
        if value is not _ABSENT:
            stop_reason, seen_stop, changed = value, ts, True
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
            expiry = min(seen_state, seen_badge, seen_job, seen_stop) + max_gap_ms
        following = ordered[index + 1][0] if index + 1 < count else FOREVER_MS
        if next_event <= ts:
            while next_dark < n_dark and dark[next_dark][0] <= ts:
                next_dark += 1
            while next_loss < n_loss and losses[next_loss][0] <= ts:
                loss_until = max(loss_until, losses[next_loss][1])
                next_loss += 1
            next_event = min(
                dark[next_dark][0] if next_dark < n_dark else FOREVER_MS,
                losses[next_loss][0] if next_loss < n_loss else FOREVER_MS,
            )
        if ts > loss_until:
            end = expiry if expiry < following else following
            if next_event < end:
                end = next_event
            if end == following:  # the values hold until the next sample
                prev_start, prev_end, prev_key = ts, end, key
                if run_key == key:
                    run_end = end
                else:
                    if run_key is not None:
                        out.append(Interval(run_start, run_end, *run_key))
                    run_start, run_end, run_key = ts, end, key
                continue
            end = max(end, ts)  # a value lapsed before this sample: nothing of it holds
            # Silence once a value lapsed; while no state ever came, there is no data to lapse.
            rank = _SILENCE if seen_state != _NEVER else _NO_DATA
        else:
            end, rank = ts, _OUTBOX_LOSS
        # The known stretch [ts, end), then UNKNOWN until the next sample.
        prev_start, prev_end, prev_key = ts, end, key
        pieces = _gap(end, following, rank, dark, next_dark, losses, next_loss)
        if end > ts:
            pieces.insert(0, (ts, end, key))
        for piece_start, piece_end, piece_key in pieces:
            if run_key == piece_key:
                run_end = piece_end
            else:
                if run_key is not None:
                    out.append(Interval(run_start, run_end, *run_key))
                run_start, run_end, run_key = piece_start, piece_end, piece_key
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
    """Cut a timeline to [start_ms, end_ms): clip intervals, fill what it does not cover with UNKNOWN (no-data)."""
    if end_ms <= start_ms:
        raise ValueError(f"window end {end_ms} must be after its start {start_ms}")
    pieces: list[Interval] = []
    cursor = start_ms
    for interval in timeline.intervals:
        lo, hi = max(interval.start_ms, start_ms), min(interval.end_ms, end_ms)
        if lo >= hi:
            continue
        if lo > cursor:
            pieces.append(Interval(cursor, lo, reason=NO_DATA))
        # Intervals wholly inside the window are kept as they are (equal to a copy, and cheaper).
        whole = lo == interval.start_ms and hi == interval.end_ms
        pieces.append(interval if whole else replace(interval, start_ms=lo, end_ms=hi))
        cursor = hi
    if cursor < end_ms:
        pieces.append(Interval(cursor, end_ms, reason=NO_DATA))
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
    """Classify samples (ts_ms, values) and statuses in full, then cut to [start_ms, end_ms)."""
    return cut(classify(samples, statuses, max_gap_ms, limits), start_ms, end_ms)
