"""Ground truth: what the simulated machines really did, to compare the pipeline's figures against."""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from shopfloor.contracts import MachineState
from simulators.machine import Interval, TruthEvent

TRUTH_VERSION = 1


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

    def __post_init__(self) -> None:
        if not self.interval_kw:
            self.interval_kw = [self.power_kw[iv.state.value] for iv in self.intervals]
        if len(self.interval_kw) != len(self.intervals):
            raise ValueError(f"{len(self.interval_kw)} interval powers for {len(self.intervals)} intervals")

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
            if data.get("v") != TRUTH_VERSION:
                raise ValueError(f"ground truth version {data.get('v')!r} is not {TRUTH_VERSION}")
            machines = {
                m: MachineTruth(
                    model=t["model"],
                    power_kw={k: float(v) for k, v in t["power_kw"].items()},
                    intervals=[
                        Interval(int(a), int(b), MachineState(s), int(g), str(j), int(r))
                        for a, b, s, g, j, r in t["intervals"]
                    ],
                    good_ts=[int(x) for x in t["good_ts"]],
                    reject_ts=[int(x) for x in t["reject_ts"]],
                    events=[TruthEvent(int(a), str(k), str(d)) for a, k, d in t["events"]],
                    interval_kw=[float(x) for x in t.get("interval_kw", [])],
                )
                for m, t in data["machines"].items()
            }
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
