"""Replaying a scenario through a real broker, for the end-to-end tests: publish every message, say what lands."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from simulators.replay import Message, MqttSink


def publish_replay(broker_url: str, messages: Sequence[Message], prefix: str = "replay") -> dict[str, int]:
    """Publish messages in order (the agent's QoS 1 publishes); return per machine the points they will store.

    Every sample carrying a value is one point in the store: a test waits until it holds them all.
    """
    sink = MqttSink(broker_url, f"{prefix}-{uuid.uuid4().hex[:8]}")
    try:
        for message in messages:
            sink(message)
    finally:
        sink.close()
    want: dict[str, int] = {}
    for message in messages:
        if message.batch is not None:
            n = sum(1 for s in message.batch.samples if s.values)
            want[message.batch.machine] = want.get(message.batch.machine, 0) + n
    return want
