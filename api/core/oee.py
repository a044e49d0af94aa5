"""OEE per ISO 22400-2 from pieces, with a loss breakdown that sums, with the ideal time of the good parts, to PBT.

Figures (per group of pieces):
- PBT (planned busy time): on the ``calendar`` basis, the pieces' time the shift calendar plans (shift time minus
  breaks, holidays and planned downtime); on the ``session`` basis, the time some badge was logged in (for a tenant,
  its sessions: DESIGN.md, "for a tenant, its session time"). The session basis is the default as soon as tenants
  are grouped or filtered.
- APT (actual production time) = RUNNING + microstops (stops no longer than the loss map's microstop_max_ms).
- Availability = APT / PBT; Effectiveness = sum(ideal cycle x produced) / APT; Quality = good / produced;
  OEE = their product. A ratio whose denominator is 0 is None, never 0 or NaN, and a flag says why. Effectiveness
  above 100 % is returned as it is and flagged.
- Losses (integer ms): the availability losses by the loss map's category (STOPPED time as ``breakdown:<stop
  reason>``, ``breakdown:none`` without one, unless the stop reason maps to another category), ``unknown``,
  ``microstops``, ``speed_loss`` = RUNNING - ideal x produced (negative when faster than ideal) and ``rejects`` =
  ideal x reject. losses + ideal x good == PBT exactly: ideal cycles are integer ms, so every product is exact and
  nothing is rounded.
- Parts counted against PBT are those of known pieces inside it. Parts made across UNKNOWN time (unattributed: their
  time is unknown, so they cannot be scored against it) are reported as ``unattributed_good``/``_reject`` and
  flagged, not counted; parts made outside PBT are ``unplanned_produced``.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from types import MappingProxyType
from typing import Literal, Protocol

from api.core.counters import Anomaly
from api.core.owners import OwnerBook, owner_at
from api.core.pieces import MIN_CONTEXT_MS, STOPPED, Piece
from api.core.timeline import UNKNOWN

RUNNING = "RUNNING"
# Where the time of a state that is not production goes; UNKNOWN time is always "unknown".
CATEGORIES = ("breakdown", "setup", "no_operator", "no_material", "off", "maintenance", "other")
LOSS_STATES = frozenset({"OFF", "IDLE", "SETUP", "STOPPED", "MAINTENANCE"})
DEFAULT_STATES: Mapping[str, str] = MappingProxyType(
    {"SETUP": "setup", "IDLE": "no_operator", "OFF": "off", "MAINTENANCE": "maintenance", "STOPPED": "breakdown"}
)
DEFAULT_MICROSTOP_MS = 120_000
MICROSTOPS, SPEED_LOSS, REJECTS, UNKNOWN_LOSS = "microstops", "speed_loss", "rejects", "unknown"
# Every row carries these loss keys (0 when nothing was lost there), plus one "breakdown:<reason>" per stop reason.
BASE_LOSSES = (*(c for c in CATEGORIES if c != "breakdown"), UNKNOWN_LOSS, MICROSTOPS, SPEED_LOSS, REJECTS)
GROUP_KEYS = ("machine", "tenant", "job", "shift", "day")
LOW_COVERAGE = 0.95
MAX_VERSION_CHARS = 64

Basis = Literal["calendar", "session"]


@dataclass(frozen=True, slots=True)
class LossMap:
    """Where the time of each state (and of each stop reason) goes: versioned configuration, returned with results.

    states: state -> category for OFF, IDLE, SETUP, STOPPED and MAINTENANCE (a state not named is "other");
    stop_reasons: stop reason code -> category for STOPPED time with that reason (default: the STOPPED category).
    """

    version: str = "default-1"
    microstop_max_ms: int = DEFAULT_MICROSTOP_MS
    states: Mapping[str, str] = field(default_factory=lambda: DEFAULT_STATES)
    stop_reasons: Mapping[int, str] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        if (
            not isinstance(self.version, str)
            or not 0 < len(self.version) <= MAX_VERSION_CHARS
            or not self.version.isprintable()
        ):
            raise ValueError(f"loss map version must be printable text of 1 to {MAX_VERSION_CHARS} characters")
        ms = self.microstop_max_ms
        if not isinstance(ms, int) or isinstance(ms, bool) or not 0 <= ms <= MIN_CONTEXT_MS:
            raise ValueError(
                f"loss map {self.version!r}: microstop_max_ms must be an integer from 0 to {MIN_CONTEXT_MS} "
                f"(the classification context), got {ms!r}"
            )
        if not isinstance(self.states, Mapping):
            raise ValueError(f"loss map {self.version!r}: states must be a mapping of state to category")
        for state, category in self.states.items():
            if state not in LOSS_STATES:
                raise ValueError(
                    f"loss map {self.version!r}: states: {state!r} is not one of {sorted(LOSS_STATES)}"
                    " (RUNNING is production, UNKNOWN is unknown)"
                )
            if category not in CATEGORIES:
                raise ValueError(f"loss map {self.version!r}: states[{state}]: {category!r} is not one of {CATEGORIES}")
        if not isinstance(self.stop_reasons, Mapping):
            raise ValueError(f"loss map {self.version!r}: stop_reasons must be a mapping of code to category")
        for code, category in self.stop_reasons.items():
            if not isinstance(code, int) or isinstance(code, bool) or code < 0:
                raise ValueError(f"loss map {self.version!r}: stop_reasons: {code!r} is not a stop reason code")
            if category not in CATEGORIES:
                raise ValueError(
                    f"loss map {self.version!r}: stop_reasons[{code}]: {category!r} is not one of {CATEGORIES}"
                )
        # Frozen means frozen: callers' dicts are copied, so changing them later changes nothing here.
        # Enum keys and values (shopfloor.config's MachineState, LossCategory) become the plain strings they stand for.
        object.__setattr__(self, "states", MappingProxyType({str(k): str(v) for k, v in self.states.items()}))
        object.__setattr__(
            self, "stop_reasons", MappingProxyType({int(k): str(v) for k, v in self.stop_reasons.items()})
        )

    def is_microstop(self, piece: Piece) -> bool:
        """Whether the piece is time of a stop short enough to be a performance loss (a microstop)."""
        return piece.state == STOPPED and piece.stop_ms <= self.microstop_max_ms

    def loss(self, piece: Piece) -> str | None:
        """Return the loss key of the piece's time: None for production (RUNNING), else its category."""
        state = piece.state
        if state == RUNNING:
            return None
        if state == UNKNOWN:
            return UNKNOWN_LOSS
        if state == STOPPED:
            if self.is_microstop(piece):
                return MICROSTOPS
            code = piece.stop_reason
            category = self.stop_reasons.get(code) if code is not None else None
            category = category or self.states.get(STOPPED, "other")
            if category == "breakdown":
                return f"breakdown:{code if code is not None else 'none'}"
            return category
        return self.states.get(state, "other")


class LabelLike(Protocol):
    """What the shift calendar says about an instant (shopfloor.calendar.Label)."""

    @property
    def planned(self) -> bool: ...

    @property
    def shift(self) -> str | None: ...

    @property
    def day(self) -> date: ...


Labels = Callable[[int, str], LabelLike | tuple[bool, str | None, date]]
# ideal_cycle_ms(machine, job): the job's ideal cycle, None if the job has none; (machine, None): the machine's.
IdealCycle = Callable[[str, str | None], int | None]


@dataclass(frozen=True, slots=True)
class OeeRow:
    """OEE of one group of pieces (keys not in group_by are None), with its losses and why to doubt it."""

    group_by: tuple[str, ...]
    machine: str | None
    tenant: str | None
    job: str | None
    shift: str | None
    day: date | None
    basis: Basis
    pbt_ms: int
    apt_ms: int
    running_ms: int
    microstop_ms: int
    unknown_ms: int
    unplanned_ms: int  # the group's time outside PBT (calendar basis: unplanned; session basis: always 0)
    produced: int
    good: int
    reject: int
    ideal_ms: int  # ideal cycle x produced
    ideal_good_ms: int  # ideal cycle x good: what the losses leave of PBT
    unattributed_good: int
    unattributed_reject: int
    unplanned_produced: int
    coverage: float | None  # known share of PBT
    availability: float | None
    effectiveness: float | None
    quality: float | None
    oee: float | None
    losses: Mapping[str, int]
    flags: tuple[str, ...]
    loss_map_version: str
    anomalies: int  # counter anomalies in the stretches this row's pieces lie in


class _Acc:
    """Running sums of one group."""

    __slots__ = (
        "apt_microstop",
        "at",
        "badges",
        "default_cycle",
        "good",
        "ideal",
        "ideal_good",
        "ideal_reject",
        "losses",
        "missing_cycle",
        "pbt",
        "reject",
        "running",
        "un_good",
        "un_reject",
        "unplanned",
        "unplanned_produced",
    )

    def __init__(self) -> None:
        self.pbt = self.running = self.apt_microstop = self.unplanned = 0
        self.good = self.reject = self.un_good = self.un_reject = self.unplanned_produced = 0
        self.ideal = self.ideal_good = self.ideal_reject = 0
        self.losses: dict[str, int] = dict.fromkeys(BASE_LOSSES, 0)
        self.default_cycle = self.missing_cycle = False
        self.at: set[tuple[str, int]] = set()
        self.badges: set[tuple[str, int]] = set()  # (machine, badge) of the pieces in the group


def _label(label: LabelLike | tuple[bool, str | None, date]) -> tuple[bool, str | None, date]:
    if isinstance(label, tuple):
        planned, shift, day = label[0], label[1], label[2]
    else:
        planned, shift, day = label.planned, label.shift, label.day
    if not isinstance(planned, bool) or not isinstance(day, date) or not (shift is None or isinstance(shift, str)):
        raise TypeError(f"labels returned {label!r}: needs planned (bool), shift (str or None) and day (date)")
    return planned, shift, day


def _cycle(value: object, machine: str, job: str | None) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"ideal cycle of machine {machine!r}, job {job!r}: {value!r} is not a positive integer (ms)")
    return value


def oee(
    pieces: Iterable[Piece],
    *,
    ideal_cycle_ms: IdealCycle,
    labels: Labels | None = None,
    loss_map: LossMap | None = None,
    badge_owner: OwnerBook | None = None,
    group_by: Sequence[str] = ("machine",),
    basis: Basis | None = None,
    tenant: str | None = None,
    anomalies: Mapping[str, Sequence[Anomaly]] | None = None,
) -> list[OeeRow]:
    """Compute OEE per group of pieces, rows sorted by their group keys.

    labels(at_ms, machine): the shift calendar's label of each piece's stretch (needed on the calendar basis and to
    group by shift or day); the pieces must be cut at the calendar's boundaries (pieces(..., cuts)), so that one
    label holds for each piece's whole stretch. basis: None picks "session" when tenants are grouped or filtered,
    else "calendar". tenant: only that tenant's sessions. anomalies: per machine, the counter anomalies of the
    window (flagged on the rows whose pieces share the anomaly's stretch).
    ideal_cycle_ms(machine, job): the job's ideal cycle in integer ms, None if it has none (then the machine's,
    asked as (machine, None), is used and flagged).
    """
    keys = tuple(group_by)
    for key in keys:
        if key not in GROUP_KEYS:
            raise ValueError(f"group_by: {key!r} is not one of {GROUP_KEYS}")
    if len(set(keys)) != len(keys):
        raise ValueError(f"group_by: {keys} names a key twice")
    if basis is None:
        basis = "session" if "tenant" in keys or tenant is not None else "calendar"
    if basis not in ("calendar", "session"):
        raise ValueError(f"basis must be 'calendar' or 'session', got {basis!r}")
    needs_labels = basis == "calendar" or "shift" in keys or "day" in keys
    if needs_labels and labels is None:
        raise ValueError(f"labels (the shift calendar) are needed for the {basis} basis grouped by {keys}")
    losses_of = loss_map or LossMap()
    owners = badge_owner or {}
    label_cache: dict[tuple[int, str], tuple[bool, str | None, date]] = {}
    cycle_cache: dict[tuple[str, str | None], tuple[int | None, bool]] = {}
    groups: dict[tuple[object, ...], _Acc] = {}

    def label_of(at_ms: int, machine: str) -> tuple[bool, str | None, date]:
        found = label_cache.get((at_ms, machine))
        if found is None:
            assert labels is not None
            found = label_cache[(at_ms, machine)] = _label(labels(at_ms, machine))
        return found

    def cycle_of(machine: str, job: str | None) -> tuple[int | None, bool]:
        found = cycle_cache.get((machine, job))
        if found is None:
            own = _cycle(ideal_cycle_ms(machine, job), machine, job)
            if own is None and job is not None:
                found = (_cycle(ideal_cycle_ms(machine, None), machine, None), True)
            else:
                found = (own, False)
            cycle_cache[(machine, job)] = found
        return found

    stretches: dict[str, set[int]] = {}
    for piece in pieces:
        stretches.setdefault(piece.machine, set()).add(piece.at_ms)
        owner = owner_at(owners, piece.badge, piece.at_ms) if piece.badge else None
        in_session = piece.known and piece.badge != 0
        if tenant is not None and not (in_session and owner == tenant):
            continue
        if basis == "session" and not in_session:
            continue
        label = label_of(piece.at_ms, piece.machine) if needs_labels else None
        in_pbt = in_session if basis == "session" else label is not None and label[0]
        values = {
            "machine": piece.machine,
            "tenant": owner,
            "job": piece.job,
            "shift": label[1] if label else None,
            "day": label[2] if label else None,
        }
        group = tuple(values[k] for k in keys)
        acc = groups.get(group)
        if acc is None:
            acc = groups[group] = _Acc()
        acc.at.add((piece.machine, piece.at_ms))
        acc.badges.add((piece.machine, piece.badge))
        if not in_pbt:
            acc.unplanned += piece.duration_ms
            acc.unplanned_produced += piece.produced
            continue
        acc.pbt += piece.duration_ms
        loss = losses_of.loss(piece)
        if loss is None:
            acc.running += piece.duration_ms
        elif loss == MICROSTOPS:
            acc.apt_microstop += piece.duration_ms
        else:
            acc.losses[loss] = acc.losses.get(loss, 0) + piece.duration_ms
        if not piece.known:
            acc.un_good += piece.good
            acc.un_reject += piece.reject
            continue
        acc.good += piece.good
        acc.reject += piece.reject
        if piece.produced:
            cycle, default = cycle_of(piece.machine, piece.job)
            if cycle is None:
                acc.missing_cycle = True
                continue
            acc.default_cycle = acc.default_cycle or default
            acc.ideal += cycle * piece.produced
            acc.ideal_good += cycle * piece.good
            acc.ideal_reject += cycle * piece.reject
    flagged = _anomaly_stretches(anomalies or {}, stretches)

    def anomalies_of(acc: _Acc) -> int:
        # On the session basis an anomaly counts only in the rows of the badge logged in when it was read: a
        # stretch can hold several tenants' sessions, and another tenant's anomaly is not this one's to see.
        return sum(
            1
            for machine, at in acc.at
            for badge in flagged.get((machine, at), ())
            if basis == "calendar" or (badge and (machine, badge) in acc.badges)
        )

    rows = [_row(keys, group, acc, basis, losses_of, anomalies_of(acc)) for group, acc in groups.items()]
    return sorted(rows, key=lambda r: tuple(_order(getattr(r, k)) for k in keys))


def _order(value: object) -> tuple[bool, object]:
    # None first, then the values of one key compared among themselves (all str or all date).
    return (value is not None, value if value is not None else "")


def _anomaly_stretches(
    anomalies: Mapping[str, Sequence[Anomaly]], stretches: Mapping[str, set[int]]
) -> dict[tuple[str, int], list[int | None]]:
    """The badges of the anomalies per (machine, at_ms) of the stretch they fall in (start < ts <= end)."""
    out: dict[tuple[str, int], list[int | None]] = {}
    for machine, found in anomalies.items():
        starts = sorted(stretches.get(machine, ()))
        for anomaly in found:
            k = bisect.bisect_left(starts, anomaly.ts_ms) - 1
            if k >= 0:
                out.setdefault((machine, starts[k]), []).append(anomaly.badge)
    return out


def _row(
    keys: tuple[str, ...], group: tuple[object, ...], acc: _Acc, basis: Basis, loss_map: LossMap, anomalies: int
) -> OeeRow:
    values = dict(zip(keys, group, strict=True))
    apt = acc.running + acc.apt_microstop
    produced = acc.good + acc.reject
    losses = dict(acc.losses)
    losses[MICROSTOPS] = acc.apt_microstop
    losses[SPEED_LOSS] = acc.running - acc.ideal
    losses[REJECTS] = acc.ideal_reject
    unknown = losses[UNKNOWN_LOSS]
    flags: list[str] = []
    availability = apt / acc.pbt if acc.pbt else None
    coverage = (acc.pbt - unknown) / acc.pbt if acc.pbt else None
    effectiveness = acc.ideal / apt if apt and not acc.missing_cycle else None
    quality = acc.good / produced if produced else None
    if not acc.pbt:
        flags.append("no_planned_time")
    elif not apt:
        flags.append("no_production_time")
    if acc.pbt and not produced:
        flags.append("no_parts")
    if coverage is not None and coverage < LOW_COVERAGE:
        flags.append("low_coverage")
    if effectiveness is not None and effectiveness > 1:
        flags.append("effectiveness_over_100")
    if acc.default_cycle:
        flags.append("ideal_cycle_default")
    if acc.missing_cycle:
        flags.append("no_ideal_cycle")
    if acc.un_good or acc.un_reject:
        flags.append("unattributed_parts")
    if anomalies:
        flags.append("counter_anomalies")
    product = None
    if availability is not None and effectiveness is not None and quality is not None:
        product = availability * effectiveness * quality
    return OeeRow(
        group_by=keys,
        machine=_str(values.get("machine")),
        tenant=_str(values.get("tenant")),
        job=_str(values.get("job")),
        shift=_str(values.get("shift")),
        day=_day(values.get("day")),
        basis=basis,
        pbt_ms=acc.pbt,
        apt_ms=apt,
        running_ms=acc.running,
        microstop_ms=acc.apt_microstop,
        unknown_ms=unknown,
        unplanned_ms=acc.unplanned,
        produced=produced,
        good=acc.good,
        reject=acc.reject,
        ideal_ms=acc.ideal,
        ideal_good_ms=acc.ideal_good,
        unattributed_good=acc.un_good,
        unattributed_reject=acc.un_reject,
        unplanned_produced=acc.unplanned_produced,
        coverage=coverage,
        availability=availability,
        effectiveness=effectiveness,
        quality=quality,
        oee=product,
        losses=MappingProxyType(losses),
        flags=tuple(flags),
        loss_map_version=loss_map.version,
        anomalies=anomalies,
    )


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _day(value: object) -> date | None:
    return value if isinstance(value, date) else None
