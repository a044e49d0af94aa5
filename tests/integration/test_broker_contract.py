"""The broker behaviours the chain relies on, through MqttLink, against Mosquitto and the embedded broker alike.

Each link speaks "auto", as the components do: MQTT v5 on Mosquitto, 3.1.1 (after the fallback) on the embedded
broker. Where the embedded broker lacks a behaviour the test says so (a skip naming the limit, or an assertion of
the documented fallback).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Protocol

import pytest
from mqtt_clients import Inbox, running, wait_for

from launcher.services import Mosquitto, temp_workdir
from shopfloor.embedded_broker import EmbeddedBroker
from shopfloor.mqtt import MqttLink, MqttSettings, Will

pytestmark = pytest.mark.integration

KINDS = ["mosquitto", "embedded"]


class Broker(Protocol):
    @property
    def url(self) -> str: ...

    def stop(self) -> None: ...


@contextlib.contextmanager
def broker_of(kind: str, max_inflight: int = 1000) -> Iterator[Broker]:
    if kind == "mosquitto":
        workdir = temp_workdir("sf-contract-")
        mosquitto = Mosquitto(workdir, max_inflight=max_inflight).start()
        try:
            yield mosquitto
        finally:
            mosquitto.stop()
            shutil.rmtree(workdir, ignore_errors=True)
    else:
        with EmbeddedBroker(max_inflight=max_inflight) as embedded:
            yield embedded


@pytest.fixture(scope="module", params=KINDS)
def broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    with broker_of(request.param) as b:
        yield b


def kind_of(b: Broker) -> str:
    return "embedded" if isinstance(b, EmbeddedBroker) else "mosquitto"


def cid() -> str:
    return f"contract-{uuid.uuid4().hex[:10]}"


def topic() -> str:
    return f"contract/{uuid.uuid4().hex[:12]}"


def link_to(b: Broker, client_id: str | None = None, **kwargs: object) -> MqttLink:
    settings = MqttSettings.from_url(b.url, reconnect_min_s=0.1, reconnect_max_s=0.5)
    return MqttLink(settings, client_id or cid(), **kwargs)  # type: ignore[arg-type]


def subscribed(link: MqttLink, filters: list[str], barrier_topic: str) -> None:
    """Subscribe and wait until the broker applied it: a message published to barrier_topic comes back."""
    got = threading.Event()
    link.add_message_listener(lambda m: got.set() if m.topic == barrier_topic else None)
    link.subscribe([*filters, barrier_topic])
    deadline = time.monotonic() + 15
    while not got.wait(0.2):
        assert time.monotonic() < deadline, "subscription not applied"
        link.publish(barrier_topic, b"barrier", qos=0)


def test_protocol_spoken(broker: Broker) -> None:
    # The embedded broker speaks 3.1.1 only: "auto" falls back, and $share filters are subscribed without prefix.
    with running(link_to(broker)) as link:
        expected = ("5", True) if kind_of(broker) == "mosquitto" else ("3.1.1", False)
        assert (link.protocol, link.shared_subscriptions) == expected


def test_persistent_session_queues_what_was_published_while_offline(broker: Broker) -> None:
    client_id, t = cid(), topic()
    with running(link_to(broker, client_id, persistent_session=True)) as first:
        subscribed(first, [t], t + "/barrier")
    with running(link_to(broker)) as publisher:
        assert all(publisher.publish(t, f"m{i}".encode()).wait(5) for i in range(5))
    inbox = Inbox()
    with running(link_to(broker, client_id, persistent_session=True, on_message=inbox)):
        wait_for(lambda: len(inbox.payloads(t)) == 5, "the five queued messages")
    assert inbox.payloads(t) == [f"m{i}".encode() for i in range(5)]
    # A clean session with the same id starts afresh: the subscription and anything queued are gone.
    with running(link_to(broker, client_id, persistent_session=True)):
        pass
    fresh = Inbox()
    with running(link_to(broker, client_id, on_message=fresh)) as clean:
        with running(link_to(broker)) as publisher:
            assert publisher.publish(t, b"after").wait(5)
        barrier = t + "/clean-barrier"
        subscribed(clean, [barrier + "/x"], barrier)
    assert fresh.payloads(t) == []


def test_unacknowledged_messages_are_redelivered_after_reconnect(broker: Broker) -> None:
    # What the collector relies on: it acks only after the store wrote; what it had not acked comes again.
    client_id, t = cid(), topic()
    inbox = Inbox()
    consumer = link_to(broker, client_id, persistent_session=True, manual_ack=True, on_message=inbox)
    with running(consumer):
        subscribed(consumer, [t], t + "/barrier")
        with running(link_to(broker)) as publisher:
            assert all(publisher.publish(t, f"m{i}".encode()).wait(5) for i in range(6))
        wait_for(lambda: len(inbox.payloads(t)) == 6, "six messages")
        for msg in [m for m in inbox.items if m.topic == t][:2]:
            consumer.ack(msg.mid, msg.qos)
        # Published while the consumer still holds four unacked: queued behind them.
        with running(link_to(broker)) as publisher:
            assert publisher.publish(t, b"m6").wait(5)
        wait_for(lambda: len(inbox.payloads(t)) == 7, "the seventh message")
    # The consumer left without acking m2..m6. The same client id gets them again, in order.
    again = Inbox()
    second = link_to(broker, client_id, persistent_session=True, manual_ack=True, on_message=again)
    with running(second):
        wait_for(lambda: len(again.payloads(t)) >= 5, "the five unacked messages again")
        for msg in again.items:
            second.ack(msg.mid, msg.qos)
        time.sleep(0.3)  # the acks reach the broker before the clean disconnect
    assert again.payloads(t) == [f"m{i}".encode() for i in range(2, 7)]
    # Acked now: a third connection gets nothing more.
    third = Inbox()
    with running(link_to(broker, client_id, persistent_session=True, on_message=third)) as last:
        subscribed(last, [], t + "/barrier2")
    assert third.payloads(t) == []


def test_retained_message_is_set_replaced_and_cleared(broker: Broker) -> None:
    base = topic()
    kept, cleared = f"{base}/kept", f"{base}/cleared"
    with running(link_to(broker)) as publisher:
        for t, payload in ((kept, b"one"), (kept, b"two"), (cleared, b"gone soon"), (cleared, b"")):
            assert publisher.publish(t, payload, retain=True).wait(5)
    inbox = Inbox()
    with running(link_to(broker, on_message=inbox)) as late:
        late.subscribe([f"{base}/+"])
        wait_for(lambda: inbox.payloads(kept) == [b"two"], "the retained message")
        # Everything the subscription brings has come once a live message behind it did.
        subscribed(late, [], f"{base}/barrier")
    assert [(m.topic, m.payload, m.retain) for m in inbox.items if m.topic != f"{base}/barrier"] == [
        (kept, b"two", True)
    ]


@pytest.mark.parametrize("drop", ["socket closed", "keepalive expired"])
def test_last_will_on_an_ungraceful_drop_not_on_a_clean_stop(broker: Broker, drop: str) -> None:
    base = topic()
    will_topic, clean_topic = f"{base}/will", f"{base}/clean"
    watcher_inbox = Inbox()
    with running(link_to(broker, on_message=watcher_inbox)) as watcher:
        subscribed(watcher, [f"{base}/+"], f"{base}/barrier")
        # A clean stop sends DISCONNECT: the broker drops the will.
        with running(link_to(broker, will=Will(clean_topic, b"offline", qos=1, retain=True))):
            pass
        if drop == "socket closed":
            doomed = link_to(broker, will=Will(will_topic, b"offline", qos=1, retain=True))
            with running(doomed):
                sock = doomed._client.socket()
                assert sock is not None
                sock.shutdown(socket.SHUT_RDWR)  # the TCP connection ends without DISCONNECT, like a crash
                wait_for(lambda: will_topic in {m.topic for m in watcher_inbox.items}, "the will")
        else:
            # A client that goes silent (no FIN: its host vanished): the broker gives up after 1.5 keepalives.
            with silent_client(broker, will_topic, b"offline", keepalive_s=1):
                wait_for(lambda: will_topic in {m.topic for m in watcher_inbox.items}, "the will", 10)
        subscribed(watcher, [], f"{base}/barrier2")
    assert watcher_inbox.payloads(will_topic) == [b"offline"]
    assert watcher_inbox.payloads(clean_topic) == []
    # The will was retained: a later subscriber is told too.
    late = Inbox()
    with running(link_to(broker, on_message=late)) as reader:
        reader.subscribe([will_topic])
        wait_for(lambda: late.payloads(will_topic) == [b"offline"], "the retained will")
    assert late.items[0].retain


@contextlib.contextmanager
def silent_client(b: Broker, will_topic: str, will: bytes, keepalive_s: int) -> Iterator[None]:
    """A raw MQTT 3.1.1 client with a retained QoS1 will that connects and then sends nothing at all."""
    host, port = b.url.removeprefix("mqtt://").rsplit(":", 1)

    def field(data: bytes) -> bytes:
        return struct.pack("!H", len(data)) + data

    flags = 0x02 | 0x04 | 0x08 | 0x20  # clean session, will, will QoS 1, will retain
    body = field(b"MQTT") + bytes([4, flags]) + struct.pack("!H", keepalive_s)
    body += field(cid().encode()) + field(will_topic.encode()) + field(will)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(bytes([0x10, len(body)]) + body)
        assert sock.recv(4)[:2] == b"\x20\x02", "no CONNACK"
        yield


@pytest.mark.parametrize("kind", KINDS)
def test_broker_keeps_at_most_its_inflight_window_unacknowledged(kind: str) -> None:
    # Mosquitto's max_inflight_messages bounds 3.1.1 clients; the embedded broker's max_inflight bounds every
    # client (it speaks 3.1.1 only). Acking frees room: the next messages come.
    window = 5
    with broker_of(kind, max_inflight=window) as b:
        t = topic()
        inbox = Inbox()
        settings = MqttSettings.from_url(b.url, protocol="3.1.1")
        consumer = MqttLink(settings, cid(), persistent_session=True, manual_ack=True, on_message=inbox)
        with running(consumer):
            subscribed(consumer, [t], t + "/barrier")  # QoS 0 barrier: outside the QoS 1 window
            with running(link_to(b)) as publisher:
                assert all(publisher.publish(t, str(i).encode()).wait(5) for i in range(20))
            wait_for(lambda: len(inbox.payloads(t)) >= window, f"the first {window}")
            time.sleep(0.5)  # the broker would have sent more by now if it did not honour the window
            first = [m for m in inbox.items if m.topic == t]
            assert [m.payload for m in first] == [str(i).encode() for i in range(window)]
            for msg in first:
                consumer.ack(msg.mid, msg.qos)
            wait_for(lambda: len(inbox.payloads(t)) >= 2 * window, f"{window} more after the acks")
            # In order and nothing lost. (Mosquitto 2.0 sends the rest at once after the first acks: its window
            # holds only until a client acks; the embedded broker keeps it.)
            got = inbox.payloads(t)
            assert got == [str(i).encode() for i in range(len(got))]
            if kind == "embedded":
                time.sleep(0.5)
                assert len(inbox.payloads(t)) == 2 * window


def test_receive_maximum_of_a_v5_client(broker: Broker) -> None:
    if kind_of(broker) == "embedded":
        pytest.skip(
            "embedded broker: MQTT 3.1.1 only, so no v5 Receive Maximum; its own max_inflight window bounds every "
            "client (test_broker_keeps_at_most_its_inflight_window_unacknowledged)"
        )
    t = topic()
    inbox = Inbox()
    consumer = link_to(broker, manual_ack=True, on_message=inbox, receive_maximum=4)
    with running(consumer):
        subscribed(consumer, [t], t + "/barrier")
        with running(link_to(broker)) as publisher:
            assert all(publisher.publish(t, str(i).encode()).wait(5) for i in range(10))
        wait_for(lambda: len(inbox.payloads(t)) >= 4, "the first 4")
        time.sleep(0.5)
        assert inbox.payloads(t) == [str(i).encode() for i in range(4)]


def test_shared_subscription(broker: Broker) -> None:
    if kind_of(broker) == "embedded":
        pytest.skip(
            "embedded broker: no shared subscriptions ($share/<group>/ filters never match in amqtt); MqttLink "
            "subscribes without the prefix (test_share_prefix_falls_back_to_a_plain_subscription)"
        )
    t = topic()
    inboxes = [Inbox(), Inbox()]
    links = [link_to(broker, on_message=inbox) for inbox in inboxes]
    with running(links[0]), running(links[1]):
        for link in links:
            link.subscribe([f"$share/g/{t}"])
        time.sleep(0.3)  # both SUBACKs
        with running(link_to(broker)) as publisher:
            assert all(publisher.publish(t, str(i).encode()).wait(5) for i in range(20))
        wait_for(lambda: sum(len(i.payloads(t)) for i in inboxes) >= 20, "20 messages between the two")
    assert sorted(inboxes[0].payloads(t) + inboxes[1].payloads(t)) == sorted(str(i).encode() for i in range(20))


def test_share_prefix_falls_back_to_a_plain_subscription(broker: Broker) -> None:
    # On the embedded broker every subscriber of `$share/g/<t>` gets every message (no sharing, nothing lost); on
    # Mosquitto the group shares them. Either way each message arrives.
    t = topic()
    inbox = Inbox()
    with running(link_to(broker, on_message=inbox)) as link:
        link.subscribe([f"$share/g/{t}"])
        time.sleep(0.3)  # the SUBACK
        with running(link_to(broker)) as publisher:
            assert all(publisher.publish(t, str(i).encode()).wait(5) for i in range(3))
        wait_for(lambda: len(inbox.payloads(t)) == 3, "three messages")
    assert inbox.payloads(t) == [b"0", b"1", b"2"]
