"""A site's shift calendar: planned busy time, what holds at an instant, and DST-correct local windows.

Pure (standard library only), so the analytics core and the simulator share it.

Wall-clock rule. Shift, break and day edges are local wall-clock times, turned into instants by one function,
local_ms(): a wall time that repeats (fall back) means its first occurrence; a wall time that does not exist
(spring forward) means the instant the clock jumps, the first instant after it that exists. The mapping never goes
backwards, so windows that do not overlap on the wall clock never overlap as instants, on any day. In
America/New_York a shift 01:30-03:30 is 1 h long on the spring-forward day (01:30 EST to 03:30 EDT, the skipped hour
is not worked) and 3 h long on the fall-back day (01:30 EDT to 03:30 EST, the hour the clock repeats is worked); a
site-local day is 23 h or 25 h long then, and a 24/7 calendar plans 23 h or 25 h.

Planned busy time (ISO 22400: PBT = planned operation time minus planned downtime) is shift time minus breaks, minus
shifts cancelled by a holiday (a holiday cancels the shifts that START on that local date), minus the machine's
planned downtime. A shift crossing midnight is one shift and belongs to the local day it starts on.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import re
import zoneinfo
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

WEEKDAY_NAMES: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
ALL_WEEKDAYS: frozenset[int] = frozenset(range(7))
ALWAYS_SHIFT = "all"  # the one shift of a calendar that configures none
MAX_REASON = 200
DEFAULT_REASON = "planned downtime"
DAY_S = 86_400
WEEK_S = 7 * DAY_S
# Instants the calendar works with: datetime's range, less two days either side for the day before and after.
MIN_MS = (datetime(1, 1, 3, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)
MAX_MS = (datetime(9999, 12, 29, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9-]{0,62}\Z")  # shopfloor.contracts.ID_PATTERN (this module stays pure)


def zone_of(name: str) -> zoneinfo.ZoneInfo:
    """Load an IANA time zone; raise ValueError naming it if there is no such zone."""
    shown = repr(name[:64] + "..." if isinstance(name, str) and len(name) > 64 else name)
    if not isinstance(name, str) or not name:
        raise ValueError(f"{shown} is not an IANA time zone (e.g. Asia/Jakarta)")
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(f"{shown} is not an IANA time zone (e.g. Asia/Jakarta)") from exc


def _check_ms(*values: int) -> None:
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"an instant must be epoch ms as int, not {value!r}")
        if not MIN_MS <= value <= MAX_MS:
            raise ValueError(f"instant {value} ms is outside the calendar's range (years 1..9999)")


def _to_ms(dt: datetime) -> int:
    return (dt - _EPOCH) // _MS


def _offset_at(zone: zoneinfo.ZoneInfo, ms: int) -> timedelta | None:
    return (_EPOCH + timedelta(milliseconds=ms)).astimezone(zone).utcoffset()


@functools.lru_cache(maxsize=16384)  # the same shift edges are asked for again and again (labels, roll-up hours)
def local_ms(zone: zoneinfo.ZoneInfo, wall: datetime) -> int:
    """Turn a naive local wall time into epoch ms: a repeated time's first occurrence, a skipped time's jump."""
    first = wall.replace(tzinfo=zone, fold=0)
    before, after = first.utcoffset(), first.replace(fold=1).utcoffset()
    if before is None or after is None or before >= after:
        return _to_ms(first)  # exists (fold=0 is the first of a repeated time)
    # Skipped: fold=0 reads it with the offset before the jump (an instant after the jump), fold=1 with the offset
    # after it (an instant before the jump). The jump lies between; find its first millisecond.
    lo, hi = _to_ms(first.replace(fold=1)), _to_ms(first)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset_at(zone, mid) == after:
            hi = mid
        else:
            lo = mid
    return hi


def _seconds(t: time) -> int:
    return (t.hour * 60 + t.minute) * 60 + t.second


def _wall(day: date, seconds: int) -> datetime:
    return datetime(day.year, day.month, day.day) + timedelta(seconds=seconds)


def _length_s(start: time, end: time) -> int:
    """Wall-clock length of start-end in seconds; end <= start crosses midnight (equal: 24 h)."""
    return (_seconds(end) - _seconds(start) - 1) % DAY_S + 1


def _clock(seconds: int) -> str:
    hours, rest = divmod(seconds % DAY_S, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}" + (f":{secs:02d}" if secs else "")


def _check_time(what: str, t: object) -> None:
    if not isinstance(t, time):
        raise TypeError(f"{what} must be a datetime.time, not {t!r}")
    if t.tzinfo is not None or t.microsecond:
        raise ValueError(f"{what} {t.isoformat()} must be a local wall time in whole seconds, without tzinfo")


@dataclass(frozen=True, slots=True)
class LocalWindow:
    """One occurrence of a local window: its instants and the local date it starts on."""

    start_ms: int
    end_ms: int
    day: date


def local_windows(
    zone: zoneinfo.ZoneInfo | str,
    start: time,
    end: time,
    weekdays: Collection[int],
    from_ms: int,
    to_ms: int,
) -> list[LocalWindow]:
    """List the occurrences of the local window start-end on weekdays (0 = Mon) overlapping [from_ms, to_ms).

    end <= start crosses midnight (end == start: 24 h); an occurrence belongs to the day it starts on and is not
    clipped to the range. DST: see local_ms(); an occurrence the clock skips entirely (length 0) is left out.
    """
    tz = zone if isinstance(zone, zoneinfo.ZoneInfo) else zone_of(zone)
    _check_ms(from_ms, to_ms)
    _check_time("start", start)
    _check_time("end", end)
    begin, length = _seconds(start), _length_s(start, end)
    out: list[LocalWindow] = []
    # A window lasts at most one wall day, so one starting the day before from_ms's local day can reach into it.
    day = local_date(tz, from_ms) - timedelta(days=1)
    last = local_date(tz, to_ms)
    while day <= last:
        if day.weekday() in weekdays:
            s_ms = local_ms(tz, _wall(day, begin))
            e_ms = local_ms(tz, _wall(day, begin + length))
            if e_ms > from_ms and s_ms < to_ms and e_ms > s_ms:
                out.append(LocalWindow(s_ms, e_ms, day))
        day += timedelta(days=1)
    return out


def local_date(zone: zoneinfo.ZoneInfo, ts_ms: int) -> date:
    """The local date at instant ts_ms in zone."""
    return (_EPOCH + timedelta(milliseconds=ts_ms)).astimezone(zone).date()


@dataclass(frozen=True, slots=True)
class ShiftPattern:
    """A weekly shift: local start and end (end <= start crosses midnight), weekdays (0 = Mon) and breaks.

    A break is given in wall time like the shift; it may cross midnight inside a night shift.
    """

    name: str
    start: time
    end: time
    weekdays: frozenset[int] = ALL_WEEKDAYS
    breaks: tuple[tuple[time, time], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise ValueError(f"shift name {self.name!r} is not a valid id (lower case, digits, -; up to 63)")
        _check_time(f"shift {self.name!r}: start", self.start)
        _check_time(f"shift {self.name!r}: end", self.end)
        if not isinstance(self.weekdays, frozenset) or not self.weekdays:
            raise ValueError(f"shift {self.name!r}: weekdays must be a non-empty frozenset of 0..6 (0 = Mon)")
        if not self.weekdays <= ALL_WEEKDAYS or any(isinstance(d, bool) for d in self.weekdays):
            raise ValueError(f"shift {self.name!r}: weekdays {set(self.weekdays)} must be 0..6 (0 = Mon)")
        length, previous_end = self.length_s, 0
        for index, pair in enumerate(self.breaks):
            if not isinstance(pair, tuple) or len(pair) != 2:
                raise ValueError(f"shift {self.name!r}: breaks[{index}] must be a (start, end) pair")
            b_start, b_end = pair
            _check_time(f"shift {self.name!r}: breaks[{index}] start", b_start)
            _check_time(f"shift {self.name!r}: breaks[{index}] end", b_end)
            where = f"shift {self.name!r}: break {_clock(_seconds(b_start))}-{_clock(_seconds(b_end))}"
            if b_start == b_end:
                raise ValueError(f"{where} has no length")
            offset = (_seconds(b_start) - _seconds(self.start)) % DAY_S
            if offset + _length_s(b_start, b_end) > length:
                raise ValueError(
                    f"{where} is not inside the shift ({_clock(_seconds(self.start))}-{_clock(_seconds(self.end))})"
                )
            if offset < previous_end:
                raise ValueError(f"{where} overlaps or comes before the break before it: list breaks in time order")
            previous_end = offset + _length_s(b_start, b_end)

    @property
    def length_s(self) -> int:
        """Wall-clock length of the shift in seconds (24 h when end == start)."""
        return _length_s(self.start, self.end)

    def break_offsets(self) -> tuple[tuple[int, int], ...]:
        """Each break as (start, end) wall seconds after the start day's midnight (above 86400: the next day)."""
        begin = _seconds(self.start)
        out = []
        for b_start, b_end in self.breaks:
            offset = begin + (_seconds(b_start) - begin) % DAY_S
            out.append((offset, offset + _length_s(b_start, b_end)))
        return tuple(out)


ALWAYS = ShiftPattern(ALWAYS_SHIFT, time(0), time(0))  # every day 00:00-24:00


@dataclass(frozen=True, slots=True)
class Downtime:
    """Planned downtime (maintenance plan) for some machines (None: all) in [start_ms, end_ms)."""

    start_ms: int
    end_ms: int
    machines: frozenset[str] | None = None
    reason: str = DEFAULT_REASON  # never empty, so Label.downtime is truthy exactly when downtime holds

    def __post_init__(self) -> None:
        _check_ms(self.start_ms, self.end_ms)
        if self.end_ms <= self.start_ms:
            raise ValueError(f"downtime {self.reason!r}: end {self.end_ms} is not after start {self.start_ms}")
        if self.machines is not None and (
            not isinstance(self.machines, frozenset)
            or not self.machines
            or not all(isinstance(m, str) for m in self.machines)
        ):
            raise ValueError("downtime machines must be None (all machines) or a non-empty frozenset of ids")
        if not isinstance(self.reason, str) or not 0 < len(self.reason) <= MAX_REASON or not self.reason.isprintable():
            raise ValueError(f"downtime reason must be printable text of 1..{MAX_REASON} characters")

    def applies_to(self, machine: str | None) -> bool:
        """Whether this downtime holds for machine (None: only downtime of all machines does)."""
        return self.machines is None or (machine is not None and machine in self.machines)


@dataclass(frozen=True, slots=True)
class Label:
    """What holds at an instant: planned busy time or not, the shift (inside one), its day, planned downtime."""

    planned: bool
    shift: str | None
    day: date  # the shift's start day inside a shift, else the local date
    downtime: str | None  # the reason of the planned downtime in force, if any


@dataclass(frozen=True, slots=True)
class Stretch:
    """A maximal stretch [start_ms, end_ms) of one label."""

    start_ms: int
    end_ms: int
    label: Label


@dataclass(frozen=True, slots=True)
class PlannedPiece:
    """A maximal stretch of planned busy time inside one shift occurrence."""

    start_ms: int
    end_ms: int
    shift: str
    day: date

    @property
    def duration_ms(self) -> int:
        """Length of the piece in ms."""
        return self.end_ms - self.start_ms


def check_shifts(shifts: Collection[ShiftPattern]) -> None:
    """Raise ValueError naming both shifts if two patterns cover the same wall-clock time of the week, or share a name.

    The check is exact in wall time, and so for instants on every day, DST days included: local_ms() never goes
    backwards, so wall-clock windows that do not overlap cannot overlap as instants.
    """
    seen: set[str] = set()
    spans: list[tuple[int, int, str]] = []
    for shift in shifts:
        if shift.name in seen:
            raise ValueError(f"two shifts are named {shift.name!r}: shift names must be unique")
        seen.add(shift.name)
        for weekday in shift.weekdays:
            a = weekday * DAY_S + _seconds(shift.start)
            b = a + shift.length_s
            spans.append((a, min(b, WEEK_S), shift.name))
            if b > WEEK_S:  # Sunday's night shift wraps into Monday morning
                spans.append((0, b - WEEK_S, shift.name))
    spans.sort()
    reach: tuple[int, int, str] | None = None  # the span reaching furthest so far
    for span in spans:
        if reach is not None and span[0] < reach[1]:
            first, second = sorted((reach[2], span[2]))
            end = min(reach[1], span[1])
            raise ValueError(
                f"shifts {first!r} and {second!r} overlap on {WEEKDAY_NAMES[span[0] // DAY_S]} "
                f"{_clock(span[0])}-{_clock(end)}: shifts must not cover the same time"
            )
        if reach is None or span[1] > reach[1]:
            reach = span


@dataclass(frozen=True, slots=True)
class _Occurrence:
    start_ms: int
    end_ms: int
    shift: str
    day: date
    breaks: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class Calendar:
    """A site's shift calendar in its IANA zone; no shifts means always planned (one shift 'all', 00:00-24:00)."""

    zone: str
    shifts: tuple[ShiftPattern, ...] = ()
    holidays: frozenset[date] = frozenset()
    downtime: tuple[Downtime, ...] = ()
    _tz: zoneinfo.ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_tz", zone_of(self.zone))
        if not isinstance(self.shifts, tuple) or not all(isinstance(s, ShiftPattern) for s in self.shifts):
            raise TypeError("shifts must be a tuple of ShiftPattern")
        if not self.shifts:
            object.__setattr__(self, "shifts", (ALWAYS,))
        check_shifts(self.shifts)
        if not isinstance(self.holidays, frozenset) or not all(
            isinstance(d, date) and not isinstance(d, datetime) for d in self.holidays
        ):
            raise TypeError("holidays must be a frozenset of datetime.date")
        if not isinstance(self.downtime, tuple) or not all(isinstance(d, Downtime) for d in self.downtime):
            raise TypeError("downtime must be a tuple of Downtime")

    def local_day(self, ts_ms: int) -> date:
        """The site-local date at instant ts_ms."""
        _check_ms(ts_ms)
        return local_date(self._tz, ts_ms)

    def day_bounds(self, day: date) -> tuple[int, int]:
        """Start and end (epoch ms) of a site-local day: 24 h, or 23 h / 25 h on DST days."""
        if not isinstance(day, date) or isinstance(day, datetime):
            raise TypeError(f"day must be a datetime.date, not {day!r}")
        if not date(1, 1, 3) <= day <= date(9999, 12, 27):
            raise ValueError(f"day {day} is outside the calendar's range (years 1..9999)")
        return local_ms(self._tz, _wall(day, 0)), local_ms(self._tz, _wall(day, DAY_S))

    def _occurrences(self, start_ms: int, end_ms: int) -> list[_Occurrence]:
        out: list[_Occurrence] = []
        for shift in self.shifts:
            offsets = shift.break_offsets()
            for w in local_windows(self._tz, shift.start, shift.end, shift.weekdays, start_ms, end_ms):
                if w.day in self.holidays:
                    continue
                breaks = tuple(
                    (local_ms(self._tz, _wall(w.day, a)), local_ms(self._tz, _wall(w.day, b))) for a, b in offsets
                )
                out.append(_Occurrence(w.start_ms, w.end_ms, shift.name, w.day, breaks))
        out.sort(key=lambda o: o.start_ms)
        return out

    def stretches(self, start_ms: int, end_ms: int, machine: str | None) -> list[Stretch]:
        """Cut [start_ms, end_ms) into maximal stretches of one label, ascending (machine None: site-wide only)."""
        _check_ms(start_ms, end_ms)
        if end_ms <= start_ms:
            return []
        occurrences = self._occurrences(start_ms, end_ms)
        downtime = sorted(
            (d.start_ms, index, d.end_ms, d.reason)
            for index, d in enumerate(self.downtime)
            if d.applies_to(machine) and d.start_ms < end_ms and d.end_ms > start_ms
        )
        edges: set[int] = set()
        for o in occurrences:
            edges.update((o.start_ms, o.end_ms))
            for pair in o.breaks:
                edges.update(pair)
        for d_start, _, d_end, _ in downtime:
            edges.update((d_start, d_end))
        day = local_date(self._tz, start_ms) + timedelta(days=1)
        while (midnight := local_ms(self._tz, _wall(day, 0))) < end_ms:
            edges.add(midnight)
            day += timedelta(days=1)
        points = [start_ms, *sorted(e for e in edges if start_ms < e < end_ms), end_ms]
        out: list[Stretch] = []
        k = j = 0
        active: list[tuple[int, int, int, str]] = []  # heap of downtime that has begun: (start, index, end, reason)
        for at, until in itertools.pairwise(points):
            while k < len(occurrences) and occurrences[k].end_ms <= at:
                k += 1
            while j < len(downtime) and downtime[j][0] <= at:
                heapq.heappush(active, downtime[j])
                j += 1
            while active and active[0][2] <= at:
                heapq.heappop(active)
            # Overlapping downtime: the reason of the one that began first (then: listed first) is reported.
            reason = active[0][3] if active else None
            if k < len(occurrences) and occurrences[k].start_ms <= at:
                o = occurrences[k]
                in_break = any(a <= at < b for a, b in o.breaks)
                label = Label(not in_break and reason is None, o.shift, o.day, reason)
            else:
                label = Label(False, None, local_date(self._tz, at), reason)
            if out and out[-1].label == label:
                out[-1] = Stretch(out[-1].start_ms, until, label)
            else:
                out.append(Stretch(at, until, label))
        return out

    def planned(self, start_ms: int, end_ms: int, machine: str | None) -> list[PlannedPiece]:
        """Planned busy time of machine in [start_ms, end_ms): maximal pieces per shift occurrence, ascending."""
        return [
            PlannedPiece(s.start_ms, s.end_ms, s.label.shift, s.label.day)
            for s in self.stretches(start_ms, end_ms, machine)
            if s.label.planned and s.label.shift is not None
        ]

    def label(self, ts_ms: int, machine: str | None) -> Label:
        """What holds at instant ts_ms for machine."""
        return self.stretches(ts_ms, ts_ms + 1, machine)[0].label

    def boundaries(self, start_ms: int, end_ms: int, machine: str | None) -> list[int]:
        """Every instant in (start_ms, end_ms) where label() changes, ascending."""
        return [s.start_ms for s in self.stretches(start_ms, end_ms, machine)[1:]]


__all__ = [
    "ALWAYS",
    "ALWAYS_SHIFT",
    "WEEKDAY_NAMES",
    "Calendar",
    "Downtime",
    "Label",
    "LocalWindow",
    "PlannedPiece",
    "ShiftPattern",
    "Stretch",
    "check_shifts",
    "local_date",
    "local_ms",
    "local_windows",
    "zone_of",
]
