"""The embedded broker itself: start and stop, a taken port, logins, hostile bytes, what it does beyond amqtt, the
`shopfloor broker` command; and MqttLink's "auto" against brokers that refuse or ignore a v5 CONNECT."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from mqtt_clients import Inbox, running, wait_for

from launcher.broker_cli import read_users
from launcher.services import free_port
from shopfloor import embedded_broker
from shopfloor.embedded_broker import BrokerStartError, EmbeddedBroker
from shopfloor.mqtt import MqttLink, MqttSettings

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def cid() -> str:
    return f"emb-{uuid.uuid4().hex[:10]}"


def settings_for(url: str, **kwargs: object) -> MqttSettings:
    return MqttSettings.from_url(url, reconnect_min_s=0.05, reconnect_max_s=0.2, **kwargs)


def roundtrip(url: str, **login: object) -> None:
    """A message published comes back to a subscriber: the broker serves."""
    topic = f"emb/{uuid.uuid4().hex[:8]}"
    inbox = Inbox()
    with running(MqttLink(settings_for(url, **login), cid(), on_message=inbox)) as link:
        link.subscribe([topic])
        deadline = time.monotonic() + 10
        while not inbox.payloads(topic):
            assert time.monotonic() < deadline, "no roundtrip"
            link.publish(topic, b"ping", qos=1).wait(2)
            time.sleep(0.1)


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as b:
        yield b


# ---- lifecycle -------------------------------------------------------------------------------------------------


def test_start_serve_stop_is_idempotent(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    b = EmbeddedBroker()
    assert not b.running()
    b.stop()  # never started: nothing to do
    assert b.start() is b
    assert b.running() and b.port > 0 and b.url == f"mqtt://127.0.0.1:{b.port}"
    roundtrip(b.url)
    b.stop()
    b.stop()
    assert not b.running()
    assert not port_open(b.port)
    # One line when it starts, nothing of amqtt's below WARNING.
    ours = [r for r in caplog.records if r.name == "shopfloor.embedded_broker"]
    assert [r.getMessage() for r in ours] == [f"embedded MQTT broker (MQTT 3.1.1, anonymous) listening on {b.url}"]
    assert [r for r in caplog.records if r.name.startswith("amqtt") and r.levelno < logging.WARNING] == []


def test_stop_with_clients_connected_is_bounded_and_they_notice() -> None:
    b = EmbeddedBroker().start()
    link = MqttLink(settings_for(b.url), cid())
    with running(link):
        b.stop()
        wait_for(lambda: not link.connected, "the client noticing", 10)
    assert not b.running()


def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        b = EmbeddedBroker(port=port)
        with pytest.raises(BrokerStartError, match=rf"cannot listen on 127\.0\.0\.1:{port} \(.*in use"):
            b.start()
        assert not b.running()
        b.stop()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"port": 70000}, "port must be 0..65535"),
        ({"port": -1}, "port must be 0..65535"),
        ({"max_inflight": 0}, "max_inflight must be 1..65535"),
        ({"max_queued": 0}, "max_queued must be at least 1"),
        ({"session_expiry_s": 0}, "session_expiry_s must be at least 1"),
        ({"users": {"": "x"}}, "non-empty user names"),
        ({"host": ""}, "no host"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        EmbeddedBroker(**kwargs)  # type: ignore[arg-type]


# ---- logins ----------------------------------------------------------------------------------------------------


def test_users_are_checked() -> None:
    with EmbeddedBroker(users={"edge-1": "s3cret", "collector": "other"}) as b:
        roundtrip(b.url, username="edge-1", password="s3cret")
        for login in ({"username": "edge-1", "password": "wrong"}, {"username": "nobody", "password": "s3cret"}, {}):
            link = MqttLink(settings_for(b.url, **login), cid())  # type: ignore[arg-type]
            with running(link, connect=False):
                wait_for(lambda link=link: sum(link.stats["refused_connects"].values()) >= 2, "two refusals")  # type: ignore[misc]
                assert not link.connected
                assert set(link.stats["refused_connects"]) == {"Not authorized"}


def test_users_file_parsing(tmp_path: Path) -> None:
    path = tmp_path / "users"
    path.write_text("# who may connect\nedge-1:s3:cret\n\ncollector:pw\n")
    assert read_users(path) == {"edge-1": "s3:cret", "collector": "pw"}  # the first colon splits
    for text, match in (
        ("nocolon\n", "line 1: expected name:password"),
        (":pw\n", "line 1: expected name:password"),
        ("a:1\na:2\n", "line 2: user 'a' given twice"),
        ("# only a comment\n", "no users"),
    ):
        path.write_text(text)
        with pytest.raises(ValueError, match=match):
            read_users(path)
    with pytest.raises(ValueError, match="cannot read"):
        read_users(tmp_path / "missing")


# ---- hostile bytes ---------------------------------------------------------------------------------------------


def field(data: bytes) -> bytes:
    return struct.pack("!H", len(data)) + data


def connect_packet(client_id: str, level: int = 4, keepalive: int = 30) -> bytes:
    body = field(b"MQTT") + bytes([level, 0x02]) + struct.pack("!H", keepalive)
    if level == 5:
        body += b"\x05\x11\x00\x00\x0e\x10"  # properties: session expiry 3600 s (what amqtt misreads)
    body += field(client_id.encode())
    return bytes([0x10, len(body)]) + body


HOSTILE = {
    "random bytes": os.urandom(512),
    "zeros": b"\x00" * 64,
    "publish before connect": b"\x30\x05\x00\x01tab",
    "huge remaining length": b"\x10\xff\xff\xff\x7f" + b"x" * 100,
    "length over 4 bytes": b"\x10\xff\xff\xff\xff\x01",
    "truncated connect": connect_packet("trunc")[:9],
    "wrong protocol name": b"\x10\x0c\x00\x04ABCD\x04\x02\x00\x1e\x00\x00",
    "http request": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
}

AFTER_CONNECT = {
    "reserved packet type": b"\xf0\x00",
    "publish with wildcard topic": b"\x30\x05\x00\x03a/#",
    "publish shorter than its topic": b"\x32\x04\x00\x10ab",
    "subscribe without topics": b"\x82\x02\x00\x01",
    "second connect": connect_packet("again"),
    "garbage": os.urandom(256),
}


def send_raw(port: int, data: bytes, *, connect_first: bool = False) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        if connect_first:
            sock.sendall(connect_packet(cid()))
            assert sock.recv(4) == b"\x20\x02\x00\x00", "no CONNACK"
        with contextlib.suppress(OSError):
            sock.sendall(data)
            sock.settimeout(0.3)
            with contextlib.suppress(TimeoutError):
                sock.recv(1024)


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_garbage_instead_of_connect_does_not_hurt_it(broker: EmbeddedBroker, name: str) -> None:
    send_raw(broker.port, HOSTILE[name])
    roundtrip(broker.url)


@pytest.mark.parametrize("name", sorted(AFTER_CONNECT))
def test_garbage_after_connect_does_not_hurt_it(broker: EmbeddedBroker, name: str) -> None:
    send_raw(broker.port, AFTER_CONNECT[name], connect_first=True)
    roundtrip(broker.url)


def test_v5_connect_is_answered_unacceptable_protocol(broker: EmbeddedBroker) -> None:
    # amqtt itself would wait for bytes that never come (it parses the v5 properties as the client id).
    with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as sock:
        sock.sendall(connect_packet(cid(), level=5))
        assert sock.recv(4) == b"\x20\x02\x00\x01"
        assert sock.recv(1) == b""  # and closed


def test_a_client_that_sends_no_connect_is_dropped(broker: EmbeddedBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded_broker, "CONNECT_TIMEOUT_S", 0.3)
    with socket.create_connection(("127.0.0.1", broker.port), timeout=5) as sock:
        assert sock.recv(1) == b""  # closed by the broker, not by our 5 s timeout
    roundtrip(broker.url)


# ---- beyond amqtt ----------------------------------------------------------------------------------------------


def test_an_unacknowledged_message_outlives_amqtts_5_s_puback_timeout(broker: EmbeddedBroker) -> None:
    client_id, topic = cid(), f"emb/{uuid.uuid4().hex[:8]}"
    inbox = Inbox()
    consumer = MqttLink(settings_for(broker.url), client_id, persistent_session=True, manual_ack=True, on_message=inbox)
    consumer.subscribe([topic])
    with running(consumer), running(MqttLink(settings_for(broker.url), cid())) as publisher:
        time.sleep(0.3)  # the SUBACK
        assert publisher.publish(topic, b"slow store").wait(5)
        wait_for(lambda: inbox.payloads(topic) == [b"slow store"], "the message")
        time.sleep(6)  # amqtt 0.12.1 drops it after 5 s without a PUBACK
    again = Inbox()
    with running(MqttLink(settings_for(broker.url), client_id, persistent_session=True, on_message=again)):
        wait_for(lambda: again.payloads(topic) == [b"slow store"], "the message again after the reconnect")


def test_the_queue_of_a_disconnected_session_is_bounded(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="shopfloor.embedded_broker")
    with EmbeddedBroker(max_queued=3) as b:
        client_id, topic = cid(), f"emb/{uuid.uuid4().hex[:8]}"
        away = MqttLink(settings_for(b.url), client_id, persistent_session=True)
        away.subscribe([topic])
        with running(away):
            time.sleep(0.3)  # the SUBACK
        with running(MqttLink(settings_for(b.url), cid())) as publisher:
            assert all(publisher.publish(topic, f"m{i}".encode()).wait(5) for i in range(6))
        inbox = Inbox()
        with running(MqttLink(settings_for(b.url), client_id, persistent_session=True, on_message=inbox)):
            wait_for(lambda: len(inbox.payloads(topic)) == 3, "the three newest")
            time.sleep(0.3)
    assert inbox.payloads(topic) == [b"m3", b"m4", b"m5"]  # 6 queued, bound 3: the oldest 3 dropped
    drops = [r for r in caplog.records if "dropping the oldest" in r.getMessage()]
    assert len(drops) == 1 and client_id in drops[0].getMessage()


def test_a_session_nobody_comes_back_to_expires() -> None:
    with EmbeddedBroker(session_expiry_s=1) as b:
        client_id, topic = cid(), f"emb/{uuid.uuid4().hex[:8]}"
        away = MqttLink(settings_for(b.url), client_id, persistent_session=True)
        away.subscribe([topic])
        with running(away):
            time.sleep(0.3)  # the SUBACK
        with running(MqttLink(settings_for(b.url), cid())) as publisher:
            assert publisher.publish(topic, b"queued").wait(5)
        assert b._broker is not None
        sessions = b._broker.sessions
        assert client_id in sessions  # kept while it may come back
        wait_for(lambda: client_id not in sessions, "the session expiring", 10)
        inbox = Inbox()
        with running(MqttLink(settings_for(b.url), client_id, persistent_session=True, on_message=inbox)) as back:
            back.publish(topic, b"live").wait(5)  # not subscribed any more: the session started afresh
            time.sleep(0.3)
    assert inbox.payloads(topic) == []


# ---- MqttLink "auto" against brokers without v5 -----------------------------------------------------------------


def test_auto_falls_back_quietly_on_the_embedded_broker(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="shopfloor.mqtt")
    with EmbeddedBroker() as b:
        # A persistent session sends v5 properties: the CONNECT amqtt alone never answers.
        for _ in range(3):  # three links of one process (a collector makes a new one on each resume)
            link = MqttLink(MqttSettings.from_url(b.url), cid(), persistent_session=True)
            with running(link):
                assert (link.protocol, link.shared_subscriptions) == ("3.1.1", False)
    text = f"MQTT broker {b.url} does not speak MQTT v5; falling back to MQTT 3.1.1"
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.levelno >= logging.WARNING or text in r.message]
    assert lines == [(logging.WARNING, text), (logging.DEBUG, text), (logging.DEBUG, text)]


class SilentFront:
    """A TCP front that never answers a CONNECT of the given levels (keeps the connection open, or closes it at
    once when hang_up) and passes others through to a broker."""

    def __init__(self, upstream_port: int, silent_levels: set[int], *, hang_up: bool = False) -> None:
        self.upstream_port = upstream_port
        self.silent_levels = silent_levels
        self.hang_up = hang_up
        self.levels: list[int] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self._server.settimeout(0.2)
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            self._conns.append(conn)
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            first = conn.recv(65536)  # a CONNECT this small comes in one piece on loopback
            level = first[2 + 2 + 4]  # fixed header (2), name length (2), "MQTT", then the level
            self.levels.append(level)
            if level in self.silent_levels:
                if self.hang_up:
                    conn.close()
                    return
                while conn.recv(65536):  # say nothing; read until the client gives up
                    pass
                return
            with socket.create_connection(("127.0.0.1", self.upstream_port)) as up:
                up.sendall(first)
                threading.Thread(target=self._pipe, args=(up, conn), daemon=True).start()
                self._pipe(conn, up)

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._server.close()
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.close()


def test_auto_tries_311_when_a_v5_connect_goes_unanswered(
    broker: EmbeddedBroker, caplog: pytest.LogCaptureFixture
) -> None:
    # A stock amqtt broker (or any 3.1.1 broker that chokes on v5 properties) never answers: after one keepalive
    # without a CONNACK the next attempt speaks 3.1.1, and stays on it once that connects.
    caplog.set_level(logging.INFO, logger="shopfloor.mqtt")
    front = SilentFront(broker.port, silent_levels={5})
    try:
        settings = MqttSettings(port=front.port, keepalive_s=1, reconnect_min_s=0.05, reconnect_max_s=0.2)
        link = MqttLink(settings, cid(), persistent_session=True)
        with running(link, connect=False):
            assert link.wait_connected(15)
            assert link.protocol == "3.1.1"
            roundtrip_on = link.publish("emb/after-probe", b"x")
            assert roundtrip_on.wait(5)
    finally:
        front.close()
    assert front.levels == [5, 4]
    assert sum("did not answer an MQTT v5 CONNECT" in r.getMessage() for r in caplog.records) == 1


def test_auto_goes_back_to_v5_when_311_is_not_answered_either(broker: EmbeddedBroker) -> None:
    # Nothing answers (a broker hung, say): the link alternates, so a v5 broker that recovers still gets v5.
    front = SilentFront(broker.port, silent_levels={4, 5})
    try:
        settings = MqttSettings(port=front.port, keepalive_s=1, reconnect_min_s=0.05, reconnect_max_s=0.1)
        with running(MqttLink(settings, cid(), persistent_session=True), connect=False) as link:
            wait_for(lambda: len(front.levels) >= 3, "three attempts", 20)
            assert not link.connected
    finally:
        front.close()
    assert front.levels[:3] == [5, 4, 5]


def test_auto_keeps_v5_when_the_connection_merely_closes_before_the_connack(broker: EmbeddedBroker) -> None:
    # A broker going away mid-handshake is not one that cannot read v5: no 3.1.1 probe.
    front = SilentFront(broker.port, silent_levels={4, 5}, hang_up=True)
    try:
        settings = MqttSettings(port=front.port, keepalive_s=1, reconnect_min_s=0.05, reconnect_max_s=0.1)
        with running(MqttLink(settings, cid(), persistent_session=True), connect=False):
            wait_for(lambda: len(front.levels) >= 3, "three attempts", 20)
    finally:
        front.close()
    assert set(front.levels) == {5}


# ---- `shopfloor broker` ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_broker_command_serves_until_signalled(sig: signal.Signals) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "shopfloor.cli", "broker", "--port", str(port)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        while line and "MQTT broker at" not in line:
            line = proc.stdout.readline()
        assert f"MQTT broker at mqtt://127.0.0.1:{port}" in line
        roundtrip(f"mqtt://127.0.0.1:{port}")
        proc.send_signal(sig)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert not port_open(port)


def test_broker_command_reports_a_taken_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "shopfloor.cli", "broker", "--port", str(port)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
