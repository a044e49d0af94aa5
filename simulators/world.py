"""A whole simulated facility: one MachineSim per served machine, driven by one plan. Pure, no I/O."""

from __future__ import annotations

import bisect

from shopfloor.config import SiteConfig
from shopfloor.contracts import SignalValue
from simulators.machine import MachineSim
from simulators.plan import Plan, build_plan
from simulators.scenario import Scenario
from simulators.truth import FaultWindow, GroundTruth, MachineTruth


class World:
    """The simulated machines of one run; values(machine, t) is a deterministic function of (scenario, seed, t)."""

    def __init__(
        self, site: SiteConfig, scenario: Scenario, seed: int, start_ms: int, end_ms: int | None = None
    ) -> None:
        self.site = site
        self.scenario = scenario
        self.seed = seed
        self.plan: Plan = build_plan(site, scenario, start_ms, end_ms)
        self.start_ms = self.plan.start_ms
        self.end_ms = self.plan.end_ms
        self.machines = {m: MachineSim(p, seed, start_ms) for m, p in self.plan.machines.items()}

    def clamp(self, t_ms: int) -> int:
        """Simulated time limited to the run: machines keep their last values after the end."""
        return max(self.start_ms, min(t_ms, self.end_ms - 1))

    def values(self, machine: str, t_ms: int) -> dict[str, SignalValue]:
        """The signals machine shows at simulated time t_ms."""
        t = max(self.start_ms, min(t_ms, self.end_ms - 1))  # clamp(), inline: called for every poll
        sim = self.machines[machine]
        sim.advance(t)
        return sim.values(t)

    def ground_truth(self, until_ms: int | None = None) -> GroundTruth:
        """What really happened from the start up to until_ms (default: the end of the run)."""
        end = self.end_ms if until_ms is None else max(self.start_ms + 1, min(until_ms, self.end_ms))
        machines: dict[str, MachineTruth] = {}
        for machine_id, sim in self.machines.items():
            sim.advance(end - 1)
            intervals, interval_kw = sim.intervals_until(end)
            goods = bisect.bisect_left(sim.good_ts, end)  # part times only grow
            rejects = bisect.bisect_left(sim.reject_ts, end)
            machines[machine_id] = MachineTruth(
                model=sim.plan.model,
                power_kw={state.value: kw for state, kw in sim.behaviour.power_kw.items()},
                intervals=intervals,
                interval_kw=interval_kw,
                good_ts=sim.good_ts[:goods],
                reject_ts=sim.reject_ts[:rejects],
                good_ideal_ms=sim.good_ideal_ms[:goods],
                reject_ideal_ms=sim.reject_ideal_ms[:rejects],
                events=[e for e in sim.events if e.at_ms < end],
            )
        faults = [
            FaultWindow(f.machine, f.start_ms, min(f.end_ms, end), f.kind.value, fault_detail(f.code, f.delay_s))
            for f in self.plan.faults_in(self.start_ms, end)
        ]
        return GroundTruth(
            site=self.site.site.id,
            scenario=self.scenario.name,
            seed=self.seed,
            start_ms=self.start_ms,
            end_ms=end,
            badge_owner=dict(self.plan.badge_owner),
            machines=machines,
            faults=faults,
        )


def fault_detail(code: int, delay_s: float) -> str:
    """How a fault window looks from the network, in words."""
    if code:
        return f"exception code {code}"
    if delay_s:
        return f"replies {delay_s:g} s late"
    return "no reply, connections refused"
