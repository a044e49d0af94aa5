"""The derived measurement `machine_hour`: each closed machine-hour's time and output with state as a tag, for Grafana.

InfluxQL cannot turn the telemetry's report-by-exception `state` field into time in state, nor classify UNKNOWN
time, microstops or sessions, so the roll-up job writes what it has just computed (api.core.pieces) where a
dashboard can sum it. One point per (machine, UTC hour, tag combination), stamped at the hour's start:

| tag     | value                                                                                            |
|---------|--------------------------------------------------------------------------------------------------|
| site    | site id                                                                                          |
| machine | machine id                                                                                       |
| state   | OFF, IDLE, SETUP, RUNNING, STOPPED, MAINTENANCE or UNKNOWN                                       |
| loss    | production, microstops, breakdown:<stop reason or none>, setup, no_operator, no_material, off,  |
|         | maintenance, other, unknown (the site's loss map, api.core.oee)                                 |
| tenant  | the tenant whose session the time is; UNOWNED for a badge no tenant owns; absent (= '') outside |
|         | sessions (no badge, or UNKNOWN time)                                                             |
| shift   | the calendar's shift (absent outside every shift)                                                |
| job     | the job signal (absent when none)                                                                |

| field        | type  | meaning                                                                            |
|--------------|-------|------------------------------------------------------------------------------------|
| duration_ms  | int   | time of this combination in the hour (exact: the pieces' integer ms summed)        |
| good, reject | int   | parts made in that time (parts made across UNKNOWN time sit on state UNKNOWN)      |
| kwh          | float | energy used in that time                                                           |
| pbt_ms       | int   | of duration_ms, planned busy time (the shift calendar: shifts less breaks, ...)   |
| apt_ms       | int   | of pbt_ms, actual production time (RUNNING and microstops)                         |
| ideal_ms     | int   | ideal cycle x parts produced in PBT (known time only)                              |
| oee_good     | int   | good parts counted against PBT                                                     |
| oee_produced | int   | good + reject parts counted against PBT                                            |

OEE of any group (machine, shift, a time bucket) is sum(ideal_ms) / sum(pbt_ms) * sum(oee_good) / sum(oee_produced),
as api.core.oee computes it on the calendar basis: the fields are that function's sums, per point.

Exactness. The pieces are cut at the calendar's boundaries and at badge transfers (api.figures.gather_machine, the
API's own path: a roll-up where the hour holds no boundary, raw data where it does), so each piece has one shift and
one owner. Rebuilt hours replace their points (``replace``): a tag combination that vanished gets a point of zeros
at the same series and time (InfluxDB 1.x, 2.x and 3.x all overwrite a point at the same series and time; InfluxQL
DELETE is not served by 2.x/3.x's v1 API), so sums stay exact and no stale time is left.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from api.analytics import ideal_cycles, labeller, loss_map
from api.core.oee import oee
from api.core.owners import OwnerBook, as_owners, owner_at
from api.core.pieces import HOUR_MS, HourSummary, Piece, hour_of
from api.figures import gather_machine
from shopfloor.calendar import Calendar
from shopfloor.config import Machine, SiteConfig
from shopfloor.influx import InfluxStore, quote_ident, quote_literal
from shopfloor.store import Point, TimeSeriesStore, check_id, check_window

log = logging.getLogger(__name__)

MEASUREMENT = "machine_hour"
TAGS = ("site", "machine", "state", "loss", "tenant", "shift", "job")
FIELDS: Mapping[str, type] = {
    "duration_ms": int,
    "good": int,
    "reject": int,
    "kwh": float,
    "pbt_ms": int,
    "apt_ms": int,
    "ideal_ms": int,
    "oee_good": int,
    "oee_produced": int,
}
# A badge nobody owns: not an id (ids start with a letter or digit), so it can never be a tenant's name.
UNOWNED = "_unowned"
PRODUCTION = "production"  # the loss tag of RUNNING time

_ZEROS: dict[str, int | float] = {name: (0.0 if kind is float else 0) for name, kind in FIELDS.items()}
_Key = tuple[str, str, str, str, str]  # state, loss, tenant, shift, job


class QueryStore(Protocol):
    """What replacing points needs of the store: InfluxQL queries and writes (shopfloor.influx.InfluxStore)."""

    def query(self, q: str) -> list[dict[str, Any]]: ...

    def write(self, points: Iterable[Point]) -> None: ...


class DerivedStore(TimeSeriesStore, QueryStore, Protocol):
    """A time-series store that also answers InfluxQL (shopfloor.influx.InfluxStore): raw reads and the writes."""


def _tenant(piece: Piece, owners: OwnerBook) -> str:
    # A session is known time with a badge (api.core.usage); everything else belongs to no tenant.
    if not piece.known or piece.badge == 0:
        return ""
    return owner_at(owners, piece.badge, piece.at_ms) or UNOWNED


def derived_points(
    site: SiteConfig, summary: HourSummary, owners: OwnerBook, calendar: Calendar | None = None
) -> list[Point]:
    """Return the machine_hour points of one closed hour from its pieces (cut at calendar boundaries and transfers).

    calendar: the site's (default site.calendar_model()). Points come sorted by their tags, empty tags left out.
    """
    hour = summary.hour_ms
    if hour % HOUR_MS:
        raise ValueError(f"hour {hour} of machine {summary.machine!r} is not the start of a UTC hour")
    stray = [p.at_ms for p in summary.pieces if hour_of(p.at_ms) != hour or p.machine != summary.machine]
    if stray:
        raise ValueError(f"hour {hour} of machine {summary.machine!r}: a piece at {stray[0]} is not of this hour")
    cal = calendar if calendar is not None else site.calendar_model()
    labels = labeller(cal, hour, hour + HOUR_MS)
    losses = loss_map(site)
    cycles = ideal_cycles(site)
    groups: dict[_Key, list[Piece]] = {}
    for piece in summary.pieces:
        label = labels(piece.at_ms, piece.machine)
        key = (
            piece.state,
            losses.loss(piece) or PRODUCTION,
            _tenant(piece, owners),
            label.shift or "",
            piece.job or "",
        )
        groups.setdefault(key, []).append(piece)
    points = []
    for key, mine in sorted(groups.items()):
        # The core's own sums on the calendar basis, so the dashboards' OEE is the API's.
        [row] = oee(mine, ideal_cycle_ms=cycles, labels=labels, loss_map=losses, group_by=("machine",))
        fields: dict[str, int | float] = {
            "duration_ms": sum(p.duration_ms for p in mine),
            "good": sum(p.good for p in mine),
            "reject": sum(p.reject for p in mine),
            "kwh": float(sum((p.kwh for p in mine), 0.0)),
            "pbt_ms": row.pbt_ms,
            "apt_ms": row.apt_ms,
            "ideal_ms": row.ideal_ms,
            "oee_good": row.good,
            "oee_produced": row.produced,
        }
        values = dict(zip(TAGS, (site.site.id, summary.machine, *key), strict=True))
        points.append(Point(MEASUREMENT, {k: v for k, v in values.items() if v}, dict(fields), hour))
    return points


def _series_key(tags: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, str(v)) for k, v in tags.items() if v not in (None, "")))


def stored(store: QueryStore, site: str, machine: str, start_ms: int, end_ms: int) -> set[tuple[int, Any]]:
    """The (hour, series tags) of the machine_hour points of machine stored in [start_ms, end_ms)."""
    q = (
        f"SELECT {quote_ident('duration_ms')} FROM {quote_ident(MEASUREMENT)}"
        f" WHERE site = {quote_literal(site)} AND machine = {quote_literal(machine)}"
        f" AND time >= {start_ms}ms AND time < {end_ms}ms GROUP BY *"
    )
    out: set[tuple[int, Any]] = set()
    for series in store.query(q):
        tags = series.get("tags") or {}
        for row in series.get("values") or []:
            out.add((int(row[0]), _series_key(tags)))
    return out


def replace(
    store: QueryStore, site: str, machine: str, start_ms: int, end_ms: int, points: Sequence[Point]
) -> list[Point]:
    """Make points the machine_hour data of machine in [start_ms, end_ms): write them, zero what they no longer hold.

    Return what was written (points plus the zero points). Raise ValueError for a point outside the window or of
    another site, machine or measurement.
    """
    check_id("site", site)
    check_id("machine", machine)
    start, end = check_window(start_ms, end_ms)
    for p in points:
        if p.measurement != MEASUREMENT or p.tags.get("site") != site or p.tags.get("machine") != machine:
            raise ValueError(f"point {p.measurement} {p.tags} is not a {MEASUREMENT} point of {site}/{machine}")
        if not start <= p.ts_ms < end:
            raise ValueError(f"point at {p.ts_ms} is outside the window [{start}, {end})")
    fresh = {(p.ts_ms, _series_key(p.tags)) for p in points}
    zeros = [
        Point(MEASUREMENT, dict(tags), dict(_ZEROS), ts)
        for ts, tags in sorted(stored(store, site, machine, start, end) - fresh)
    ]
    out = [*points, *zeros]
    if out:
        store.write(out)
    return out


class Deriver:
    """The roll-up job's hook: after it computes a run of hours of a machine, write their machine_hour points.

    site: the site, or a function returning the current one; owners: a function returning the badge owners now (the
    business DB's, which change). Call it before the roll-ups are saved: if the write fails, the hours stay unbuilt
    and are derived again when the job retries them.
    """

    def __init__(
        self,
        store: DerivedStore,
        site: SiteConfig | Callable[[], SiteConfig],
        owners: Callable[[], OwnerBook],
    ) -> None:
        self.store = store
        self._site = site
        self._owners = owners

    def __call__(self, machine: Machine, summaries: Sequence[HourSummary]) -> int:
        """Write the points of machine's summaries (one run of hours); return the number of points written."""
        if not summaries:
            return 0
        site = self._site if isinstance(self._site, SiteConfig) else self._site()
        written = 0
        for lo, hi, run in _runs(summaries):
            written += len(derive_window(self.store, site, machine, lo, hi, as_owners(self._owners()), run))
        return written


def deriver_for(
    store: TimeSeriesStore, site: SiteConfig | Callable[[], SiteConfig], owners: Callable[[], OwnerBook]
) -> Deriver | None:
    """The roll-up job's Deriver for store, or None (logged once) when store is not InfluxDB: the Deriver needs
    InfluxQL, and Grafana, which reads machine_hour, reads InfluxDB only."""
    if isinstance(store, InfluxStore):
        return Deriver(store, site, owners)
    log.info(
        "time-series store %s is not InfluxDB: no machine_hour measurement for Grafana", getattr(store, "url", store)
    )
    return None


def _runs(summaries: Sequence[HourSummary]) -> list[tuple[int, int, dict[tuple[str, int], HourSummary]]]:
    out: list[tuple[int, int, dict[tuple[str, int], HourSummary]]] = []
    for s in sorted(summaries, key=lambda s: s.hour_ms):
        if out and out[-1][1] == s.hour_ms:
            lo, _, run = out[-1]
            run[(s.machine, s.hour_ms)] = s
            out[-1] = (lo, s.hour_ms + HOUR_MS, run)
        else:
            out.append((s.hour_ms, s.hour_ms + HOUR_MS, {(s.machine, s.hour_ms): s}))
    return out


def derive_window(
    store: DerivedStore,
    site: SiteConfig,
    machine: Machine,
    start_ms: int,
    end_ms: int,
    owners: OwnerBook,
    rolled: Mapping[tuple[str, int], HourSummary],
) -> list[Point]:
    """Compute and replace machine's machine_hour points for the whole hours [start_ms, end_ms); return them.

    rolled: the roll-ups of those hours ((machine, hour) -> summary); an hour with a calendar boundary or a badge
    transfer inside, or without a roll-up, is classified from raw data, exactly as the API's figures are.
    """
    if start_ms % HOUR_MS or end_ms % HOUR_MS:
        raise ValueError(f"window [{start_ms}, {end_ms}) must be whole UTC hours")
    calendar = site.calendar_model()
    book = as_owners(owners)
    figures = gather_machine(
        store,
        site,
        machine,
        start_ms,
        end_ms,
        calendar=calendar,
        rolled=rolled,
        extra_cuts=book.transfers(start_ms, end_ms),
    )
    by_hour: dict[int, list[Piece]] = {}
    for piece in figures.pieces:
        by_hour.setdefault(hour_of(piece.at_ms), []).append(piece)
    points = [
        p
        for hour, mine in sorted(by_hour.items())
        for p in derived_points(site, HourSummary(machine.id, hour, tuple(mine)), book, calendar)
    ]
    return replace(store, site.site.id, machine.id, start_ms, end_ms, points)
