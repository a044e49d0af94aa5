"""How fast MqttLink receives small QoS 1 messages, next to plain paho, in one run on a local Mosquitto of its own.

Each round preloads a backlog of telemetry-sized messages (about 200 bytes) into a persistent session, then drains it:
  (a) plain paho 2.1, auto-ack (the library's own receive path);
  (b) MqttLink, auto-ack (its buffered reads and lean PUBLISH parsing);
  (c) MqttLink, manual ack with ack_many every 500 messages (what the collector does).
Prints messages/s and this process's CPU per message for each, and each as a ratio to (a). Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from collector_throughput import drain_rate, make_session, publish_all  # noqa: E402

from launcher.services import Mosquitto, temp_workdir  # noqa: E402
from shopfloor.mqtt import InboundMessage, MqttLink, MqttSettings  # noqa: E402

TOPIC = "shopfloor/v1/bdg/{machine}/telemetry"
FILTER = "shopfloor/v1/bdg/+/telemetry"


def messages(n: int) -> list[tuple[str, bytes]]:
    t0 = int(time.time() * 1000)
    out = []
    for i in range(n):
        machine = f"m-{i % 50:04d}"
        body = {"v": 1, "agent": "edge-1", "site": "bdg", "machine": machine, "seq": i // 50 + 1}
        body["samples"] = [{"ts": t0 + i, "values": {"state": "RUNNING", "good_count": i, "power_kw": 1.5}}]
        out.append((TOPIC.format(machine=machine), json.dumps(body, separators=(",", ":")).encode()))
    return out


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def drain_link(port: int, client_id: str, expected: int, *, manual: bool) -> float:
    """Drain the session through MqttLink; return messages/s (from start() to the last message)."""
    got = 0
    done = threading.Event()
    pending: list[int] = []
    link: MqttLink | None = None

    def on_message(msg: InboundMessage) -> None:
        nonlocal got
        got += 1
        if manual:
            pending.append(msg.mid)
            if len(pending) >= 500 or got >= expected:
                assert link is not None
                link.ack_many(pending)
                pending.clear()
        if got >= expected:
            done.set()

    settings = MqttSettings(port=port, protocol="5")
    link = MqttLink(
        settings, client_id, persistent_session=True, manual_ack=manual, on_message=on_message, max_inflight=1000
    )
    t0 = time.perf_counter()
    link.start()
    done.wait(300)
    elapsed = time.perf_counter() - t0
    link.stop()
    return got / elapsed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=20_000, help="messages per drain (default: 20000)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of (a), (b), (c) (default: 3)")
    args = p.parse_args()
    workdir = temp_workdir("sf-bench-mqtt-")
    broker = Mosquitto(workdir)
    broker.conf.write_text(
        broker.conf.read_text().replace("max_queued_messages 100000", "max_queued_messages 0\nmax_queued_bytes 0")
    )
    broker.start()
    backlog = messages(args.messages)
    print(f"MQTT receive bench: {os.cpu_count()} cores, {args.messages} messages of ~{len(backlog[0][1])} bytes, QoS 1")
    results: dict[str, list[tuple[float, float]]] = {"a": [], "b": [], "c": []}
    try:
        for r in range(args.rounds):
            for kind in ("a", "b", "c"):
                sid = f"bench-{kind}-{r}"
                make_session(broker.port, sid, FILTER)  # subscribed, then offline: the backlog queues in it
                publish_all(broker.port, iter(backlog))
                c0 = cpu()
                if kind == "a":
                    rate = drain_rate(broker.port, sid, args.messages)
                else:
                    rate = drain_link(broker.port, sid, args.messages, manual=kind == "c")
                results[kind].append((rate, (cpu() - c0) / args.messages * 1e6))
    finally:
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    labels = {
        "a": "(a) plain paho, auto-ack",
        "b": "(b) MqttLink, auto-ack",
        "c": "(c) MqttLink, ack_many/500",
    }
    best_a = max(rate for rate, _ in results["a"])
    cpu_a = min(c for _, c in results["a"])
    head = f"{'best msg/s':>11} {'all rounds msg/s':>26} {'CPU µs/msg':>11} {'rate ratio':>11} {'CPU ratio':>10}"
    print(f"{'':<30} {head}")
    for kind, label in labels.items():
        rates = [rate for rate, _ in results[kind]]
        cpus = [c for _, c in results[kind]]
        print(
            f"{label:<30} {max(rates):>11,.0f} {' / '.join(f'{x:,.0f}' for x in rates):>26} {min(cpus):>11.1f} "
            f"{max(rates) / best_a:>11.2f} {min(cpus) / cpu_a:>10.2f}"
        )
    print("ratios against (a); CPU is this process's (paho's thread and the callback), best of the rounds")


if __name__ == "__main__":
    main()
