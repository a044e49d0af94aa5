"""How fast the collector drains a broker backlog into InfluxDB, next to the broker's and the store's own rates.

In one run, on local Mosquitto and InfluxDB servers of its own:
  (a) broker: a plain paho QoS1 subscriber (auto-ack) drains a backlog preloaded into its persistent session;
  (b) store: one thread writes the collector's own line protocol to /write in batches of --batch-points;
  (c) collector: `shopfloor collect` processes (1 and 2 replicas on a shared subscription) drain the same kind of
      backlog preloaded into their persistent sessions; timed from their broker connect to the last sample landed
      (the replicas' samples_written counters, then a count() query confirms), with CPU (utime+stime from /proc)
      and peak RSS (VmHWM) per process.
  (d) Node-RED: the batching flow a Node-RED user builds for this (mqtt in, QoS1, persistent session -> function:
      one point per sample -> join: --batch-points samples or 1 s -> influxdb batch, node-red-contrib-influxdb)
      drains the same backlog into its own database; timed from its broker connect to the last sample landed.
      Node-RED 4.1 and the InfluxDB nodes 0.7 are installed once with npm under --node-red-dir (a bench tool, no
      project dependency); without npm or Node.js the line says "not available".
Each collector figure is also given as a ratio to min(a, b) and to Node-RED for the same message shape (issue 7's
goal: two replicas at least twice Node-RED with 1-sample messages). Prints; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from collector.convert import batch_to_points  # noqa: E402
from launcher.services import InfluxDB, Mosquitto, free_ports, temp_workdir  # noqa: E402
from shopfloor.contracts import TelemetryBatch  # noqa: E402
from shopfloor.influx import InfluxStore, to_line  # noqa: E402

SITE = "bdg"
AGENT = "edge-1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
WATCHDOG_S = 900
NODE_RED = ("node-red@4.1", "node-red-contrib-influxdb@0.7")


# ---- workload -------------------------------------------------------------------------------------------------


def site_file(workdir: Path, machines: int) -> Path:
    """A site of `machines` CNC mills, all served by edge-1 (the collector checks every message against it)."""
    profiles = REPO / "shopfloor" / "examples" / "profiles"
    lines = [
        "site: {id: bdg, name: Bench, timezone: Asia/Jakarta}",
        f"profiles: [{profiles / 'cnc-mill-v1.yaml'}]",
        "machines:",
        *(
            f"  - {{id: m-{i:04d}, name: m{i}, profile: cnc-mill-v1, host: 127.0.0.1, port: {20000 + i}, unit_id: 1}}"
            for i in range(machines)
        ),
        f"agents:\n  - id: {AGENT}\n    machines: [{', '.join(f'm-{i:04d}' for i in range(machines))}]",
        "tenants: []",
        "api_keys: []",
    ]
    path = workdir / "site.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def payloads(messages: int, samples: int, machines: int, t0_ms: int) -> Iterator[tuple[str, bytes]]:
    """Telemetry messages as an agent sends them: round-robin over machines, seq +1 per machine, unique ts."""
    for n in range(messages):
        machine, seq = f"m-{n % machines:04d}", n // machines + 1
        base = t0_ms + seq * samples * 10
        body = {
            "v": 1,
            "agent": AGENT,
            "site": SITE,
            "machine": machine,
            "seq": seq,
            "samples": [
                {
                    "ts": base + k * 10,
                    "values": {
                        "state": "RUNNING",
                        "good_count": seq * samples + k,
                        "spindle_rpm": 8000 + k % 7,
                        "power_kw": 1.5 + k % 3,
                        "energy_kwh": 12.5 + seq,
                    },
                }
                for k in range(samples)
            ],
        }
        yield f"shopfloor/v1/{SITE}/{machine}/telemetry", json.dumps(body, separators=(",", ":")).encode()


# ---- MQTT (plain paho: the bench is no component) -------------------------------------------------------------


def _client(client_id: str, *, persistent: bool) -> paho.Client:
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    return c


def _connect(c: paho.Client, port: int, *, persistent: bool) -> None:
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    if persistent:
        props.SessionExpiryInterval = 3600
    connected = threading.Event()
    c.on_connect = lambda *_a: connected.set()
    c.connect("127.0.0.1", port, clean_start=not persistent, properties=props)
    c.loop_start()
    if not connected.wait(10):
        raise RuntimeError("could not connect to the bench broker")


def make_session(port: int, client_id: str, filter_: str) -> None:
    """Create a persistent session subscribed to filter_ (QoS1), then leave it offline."""
    c = _client(client_id, persistent=True)
    _connect(c, port, persistent=True)
    done = threading.Event()
    c.on_subscribe = lambda *_a: done.set()
    c.subscribe(filter_, qos=1)
    done.wait(10)
    c.disconnect()
    c.loop_stop()


def publish_all(port: int, messages: Iterator[tuple[str, bytes]]) -> int:
    """Publish at QoS1 and wait for every PUBACK; return the count."""
    c = _client(f"bench-pub-{uuid.uuid4().hex[:6]}", persistent=False)
    _connect(c, port, persistent=False)
    infos = []
    for topic, body in messages:
        infos.append(c.publish(topic, body, qos=1))
        if len(infos) % 1000 == 0:
            infos[-1000].wait_for_publish(30)
    for info in infos:
        info.wait_for_publish(30)
    c.disconnect()
    c.loop_stop()
    return len(infos)


def drain_rate(port: int, client_id: str, expected: int) -> float:
    """Connect the persistent session and receive its backlog (paho acks QoS1 itself); return messages/s."""
    c = _client(client_id, persistent=True)
    got = 0
    done = threading.Event()
    first: list[float] = []

    def on_message(*_a: object) -> None:
        nonlocal got
        if not first:
            first.append(time.perf_counter())
        got += 1
        if got >= expected:
            done.set()

    c.on_message = on_message
    t0 = time.perf_counter()
    _connect(c, port, persistent=True)
    done.wait(300)
    elapsed = time.perf_counter() - t0
    c.disconnect()
    c.loop_stop()
    return got / elapsed


# ---- processes ------------------------------------------------------------------------------------------------


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def peak_rss_mib(pid: int) -> float:
    m = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(m.group(1)) / 1024 if m else float("nan")


@dataclass
class Replica:
    proc: subprocess.Popen[str]
    connected_at: float = 0.0
    cpu_at_connect: float = 0.0
    log: list[str] | None = None


def start_replica(
    argv: list[str], marker: str = "connected to MQTT broker", name: str = "collector", timeout_s: float = 60
) -> Replica:
    """Start a consumer (default `shopfloor collect`); note the time (and CPU so far) when its log shows marker."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    rep = Replica(proc, log=[])
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None and rep.log is not None
        for line in proc.stdout:
            rep.log.append(line)
            if not ready.is_set() and marker in line:
                rep.connected_at = time.perf_counter()
                rep.cpu_at_connect = cpu_s(proc.pid)
                ready.set()

    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(timeout_s):
        proc.kill()
        raise RuntimeError(f"{name} did not connect:\n" + "".join(rep.log or [])[-3000:])
    return rep


def stop_replica(rep: Replica) -> None:
    rep.proc.send_signal(signal.SIGTERM)
    try:
        rep.proc.wait(30)
    except subprocess.TimeoutExpired:
        rep.proc.kill()
        rep.proc.wait()


def written(metrics_port: int) -> int:
    """Samples a replica has written, from its /metrics (0 while it is not serving yet)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2) as answer:
            text = answer.read().decode()
    except OSError:
        return 0
    m = re.search(r"^shopfloor_collector_samples_written_total (\S+)$", text, re.MULTILINE)
    return int(float(m.group(1))) if m else 0


def landed(store: InfluxStore) -> int:
    try:
        series = store.query("SELECT count(good_count) FROM telemetry")
    except Exception:
        return 0
    return int(series[0]["values"][0][1]) if series else 0


# ---- Node-RED (the baseline of issue 7's 1-sample goal) -----------------------------------------------------

# One point per sample, as the collector writes it: measurement telemetry, tags site/machine/agent, the values as
# fields, the sample's ts in ms.
NODE_RED_FUNCTION = """
const b = msg.payload;
const tags = {site: b.site, machine: b.machine, agent: b.agent};
msg.payload = b.samples.map(s => ({measurement: "telemetry", tags: tags, fields: s.values, timestamp: new Date(s.ts)}));
return msg;
"""


def node_red_home(root: Path) -> Path | None:
    """Node-RED and its InfluxDB nodes installed under root (npm, once); None when npm or node is missing."""
    red = root / "node_modules" / "node-red" / "red.js"
    if red.exists() and (root / "node_modules" / "node-red-contrib-influxdb").exists():
        return red
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        return None
    root.mkdir(parents=True, exist_ok=True)
    print(f"installing {' '.join(NODE_RED)} under {root} (npm, once)", flush=True)
    subprocess.run(
        [npm, "install", "--prefix", str(root), "--no-audit", "--no-fund", "--loglevel=error", *NODE_RED],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return red


def node_red_flow(
    broker_port: int, client_id: str, influx_port: int, database: str, per_batch: int
) -> list[dict[str, object]]:
    """mqtt in (QoS1, persistent v5 session) -> function -> join (per_batch messages or 1 s) -> influxdb batch."""
    chain: list[dict[str, object]] = [
        {
            "id": "in", "type": "mqtt in", "topic": f"shopfloor/v1/{SITE}/+/telemetry", "qos": "1",
            "datatype": "json", "broker": "broker", "nl": False, "rap": True, "rh": 0, "inputs": 0,
        },
        {"id": "points", "type": "function", "func": NODE_RED_FUNCTION, "outputs": 1},
        {
            "id": "join", "type": "join", "mode": "custom", "build": "array", "property": "payload",
            "propertyType": "msg", "key": "topic", "joiner": "\\n", "joinerType": "str", "accumulate": False,
            "timeout": "1", "count": str(per_batch), "reduceRight": False,
        },
        {"id": "flat", "type": "function", "func": "msg.payload = msg.payload.flat();\nreturn msg;", "outputs": 1},
        {"id": "out", "type": "influxdb batch", "influxdb": "db", "precision": "ms"},
    ]  # fmt: skip
    # Nodes of a flow sit on a tab at a position (x, y): Node-RED takes a node without one for a config node.
    for k, node in enumerate(chain):
        following = [chain[k + 1]["id"]] if k + 1 < len(chain) else []
        node.update(z="flow", x=100 * (k + 1), y=40, wires=[following])
    return [
        {"id": "flow", "type": "tab", "label": "bench"},
        {
            "id": "broker", "type": "mqtt-broker", "broker": "127.0.0.1", "port": str(broker_port),
            "clientid": client_id, "autoConnect": True, "usetls": False, "protocolVersion": "5",
            "keepalive": "60", "cleansession": False, "sessionExpiry": "3600",
        },
        {
            "id": "db", "type": "influxdb", "hostname": "127.0.0.1", "port": str(influx_port), "protocol": "http",
            "database": database, "usetls": False, "influxdbVersion": "1.x",
        },
        *chain,
    ]  # fmt: skip


def run_node_red(
    red: Path,
    workdir: Path,
    broker: Mosquitto,
    influx: InfluxDB,
    samples: int,
    messages: int,
    args: argparse.Namespace,
    t0_ms: int,
) -> tuple[float, float, float]:
    """Drain a preloaded backlog through Node-RED's flow; return (samples/s landed, CPU-ms per 1k samples, RSS MiB)."""
    database = f"nodered_{samples}_{uuid.uuid4().hex[:6]}"
    client_id = f"bench-nodered-{samples}-{uuid.uuid4().hex[:4]}"
    with InfluxStore(influx.url, database) as store:
        store.ensure_database()
    user_dir = workdir / f"node-red-{samples}"
    user_dir.mkdir()
    per_batch = max(1, args.batch_points // samples)
    (user_dir / "flows.json").write_text(
        json.dumps(node_red_flow(broker.port, client_id, int(influx.url.rsplit(":", 1)[1]), database, per_batch))
    )
    [ui_port] = free_ports(1)
    (user_dir / "settings.js").write_text(
        f"module.exports = {{uiPort: {ui_port}, uiHost: '127.0.0.1', flowFile: 'flows.json', credentialSecret: false,"
        " httpAdminRoot: false, httpNodeRoot: false, logging: {console: {level: 'info'}}};\n"
    )
    make_session(broker.port, client_id, f"shopfloor/v1/{SITE}/+/telemetry")
    publish_all(broker.port, payloads(messages, samples, args.machines, t0_ms))
    total = messages * samples
    node = shutil.which("node") or "node"
    argv = [node, str(red), "--userDir", str(user_dir), "--settings", str(user_dir / "settings.js")]
    rep = start_replica(argv, marker="Connected to broker", name="Node-RED", timeout_s=120)
    proc = rep.proc
    try:
        got = 0
        deadline = time.perf_counter() + 300
        with InfluxStore(influx.url, database) as store:
            while got < total and time.perf_counter() < deadline and proc.poll() is None:
                time.sleep(0.25)  # a count() a quarter second: little next to the writes
                got = landed(store)
        elapsed = time.perf_counter() - rep.connected_at
        cpu = cpu_s(proc.pid) - rep.cpu_at_connect
        rss = peak_rss_mib(proc.pid)
    finally:
        stop_replica(rep)
    if got < total:
        print(f"    Node-RED: ONLY {got:,} of {total:,} landed; its log:\n" + "".join(rep.log or [])[-2000:])
    return got / elapsed, 1000 * cpu / max(got, 1) * 1000, rss


# ---- the run --------------------------------------------------------------------------------------------------


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages-1", type=int, default=20_000, help="1-sample messages per run (default: 20000)")
    p.add_argument("--messages-100", type=int, default=4_000, help="100-sample messages per run (default: 4000)")
    p.add_argument("--machines", type=int, default=50, help="machines the messages spread over (default: 50)")
    p.add_argument("--replicas", default="1,2", help="replica counts to run (default: 1,2)")
    p.add_argument("--batch-points", type=int, default=5000, help="collector and raw write batch (default: 5000)")
    p.add_argument("--raw-points", type=int, default=300_000, help="points for the raw store rate (default: 300000)")
    p.add_argument("--collector-arg", action="append", default=[], help="extra `shopfloor collect` flag")
    p.add_argument(
        "--node-red-dir",
        type=Path,
        default=Path("~/.cache/shopfloor-bench/node-red"),
        help="where Node-RED is installed for (d) (npm, once; default ~/.cache/shopfloor-bench/node-red)",
    )
    p.add_argument("--no-node-red", action="store_true", help="skip (d)")
    args = p.parse_args()
    timer = threading.Timer(WATCHDOG_S, lambda: os._exit(3))
    timer.daemon = True
    timer.start()

    workdir = temp_workdir("sf-bench-collector-")
    broker = Mosquitto(workdir)
    # A deep broker queue: the whole backlog must stay queued for the offline sessions.
    broker.conf.write_text(
        broker.conf.read_text().replace("max_queued_messages 100000", "max_queued_messages 0\nmax_queued_bytes 0")
    )
    broker.start()
    influx = InfluxDB(workdir).start()
    site = site_file(workdir, args.machines)
    t0_ms = int(time.time() * 1000) - 3_600_000  # an hour ago: inside the collector's skew window
    shapes = [(n, m) for n, m in ((1, args.messages_1), (100, args.messages_100)) if m > 0]  # 0: shape skipped
    replicas = [int(r) for r in args.replicas.split(",") if r]
    print(f"collector throughput bench: {os.cpu_count()} cores, {args.machines} machines, batch {args.batch_points}")
    try:
        broker_rate: dict[int, float] = {}
        for samples, messages in shapes:
            sid = f"bench-sub-{samples}"
            make_session(broker.port, sid, f"shopfloor/v1/{SITE}/+/telemetry")
            publish_all(broker.port, payloads(messages, samples, args.machines, t0_ms))
            rate = drain_rate(broker.port, sid, messages)
            broker_rate[samples] = rate
            print(
                f"(a) broker -> paho QoS1 subscriber, {samples:>3}-sample messages: {rate:>9,.0f} msg/s "
                f"= {rate * samples:>10,.0f} samples/s"
            )

        lines = [
            to_line(pt)
            for _, body in payloads(max(1, args.raw_points // 100), 100, args.machines, t0_ms)
            for pt in batch_to_points(TelemetryBatch.model_validate_json(body))
        ]
        with InfluxStore(influx.url, "raw") as raw:
            raw.ensure_database()
            t = time.perf_counter()
            for i in range(0, len(lines), args.batch_points):
                raw.write_lines(lines[i : i + args.batch_points])
            store_rate = len(lines) / (time.perf_counter() - t)
        print(f"(b) InfluxDB raw line-protocol writes, batches of {args.batch_points}: {store_rate:>10,.0f} samples/s")
        node_red: dict[int, float] = {}
        red = None if args.no_node_red else node_red_home(args.node_red_dir.expanduser())
        for samples, messages in shapes:
            if red is None:
                print(
                    f"(d) Node-RED, {samples:>3}-sample messages: not available: "
                    + ("skipped (--no-node-red)" if args.no_node_red else "npm or node not found")
                )
                continue
            rate, cpu_per_k, rss = run_node_red(red, workdir, broker, influx, samples, messages, args, t0_ms)
            node_red[samples] = rate
            print(
                f"(d) Node-RED batching flow, {samples:>3}-sample messages: {rate / samples:>9,.0f} msg/s "
                f"= {rate:>10,.0f} samples/s, {cpu_per_k:.2f} CPU-ms/1k samples, peak RSS {rss:.1f} MiB"
            )
        print()
        print(
            f"{'(c) collector':<16} {'replicas':>8} {'samples/s':>11} {'msgs/s':>9} {'ratio':>6} "
            f"{'CPU-ms/1k samples':>18} {'peak RSS MiB':>13} {'per replica (samples)':>24} {'x Node-RED':>10}"
        )
        for samples, messages in shapes:
            baseline = min(broker_rate[samples] * samples, store_rate)
            for n in replicas:
                run_collectors(args, broker, influx, site, samples, messages, n, t0_ms, baseline, node_red.get(samples))
        print()
        print("ratio = collector samples/s / min(a, b) for the same message shape; x Node-RED = samples/s / (d)")
    finally:
        influx.stop()
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def run_collectors(
    args: argparse.Namespace,
    broker: Mosquitto,
    influx: InfluxDB,
    site: Path,
    samples: int,
    messages: int,
    n: int,
    t0_ms: int,
    baseline: float,
    node_red: float | None,
) -> None:
    database = f"bench_{samples}_{n}_{uuid.uuid4().hex[:6]}"
    # A group of its own per run: the offline sessions of an earlier run in the same group would take a share.
    prefix = f"$share/bench-{samples}-{n}/" if n > 1 else ""
    ids = [f"bench-collector-{samples}-{n}-{k}" for k in range(n)]

    ports = dict(zip(ids, free_ports(len(ids)), strict=True))

    def argv(client_id: str) -> list[str]:
        return [
            sys.executable, "-m", "shopfloor.cli", "collect",
            "--metrics-port", str(ports[client_id]),
            "--site", str(site),
            "--mqtt", broker.url,
            "--influx-url", influx.url,
            "--influx-db", database,
            "--client-id", client_id,
            "--topic-prefix", prefix,
            "--batch-points", str(args.batch_points),
            "--summary-interval", "3600",
            *args.collector_arg,
        ]  # fmt: skip

    # First run: creates the database and the persistent sessions (with the subscription), then stops cleanly.
    for rep in [start_replica(argv(cid)) for cid in ids]:
        stop_replica(rep)
    publish_all(broker.port, payloads(messages, samples, args.machines, t0_ms))
    total = messages * samples
    reps = [start_replica(argv(cid)) for cid in ids]
    t_start = min(r.connected_at for r in reps)
    # Progress from the replicas' own counters (a count() query every 50 ms would cost InfluxDB a third of a core
    # while it takes the writes); the store's count() confirms at the end. A scrape costs the replica CPU too (a
    # scrape every 20 ms was 8 % of a 1-sample drain's profile), so they come at most every 20 ms only near the end:
    # half the time the rate so far says is left, between 20 and 250 ms.
    deadline = time.perf_counter() + 300
    while (done := sum(written(port) for port in ports.values())) < total and time.perf_counter() < deadline:
        so_far = time.perf_counter() - t_start
        left_s = (total - done) * so_far / done if done else 0.25
        time.sleep(min(0.25, max(0.02, left_s / 2)))
    elapsed = time.perf_counter() - t_start
    with InfluxStore(influx.url, database) as store:
        got = landed(store)
    cpu = sum(cpu_s(r.proc.pid) - r.cpu_at_connect for r in reps)
    rss = max(peak_rss_mib(r.proc.pid) for r in reps)
    for r in reps:
        stop_replica(r)
    split = []
    for r in reps:
        m = re.findall(r"wrote \d+ messages \((\d+) points\)", "".join(r.log or []))
        split.append(m[-1] if m else "?")
    rate = got / elapsed
    note = "" if got == total else f"  ONLY {got:,} of {total:,} landed"
    print(
        f"{f'{samples}-sample msgs':<16} {n:>8} {rate:>11,.0f} {rate / samples:>9,.0f} {rate / baseline:>6.2f} "
        f"{1000 * cpu / max(got, 1) * 1000:>18.2f} {rss:>13.1f} {' / '.join(split):>24} "
        f"{'-' if not node_red else f'{rate / node_red:.2f}':>10}{note}"
    )


if __name__ == "__main__":
    main()
