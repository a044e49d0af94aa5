"""Client-side helpers of the broker tests (test_broker_contract, test_embedded_broker, test_mqtt_link,
test_mqtt_receive): a running MqttLink, an inbox of what it received, waiting for a condition, reading a packet."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

from shopfloor.mqtt import InboundMessage, MqttLink


def read_packet(conn: socket.socket) -> bytes:
    """One whole MQTT packet a client sent (fixed header included), for the tests' scripted peers."""
    head = conn.recv(1)
    if not head:
        raise ConnectionError("client closed")
    length, mult, raw = 0, 1, bytearray(head)
    while True:
        byte = conn.recv(1)[0]
        raw.append(byte)
        length += (byte & 0x7F) * mult
        mult *= 128
        if not byte & 0x80:
            break
    body = b""
    while len(body) < length:
        body += conn.recv(length - len(body))
    return bytes(raw) + body


def wait_for(condition: Callable[[], bool], what: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@contextlib.contextmanager
def running(link: MqttLink, connect: bool = True) -> Iterator[MqttLink]:
    """link started (and connected, unless connect is False) for the block, stopped after it."""
    link.start()
    try:
        if connect:
            assert link.wait_connected(15), f"{link.client_id} did not connect"
        yield link
    finally:
        link.stop()


class Inbox:
    """Messages a link received, thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[InboundMessage] = []

    def __call__(self, msg: InboundMessage) -> None:
        with self._lock:
            self._items.append(msg)

    @property
    def items(self) -> list[InboundMessage]:
        with self._lock:
            return list(self._items)

    def payloads(self, topic: str | None = None) -> list[bytes]:
        return [m.payload for m in self.items if topic is None or m.topic == topic]
