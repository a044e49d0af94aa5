"""Serve a World over Modbus TCP: one RegisterServer per (port) with the units the site puts there.

Simulated time follows wall time: sim_ms = start_ms + (monotonic - t0) * speed * 1000. Registers are
refreshed lazily when a read arrives (UnitMemory.on_read), so idle machines cost nothing; a small loop applies
network faults (unreachable, exception replies, slow replies) at their simulated times.

Layout (measured with bench/sim_capacity.py): one process serves 1,000 machines either with one port each or
with unit ids on a few shared ports, at the same reads/s within noise and ~55 MB RSS; the event loop, not the
number of listeners, is the limit. One port per machine is recommended and is what the example site does: it is
what real PLCs look like (one address each, one agent connection each), and an `unreachable` fault then closes
the listener so the agent sees "connection refused", exactly like a PLC that is switched off. Shared ports are
for when ports or file descriptors are scarce (each port costs a listening socket and each agent connection
another descriptor: raise `ulimit -n` above 2 x machines); there an unreachable unit can only go silent (no
reply until the agent's timeout), because its neighbours on the port must keep answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from functools import partial

from shopfloor.codec import encode
from shopfloor.config import SiteConfig
from shopfloor.modbus import RegisterServer, UnitMemory
from simulators.plan import Fault, FaultKind
from simulators.scenario import Scenario
from simulators.truth import GroundTruth
from simulators.world import World

log = logging.getLogger(__name__)
TICK_S = 0.05  # how often (wall time) faults are applied and the end is checked
SILENT_DELAY_S = 3600.0  # a unit that shares its port "goes away" by not answering


class Simulator:
    """Simulated machines served over Modbus TCP, following a scenario in (scaled) real time."""

    def __init__(
        self,
        site: SiteConfig,
        scenario: Scenario,
        seed: int = 1,
        speed: float = 1.0,
        start_ms: int | None = None,
        host: str = "127.0.0.1",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < speed <= 1_000_000:
            raise ValueError(f"speed {speed!r} must be above 0 and at most 1000000")
        self.site, self.scenario, self.seed, self.speed, self.host = site, scenario, seed, speed, host
        self._clock = clock
        self._start_ms = start_ms
        self._t0 = 0.0
        self.world: World | None = None
        self.memory: dict[str, UnitMemory] = {}
        self._units_by_port: dict[int, dict[int, UnitMemory]] = {}
        self._servers: dict[int, RegisterServer] = {}
        self._down_ports: set[int] = set()
        self._active: dict[tuple[str, FaultKind], Fault] = {}
        self._task: asyncio.Task[None] | None = None
        self._finished = asyncio.Event()
        self.reads = 0

    # -- time ------------------------------------------------------------------------------------------------
    @property
    def start_ms(self) -> int:
        """Simulated epoch ms at which the run started."""
        return self._require_world().start_ms

    @property
    def end_ms(self) -> int:
        """Simulated epoch ms at which the scenario ends."""
        return self._require_world().end_ms

    def sim_now_ms(self) -> int:
        """Current simulated time in epoch ms."""
        world = self._require_world()
        return world.start_ms + int((self._clock() - self._t0) * self.speed * 1000)

    def _require_world(self) -> World:
        if self.world is None:
            raise RuntimeError("the simulator has not been started")
        return self.world

    # -- lifecycle -------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Bind a Modbus server per port used by the served machines; return once every one is listening."""
        self._t0 = self._clock()
        start_ms = self._start_ms if self._start_ms is not None else int(time.time() * 1000)
        self.world = World(self.site, self.scenario, self.seed, start_ms)
        self._finished = asyncio.Event()
        for machine_id in self.world.machines:
            machine = self.site.machine(machine_id)
            assert machine is not None
            memory = UnitMemory()
            memory.on_read = partial(self._refresh, machine_id)
            self.memory[machine_id] = memory
            self._units_by_port.setdefault(machine.port, {})[machine.unit_id] = memory
            self._refresh(machine_id)
        try:
            for port in self._units_by_port:
                await self._serve(port)
        except OSError:
            await self._stop_servers()
            raise
        log.info(
            "simulating %d machine(s) on %s, %d port(s), scenario %r, seed %d, speed x%g",
            len(self.memory),
            self.host,
            len(self._servers),
            self.scenario.name,
            self.seed,
            self.speed,
        )
        self._task = asyncio.create_task(self._loop(), name="simulator-faults")

    async def _serve(self, port: int) -> None:
        server = RegisterServer(self.host, port, self._units_by_port[port])
        try:
            await server.start()
        except OSError as exc:
            names = ", ".join(m for m, mem in self.memory.items() if mem in self._units_by_port[port].values())
            raise OSError(f"cannot serve {names} on {self.host}:{port}: {exc}; is the port in use?") from exc
        self._servers[port] = server

    async def wait_finished(self) -> None:
        """Return once simulated time reaches the scenario's end (machines keep their last registers)."""
        await self._finished.wait()

    async def stop(self) -> None:
        """Stop serving and release every port."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._stop_servers()

    async def _stop_servers(self) -> None:
        for server in list(self._servers.values()):
            with contextlib.suppress(Exception):
                await server.stop()
        self._servers.clear()

    def ground_truth(self) -> GroundTruth:
        """What really happened from the start up to now (or the scenario's end, if reached)."""
        return self._require_world().ground_truth(self.sim_now_ms())

    # -- serving ---------------------------------------------------------------------------------------------
    def _refresh(self, machine_id: str) -> None:
        world = self._require_world()
        machine = self.site.machine(machine_id)
        assert machine is not None
        values = world.values(machine_id, self.sim_now_ms())
        self.memory[machine_id].set(encode(self.site.profile(machine.profile), values))
        self.reads += 1

    async def _loop(self) -> None:
        world = self._require_world()
        while True:
            now = self.sim_now_ms()
            try:
                await self._apply_faults(now)
            except OSError as exc:
                log.warning("fault injection: %s; retrying", exc)
            if now >= world.end_ms and not self._finished.is_set():
                log.info("scenario %r reached its end", self.scenario.name)
                self._finished.set()
            await asyncio.sleep(TICK_S)

    async def _apply_faults(self, now_ms: int) -> None:
        world = self._require_world()
        wanted = {(f.machine, f.kind): f for f in world.plan.faults_in(now_ms, now_ms + 1)}
        for key in [k for k in self._active if k not in wanted]:
            await self._set_fault(self._active.pop(key), on=False)
        for key, fault in wanted.items():
            if key not in self._active:
                self._active[key] = fault
                await self._set_fault(fault, on=True)
        for port in sorted(self._down_ports):
            if not any(f.kind is FaultKind.UNREACHABLE and self._port_of(f.machine) == port for f in wanted.values()):
                await self._serve(port)  # raises OSError if the port is taken meanwhile; retried next tick
                self._down_ports.discard(port)

    def _port_of(self, machine_id: str) -> int:
        machine = self.site.machine(machine_id)
        assert machine is not None
        return machine.port

    async def _set_fault(self, fault: Fault, on: bool) -> None:
        memory = self.memory[fault.machine]
        machine = self.site.machine(fault.machine)
        assert machine is not None
        log.info("%s: %s %s", fault.machine, fault.kind.value, "begins" if on else "ends")
        if fault.kind is FaultKind.MODBUS_EXCEPTION:
            memory.behaviour.exception_code = fault.code if on else None
        elif fault.kind is FaultKind.SLOW_REPLIES:
            memory.behaviour.delay_s = fault.delay_s if on else 0.0
        elif len(self._units_by_port[machine.port]) > 1:
            # Other machines answer on this port: this unit just stops answering.
            memory.behaviour.delay_s = SILENT_DELAY_S if on else 0.0
        elif on:
            server = self._servers.pop(machine.port, None)
            self._down_ports.add(machine.port)
            if server is not None:
                await server.stop()
        # The port comes back in _apply_faults once no unreachable window covers it any more.
