"""Gather a window's pieces for the core: closed, uncut hours from the roll-ups, everything else from raw data.

The imperative shell around api.core.pieces: it decides, per machine and hour, whether a roll-up can answer (the hour
lies wholly in the window, no calendar boundary falls inside it, and a roll-up is stored for it) and fetches raw
samples for the rest, with the classification context around them, so both paths give the same pieces.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from api.core.counters import Anomaly
from api.core.pieces import HOUR_MS, HourSummary, Piece, hour_of, pieces
from api.reader import raw_timeline
from shopfloor.calendar import Calendar
from shopfloor.config import Machine, SiteConfig
from shopfloor.gcpause import GC_PAUSE
from shopfloor.store import TimeSeriesStore

# The store answers several queries at once; fetching machines in parallel overlaps its work with ours.
MAX_FETCH_THREADS = 8


class RollupReader(Protocol):
    """What gathering needs of the roll-up store."""

    def load(
        self, site: str, machines: Sequence[str], start_hour_ms: int, end_hour_ms: int
    ) -> Mapping[tuple[str, int], HourSummary]: ...


@dataclass
class MachineFigures:
    """One machine's pieces and anomalies in a window, and how they were obtained."""

    machine: str
    pieces: list[Piece] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)
    rolled_hours: int = 0
    raw_hours: int = 0
    raw_samples: int = 0


def _hours(start_ms: int, end_ms: int) -> list[int]:
    return list(range(hour_of(start_ms), end_ms, HOUR_MS))


def _runs(hours: Iterable[int]) -> list[tuple[int, int]]:
    """Join hour starts into [start, end) runs of consecutive hours."""
    out: list[tuple[int, int]] = []
    for hour in sorted(hours):
        if out and out[-1][1] == hour:
            out[-1] = (out[-1][0], hour + HOUR_MS)
        else:
            out.append((hour, hour + HOUR_MS))
    return out


def gather_machine(
    store: TimeSeriesStore,
    site: SiteConfig,
    machine: Machine,
    start_ms: int,
    end_ms: int,
    *,
    calendar: Calendar,
    rolled: Mapping[tuple[str, int], HourSummary],
    extra_cuts: Sequence[int] = (),
) -> MachineFigures:
    """Pieces of one machine over [start_ms, end_ms), cut at the calendar's boundaries and at extra_cuts."""
    edges = {*calendar.boundaries(start_ms, end_ms, machine.id), *extra_cuts}
    cuts = sorted(t for t in edges if start_ms < t < end_ms)
    cut_hours = {hour_of(t) for t in cuts if t % HOUR_MS}
    out = MachineFigures(machine.id)
    unrolled: list[int] = []
    for hour in _hours(start_ms, end_ms):
        summary = rolled.get((machine.id, hour))
        whole = start_ms <= hour and hour + HOUR_MS <= end_ms
        if summary is not None and whole and hour not in cut_hours:
            out.pieces.extend(summary.pieces)
            out.anomalies.extend(summary.anomalies)
            out.rolled_hours += 1
        else:
            unrolled.append(hour)
    for run_start, run_end in _runs(unrolled):
        lo, hi = max(run_start, start_ms), min(run_end, end_ms)
        # Classification makes an object or more per sample and no cycles: GC passes would walk them for nothing
        # (a fifth of a cold month's time with the GC on).
        with GC_PAUSE.paused():
            raw = raw_timeline(store, site, machine, lo, hi)
            found = pieces(raw.timeline, machine.id, [lo, hi, *(t for t in cuts if lo < t < hi)])
        out.pieces.extend(found)
        out.anomalies.extend(raw.timeline.anomalies)
        out.raw_hours += (run_end - run_start) // HOUR_MS
        out.raw_samples += raw.samples
    # Time order, whichever path answered each hour (sorted() is stable: within a stretch the order is the core's),
    # so sums over the pieces add in the same order as over pieces computed from raw alone.
    out.pieces.sort(key=_at)
    out.anomalies.sort(key=_ts)
    return out


def _at(piece: Piece) -> int:
    return piece.at_ms


def _ts(anomaly: Anomaly) -> int:
    return anomaly.ts_ms


def gather(
    store: TimeSeriesStore,
    site: SiteConfig,
    start_ms: int,
    end_ms: int,
    *,
    calendar: Calendar,
    machines: Sequence[Machine] | None = None,
    rollups: RollupReader | None = None,
    extra_cuts: Sequence[int] = (),
) -> dict[str, MachineFigures]:
    """Pieces of each machine (default: every configured one) over [start_ms, end_ms), in site order.

    extra_cuts: instants to cut pieces at besides the calendar's (badge transfers: a piece then has one owner).
    """
    chosen = list(site.machines if machines is None else machines)
    rolled: Mapping[tuple[str, int], HourSummary] = {}
    if rollups is not None and chosen:
        rolled = rollups.load(site.site.id, [m.id for m in chosen], hour_of(start_ms), end_ms)
    work: Callable[[Machine], MachineFigures] = lambda m: gather_machine(  # noqa: E731
        store, site, m, start_ms, end_ms, calendar=calendar, rolled=rolled, extra_cuts=extra_cuts
    )
    if len(chosen) <= 1:
        return {m.id: work(m) for m in chosen}
    with ThreadPoolExecutor(max_workers=min(len(chosen), MAX_FETCH_THREADS)) as pool:
        return {m.id: f for m, f in zip(chosen, pool.map(work, chosen), strict=True)}
