"""Ground truth: what the simulated machines really did, to compare the pipeline's figures against."""

from __future__ import annotations

import bisect
import itertools
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

from shopfloor.config import LossCategory, LossMapSpec
from shopfloor.contracts import MachineState
from simulators.machine import Interval, TruthEvent

TRUTH_VERSION = 2  # 2: ideal cycle per part made (version 1 files still load, without it)
_READABLE_VERSIONS = (1, 2)


class TruthUsage(NamedTuple):
    """A tenant's real use of one machine within a window."""

    session_s: float
    running_s: float
    good: int
    reject: int
    kwh: float


class Session(NamedTuple):
    """A run of time with one non-zero badge on one machine."""

    tenant: str
    badge: int
    machine: str
    start_ms: int
    end_ms: int
    good: int
    reject: int
    kwh: float


class FaultWindow(NamedTuple):
    """A window in which a PLC misbehaved on the network (the machine kept working)."""

    machine: str
    start_ms: int
    end_ms: int
    kind: str
    detail: str


@dataclass
class MachineTruth:
    """What one machine did."""

    model: str
    power_kw: dict[str, float]
    intervals: list[Interval] = field(default_factory=list)
    good_ts: list[int] = field(default_factory=list)
    reject_ts: list[int] = field(default_factory=list)
    events: list[TruthEvent] = field(default_factory=list)
    # Power draw in each interval (kW), parallel to intervals; it differs from power_kw[state] while RUNNING a
    # job with a power_factor. Empty: power_kw[state] throughout (ground truth files from before power factors).
    interval_kw: list[float] = field(default_factory=list)
    # Ideal cycle (ms) of the job each part was made in, parallel to good_ts / reject_ts. Empty while there are
    # parts: not known (version 1 files), so no OEE.
    good_ideal_ms: list[int] = field(default_factory=list)
    reject_ideal_ms: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.interval_kw:
            self.interval_kw = [self.power_kw[iv.state.value] for iv in self.intervals]
        if len(self.interval_kw) != len(self.intervals):
            raise ValueError(f"{len(self.interval_kw)} interval powers for {len(self.intervals)} intervals")
        for name, ideal, ts in (
            ("good_ideal_ms", self.good_ideal_ms, self.good_ts),
            ("reject_ideal_ms", self.reject_ideal_ms, self.reject_ts),
        ):
            if ideal and len(ideal) != len(ts):
                raise ValueError(f"{name}: {len(ideal)} ideal cycles for {len(ts)} parts")

    @property
    def knows_ideal_cycles(self) -> bool:
        """Whether every part made carries the ideal cycle of its job (not so in version 1 files)."""
        return len(self.good_ideal_ms) == len(self.good_ts) and len(self.reject_ideal_ms) == len(self.reject_ts)

    def parts(self, start_ms: int, end_ms: int) -> tuple[int, int]:
        """Good and rejected parts completed in [start_ms, end_ms)."""

        def count(ts: list[int]) -> int:
            return bisect.bisect_left(ts, end_ms) - bisect.bisect_left(ts, start_ms)

        return count(self.good_ts), count(self.reject_ts)

    def kwh(self, start_ms: int, end_ms: int, badge: int | None = None) -> float:
        """Energy used in [start_ms, end_ms), optionally only while badge was logged in."""
        total = 0.0
        for iv, kw in zip(self.intervals, self.interval_kw, strict=True):
            if badge is not None and iv.badge != badge:
                continue
            overlap = min(iv.end_ms, end_ms) - max(iv.start_ms, start_ms)
            if overlap > 0:
                total += kw * overlap / 3_600_000
        return total


# -- OEE (ISO 22400-2), computed straight from the true intervals ---------------------------------------------
# An implementation independent of api/core on purpose: tests compare the two, and a shared one would make that
# comparison prove nothing.

OEE_GROUPS = ("machine", "tenant", "job", "shift", "day")
# Every loss a result names: the configurable ones, then those that come from the stops and the parts.
DERIVED_LOSSES = ("microstops", "speed_loss", "rejects", "unknown")
LOSSES = (*(c.value for c in LossCategory), *DERIVED_LOSSES)


class PlannedPieceLike(Protocol):
    """A stretch of planned busy time in one shift occurrence (shopfloor.calendar.PlannedPiece)."""

    @property
    def start_ms(self) -> int: ...
    @property
    def end_ms(self) -> int: ...
    @property
    def shift(self) -> object: ...
    @property
    def day(self) -> object: ...


class LabelLike(Protocol):
    """The shift (None outside one) and site-local day an instant belongs to (shopfloor.calendar.Label)."""

    @property
    def shift(self) -> object: ...
    @property
    def day(self) -> object: ...


class CalendarLike(Protocol):
    """What the ground-truth OEE asks of a shift calendar (shopfloor.calendar.Calendar has it)."""

    def planned(self, start_ms: int, end_ms: int, machine: str) -> Iterable[PlannedPieceLike]:
        """Planned busy time of machine in [start_ms, end_ms), ascending."""
        ...

    def label(self, ts_ms: int, machine: str) -> LabelLike:
        """Shift and day at ts_ms."""
        ...

    def boundaries(self, start_ms: int, end_ms: int, machine: str) -> list[int]:
        """Every instant in (start_ms, end_ms) where label() changes, ascending."""
        ...


class TruthOee(NamedTuple):
    """The ground-truth OEE of one group, with the field names of the API's OEE rows."""

    group: dict[str, str | None]  # group key -> value, in group_by order
    pbt_s: float
    apt_s: float
    unknown_s: float  # always 0: the truth knows every millisecond
    coverage: float
    produced: int
    good: int
    availability: float
    effectiveness: float | None  # None: no APT
    quality: float | None  # None: nothing produced
    oee: float
    losses: dict[str, float]  # seconds by category (every one of LOSSES); with ideal x good they sum to pbt_s
    breakdowns: dict[int, float]  # the "breakdown" loss by stop reason, seconds
    flags: tuple[str, ...]
    loss_map_version: str

    def row(self) -> dict[str, Any]:
        """The group keys and the figures as one flat dict, shaped like a JSON row of the OEE report."""
        data = self._asdict()
        return {**data.pop("group"), **data}


def _overlap(a0: int, a1: int, b0: int, b1: int) -> int:
    return max(0, min(a1, b1) - max(a0, b0))


@dataclass
class GroundTruth:
    """Everything the simulator really did in one run."""

    site: str
    scenario: str
    seed: int
    start_ms: int
    end_ms: int
    badge_owner: dict[int, str]
    machines: dict[str, MachineTruth]
    faults: list[FaultWindow] = field(default_factory=list)

    @property
    def intervals(self) -> dict[str, list[Interval]]:
        """Per machine, the exact state intervals (start_ms, end_ms, state, badge, job, stop_reason)."""
        return {m: t.intervals for m, t in self.machines.items()}

    def tenant_of(self, badge: int) -> str:
        """Tenant owning a badge ('badge-N' if the site does not know it)."""
        return self.badge_owner.get(badge, f"badge-{badge}")

    @property
    def sessions(self) -> list[Session]:
        """Every tenant session: a run of contiguous intervals with the same non-zero badge, in time order."""
        out: list[Session] = []
        for machine, truth in self.machines.items():
            run: list[Interval] = []
            for iv in [*truth.intervals, None]:
                if iv is not None and iv.badge and run and iv.badge == run[-1].badge and iv.start_ms == run[-1].end_ms:
                    run.append(iv)
                    continue
                if run:
                    start, end, badge = run[0].start_ms, run[-1].end_ms, run[0].badge
                    good, reject = truth.parts(start, end)
                    out.append(
                        Session(self.tenant_of(badge), badge, machine, start, end, good, reject, truth.kwh(start, end))
                    )
                run = [iv] if iv is not None and iv.badge else []
        out.sort(key=lambda s: (s.start_ms, s.machine))
        return out

    def usage(self, start_ms: int | None = None, end_ms: int | None = None) -> dict[str, dict[str, TruthUsage]]:
        """Per tenant and machine: session and running seconds, parts and kWh within [start_ms, end_ms)."""
        w0 = self.start_ms if start_ms is None else start_ms
        w1 = self.end_ms if end_ms is None else end_ms
        acc: dict[str, dict[str, list[float]]] = {}
        for machine, truth in self.machines.items():
            for iv, kw in zip(truth.intervals, truth.interval_kw, strict=True):
                if not iv.badge:
                    continue
                overlap = _overlap(iv.start_ms, iv.end_ms, w0, w1)
                if overlap <= 0:
                    continue
                row = acc.setdefault(self.tenant_of(iv.badge), {}).setdefault(machine, [0.0, 0.0, 0, 0, 0.0])
                lo, hi = max(iv.start_ms, w0), min(iv.end_ms, w1)
                good, reject = truth.parts(lo, hi)
                row[0] += overlap / 1000
                row[1] += overlap / 1000 if iv.state is MachineState.RUNNING else 0.0
                row[2] += good
                row[3] += reject
                row[4] += kw * overlap / 3_600_000
        return {
            tenant: {m: TruthUsage(r[0], r[1], int(r[2]), int(r[3]), r[4]) for m, r in machines.items()}
            for tenant, machines in acc.items()
        }

    def state_seconds(self, machine: str, start_ms: int | None = None, end_ms: int | None = None) -> dict[str, float]:
        """Seconds a machine spent in each state within [start_ms, end_ms)."""
        w0 = self.start_ms if start_ms is None else start_ms
        w1 = self.end_ms if end_ms is None else end_ms
        out: dict[str, float] = {}
        for iv in self.machines[machine].intervals:
            overlap = _overlap(iv.start_ms, iv.end_ms, w0, w1)
            if overlap:
                out[iv.state.value] = out.get(iv.state.value, 0.0) + overlap / 1000
        return out

    def oee(
        self,
        calendar: CalendarLike,
        loss_map: LossMapSpec,
        start_ms: int,
        end_ms: int,
        group_by: Iterable[str] = ("machine",),
    ) -> list[TruthOee]:
        """Ground-truth OEE per group within [start_ms, end_ms), from the true intervals and parts.

        PBT is the calendar's planned busy time per machine or, when group_by holds "tenant", the tenants'
        session time (time with a badge logged in), labelled by the calendar where it lies outside planned
        time. APT is RUNNING time plus microstops (stops, measured whole, at most loss_map.microstop_max_s
        long); a longer stop is the loss loss_map.stop_reasons (or .states[STOPPED]) books it under. A part
        counts where its cycle's last millisecond (ts - 1) lies, weighted by the ideal cycle of its job. Rows
        come sorted by group, one per group with planned busy time.
        """
        return _truth_oee(self, calendar, loss_map, start_ms, end_ms, group_by)

    def to_json(self) -> str:
        """Serialise to JSON (stable key order, so equal truths give equal text)."""
        data: dict[str, Any] = {
            "v": TRUTH_VERSION,
            "site": self.site,
            "scenario": self.scenario,
            "seed": self.seed,
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "badge_owner": {str(b): t for b, t in sorted(self.badge_owner.items())},
            "machines": {
                m: {
                    "model": t.model,
                    "power_kw": t.power_kw,
                    "intervals": [[*iv[:2], iv.state.value, *iv[3:]] for iv in t.intervals],
                    "interval_kw": t.interval_kw,
                    "good_ts": t.good_ts,
                    "reject_ts": t.reject_ts,
                    # Run-length encoded: [[ideal_ms, parts], ...]; the ideal changes only between jobs.
                    "good_ideal_ms": _rle(t.good_ideal_ms),
                    "reject_ideal_ms": _rle(t.reject_ideal_ms),
                    "events": [[e.at_ms, e.kind, e.detail] for e in t.events],
                }
                for m, t in self.machines.items()
            },
            "faults": [list(f) for f in self.faults],
            "sessions": [s._asdict() for s in self.sessions],
        }
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> GroundTruth:
        """Parse what to_json wrote; raise ValueError if it is not a ground truth file."""
        try:
            data = json.loads(text)
            version = data.get("v")
            if isinstance(version, bool) or version not in _READABLE_VERSIONS:
                raise ValueError(
                    f"ground truth version {version!r} is not one of {', '.join(map(str, _READABLE_VERSIONS))}"
                )
            machines = {m: _machine_from_json(m, t, version) for m, t in data["machines"].items()}
            return cls(
                site=str(data["site"]),
                scenario=str(data["scenario"]),
                seed=int(data["seed"]),
                start_ms=int(data["start_ms"]),
                end_ms=int(data["end_ms"]),
                badge_owner={int(b): str(t) for b, t in data["badge_owner"].items()},
                machines=machines,
                faults=[FaultWindow(str(m), int(a), int(b), str(k), str(d)) for m, a, b, k, d in data["faults"]],
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a ground truth file: {exc!r}") from exc


def _machine_from_json(machine: str, t: dict[str, Any], version: int) -> MachineTruth:
    """One machine's truth as to_json wrote it (version 1: no ideal cycles per part)."""
    try:
        return MachineTruth(
            model=t["model"],
            power_kw={k: float(v) for k, v in t["power_kw"].items()},
            intervals=[
                Interval(int(a), int(b), MachineState(s), int(g), str(j), int(r)) for a, b, s, g, j, r in t["intervals"]
            ],
            good_ts=[int(x) for x in t["good_ts"]],
            reject_ts=[int(x) for x in t["reject_ts"]],
            events=[TruthEvent(int(a), str(k), str(d)) for a, k, d in t["events"]],
            interval_kw=[float(x) for x in t.get("interval_kw", [])],
            good_ideal_ms=_unrle(t["good_ideal_ms"], len(t["good_ts"])) if version > 1 else [],
            reject_ideal_ms=_unrle(t["reject_ideal_ms"], len(t["reject_ts"])) if version > 1 else [],
        )
    except ValueError as exc:
        raise ValueError(f"ground truth machines.{machine}: {exc}") from exc


def _rle(values: list[int]) -> list[list[int]]:
    """[[value, times], ...] for runs of equal values."""
    out: list[list[int]] = []
    for value in values:
        if out and out[-1][0] == value:
            out[-1][1] += 1
        else:
            out.append([value, 1])
    return out


def _unrle(runs: object, parts: int) -> list[int]:
    """Expand what _rle wrote for parts parts; raise ValueError on anything else (before allocating too much)."""
    if not isinstance(runs, list):
        raise ValueError(f"ideal cycles must be a list of [ideal_ms, parts], not {type(runs).__name__}")
    out: list[int] = []
    for index, run in enumerate(runs):
        if (
            not isinstance(run, list)
            or len(run) != 2
            or not all(isinstance(x, int) and not isinstance(x, bool) for x in run)
            or run[0] <= 0
            or run[1] <= 0
        ):
            raise ValueError(f"ideal cycles[{index}]: {run!r} is not [ideal_ms > 0, parts > 0]")
        if len(out) + run[1] > parts:
            raise ValueError(f"ideal cycles[{index}]: more ideal cycles than the {parts} parts made")
        out.extend([run[0]] * run[1])
    return out


@dataclass(slots=True)
class _Acc:
    """Sums for one group, in integer ms so the losses add up to PBT exactly."""

    pbt: int = 0
    running: int = 0
    microstops: int = 0
    losses: dict[str, int] = field(default_factory=dict)
    breakdowns: dict[int, int] = field(default_factory=dict)
    produced: int = 0
    good: int = 0
    ideal_produced: int = 0
    ideal_good: int = 0


class _Frame(NamedTuple):
    start_ms: int
    end_ms: int
    shift: str | None
    day: str | None


def microstop_max_ms(loss_map: LossMapSpec) -> int:
    """The longest stop (ms) that is still a microstop under loss_map: a stop of exactly this length is one."""
    return round(loss_map.microstop_max_s * 1000)


def _check_oee_args(group_by: Iterable[str], start_ms: int, end_ms: int) -> tuple[str, ...]:
    groups = tuple(group_by)
    for g in groups:
        if g not in OEE_GROUPS:
            raise ValueError(f"group_by: {g!r} is not one of {', '.join(OEE_GROUPS)}")
    if len(set(groups)) != len(groups):
        raise ValueError(f"group_by: {', '.join(groups)} names a group twice")
    if end_ms <= start_ms:
        raise ValueError(f"OEE window: end {_iso(end_ms)} is not after start {_iso(start_ms)}")
    return groups


def _planned_frames(calendar: CalendarLike, machine: str, w0: int, w1: int) -> list[_Frame]:
    """The machine's planned pieces inside [w0, w1), sorted; overlapping pieces are an error (PBT counted twice)."""
    frames = sorted(
        (
            _Frame(max(p.start_ms, w0), min(p.end_ms, w1), None if p.shift is None else str(p.shift), str(p.day))
            for p in calendar.planned(w0, w1, machine)
            if p.end_ms > w0 and p.start_ms < w1 and p.end_ms > p.start_ms
        ),
        key=lambda f: (f.start_ms, f.end_ms),
    )
    for a, b in itertools.pairwise(frames):
        if b.start_ms < a.end_ms:
            raise ValueError(
                f"calendar: planned pieces of {machine} overlap ({a.shift} {_iso(a.start_ms)}..{_iso(a.end_ms)} and "
                f"{b.shift} {_iso(b.start_ms)}..{_iso(b.end_ms)})"
            )
    return frames


def _session_frames(calendar: CalendarLike, machine: str, w0: int, w1: int) -> list[_Frame]:
    """[w0, w1) cut into labelled frames: planned pieces as they are, the time between cut where the label changes."""
    out: list[_Frame] = []

    def gap(a: int, b: int) -> None:
        if b <= a:
            return
        for s, e in itertools.pairwise([a, *calendar.boundaries(a, b, machine), b]):
            tag = calendar.label(s, machine)
            out.append(_Frame(s, e, None if tag.shift is None else str(tag.shift), str(tag.day)))

    t = w0
    for frame in _planned_frames(calendar, machine, w0, w1):
        gap(t, frame.start_ms)
        out.append(frame)
        t = frame.end_ms
    gap(t, w1)
    return out


def _stop_lengths(intervals: list[Interval]) -> list[int]:
    """Per interval, the length of the whole stop it belongs to (contiguous STOPPED time, any reason); else 0."""
    out = [0] * len(intervals)
    i = 0
    while i < len(intervals):
        if intervals[i].state is not MachineState.STOPPED:
            i += 1
            continue
        j = i + 1
        while (
            j < len(intervals)
            and intervals[j].state is MachineState.STOPPED
            and intervals[j].start_ms == intervals[j - 1].end_ms
        ):
            j += 1
        length = intervals[j - 1].end_ms - intervals[i].start_ms
        out[i:j] = [length] * (j - i)
        i = j
    return out


Key = tuple[str | None, ...]
Segment = tuple[int, int, Key]  # start_ms, end_ms, group key


def _truth_oee(
    truth: GroundTruth,
    calendar: CalendarLike,
    loss_map: LossMapSpec,
    start_ms: int,
    end_ms: int,
    group_by: Iterable[str],
) -> list[TruthOee]:
    groups = _check_oee_args(group_by, start_ms, end_ms)
    w0, w1 = max(start_ms, truth.start_ms), min(end_ms, truth.end_ms)
    session = "tenant" in groups
    labelled = "shift" in groups or "day" in groups
    acc: dict[Key, _Acc] = {}
    for machine in sorted(truth.machines):
        mt = truth.machines[machine]
        if not mt.knows_ideal_cycles:
            raise ValueError(
                f"ground truth of {machine} has no ideal cycle per part (a version 1 file): run the simulator again"
            )
        if w1 <= w0:
            continue
        if not session:
            frames = _planned_frames(calendar, machine, w0, w1)
        elif labelled:
            frames = _session_frames(calendar, machine, w0, w1)
        else:
            frames = [_Frame(w0, w1, None, None)]
        segments = _add_time(truth, machine, frames, groups, loss_map, w0, w1, acc)
        _add_parts(mt, segments, w0, w1, acc)
    out = [_result(groups, key, a, loss_map) for key, a in acc.items()]
    out.sort(key=lambda r: [(v is not None, v or "") for v in r.group.values()])
    return out


def _add_time(
    truth: GroundTruth,
    machine: str,
    frames: list[_Frame],
    groups: tuple[str, ...],
    loss_map: LossMapSpec,
    w0: int,
    w1: int,
    acc: dict[Key, _Acc],
) -> list[Segment]:
    """Add every true interval's time within the frames to its group; return the segments."""
    session = "tenant" in groups
    micro_max = microstop_max_ms(loss_map)
    stopped = loss_map.states[MachineState.STOPPED]
    intervals = truth.machines[machine].intervals
    segments: list[Segment] = []
    j = 0
    for iv, stop_ms in zip(intervals, _stop_lengths(intervals), strict=True):
        if iv.end_ms <= w0 or iv.start_ms >= w1 or (session and not iv.badge):
            continue
        if iv.state is MachineState.RUNNING:
            category = None
        elif iv.state is MachineState.STOPPED:
            category = "microstops" if stop_ms <= micro_max else loss_map.stop_reasons.get(iv.stop_reason, stopped)
        else:
            category = loss_map.states[iv.state]
        values: dict[str, str | None] = {
            "machine": machine,
            "tenant": truth.badge_owner.get(iv.badge),  # an unowned badge is nobody's: None, never a name
            "job": iv.job or None,
        }
        while j < len(frames) and frames[j].end_ms <= iv.start_ms:
            j += 1
        k = j
        while k < len(frames) and frames[k].start_ms < iv.end_ms:
            frame = frames[k]
            k += 1
            a, b = max(iv.start_ms, frame.start_ms), min(iv.end_ms, frame.end_ms)
            if b <= a:
                continue
            values["shift"], values["day"] = frame.shift, frame.day
            key = tuple(values[g] for g in groups)
            row = acc.get(key)
            if row is None:
                row = acc[key] = _Acc()
            ms = b - a
            row.pbt += ms
            if category is None:
                row.running += ms
            elif category == "microstops":
                row.microstops += ms
            else:
                row.losses[category] = row.losses.get(category, 0) + ms
                if category == LossCategory.BREAKDOWN:
                    row.breakdowns[iv.stop_reason] = row.breakdowns.get(iv.stop_reason, 0) + ms
            segments.append((a, b, key))
    return segments


def _add_parts(mt: MachineTruth, segments: list[Segment], w0: int, w1: int, acc: dict[Key, _Acc]) -> None:
    """Count each part where its last millisecond of cycle (ts - 1) lies: always RUNNING time, so always in APT."""
    starts = [s[0] for s in segments]
    for ts_list, ideal_list, good in ((mt.good_ts, mt.good_ideal_ms, True), (mt.reject_ts, mt.reject_ideal_ms, False)):
        lo, hi = bisect.bisect_right(ts_list, w0), bisect.bisect_right(ts_list, w1)  # w0 < ts <= w1
        for ts, ideal in zip(ts_list[lo:hi], ideal_list[lo:hi], strict=True):
            i = bisect.bisect_right(starts, ts - 1) - 1
            if i < 0 or segments[i][1] <= ts - 1:
                continue  # made outside planned busy time (or outside any session)
            row = acc[segments[i][2]]
            row.produced += 1
            row.ideal_produced += ideal
            if good:
                row.good += 1
                row.ideal_good += ideal


def _result(groups: tuple[str, ...], key: Key, a: _Acc, loss_map: LossMapSpec) -> TruthOee:
    apt = a.running + a.microstops
    losses_ms = dict.fromkeys(LOSSES, 0) | a.losses
    losses_ms["microstops"] = a.microstops
    losses_ms["speed_loss"] = a.running - a.ideal_produced  # negative when parts come faster than ideal
    losses_ms["rejects"] = a.ideal_produced - a.ideal_good
    effectiveness = a.ideal_produced / apt if apt else None
    quality = a.good / a.produced if a.produced else None
    availability = apt / a.pbt
    # Nothing produced in planned time is an OEE of 0, whatever the (then undefined) quality.
    oee = availability * effectiveness * quality if effectiveness is not None and quality is not None else 0.0
    return TruthOee(
        group=dict(zip(groups, key, strict=True)),
        pbt_s=a.pbt / 1000,
        apt_s=apt / 1000,
        unknown_s=0.0,
        coverage=1.0,
        produced=a.produced,
        good=a.good,
        availability=availability,
        effectiveness=effectiveness,
        quality=quality,
        oee=oee,
        losses={category: ms / 1000 for category, ms in losses_ms.items()},
        breakdowns={reason: ms / 1000 for reason, ms in sorted(a.breakdowns.items())},
        flags=("effectiveness_over_100",) if a.ideal_produced > apt else (),
        loss_map_version=loss_map.version,
    )


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")
