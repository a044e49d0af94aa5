"""Agent scale: one edge agent process polling 50, 200, 500 simulated PLCs at 1 s, next to a minimal poller.

For each size, a simulator child process serves the machines (one port each, busy scenario), and a real
Mosquitto (launcher.services, free port) takes the telemetry. First the edge agent runs as its own process
(`python -m edge_agent`, see AGENT_COMMAND), then bench/_baseline_poller.py (one read per register block, json.dumps,
paho QoS1 publish, nothing else) against the same simulator and broker, each for --warmup then --seconds.
Measured the same way for both, over the window:

- CPU-ms per device-poll: utime+stime of the process (/proc/<pid>/stat) / device polls, where device polls are
  counted by the simulator (Modbus requests per machine / register blocks of its profile), so the figure does
  not depend on what the agent says about itself;
- poll-start jitter p50/p99: each sample's ts against the machine's ideal 1 s schedule, whose phase is taken as
  that machine's earliest-in-its-second poll (a lower bound of the true lateness; 0 = on the beat);
- poll-to-broker latency p50/p99: a subscriber in this process, receive time minus sample ts;
- RSS (VmRSS) at the end of the window, and values sent per poll (values in received messages / device polls;
  the baseline sends raw registers, so its figure counts registers).

It prints the ratio agent / baseline of CPU per device-poll. --broker-outage S stops Mosquitto for S seconds in
the middle of the agent's window and prints the agent's RSS every 30 s. Prints figures; asserts nothing.

    .venv/bin/python bench/agent_scale.py [--sizes 50,200,500] [--seconds 60] [--warmup 15] [--broker-outage S]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import logging
import math
import multiprocessing as mp
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from types import FrameType
from typing import Any

from _busy_site import make_site, scenario_spec

from collector.convert import Written, commit_messages
from launcher.services import Mosquitto, temp_workdir
from shopfloor.codec import plan_reads
from shopfloor.config import SiteConfig
from shopfloor.mqtt import InboundMessage, MqttLink, MqttSettings

REPO = Path(__file__).resolve().parents[1]
BASELINE = Path(__file__).resolve().parent / "_baseline_poller.py"
POLL_INTERVAL_S = 1.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
STOP_WAIT_S = 20.0


def agent_command(site_file: Path, data_dir: Path, mqtt_url: str, extra: list[str]) -> list[str]:
    """The agent's command line: the one place to adjust when its options change (e.g. --metrics-port)."""
    return [
        sys.executable,
        "-m",
        "edge_agent",
        "--site",
        str(site_file),
        "--agent-id",
        "bench",
        "--data-dir",
        str(data_dir),
        "--mqtt",
        mqtt_url,
        "--log-level",
        "WARNING",
        *extra,
    ]


# ---- site and simulator --------------------------------------------------------------------------------------


def run_simulator(site_json: str, spec: dict[str, Any], conn: Connection) -> None:
    """Child process: serve the machines; answer "reads" with Modbus requests served per machine, stop on "stop"."""
    import asyncio

    from simulators.runtime import Simulator
    from simulators.scenario import Scenario

    async def main() -> None:
        site = SiteConfig.model_validate_json(site_json)
        sim = Simulator(site, Scenario.model_validate(spec, context={"site": site}), seed=1)
        await sim.start()
        reads: Counter[str] = Counter()
        for machine_id, memory in sim.memory.items():
            refresh = memory.on_read

            def counted(m: str = machine_id, inner: Any = refresh) -> None:
                reads[m] += 1
                if inner is not None:
                    inner()

            memory.on_read = counted
        conn.send("ready")
        while True:
            if conn.poll():
                command = conn.recv()
                if command == "stop":
                    break
                conn.send(dict(reads))
            await asyncio.sleep(0.05)
        await sim.stop()

    logging.basicConfig(level=logging.WARNING, format="simulator %(levelname)s %(name)s: %(message)s")
    asyncio.run(main())


def ask(conn: Connection, command: str) -> Any:
    conn.send(command)
    if not conn.poll(30):
        raise TimeoutError(f"the simulator did not answer {command!r} within 30 s")
    return conn.recv()


# ---- measuring -----------------------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """Return user + system CPU seconds a process has used (0 if it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime: fields 14 and 15 (man 5 proc)


def rss_mb(pid: int) -> float:
    """Return the resident set size of a process in MB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@dataclass
class Received:
    """What the subscriber saw while recording: sample timestamps per machine, latencies, values."""

    ts: dict[str, list[int]] = field(default_factory=dict)
    latency_ms: list[int] = field(default_factory=list)
    values: int = 0
    messages: int = 0
    bad: int = 0


class Subscriber:
    """Receives agent telemetry and baseline messages; records them only between start() and stop()."""

    def __init__(self, mqtt_url: str) -> None:
        self.lock = threading.Lock()
        self.recording = False
        self.got = Received()
        # Like a collector, it commits what it received (every 0.2 s), so the agent's outbox empties as it would
        # in a deployment instead of resending everything after its commit timeout.
        self.written: list[Written] = []
        self.link = MqttLink(MqttSettings.from_url(mqtt_url), "bench-subscriber", on_message=self._on_message)
        self.link.subscribe(["shopfloor/v1/+/+/telemetry", "bench/baseline/+"], qos=0)
        self.link.start()
        if not self.link.wait_connected(10):
            raise TimeoutError("the bench subscriber did not connect to Mosquitto within 10 s")
        self._closing = threading.Event()
        self._committer = threading.Thread(target=self._commit_loop, name="bench-commits", daemon=True)
        self._committer.start()

    def _commit_loop(self) -> None:
        while not self._closing.wait(0.2):
            with self.lock:
                written, self.written = self.written, []
            for topic, body in commit_messages(written).items():
                self.link.publish(str(topic), body, qos=1)

    def _on_message(self, msg: InboundMessage) -> None:
        now_ms = time.time_ns() // 1_000_000
        try:
            payload = json.loads(msg.payload)
            if "samples" in payload:  # a TelemetryBatch
                machine = str(payload["machine"])
                samples = [(int(s["ts"]), len(s["values"])) for s in payload["samples"]]
                done = Written(str(payload["site"]), str(payload["agent"]), machine, int(payload["seq"]))
                with self.lock:
                    self.written.append(done)  # committed whether recording or not, as a collector would
            else:  # the baseline's {"ts", "registers"}
                machine = msg.topic.rsplit("/", 1)[1]
                samples = [(int(payload["ts"]), sum(len(block) for block in payload["registers"]))]
        except (ValueError, KeyError, TypeError):
            with self.lock:
                self.got.bad += 1
            return
        if not self.recording:
            return
        with self.lock:
            got = self.got
            got.messages += 1
            for ts, values in samples:
                got.ts.setdefault(machine, []).append(ts)
                got.latency_ms.append(now_ms - ts)
                got.values += values

    def start(self) -> None:
        with self.lock:
            self.got = Received()
            self.recording = True

    def stop(self) -> Received:
        with self.lock:
            self.recording = False
            return self.got

    def close(self) -> None:
        self._closing.set()
        self._committer.join(2)
        self.link.stop()


def lateness_ms(ts_by_machine: dict[str, list[int]], interval_ms: int) -> list[int]:
    """Each sample's lateness against its machine's ideal schedule, phased at its earliest poll in the cycle."""
    out: list[int] = []
    for stamps in ts_by_machine.values():
        offsets = sorted({ts % interval_ms for ts in stamps})
        if not offsets:
            continue
        # The schedule's phase is where the smallest arc holding every offset starts (offsets wrap at interval).
        gaps = [(b - a, b) for a, b in itertools.pairwise(offsets)]
        gaps.append((offsets[0] + interval_ms - offsets[-1], offsets[0]))
        phase = max(gaps)[1]
        out.extend((ts - phase) % interval_ms for ts in stamps)
    return out


def percentile(values: list[int], q: float) -> float:
    """The q-quantile (0..1) of values, nearest rank; NaN if empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))])


@dataclass(frozen=True, slots=True)
class Figures:
    """One poller's figures over its window."""

    name: str
    window_s: float
    polls: float
    cpu_s: float
    rss_mb: float
    received: Received
    note: str = ""

    @property
    def cpu_ms_per_poll(self) -> float:
        return 1000 * self.cpu_s / self.polls if self.polls else math.nan


def device_polls(reads0: dict[str, int], reads1: dict[str, int], blocks: dict[str, int]) -> float:
    """Device polls served between two read counts: requests per machine / register blocks per poll."""
    return sum((reads1.get(m, 0) - reads0.get(m, 0)) / n for m, n in blocks.items())


class Processes:
    """Every process the bench started, so that any exit stops them all."""

    def __init__(self) -> None:
        self.popen: list[subprocess.Popen[bytes]] = []
        self.children: list[Any] = []

    def spawn(self, argv: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
        with log.open("ab") as out:
            # A session of its own: Ctrl-C reaches only this script, which then stops the process itself.
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        self.popen.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes]) -> bool:
        """Stop proc (SIGTERM, then SIGKILL); return whether it stopped by itself in time."""
        if proc.poll() is not None:
            return True
        proc.terminate()
        try:
            proc.wait(STOP_WAIT_S)
            return True
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
            return False

    def stop_all(self) -> None:
        for proc in self.popen:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        for child in self.children:
            if child.is_alive():
                child.kill()
                child.join(5)


def measure(
    name: str,
    proc: subprocess.Popen[bytes],
    procs: Processes,
    args: argparse.Namespace,
    sim: Connection,
    blocks: dict[str, int],
    sub: Subscriber,
    broker: Mosquitto,
    log: Path,
    outage: float = 0.0,
) -> Figures:
    """Warm up, then measure proc over the window (optionally with a broker outage mid-window), then stop it."""
    t_start = time.monotonic()
    while time.monotonic() - t_start < args.warmup:
        time.sleep(0.2)
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")
    reads0, cpu0, t0 = ask(sim, "reads"), cpu_seconds(proc.pid), time.monotonic()
    sub.start()
    down_at = t0 + (args.seconds - outage) / 2 if outage else math.inf
    up_at = down_at + outage
    next_rss = t0
    broker_down = False
    while (now := time.monotonic()) < t0 + args.seconds:
        if outage and now >= next_rss:
            state = "down" if broker_down else "up"
            print(f"    {name}: t={now - t0:5.0f} s  RSS {rss_mb(proc.pid):6.1f} MB  (broker {state})", flush=True)
            next_rss += 30
        if not broker_down and now >= down_at and now < up_at:
            broker.stop()
            broker_down = True
            print(f"    {name}: t={now - t0:5.0f} s  broker stopped for {outage:g} s", flush=True)
        elif broker_down and now >= up_at:
            broker.start()
            broker_down = False
            print(f"    {name}: t={now - t0:5.0f} s  broker back; RSS {rss_mb(proc.pid):6.1f} MB", flush=True)
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(min(0.1, max(0.0, t0 + args.seconds - time.monotonic())))
    if broker_down:
        broker.start()
    reads1, cpu1, t1 = ask(sim, "reads"), cpu_seconds(proc.pid), time.monotonic()
    got = sub.stop()
    rss = rss_mb(proc.pid)
    clean = procs.stop(proc)
    return Figures(
        name,
        t1 - t0,
        device_polls(reads0, reads1, blocks),
        cpu1 - cpu0,
        rss,
        got,
        "" if clean else f"did not stop within {STOP_WAIT_S:g} s of SIGTERM (killed)",
    )


# ---- the run -------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="50,200,500", help="machine counts, comma-separated (default 50,200,500)")
    parser.add_argument("--seconds", type=float, default=60.0, help="measurement window per poller (default 60)")
    parser.add_argument("--warmup", type=float, default=15.0, help="seconds before each window (default 15)")
    parser.add_argument(
        "--broker-outage",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="stop Mosquitto this long in the middle of the agent's window; print its RSS every 30 s",
    )
    parser.add_argument(
        "--agent-tree",
        type=Path,
        default=None,
        help="run the agent from this source tree (put first on PYTHONPATH), e.g. a `git archive HEAD` copy",
    )
    parser.add_argument(
        "--agent-arg", action="append", default=[], help="extra agent argument, repeatable: --agent-arg=--flag=v"
    )
    args = parser.parse_args(argv)
    try:
        args.size_list = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error("--sizes must be comma-separated integers, e.g. 50,200,500")
    if not args.size_list or not all(1 <= n <= 2000 for n in args.size_list):
        parser.error("--sizes must be 1..2000 each")
    if not 5 <= args.seconds <= 3600 or not 0 <= args.warmup <= 600:
        parser.error("--seconds must be 5..3600 and --warmup 0..600")
    # A whole number of poll intervals: both read counts are then taken at the same phase of the poll cycle,
    # so no machine is counted one poll more or less than the others.
    args.seconds = max(1, round(args.seconds / POLL_INTERVAL_S)) * POLL_INTERVAL_S
    if not 0 <= args.broker_outage < args.seconds:
        parser.error("--broker-outage must be shorter than --seconds")
    return args


class Interrupted(Exception):
    """SIGTERM, SIGINT or the watchdog: stop everything."""


def _interrupt(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(f"stopped by {signal.Signals(signum).name}; cleaning up")


def run_size(
    n: int, args: argparse.Namespace, work: Path, broker: Mosquitto, sub: Subscriber, procs: Processes
) -> tuple[Figures, Figures]:
    """Measure the agent and the baseline on n machines; return their figures."""
    site = make_site(n, POLL_INTERVAL_S)
    folder = work / f"size-{n}"
    folder.mkdir()
    site_file = folder / "site.yaml"  # JSON is YAML: the site with its profiles inline
    site_file.write_text(json.dumps(site.model_dump(mode="json", exclude_none=True)))
    plans = {p.model: plan_reads(p) for p in site.profiles}
    blocks = {m.id: len(plans[m.profile]) for m in site.machines}
    spec = {
        "interval_s": POLL_INTERVAL_S,
        "devices": [
            {
                "id": m.id,
                "host": m.host,
                "port": m.port,
                "unit": m.unit_id,
                "blocks": [[b.table.value, b.start, b.count] for b in plans[m.profile]],
            }
            for m in site.machines
        ],
    }
    (folder / "baseline.json").write_text(json.dumps(spec))

    ctx = mp.get_context("spawn")
    sim_conn, child_conn = ctx.Pipe()
    sim = ctx.Process(target=run_simulator, args=(site.model_dump_json(), scenario_spec(site), child_conn), daemon=True)
    sim.start()
    procs.children.append(sim)
    if not sim_conn.poll(180):
        raise TimeoutError("the simulator did not start within 180 s")
    sim_conn.recv()

    env = dict(os.environ)
    agent_env = dict(env)
    if args.agent_tree is not None:
        agent_env["PYTHONPATH"] = os.pathsep.join([str(args.agent_tree.resolve()), env.get("PYTHONPATH", "")])
    try:
        log = folder / "agent.log"
        argv = agent_command(site_file, folder / "agent-data", broker.url, args.agent_arg)
        agent = procs.spawn(argv, log, agent_env)
        fig_agent = measure("agent", agent, procs, args, sim_conn, blocks, sub, broker, log, args.broker_outage)
        log = folder / "baseline.log"
        cmd = [sys.executable, str(BASELINE), str(folder / "baseline.json"), "127.0.0.1", str(broker.port)]
        baseline = procs.spawn(cmd, log, env)
        fig_base = measure("baseline", baseline, procs, args, sim_conn, blocks, sub, broker, log)
    finally:
        sim_conn.send("stop")
        sim.join(30)
    return fig_agent, fig_base


def report(n: int, figures: list[Figures]) -> None:
    interval_ms = round(POLL_INTERVAL_S * 1000)
    print(f"\n{n} machines, poll {POLL_INTERVAL_S:g} s")
    print(
        f"  {'':<9}{'polls/s':>8}{'CPU-ms/poll':>13}{'CPU %':>7}{'jitter p50':>12}{'p99':>9}"
        f"{'latency p50':>13}{'p99':>9}{'RSS MB':>8}{'values/poll':>13}"
    )
    for f in figures:
        got = f.received
        late = lateness_ms(got.ts, interval_ms)
        print(
            f"  {f.name:<9}{f.polls / f.window_s:8.0f}{f.cpu_ms_per_poll:13.3f}{100 * f.cpu_s / f.window_s:7.1f}"
            f"{percentile(late, 0.5):10.0f}ms{percentile(late, 0.99):7.0f}ms"
            f"{percentile(got.latency_ms, 0.5):11.0f}ms{percentile(got.latency_ms, 0.99):7.0f}ms"
            f"{f.rss_mb:8.1f}{got.values / f.polls if f.polls else math.nan:13.2f}"
            + (f"  ({got.bad} unreadable messages)" if got.bad else "")
            + (f"  WARNING {f.note}" if f.note else "")
        )
    agent, base = figures
    if base.cpu_ms_per_poll and not math.isnan(base.cpu_ms_per_poll):
        print(f"  ratio agent / baseline, CPU per device-poll: {agent.cpu_ms_per_poll / base.cpu_ms_per_poll:.2f}")
    expected = n * agent.window_s / POLL_INTERVAL_S
    print(
        f"  device polls served vs scheduled: agent {agent.polls / expected:.1%}, "
        f"baseline {base.polls / (n * base.window_s / POLL_INTERVAL_S):.1%}; "
        f"samples received: agent {sum(map(len, agent.received.ts.values()))}, "
        f"baseline {sum(map(len, base.received.ts.values()))}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The subscriber's reconnect warnings would interleave with the figures (a broker outage is on purpose).
    logging.getLogger("shopfloor.mqtt").setLevel(logging.ERROR)
    per_size = 2 * (args.warmup + args.seconds) + 2 * STOP_WAIT_S + 60
    signal.signal(signal.SIGALRM, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    signal.alarm(int(per_size * len(args.size_list) + 120))
    work = temp_workdir("shopfloor-bench-scale-")
    procs = Processes()
    broker: Mosquitto | None = None
    sub: Subscriber | None = None
    try:
        (work / "mqtt").mkdir()
        broker = Mosquitto(work / "mqtt").start()
        sub = Subscriber(broker.url)
        print(
            f"agent scale: sizes {args.size_list}, window {args.seconds:g} s after {args.warmup:g} s warm-up per "
            f"poller, {os.cpu_count()} CPUs shared by simulator, poller, Mosquitto and this script"
            + (f"; broker outage {args.broker_outage:g} s in the agent's window" if args.broker_outage else ""),
            flush=True,
        )
        for n in args.size_list:
            figures = run_size(n, args, work, broker, sub, procs)
            report(n, list(figures))
        print(
            "\n  jitter: poll start (sample ts) after the machine's earliest-in-cycle poll; latency: subscriber "
            "receive time - sample ts (includes any batching delay)"
        )
        return 0
    except (Interrupted, RuntimeError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        procs.stop_all()
        if sub is not None:
            sub.close()
        if broker is not None:
            broker.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
