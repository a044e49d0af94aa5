"""Replay to a real Mosquitto: every message arrives, QoS1, on the telemetry topic, and validates."""

from __future__ import annotations

import threading
import time

import pytest

from shopfloor.config import SiteConfig
from shopfloor.contracts import Topic, parse_telemetry
from shopfloor.mqtt import InboundMessage, MqttLink, MqttSettings
from shopfloor.services import Mosquitto
from simulators.replay import MqttSink, run_replay
from simulators.scenario import load_scenario, scenarios_dir
from simulators.world import World

pytestmark = pytest.mark.integration
T0 = 1_800_000_000_000


def test_replay_publishes_every_message(mosquitto: Mosquitto, example_site: SiteConfig) -> None:
    received: list[InboundMessage] = []
    lock = threading.Lock()

    def on_message(msg: InboundMessage) -> None:
        with lock:
            received.append(msg)

    sub = MqttLink(MqttSettings.from_url(mosquitto.url), "sim-replay-test-sub", on_message=on_message)
    sub.start()
    assert sub.wait_connected(10)
    sub.subscribe(["shopfloor/v1/bdg/+/telemetry"], qos=1)
    time.sleep(0.3)  # let the SUBACK arrive before the first publish
    world = World(example_site, load_scenario(scenarios_dir() / "e2e-two-tenants.yaml", example_site), 1, T0)
    sink = MqttSink(mosquitto.url, "sim-replay-test-pub")
    try:
        stats = run_replay(world, sink, agent="replay", batch_size=10)
    finally:
        sink.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(received) < stats.messages:
        time.sleep(0.05)
    sub.stop()
    assert stats.messages == 30 and len(received) == stats.messages
    samples = 0
    for msg in received:
        assert msg.qos == 1
        samples += len(parse_telemetry(Topic.parse(msg.topic), msg.payload).samples)
    assert samples == stats.samples == 300


def test_unreachable_broker_is_reported() -> None:
    from shopfloor.services import free_port

    with pytest.raises(ConnectionError, match="did not accept a connection"):
        MqttSink(f"mqtt://127.0.0.1:{free_port()}", "sim-replay-nobody", timeout_s=1.0)
