"""How many simulated machines one simulator process serves, and how fast.

Starts the simulator in a child process with 1 machine (baseline), then N machines with one port each, then N
machines on 5 shared ports (unit ids 1..N/5 on each), and reads them over Modbus TCP for a few seconds each from
several client processes (each with concurrent connections), so the figure is what the server can serve, not
what one Python client can ask. The server process also reports how busy its CPU was while being read: near
100 % means the server was the bottleneck. Prints figures; asserts nothing.

    python bench/sim_capacity.py [--machines 1000] [--seconds 5] [--procs 4] [--clients 16]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import resource
import struct
import time
from typing import Any

from launcher.services import free_ports
from shopfloor.codec import ReadBlock, plan_reads
from shopfloor.config import SiteConfig, Table, load_site
from shopfloor.modbus import PlcError, PlcReader
from simulators.runtime import Simulator
from simulators.scenario import Scenario

MODELS = ["cnc-mill-v1", "fiber-laser-v1", "injection-press-v1", "press-brake-v1"]
BADGES = [1001, 1002, 2001, 3001, 3002]


def make_site(n: int, shared_ports: int) -> SiteConfig:
    """The example site's profiles and tenants with n machines, on n ports or on shared_ports ports."""
    base = load_site("examples/site.yaml")
    ports = free_ports(shared_ports or n)
    machines = []
    for i in range(n):
        port = ports[i % len(ports)]
        unit = (i // len(ports)) + 1 if shared_ports else 1
        machines.append(
            base.machines[0].model_copy(
                update={"id": f"m-{i:04d}", "profile": MODELS[i % 4], "port": port, "unit_id": unit}
            )
        )
    return base.model_copy(update={"machines": machines})


def make_scenario(site: SiteConfig) -> Scenario:
    sessions = [
        {
            "machine": m.id,
            "badge": BADGES[i % 5],
            "at": f"{i % 30}s",
            "duration": "2h",
            "jobs": [{"id": "BENCH", "cycle_s": 5 + i % 7, "reject_rate": 0.05, "setup": "5s"}],
        }
        for i, m in enumerate(site.machines)
    ]
    return Scenario.model_validate({"duration": "2h", "sessions": sessions}, context={"site": site})


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def serve(site_json: str, ready: Any, go: Any, stop: Any, result: Any) -> None:
    """Child process: run the simulator until told to stop; report start time, CPU while read, and memory."""

    async def main() -> None:
        site = SiteConfig.model_validate_json(site_json)
        t0 = time.perf_counter()
        sim = Simulator(site, make_scenario(site), seed=1)
        await sim.start()
        started = time.perf_counter() - t0
        ready.set()
        while not go.is_set():
            await asyncio.sleep(0.01)
        cpu0, wall0, served0 = _cpu_s(), time.perf_counter(), sim.reads
        while not stop.is_set():
            await asyncio.sleep(0.05)
        cpu, wall = _cpu_s() - cpu0, time.perf_counter() - wall0
        result.put(
            {
                "start_s": started,
                "served": sim.reads - served0,
                "cpu_pct": 100 * cpu / wall,
                "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
        await sim.stop()

    asyncio.run(main())


class RawReader:
    """A minimal Modbus TCP client (read holding/input registers), far cheaper per request than pymodbus.

    The agent uses PlcReader (pymodbus); for load generation its per-request cost would hide the server's.
    """

    def __init__(self, port: int, unit_id: int) -> None:
        self.port, self.unit_id, self.tid = port, unit_id, 0
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def read(self, blocks: list[ReadBlock]) -> None:
        if self.streams is None:
            self.streams = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), 2.0)
        reader, writer = self.streams
        for block in blocks:
            self.tid = (self.tid + 1) & 0xFFFF
            function = 3 if block.table is Table.HOLDING else 4
            writer.write(struct.pack(">HHHBBHH", self.tid, 0, 6, self.unit_id, function, block.start, block.count))
            header = await asyncio.wait_for(reader.readexactly(7), 2.0)
            tid, _, length, _ = struct.unpack(">HHHB", header)
            body = await asyncio.wait_for(reader.readexactly(length - 1), 2.0)
            if tid != self.tid or body[0] != function or len(body) != 2 + 2 * block.count:
                raise PlcError(f"bad reply to {block}: {body[:3]!r}")

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()


async def hammer(site: SiteConfig, machines: list[Any], seconds: float, clients: int, raw: bool) -> tuple[int, int]:
    """Read machines round-robin with concurrent connections for seconds; return (reads, errors)."""
    counts = [0, 0]
    deadline = time.perf_counter() + seconds
    blocks = {p.model: plan_reads(p) for p in site.profiles}

    async def client(k: int) -> None:
        mine = machines[k::clients] or machines
        readers: dict[tuple[int, int], RawReader | PlcReader] = {}  # a connection per machine, kept open
        i = 0
        while time.perf_counter() < deadline:
            m = mine[i % len(mine)]
            i += 1
            key = (m.port, m.unit_id)
            reader = readers.get(key)
            if reader is None:
                reader = RawReader(m.port, m.unit_id) if raw else PlcReader("127.0.0.1", m.port, m.unit_id, 2.0)
                readers[key] = reader
            try:
                await reader.read(blocks[m.profile])
                counts[0] += 1
            except (PlcError, OSError, TimeoutError, asyncio.IncompleteReadError):
                counts[1] += 1
                if isinstance(reader, RawReader):
                    reader.close()
                    readers.pop(key)
        for r in readers.values():
            r.close()

    await asyncio.gather(*(client(k) for k in range(clients)))
    return counts[0], counts[1]


def load(site_json: str, proc: int, procs: int, seconds: float, clients: int, raw: bool, go: Any, result: Any) -> None:
    """Client process: read its share of the machines (every procs-th, from proc) once go is set."""
    site = SiteConfig.model_validate_json(site_json)
    machines = site.machines[proc::procs] or site.machines
    go.wait()
    cpu0 = _cpu_s()
    reads, errors = asyncio.run(hammer(site, list(machines), seconds, clients, raw))
    result.put((reads, errors, 100 * (_cpu_s() - cpu0) / seconds))


def run_case(name: str, site: SiteConfig, seconds: float, procs: int, clients: int, raw: bool) -> float:
    """Measure one layout; print a line and return reads/s."""
    ctx = mp.get_context("spawn")
    ready, go, stop, result, loads = ctx.Event(), ctx.Event(), ctx.Event(), ctx.Queue(), ctx.Queue()
    site_json = site.model_dump_json()
    server = ctx.Process(target=serve, args=(site_json, ready, go, stop, result))
    server.start()
    workers = [
        ctx.Process(target=load, args=(site_json, k, procs, seconds, clients, raw, go, loads)) for k in range(procs)
    ]
    for worker in workers:
        worker.start()
    if not ready.wait(180):
        server.kill()
        for worker in workers:
            worker.kill()
        print(f"{name}: simulator did not start within 180 s")
        return 0.0
    time.sleep(2.0)  # let the client processes import and wait at the start line
    go.set()
    outcomes = [loads.get(timeout=seconds + 120) for _ in workers]
    stop.set()
    info = result.get(timeout=60)
    for proc in (server, *workers):
        proc.join(30)
    reads, errors = sum(o[0] for o in outcomes), sum(o[1] for o in outcomes)
    client_cpu = sum(o[2] for o in outcomes)
    ports = len({m.port for m in site.machines})
    rate = reads / seconds
    print(
        f"{name:<36} machines {len(site.machines):>5}  ports {ports:>5}  start {info['start_s']:6.2f} s  "
        f"reads/s {rate:7.0f}  errors {errors:>4}  CPU server {info['cpu_pct']:3.0f} % clients {client_cpu:3.0f} %  "
        f"RSS {info['rss_mb']:4.0f} MB"
    )
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--machines", type=int, default=1000, help="machines in the large cases (default 1000)")
    parser.add_argument("--seconds", type=float, default=5.0, help="reading time per case (default 5)")
    parser.add_argument(
        "--procs", type=int, default=max(1, (os.cpu_count() or 2) - 1), help="client processes (default: CPUs - 1)"
    )
    parser.add_argument("--clients", type=int, default=16, help="concurrent connections per client process")
    parser.add_argument(
        "--pymodbus", action="store_true", help="read with the agent's PlcReader instead of the light raw client"
    )
    args = parser.parse_args()
    client = "PlcReader (pymodbus)" if args.pymodbus else "raw Modbus TCP"
    print(
        f"simulator capacity: {args.procs} client processes x {args.clients} connections ({client}), "
        f"{args.seconds:g} s per case, {os.cpu_count()} CPUs; a read = every block of the machine's profile"
    )
    opts = (args.seconds, args.procs, args.clients, not args.pymodbus)
    base = run_case("baseline: 1 machine", make_site(1, 0), *opts)
    own = run_case(f"{args.machines} machines, one port each", make_site(args.machines, 0), *opts)
    shared = run_case(f"{args.machines} machines, 5 shared ports", make_site(args.machines, 5), *opts)
    if base > 0:
        print(
            f"ratio to baseline: one port each {own / base:.2f}, shared ports {shared / base:.2f} "
            "(1.00 = serving many machines costs nothing per read)"
        )


if __name__ == "__main__":
    main()
