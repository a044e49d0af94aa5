"""End-to-end throughput: N simulated machines through agent, Mosquitto and collector into InfluxDB.

Starts its own Mosquitto and InfluxDB (temporary directories, free ports, 127.0.0.1 only), a simulator with N
busy machines (one port each, the four example profiles in turn) and an edge agent, each in a child process, and
a collector in this process. After a warm-up it measures over a window: samples the agent polled, points the
collector wrote, and points that landed in InfluxDB (count query). Then, in the same run and with the chain
stopped, it replays the very lines the collector wrote during the window into a fresh database with
InfluxStore.write_lines from one thread, in batches of the collector's batch size, and prints InfluxDB's raw
write rate next to the landed rate. Prints figures; asserts nothing.

    .venv/bin/python bench/e2e_throughput.py [--machines 50] [--poll-interval 0.1] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import multiprocessing as mp
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from types import FrameType
from typing import Any

from _busy_site import make_site, scenario_spec

from collector.registry import Registry
from collector.service import Collector
from edge_agent.agent import AgentOptions, EdgeAgent
from launcher.services import InfluxDB, Mosquitto, temp_workdir
from shopfloor.config import SiteConfig
from shopfloor.influx import InfluxStore, RejectedLine
from shopfloor.mqtt import MqttSettings
from simulators.runtime import Simulator
from simulators.scenario import Scenario

DB = "bench"
RAW_DB = "bench_raw"
CLK_TCK = os.sysconf("SC_CLK_TCK")
STOP_WAIT_S = 15.0


# ---- site and scenario ---------------------------------------------------------------------------------------


# ---- child processes -----------------------------------------------------------------------------------------


def run_simulator(site_json: str, spec: dict[str, Any], ready: Any, stop: Any) -> None:
    """Child process: serve the machines until told to stop."""

    async def main() -> None:
        site = SiteConfig.model_validate_json(site_json)
        scenario = Scenario.model_validate(spec, context={"site": site})
        sim = Simulator(site, scenario, seed=1)
        await sim.start()
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.1)
        await sim.stop()

    logging.basicConfig(level=logging.WARNING, format="simulator %(levelname)s %(name)s: %(message)s")
    asyncio.run(main())


def run_agent(site_json: str, mqtt_url: str, data_dir: str, publish_interval_s: float | None, conn: Connection) -> None:
    """Child process: run the edge agent; answer "stats" with its counters, "stop" with its final counters."""

    async def main() -> None:
        site = SiteConfig.model_validate_json(site_json)
        options = AgentOptions() if publish_interval_s is None else AgentOptions(publish_interval_s=publish_interval_s)
        agent = EdgeAgent(site, "bench", MqttSettings.from_url(mqtt_url), Path(data_dir), options=options)
        task = asyncio.create_task(agent.run())
        while True:
            if task.done():
                conn.send({"error": repr(task.exception())})
                return
            if conn.poll():
                command = conn.recv()
                if command == "stop":
                    agent.stop()
                    done, _ = await asyncio.wait([task], timeout=STOP_WAIT_S)
                    if not done:
                        conn.send(
                            {
                                "error": f"agent.run() did not return within {STOP_WAIT_S:g} s of stop(); "
                                f"still running: {_busy_tasks(task)}",
                                **agent.stats,
                            }
                        )
                        return
                    conn.send(agent.stats)
                    return
                conn.send(agent.stats)
            await asyncio.sleep(0.02)

    logging.basicConfig(level=logging.WARNING, format="agent %(levelname)s %(name)s: %(message)s")
    # Cancelling a poll mid-read leaves pymodbus' inner task with an unretrieved exception at shutdown: one
    # traceback per machine, all alike. Drop them here so the figures stay readable.
    logging.getLogger("asyncio").addFilter(lambda r: not r.getMessage().startswith("Task exception was never"))
    asyncio.run(main())


def _busy_tasks(main: asyncio.Task[None]) -> str:
    me = asyncio.current_task()
    left = sorted((t for t in asyncio.all_tasks() if t not in (main, me) and not t.done()), key=lambda t: t.get_name())
    if not left:
        return "no task"
    frames = left[0].get_stack(limit=1)
    where = f"{frames[0].f_code.co_filename}:{frames[0].f_lineno}" if frames else "?"
    names = ", ".join(t.get_name() for t in left[:4])
    cancelling = sorted({t.cancelling() for t in left})
    return f"{len(left)} task(s) ({names}, ...), cancelling() {cancelling}, first one waiting at {where}"


def ask(conn: Connection, command: str, timeout_s: float = 30.0) -> dict[str, int]:
    """Send command to the agent process and return the counters it answers with."""
    conn.send(command)
    if not conn.poll(timeout_s):
        raise TimeoutError(f"the agent process did not answer {command!r} within {timeout_s:g} s")
    answer: dict[str, Any] = conn.recv()
    if "error" in answer:
        raise RuntimeError(f"the agent stopped by itself: {answer['error']}")
    return answer


def stop_agent(conn: Connection) -> tuple[dict[str, int], str | None]:
    """Stop the agent process; return its final counters and, if it did not stop cleanly, why."""
    conn.send("stop")
    if not conn.poll(STOP_WAIT_S + 15):
        return {}, "the agent process did not answer 'stop'"
    answer: dict[str, Any] = conn.recv()
    problem = answer.pop("error", None)
    return answer, None if problem is None else str(problem)


# ---- measuring -----------------------------------------------------------------------------------------------


class CountingStore(InfluxStore):
    """An InfluxStore that counts write requests and their time, and records the lines written while asked to."""

    def __init__(self, url: str, database: str) -> None:
        super().__init__(url, database)
        self.lock = threading.Lock()
        self.calls = 0
        self.lines_written = 0
        self.busy_s = 0.0
        self.recording = False
        self.recorded: list[str] = []

    def write_lines(self, lines: Sequence[str]) -> list[RejectedLine]:
        """Write lines and count the request."""
        t0 = time.perf_counter()
        try:
            return super().write_lines(lines)
        finally:
            elapsed = time.perf_counter() - t0
            with self.lock:
                self.calls += 1
                self.lines_written += len(lines)
                self.busy_s += elapsed
                if self.recording:
                    self.recorded.extend(lines)

    def snapshot(self) -> tuple[int, int, float]:
        """Return (requests, lines, seconds spent in requests) so far."""
        with self.lock:
            return self.calls, self.lines_written, self.busy_s


def cpu_seconds(pid: int) -> float:
    """Return user + system CPU seconds a process has used (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the command name: state is field 3, utime field 14 and stime field 15 (1-based, man 5 proc).
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def count_points(store: InfluxStore, measurement: str = "telemetry") -> int:
    """Return how many telemetry points the database holds (every sample has a state)."""
    series = store.query(f'SELECT count("state") FROM "{measurement}"')
    return int(series[0]["values"][0][1]) if series else 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Counters of every stage at one instant."""

    t: float
    agent: dict[str, int]
    collector: dict[str, Any]
    store: tuple[int, int, float]
    landed: int
    cpu: dict[str, float]


def snapshot(conn: Connection, collector: Collector, store: CountingStore, pids: dict[str, int]) -> Snapshot:
    """Read every counter as close together in time as possible."""
    t = time.monotonic()
    return Snapshot(
        t,
        ask(conn, "stats"),
        collector.stats,
        store.snapshot(),
        count_points(store),
        {name: cpu_seconds(pid) for name, pid in pids.items()},
    )


def shifted(lines: list[str], rounds: int) -> list[str]:
    """Repeat lines rounds times, shifting timestamps by a day per round so no point overwrites another."""
    out = list(lines)
    for k in range(1, rounds):
        for line in lines:
            head, ts = line.rsplit(" ", 1)
            out.append(f"{head} {int(ts) - k * 86_400_000}")
    return out


def raw_write_rate(url: str, database: str, lines: list[str], batch: int) -> tuple[float, int]:
    """Write lines in batches of batch from one thread into a fresh database; return (points/s, points)."""
    with InfluxStore(url, database) as store:
        store.ensure_database()
        chunks = [lines[i : i + batch] for i in range(0, len(lines), batch)]
        t0 = time.perf_counter()
        for chunk in chunks:
            store.write_lines(chunk)
        elapsed = time.perf_counter() - t0
        store.query(f'DROP DATABASE "{database}"')
    return len(lines) / elapsed, len(lines)


# ---- the run -------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--machines", type=int, default=50, help="simulated machines (default 50)")
    parser.add_argument("--poll-interval", type=float, default=0.1, help="seconds between polls (default 0.1)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measurement window (default 20)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before the window (default 5)")
    parser.add_argument("--batch-points", type=int, default=5000, help="collector batch size (default 5000)")
    parser.add_argument(
        "--publish-interval",
        type=float,
        default=None,
        help="agent batching: seconds per MQTT message per machine (default: one message per poll)",
    )
    parser.add_argument(
        "--agent-dir",
        type=Path,
        default=None,
        help="parent folder of the agent's data dir (SQLite seq counters; default: the run's temp dir). "
        "A tmpfs such as /dev/shm shows what the per-message fsync costs",
    )
    parser.add_argument(
        "--raw-min-points",
        type=int,
        default=20_000,
        help="replay the window's lines (timestamp-shifted) until at least this many points (default 20000)",
    )
    args = parser.parse_args(argv)
    if not 1 <= args.machines <= 2000:
        parser.error("--machines must be 1..2000")
    if not 0.05 <= args.poll_interval <= 60:
        parser.error("--poll-interval must be 0.05..60 s")
    if not 1 <= args.seconds <= 600 or not 0 <= args.warmup <= 120:
        parser.error("--seconds must be 1..600 and --warmup 0..120")
    if args.batch_points < 1:
        parser.error("--batch-points must be at least 1")
    return args


class Overtime(Exception):
    """The run took longer than its time budget."""


def _overtime(_signum: int, _frame: FrameType | None) -> None:
    raise Overtime("the benchmark ran over its time budget; cleaning up")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    budget_s = int(args.warmup + args.seconds + 180 + args.machines * 0.2)
    signal.signal(signal.SIGALRM, _overtime)
    signal.alarm(budget_s)
    work = temp_workdir("shopfloor-bench-")
    ctx = mp.get_context("spawn")
    procs: list[Any] = []
    services: list[Mosquitto | InfluxDB] = []
    collector: Collector | None = None
    store: CountingStore | None = None
    conn: Connection | None = None
    extra_dirs: list[Path] = []
    try:
        (work / "mqtt").mkdir()
        (work / "influx").mkdir()
        mosquitto = Mosquitto(work / "mqtt").start()
        services.append(mosquitto)
        influx = InfluxDB(work / "influx").start()
        services.append(influx)
        store = CountingStore(influx.url, DB)
        store.ensure_database()

        site = make_site(args.machines, args.poll_interval)
        site_json = site.model_dump_json()
        ready, stop = ctx.Event(), ctx.Event()
        sim = ctx.Process(target=run_simulator, args=(site_json, scenario_spec(site), ready, stop), daemon=True)
        sim.start()
        procs.append(sim)
        if not ready.wait(120):
            raise TimeoutError("the simulator did not start within 120 s")

        mqtt = MqttSettings.from_url(mosquitto.url)
        collector = Collector(
            mqtt, store, client_id="bench-collector", batch_points=args.batch_points, registry=Registry.from_site(site)
        )
        collector.start()
        if not collector.wait_connected(10):
            raise TimeoutError("the collector did not connect to Mosquitto within 10 s")

        agent_dir = (
            Path(tempfile.mkdtemp(prefix="shopfloor-bench-agent-", dir=args.agent_dir)) if args.agent_dir else work
        )
        if agent_dir != work:
            extra_dirs.append(agent_dir)
        conn, child_conn = ctx.Pipe()
        agent = ctx.Process(
            target=run_agent,
            args=(site_json, mosquitto.url, str(agent_dir / "agent"), args.publish_interval, child_conn),
            daemon=True,
        )
        agent.start()
        procs.append(agent)
        assert sim.pid is not None and agent.pid is not None
        assert mosquitto.proc is not None and influx.proc is not None
        pids = {
            "simulator": sim.pid,
            "agent": agent.pid,
            "mosquitto": mosquitto.proc.pid,
            "collector": os.getpid(),
            "influxd": influx.proc.pid,
        }

        time.sleep(args.warmup)
        with store.lock:
            store.recording = True
        s0 = snapshot(conn, collector, store, pids)
        time.sleep(args.seconds)
        s1 = snapshot(conn, collector, store, pids)
        with store.lock:
            store.recording = False
        # Freshness: how old the newest landed sample of each machine is right now.
        now_ms = time.time_ns() // 1_000_000
        latest = store.latest(site.site.id)
        lags = sorted(now_ms - row.ts_ms for row in latest.values())

        final, stop_problem = stop_agent(conn)
        agent.join(10)
        collector.stop()
        collector_final = collector.stats
        stop.set()
        sim.join(30)

        window_lines = list(store.recorded)
        store.recorded.clear()
        raw_rounds = max(1, -(-args.raw_min_points // max(1, len(window_lines))))
        raw_lines = shifted(window_lines, raw_rounds) if window_lines else []
        calls = s1.store[0] - s0.store[0]
        mean_batch = max(1, round((s1.store[1] - s0.store[1]) / calls)) if calls else 1
        raw_rate, raw_points = raw_write_rate(influx.url, RAW_DB, raw_lines, args.batch_points) if raw_lines else (0, 0)
        raw_small, _ = raw_write_rate(influx.url, RAW_DB, raw_lines, mean_batch) if raw_lines else (0, 0)

        report(args, s0, s1, lags, final, collector_final, raw_rate, raw_points, raw_small, mean_batch)
        if stop_problem:
            print(f"  WARNING agent did not stop cleanly (process killed): {stop_problem}")
        return 0
    except Overtime as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        signal.alarm(0)
        if collector is not None:
            with contextlib.suppress(Exception):
                collector.stop(timeout_s=2)
        for proc in procs:
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        if conn is not None:
            conn.close()
        if store is not None:
            store.close()
        for service in reversed(services):
            service.stop()
        for folder in [work, *extra_dirs]:
            shutil.rmtree(folder, ignore_errors=True)


def report(
    args: argparse.Namespace,
    s0: Snapshot,
    s1: Snapshot,
    lags: list[int],
    agent_final: dict[str, int],
    collector_final: dict[str, Any],
    raw_rate: float,
    raw_points: int,
    raw_small: float,
    mean_batch: int,
) -> None:
    """Print the figures of one run."""
    dt = s1.t - s0.t

    def rate(a: float, b: float) -> float:
        return (b - a) / dt

    offered = args.machines / args.poll_interval
    polled = rate(s0.agent["samples"], s1.agent["samples"])
    published = rate(s0.agent["messages"], s1.agent["messages"])
    received = rate(s0.collector["received"], s1.collector["received"])
    written = rate(s0.collector["written_points"], s1.collector["written_points"])
    landed = rate(s0.landed, s1.landed)
    calls = s1.store[0] - s0.store[0]
    busy = (s1.store[2] - s0.store[2]) / dt
    publish = f"{args.publish_interval:g} s" if args.publish_interval else "every poll"
    cpus = os.cpu_count() or 1

    print(
        f"\nend-to-end throughput: {args.machines} machines, poll {args.poll_interval:g} s, agent publishes "
        f"{publish}, collector batch {args.batch_points} points, window {dt:.1f} s after {args.warmup:g} s warm-up"
    )
    print(f"{cpus} CPU(s): simulator, agent, Mosquitto, collector and InfluxDB all share them (and this script)\n")
    rows = [
        ("offered load (machines / poll interval)", f"{offered:10.0f} samples/s", ""),
        ("agent: samples polled", f"{polled:10.0f} samples/s", f"{polled / offered:6.1%} of offered"),
        ("agent: MQTT messages published", f"{published:10.0f} msg/s", ""),
        ("collector: messages received", f"{received:10.0f} msg/s", ""),
        ("collector: points written", f"{written:10.0f} points/s", f"{calls / dt:5.1f} writes/s of ~{mean_batch} pts"),
        ("landed in InfluxDB (count query)", f"{landed:10.0f} samples/s", f"{landed / offered:6.1%} of offered"),
        ("InfluxDB raw write, one thread", f"{raw_rate:10.0f} points/s", f"batches of {args.batch_points}"),
        ("InfluxDB raw write, one thread", f"{raw_small:10.0f} points/s", f"batches of {mean_batch} (as collector)"),
        ("ratio landed / raw", f"{landed / raw_rate if raw_rate else 0:10.1%}", f"raw: {raw_points} points replayed"),
    ]
    for name, value, note in rows:
        print(f"  {name:<42}{value:<22}{note}")
    if lags:
        print(
            f"\n  freshness at the end (now - newest landed sample ts, per machine): median "
            f"{statistics.median(lags):.0f} ms, max {lags[-1]:.0f} ms (includes up to one poll interval"
            f"{' + publish interval' if args.publish_interval else ''} of sample age)"
        )
    print(f"  collector writer busy in InfluxDB requests: {busy:.0%} of the window")
    print(
        "  CPU over the window (100% = one core): "
        + ", ".join(f"{name} {(s1.cpu[name] - s0.cpu[name]) / dt:.0%}" for name in s1.cpu)
    )
    backlog = s1.collector["queued_points"]
    print(
        f"  agent: skipped ticks {s1.agent['skipped_ticks'] - s0.agent['skipped_ticks']}, "
        f"poll failures {s1.agent['failures'] - s0.agent['failures']}, "
        f"dropped {agent_final.get('dropped_samples', '?')}; "
        f"collector: queued at end of window {backlog} points, invalid {sum(collector_final['invalid'].values())}, "
        f"store failures {collector_final['store_failures']}"
    )


if __name__ == "__main__":
    sys.exit(main())
