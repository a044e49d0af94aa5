"""Replay to a real Mosquitto: every message arrives, QoS1, on the telemetry topic, and validates."""

from __future__ import annotations

import threading
import time

import pytest

from launcher.services import Mosquitto
from shopfloor.config import SiteConfig
from shopfloor.contracts import Topic, TopicKind, parse_status, parse_telemetry
from shopfloor.mqtt import InboundMessage, MqttLink, MqttSettings
from simulators.replay import MqttSink, ReplayOptions, run_replay
from simulators.scenario import load_scenario, scenarios_dir
from simulators.world import World

pytestmark = pytest.mark.integration
T0 = 1_800_000_000_000


def collect(url: str, client_id: str, filters: list[str]) -> tuple[MqttLink, list[InboundMessage]]:
    received: list[InboundMessage] = []
    lock = threading.Lock()

    def on_message(msg: InboundMessage) -> None:
        with lock:
            received.append(msg)

    link = MqttLink(MqttSettings.from_url(url), client_id, on_message=on_message)
    link.start()
    assert link.wait_connected(10)
    link.subscribe(filters, qos=1)
    time.sleep(0.3)  # let the SUBACK arrive before the first publish
    return link, received


def wait_for(received: list[InboundMessage], count: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(received) < count:
        time.sleep(0.05)


def test_replay_publishes_every_message(fresh_mosquitto: Mosquitto, example_site: SiteConfig) -> None:
    # An own broker: the replay leaves retained statuses behind.
    sub, received = collect(fresh_mosquitto.url, "sim-replay-test-sub", ["shopfloor/v1/bdg/#"])
    world = World(example_site, load_scenario(scenarios_dir() / "faults.yaml", example_site), 1, T0)
    sink = MqttSink(fresh_mosquitto.url, "sim-replay-test-pub")
    try:
        stats = run_replay(world, sink, agent="replay", options=ReplayOptions(max_batch_samples=10))
    finally:
        sink.close()
    wait_for(received, stats.messages)
    sub.stop()
    assert len(received) == stats.messages
    samples, statuses = 0, []
    for msg in received:
        assert msg.qos == 1
        topic = Topic.parse(msg.topic)
        if topic.kind is TopicKind.TELEMETRY:
            samples += len(parse_telemetry(topic, msg.payload).samples)
        else:
            statuses.append((topic.machine, parse_status(topic, msg.payload).status.value))
    assert samples == stats.samples
    # Five machines online, then three outages (cnc-02 twice, cnc-01 once), each ending online again.
    assert len(statuses) == stats.statuses == 5 + 3 * 2
    assert sorted(statuses).count(("cnc-02", "unreachable")) == 2
    # A subscriber that comes later gets each machine's latest status, retained: all online again.
    late, retained = collect(fresh_mosquitto.url, "sim-replay-test-late", ["shopfloor/v1/bdg/+/status"])
    wait_for(retained, 5)
    late.stop()
    got = {Topic.parse(m.topic).machine: parse_status(Topic.parse(m.topic), m.payload) for m in retained}
    assert all(m.retain for m in retained) and len(retained) == 5
    assert {machine: s.status.value for machine, s in got.items()} == {m: "online" for m in world.machines}
    assert got["cnc-01"].ts == T0 + 55_000  # back after its unreachable window (40 s .. 55 s)


def test_unreachable_broker_is_reported() -> None:
    from launcher.services import free_port

    with pytest.raises(ConnectionError, match="did not accept a connection"):
        MqttSink(f"mqtt://127.0.0.1:{free_port()}", "sim-replay-nobody", timeout_s=1.0)
