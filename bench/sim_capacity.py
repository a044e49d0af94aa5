"""How many simulated machines one simulator process serves, and how fast.

Starts the simulator in a child process with 1 machine (baseline), then 1000 machines with one port each,
then 1000 machines on 5 ports (200 unit ids per port), and reads them over Modbus TCP from this process with
concurrent clients for a few seconds each. Prints figures; asserts nothing.

    python bench/sim_capacity.py [--machines 1000] [--seconds 5] [--clients 32]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import resource
import socket
import time
from typing import Any

from shopfloor.codec import plan_reads
from shopfloor.config import SiteConfig, load_site
from shopfloor.modbus import PlcError, PlcReader
from simulators.runtime import Simulator
from simulators.scenario import Scenario

MODELS = ["cnc-mill-v1", "fiber-laser-v1", "injection-press-v1", "press-brake-v1"]
BADGES = [1001, 1002, 2001, 3001, 3002]


def distinct_ports(n: int) -> list[int]:
    """n free ports, all different (free_port() alone may hand out a port twice)."""
    socks = []
    for _ in range(n):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        socks.append(sock)
    ports = [s.getsockname()[1] for s in socks]
    for sock in socks:
        sock.close()
    return ports


def make_site(n: int, shared_ports: int) -> SiteConfig:
    """The example site's profiles and tenants with n machines, on n ports or on shared_ports ports."""
    base = load_site("examples/site.yaml")
    ports = distinct_ports(shared_ports or n)
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


def serve(site_json: str, ready: Any, stop: Any, result: Any) -> None:
    """Child process: run the simulator until told to stop; report start time and memory."""

    async def main() -> None:
        site = SiteConfig.model_validate_json(site_json)
        t0 = time.perf_counter()
        sim = Simulator(site, make_scenario(site), seed=1)
        await sim.start()
        started = time.perf_counter() - t0
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.1)
        result.put(
            {
                "start_s": started,
                "served": sim.reads,
                "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
        await sim.stop()

    asyncio.run(main())


async def hammer(site: SiteConfig, seconds: float, clients: int) -> tuple[int, int]:
    """Read machines round-robin with concurrent clients; return (reads, errors)."""
    counts = [0, 0]
    deadline = time.perf_counter() + seconds

    async def client(k: int) -> None:
        machines = site.machines[k::clients] or site.machines
        readers: dict[int, PlcReader] = {}  # one connection per port, kept open like an agent does
        i = 0
        while time.perf_counter() < deadline:
            m = machines[i % len(machines)]
            i += 1
            reader = readers.get(m.port)
            if reader is None:
                reader = readers[m.port] = PlcReader("127.0.0.1", m.port, m.unit_id, 2.0)
            reader.unit_id = m.unit_id
            try:
                await reader.read(plan_reads(site.profile(m.profile)))
                counts[0] += 1
            except PlcError:
                counts[1] += 1
        for r in readers.values():
            r.close()

    await asyncio.gather(*(client(k) for k in range(clients)))
    return counts[0], counts[1]


def run_case(name: str, site: SiteConfig, seconds: float, clients: int) -> None:
    ctx = mp.get_context("spawn")
    ready, stop, result = ctx.Event(), ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=serve, args=(site.model_dump_json(), ready, stop, result))
    proc.start()
    if not ready.wait(120):
        proc.kill()
        print(f"{name}: simulator did not start within 120 s")
        return
    reads, errors = asyncio.run(hammer(site, seconds, clients))
    stop.set()
    info = result.get(timeout=30)
    proc.join(30)
    ports = len({m.port for m in site.machines})
    print(
        f"{name:<34} machines {len(site.machines):>5}  ports {ports:>5}  start {info['start_s']:6.2f} s  "
        f"reads/s {reads / seconds:8.0f}  errors {errors:>4}  server RSS {info['rss_mb']:6.0f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--machines", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=32)
    args = parser.parse_args()
    print(f"simulator capacity, {args.clients} concurrent Modbus clients, {args.seconds:g} s per case")
    run_case("baseline: 1 machine", make_site(1, 0), args.seconds, args.clients)
    run_case(f"{args.machines} machines, one port each", make_site(args.machines, 0), args.seconds, args.clients)
    run_case(f"{args.machines} machines, 5 shared ports", make_site(args.machines, 5), args.seconds, args.clients)


if __name__ == "__main__":
    main()
