"""MqttLink's own receive path (buffered reads, PUBLISH parsed without paho's Properties, acks in one write): against
real Mosquitto for what a broker sends, and against a scripted TCP peer for byte-level framing and hostile packets."""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
import time
import uuid
from collections.abc import Iterator

import paho.mqtt.client as paho
import pytest
from mqtt_clients import Inbox, read_packet, running, wait_for
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from launcher.services import Mosquitto
from shopfloor.mqtt import MqttLink, MqttSettings

pytestmark = pytest.mark.integration


def _publisher(broker: Mosquitto, protocol: int = paho.MQTTv5) -> paho.Client:
    """A plain paho client that publishes what the tests send (the sender is not under test)."""
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}", protocol=protocol)
    c.max_inflight_messages_set(1000)
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    return c


@contextlib.contextmanager
def publisher(broker: Mosquitto) -> Iterator[paho.Client]:
    c = _publisher(broker)
    try:
        yield c
    finally:
        c.disconnect()
        c.loop_stop()


def _link(
    broker: Mosquitto, inbox: Inbox, *, protocol: str = "5", client_id: str | None = None, manual_ack: bool = True
) -> MqttLink:
    return MqttLink(
        MqttSettings(port=broker.port, protocol=protocol),
        client_id or f"rx-{uuid.uuid4().hex[:8]}",
        persistent_session=True,
        manual_ack=manual_ack,
        on_message=inbox,
        max_inflight=1000,
    )


def _subscribed(link: MqttLink, broker: Mosquitto, topic: str, inbox: Inbox) -> None:
    """Wait until the link's subscription is live: probe until a probe arrives."""
    with publisher(broker) as pub:
        deadline = time.monotonic() + 10
        while not any(m.topic == topic for m in inbox.items):
            assert time.monotonic() < deadline, "subscription never became live"
            pub.publish(topic, b"probe", qos=1).wait_for_publish(5)
            time.sleep(0.05)


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_burst_of_mixed_sizes_arrives_whole_and_in_order(fresh_mosquitto: Mosquitto, protocol: str) -> None:
    # Thousands of small messages (many per socket read) with large ones between them (one spanning several
    # reads of 64 KiB): each arrives once, in order, byte for byte, with its flags. The link acks each as it arrives
    # (paho's automatic ack), or the broker would stop at its inflight window.
    inbox = Inbox()
    topic = f"t/{uuid.uuid4().hex[:6]}/burst"
    sizes = [1 + (i * 37) % 200 for i in range(3000)]
    sizes[500] = 200_000
    sizes[1500] = 65_536
    sizes[2999] = 0  # an empty payload
    payloads = [bytes([i % 251]) * n if n else b"" for i, n in enumerate(sizes)]
    with running(_link(fresh_mosquitto, inbox, protocol=protocol, manual_ack=False)) as link:
        link.subscribe([topic, f"{topic}/probe"])
        _subscribed(link, fresh_mosquitto, f"{topic}/probe", inbox)
        with publisher(fresh_mosquitto) as pub:
            infos = [pub.publish(topic, p, qos=1) for p in payloads]
            for info in infos:
                info.wait_for_publish(10)
        wait_for(lambda: len(inbox.payloads(topic)) == len(payloads), "every message of the burst")
        got = [m for m in inbox.items if m.topic == topic]
        assert [m.payload for m in got] == payloads
        assert {(m.qos, m.retain) for m in got} == {(1, False)}
        assert len({m.mid for m in got[:1000]}) == 1000  # distinct packet ids, parsed from each header


def test_messages_with_v5_properties_keep_their_payload(fresh_mosquitto: Mosquitto) -> None:
    # A PUBLISH with properties takes paho's own parser; what follows the properties is the payload, intact.
    inbox = Inbox()
    topic = f"t/{uuid.uuid4().hex[:6]}/props"
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.UserProperty = ("tenant", "acme")
    props.MessageExpiryInterval = 3600
    props.ContentType = "application/json"
    with running(_link(fresh_mosquitto, inbox)) as link:
        link.subscribe([topic, f"{topic}/probe"])
        _subscribed(link, fresh_mosquitto, f"{topic}/probe", inbox)
        with publisher(fresh_mosquitto) as pub:
            for i in range(3):
                pub.publish(topic, b'{"n": %d}' % i, qos=1, properties=props if i != 1 else None).wait_for_publish(5)
        wait_for(lambda: len(inbox.payloads(topic)) == 3, "the three messages")
        assert inbox.payloads(topic) == [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']


def test_a_retained_message_arrives_flagged_retained(fresh_mosquitto: Mosquitto) -> None:
    inbox = Inbox()
    topic = f"t/{uuid.uuid4().hex[:6]}/retained"
    with publisher(fresh_mosquitto) as pub:
        pub.publish(topic, b"kept", qos=1, retain=True).wait_for_publish(5)
    with running(_link(fresh_mosquitto, inbox)) as link:
        link.subscribe([topic])
        wait_for(lambda: inbox.payloads(topic) == [b"kept"], "the retained message")
        assert inbox.items[0].retain is True


def test_ack_many_acks_exactly_what_it_names(fresh_mosquitto: Mosquitto) -> None:
    # 400 messages; the first 300 acked in one write. The persistent session then holds exactly the other 100,
    # which the broker sends again (in order) when the same client id comes back.
    inbox = Inbox()
    client_id = f"rx-{uuid.uuid4().hex[:8]}"
    topic = f"t/{uuid.uuid4().hex[:6]}/acks"
    payloads = [b"m%03d" % i for i in range(400)]
    with running(_link(fresh_mosquitto, inbox, client_id=client_id)) as link:
        link.subscribe([topic, f"{topic}/probe"])
        _subscribed(link, fresh_mosquitto, f"{topic}/probe", inbox)
        link.ack_many([m.mid for m in inbox.items])  # the probes
        with publisher(fresh_mosquitto) as pub:
            for info in [pub.publish(topic, p, qos=1) for p in payloads]:
                info.wait_for_publish(10)
        wait_for(lambda: len(inbox.payloads(topic)) == 400, "the 400 messages")
        first = [m for m in inbox.items if m.topic == topic]
        link.ack_many([m.mid for m in first[:300]])
        time.sleep(0.5)  # the PUBACKs reach the broker before the disconnect
    again = Inbox()
    with running(_link(fresh_mosquitto, again, client_id=client_id)) as link:
        wait_for(lambda: len(again.payloads(topic)) >= 100, "the 100 unacked messages redelivered")
        time.sleep(0.5)  # nothing more comes
        assert again.payloads(topic) == payloads[300:]
        link.ack_many([m.mid for m in again.items])


# ---- a scripted peer: byte-level framing and hostile packets ---------------------------------------------------


def _vbi(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _publish(topic: str, payload: bytes, mid: int, *, v5: bool = True) -> bytes:
    t = topic.encode()
    body = struct.pack("!H", len(t)) + t + struct.pack("!H", mid) + (b"\x00" if v5 else b"") + payload
    return bytes([0x32]) + _vbi(len(body)) + body  # PUBLISH, QoS 1


class ScriptedPeer:
    """A TCP server speaking just enough MQTT: CONNACK to each CONNECT, then the bytes of one script per connection
    (sent in chunks of `chunk` bytes); records what the client sends after its CONNECT."""

    def __init__(self, scripts: list[bytes], chunk: int = 1 << 20, v5: bool = True) -> None:
        self.scripts = scripts
        self.chunk = chunk
        self.v5 = v5
        self.connects = 0
        self.received: list[bytes] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            with conn, contextlib.suppress(OSError, IndexError):  # the client went away
                self._session(conn)

    def _session(self, conn: socket.socket) -> None:
        conn.settimeout(5)
        assert read_packet(conn)[0] == 0x10  # CONNECT
        conn.sendall(b"\x20\x03\x00\x00\x00" if self.v5 else b"\x20\x02\x00\x00")
        script = self.scripts[min(self.connects, len(self.scripts) - 1)]
        self.connects += 1
        for i in range(0, len(script), self.chunk):
            conn.sendall(script[i : i + self.chunk])
            if self.chunk < len(script):
                time.sleep(0.001)
        conn.settimeout(0.5)
        while not self._stop.is_set():
            try:
                packet = read_packet(conn)
            except TimeoutError:
                continue
            if packet[0] == 0xE0:  # DISCONNECT
                return
            self.received.append(packet)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()


@contextlib.contextmanager
def peer(scripts: list[bytes], **kwargs: object) -> Iterator[ScriptedPeer]:
    p = ScriptedPeer(scripts, **kwargs)  # type: ignore[arg-type]
    try:
        yield p
    finally:
        p.close()


def _peer_link(p: ScriptedPeer, inbox: Inbox, protocol: str = "5") -> MqttLink:
    settings = MqttSettings(port=p.port, protocol=protocol, reconnect_min_s=0.05, reconnect_max_s=0.1)
    return MqttLink(settings, f"rx-{uuid.uuid4().hex[:8]}", manual_ack=True, on_message=inbox)


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 1000])
def test_packets_split_anywhere_on_the_wire_are_reassembled(chunk: int) -> None:
    # The peer sends the stream in chunks of 1, 2, 3, 7 bytes (1 ms apart): every header, length and body is cut
    # somewhere. 300 and 2,000 bytes take a two-byte remaining length; 17,000 (sent in 1,000-byte chunks only, to
    # keep the test short) a three-byte one, over many reads.
    payloads = [b"a", b"", b"x" * 300, b"y" * 2_000, b"z" * 127, b"w" * 128]
    if chunk >= 1000:
        payloads.append(b"v" * 17_000)
    script = b"".join(_publish("s/1", p, mid) for mid, p in enumerate(payloads, start=1)) + b"\xd0\x00"  # PINGRESP
    inbox = Inbox()
    with peer([script], chunk=chunk) as p, running(_peer_link(p, inbox)):
        wait_for(lambda: len(inbox.items) == len(payloads), f"all {len(payloads)} messages", timeout_s=30)
        assert [m.payload for m in inbox.items] == payloads
        assert [m.mid for m in inbox.items] == list(range(1, len(payloads) + 1))
        assert {m.topic for m in inbox.items} == {"s/1"}


def test_ack_many_writes_one_puback_per_mid_in_order() -> None:
    script = b"".join(_publish("s/1", b"p", mid) for mid in (7, 300, 65535))
    inbox = Inbox()
    with peer([script]) as p, running(_peer_link(p, inbox)) as link:
        wait_for(lambda: len(inbox.items) == 3, "the three messages")
        link.ack_many([65535, 7, 300])
        wait_for(lambda: len([r for r in p.received if r[0] == 0x40]) == 3, "three PUBACKs")
        pubacks = [r for r in p.received if r[0] == 0x40]
        assert pubacks == [b"\x40\x02\xff\xff", b"\x40\x02\x00\x07", b"\x40\x02\x01\x2c"]


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("topic-longer-than-packet", b"\x32\x05\x00\xff\x61\x00\x01"),
        ("no-packet-id", b"\x32\x03\x00\x01\x61"),  # QoS 1, topic "a", then nothing
        ("v5-without-properties-length", b"\x32\x05\x00\x01\x61\x00\x01"),
        ("five-byte-remaining-length", b"\x32\xff\xff\xff\xff\x01"),
        ("unknown-packet-type", b"\x00\x00"),
        ("suback-too-short", b"\x90\x01\x00"),
    ],
)
def test_a_malformed_packet_drops_the_connection_and_the_link_recovers(
    caplog: pytest.LogCaptureFixture, name: str, bad: bytes
) -> None:
    # The first connection gets the bad packet; the link must not die with it (paho's thread would): it drops the
    # connection, reconnects, and the second connection's message arrives.
    inbox = Inbox()
    with caplog.at_level(logging.ERROR), peer([bad, _publish("s/ok", b"after", 1)]) as p, running(_peer_link(p, inbox)):
        wait_for(lambda: [m.payload for m in inbox.items] == [b"after"], "the message after the reconnect")
        assert p.connects >= 2
    assert not [m for m in inbox.items if m.topic != "s/ok"]  # nothing half-parsed came through


def test_a_311_link_parses_publish_without_properties() -> None:
    inbox = Inbox()
    script = _publish("s/311", b"plain", 9, v5=False)
    with peer([script], v5=False) as p, running(_peer_link(p, inbox, protocol="3.1.1")):
        wait_for(lambda: len(inbox.items) == 1, "the message")
        assert (inbox.items[0].topic, inbox.items[0].payload, inbox.items[0].mid) == ("s/311", b"plain", 9)
