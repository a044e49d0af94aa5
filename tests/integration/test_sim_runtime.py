"""The simulator over real Modbus TCP: registers match the model, every injected fault is observable."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from launcher.services import free_port
from shopfloor.codec import decode, plan_reads
from shopfloor.config import SiteConfig
from shopfloor.modbus import PlcError, PlcReader
from simulators.runtime import TICK_S, Simulator
from simulators.scenario import Scenario
from simulators.world import World

pytestmark = pytest.mark.integration
T0 = 1_800_000_000_000


class FakeClock:
    """A monotonic clock the test moves by hand, so reads happen at known simulated times."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def free_site(site: SiteConfig, shared: bool = False) -> SiteConfig:
    """The example site on free ports (shared=True: every machine on one port, unit ids 1..5)."""
    port = free_port()
    machines = [
        m.model_copy(update={"port": port, "unit_id": i + 1} if shared else {"port": free_port()})
        for i, m in enumerate(site.machines)
    ]
    return site.model_copy(update={"machines": machines})


def scenario(site: SiteConfig, **extra: Any) -> Scenario:
    data = {
        "duration": "60s",
        "machines": ["cnc-01", "laser-01"],
        "random_stops": False,
        "sessions": [
            {
                "machine": "cnc-01",
                "badge": 1001,
                "at": "2s",
                "until": "58s",
                "jobs": [{"id": "J1", "cycle_s": 2, "jitter": 0.1, "reject_rate": 0.2, "setup": "3s"}],
            },
            {
                "machine": "laser-01",
                "badge": 3001,
                "at": "1s",
                "until": "58s",
                "jobs": [{"id": "L1", "cycle_s": 1.5, "jitter": 0.1, "setup": "3s"}],
            },
        ],
        **extra,
    }
    return Scenario.model_validate(data, context={"site": site})


async def read(site: SiteConfig, machine_id: str, timeout_s: float = 1.0) -> dict[str, Any]:
    machine = site.machine(machine_id)
    assert machine is not None
    profile = site.profile(machine.profile)
    reader = PlcReader("127.0.0.1", machine.port, machine.unit_id, timeout_s)
    try:
        values, errors = decode(profile, await reader.read(plan_reads(profile)))
    finally:
        reader.close()
    assert errors == {}
    return values


async def at(sim: Simulator, clock: FakeClock, offset_s: float, settle: bool = True) -> None:
    """Move simulated time to start + offset_s and (settle) let the fault loop catch up."""
    clock.t = 1000.0 + offset_s
    if settle:
        await asyncio.sleep(TICK_S * 3)


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(body(), 30))


def test_registers_match_the_model_and_only_scenario_machines_are_served(example_site: SiteConfig) -> None:
    site = free_site(example_site)
    sc = scenario(site)
    model = World(site, sc, 7, T0)

    async def body() -> None:
        clock = FakeClock()
        sim = Simulator(site, sc, seed=7, start_ms=T0, clock=clock)
        await sim.start()
        try:
            for offset in (0.5, 4.0, 9.3, 20.0, 41.7, 59.0, 75.0):
                await at(sim, clock, offset)
                for machine in ("cnc-01", "laser-01"):
                    got = await read(site, machine)
                    want, _ = decode_expected(site, machine, model.values(machine, T0 + int(offset * 1000)))
                    assert got == want, (machine, offset)
            with pytest.raises(PlcError, match="cannot connect"):
                await read(site, "press-01", timeout_s=0.5)
            assert not sim._finished.is_set() or clock.t >= 1060
            await asyncio.wait_for(sim.wait_finished(), 2)
        finally:
            await sim.stop()
        truth = sim.ground_truth()
        assert truth.end_ms == T0 + 60_000
        assert truth.to_json() == model.ground_truth().to_json()

    run(body)


def decode_expected(site: SiteConfig, machine_id: str, values: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """What an agent decodes from registers holding values (encode, then decode, like the wire)."""
    from shopfloor.codec import ReadBlock, encode

    machine = site.machine(machine_id)
    assert machine is not None
    profile = site.profile(machine.profile)
    regs = encode(profile, values)
    blocks = {b: [regs.get((b.table, a), 0) for a in range(b.start, b.end)] for b in plan_reads(profile)}
    assert all(isinstance(b, ReadBlock) for b in blocks)
    return decode(profile, blocks)


def test_same_seed_same_register_reads(example_site: SiteConfig) -> None:
    async def reads(seed: int) -> list[dict[str, Any]]:
        site = free_site(example_site)
        clock = FakeClock()
        sim = Simulator(site, scenario(site), seed=seed, start_ms=T0, clock=clock)
        await sim.start()
        out = []
        try:
            for offset in range(0, 60, 5):
                await at(sim, clock, offset + 0.25, settle=False)
                out.append(await read(site, "cnc-01"))
        finally:
            await sim.stop()
        return out

    async def body() -> None:
        first, again, other = await reads(3), await reads(3), await reads(4)
        assert first == again
        assert first != other

    run(body)


def test_every_injected_fault_is_observable(example_site: SiteConfig) -> None:
    site = free_site(example_site)
    events = [
        {"at": "10s", "machine": "cnc-01", "event": "unreachable", "duration": "5s"},
        {"at": "20s", "machine": "cnc-01", "event": "modbus_exception", "code": 6, "duration": "5s"},
        {"at": "30s", "machine": "cnc-01", "event": "slow_replies", "delay_s": 1.0, "duration": "5s"},
        {"at": "40s", "machine": "cnc-01", "event": "counter_reset"},
        {"at": "42s", "machine": "cnc-01", "event": "breakdown", "reason": 4, "duration": "4s"},
        {"at": "10s", "machine": "laser-01", "event": "counter_wrap"},
        {"at": "20s", "machine": "laser-01", "event": "badge_swap", "badge": 3002},
        {"at": "30s", "machine": "laser-01", "event": "maintenance", "duration": "3s"},
        {"at": "40s", "machine": "laser-01", "event": "power_off", "duration": "3s"},
    ]
    sc = scenario(site, events=events)

    async def body() -> None:
        clock = FakeClock()
        sim = Simulator(site, sc, seed=1, start_ms=T0, clock=clock)
        await sim.start()
        try:
            await at(sim, clock, 9)
            assert (await read(site, "cnc-01"))["state"] == "RUNNING"
            await at(sim, clock, 11)
            with pytest.raises(PlcError, match=r"cannot connect|no reply"):
                await read(site, "cnc-01", timeout_s=0.5)
            assert (await read(site, "laser-01"))["good_count"] in range(65533, 65536)  # wrapped to 3 below
            await at(sim, clock, 16)
            assert (await read(site, "cnc-01"))["state"] == "RUNNING"  # the port is back
            await at(sim, clock, 21)
            with pytest.raises(PlcError, match="Modbus exception 6"):
                await read(site, "cnc-01")
            assert (await read(site, "laser-01"))["badge"] == 3002
            await at(sim, clock, 26)
            await read(site, "cnc-01")
            await at(sim, clock, 31)
            with pytest.raises(PlcError, match="no reply"):
                await read(site, "cnc-01", timeout_s=0.3)
            assert (await read(site, "laser-01"))["state"] == "MAINTENANCE"
            await at(sim, clock, 36)
            before = (await read(site, "cnc-01"))["good_count"]
            assert before > 10
            await at(sim, clock, 40.5)
            assert (await read(site, "cnc-01"))["good_count"] == 0  # PLC restarted
            laser = await read(site, "laser-01")
            assert (laser["state"], laser["power_kw"]) == ("OFF", 0.0)
            await at(sim, clock, 43)
            values = await read(site, "cnc-01")
            assert (values["state"], values["stop_reason"], values["alarms"]) == ("STOPPED", 4, 4)
            await at(sim, clock, 56)
            assert (await read(site, "laser-01"))["good_count"] < 100  # the 16-bit counter wrapped
        finally:
            await sim.stop()
        truth = sim.ground_truth()
        faults = [(f.machine, f.start_ms - T0, f.end_ms - T0, f.kind) for f in truth.faults]
        assert faults == [
            ("cnc-01", 10_000, 15_000, "unreachable"),
            ("cnc-01", 20_000, 25_000, "modbus_exception"),
            ("cnc-01", 30_000, 35_000, "slow_replies"),
        ]
        assert [e.kind for e in truth.machines["laser-01"].events] == ["counter_wrap", "badge_swap"]
        assert [s.tenant for s in truth.sessions if s.machine == "laser-01"] == ["cipta", "cipta"]

    run(body)


def test_a_repeating_scenario_injects_its_faults_again(example_site: SiteConfig) -> None:
    site = free_site(example_site)
    sessions = [
        {
            "machine": "cnc-01",
            "badge": 1001,
            "at": "1s",
            "until": "9s",
            "jobs": [{"id": "J1", "cycle_s": 1, "jitter": 0, "setup": "2s", "power_factor": 1.5}],
        }
    ]
    events = [{"at": "5s", "machine": "cnc-01", "event": "unreachable", "duration": "2s"}]
    sc = Scenario.model_validate(
        {
            "duration": "10s",
            "repeat": True,
            "machines": ["cnc-01"],
            "random_stops": False,
            "sessions": sessions,
            "events": events,
        },
        context={"site": site},
    )

    async def body() -> None:
        clock = FakeClock()
        sim = Simulator(site, sc, seed=1, start_ms=T0, clock=clock)
        await sim.start()
        try:
            for rep in range(3):
                await at(sim, clock, rep * 10 + 4.5)
                values = await read(site, "cnc-01")
                assert (values["state"], values["badge"], values["power_kw"]) == ("RUNNING", 1001, 16.5)
                await at(sim, clock, rep * 10 + 5.5)
                with pytest.raises(PlcError, match=r"cannot connect|no reply"):
                    await read(site, "cnc-01", timeout_s=0.5)
                await at(sim, clock, rep * 10 + 9.5)
                assert (await read(site, "cnc-01"))["badge"] == 0
            assert not sim._finished.is_set()  # a repeating scenario does not end by itself
        finally:
            await sim.stop()
        truth = sim.ground_truth()
        assert [(f.start_ms - T0, f.end_ms - T0) for f in truth.faults] == [
            (5_000, 7_000),
            (15_000, 17_000),
            (25_000, 27_000),
        ]
        assert [s.start_ms - T0 for s in truth.sessions] == [1_000, 11_000, 21_000]

    run(body)


def test_unreachable_unit_on_a_shared_port_goes_silent(example_site: SiteConfig) -> None:
    site = free_site(example_site, shared=True)
    events = [{"at": "10s", "machine": "cnc-01", "event": "unreachable", "duration": "5s"}]
    sc = scenario(site, events=events)

    async def body() -> None:
        clock = FakeClock()
        sim = Simulator(site, sc, seed=1, start_ms=T0, clock=clock)
        await sim.start()
        try:
            await at(sim, clock, 11)
            with pytest.raises(PlcError, match="no reply"):
                await read(site, "cnc-01", timeout_s=0.3)
            assert (await read(site, "laser-01"))["state"] == "RUNNING"  # the other unit still answers
            await at(sim, clock, 16)
            assert (await read(site, "cnc-01"))["state"] == "RUNNING"
        finally:
            await sim.stop()

    run(body)


def test_port_in_use_is_reported(example_site: SiteConfig) -> None:
    site = free_site(example_site)

    async def body() -> None:
        first = Simulator(site, scenario(site), start_ms=T0)
        await first.start()
        try:
            second = Simulator(site, scenario(site), start_ms=T0)
            with pytest.raises(OSError, match="cannot serve cnc-01"):
                await second.start()
        finally:
            await first.stop()

    run(body)
