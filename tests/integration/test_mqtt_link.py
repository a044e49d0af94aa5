"""MqttLink against real Mosquitto processes: v5 and the 3.1.1 fallback, reconnects, sessions, refusals, bounds."""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from mqtt_clients import read_packet, wait_for

from launcher.services import Mosquitto, free_port, temp_workdir
from shopfloor.mqtt import InboundMessage, MqttLink, MqttSettings

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def running(link: MqttLink) -> Iterator[MqttLink]:
    link.start()
    try:
        yield link
    finally:
        link.stop()


def cid() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


def messages(lines: list[logging.LogRecord], text: str) -> int:
    return sum(text in r.getMessage() for r in lines)


# ---- settings (no broker) -----------------------------------------------------------------------------------


def test_settings_from_url_with_overrides() -> None:
    s = MqttSettings.from_url("mqtts://edge%2D1:p%40ss@broker.local", ca_file="/etc/ca.pem", session_expiry_s=60)
    assert (s.host, s.port, s.username, s.password, s.tls, s.ca_file, s.session_expiry_s) == (
        "broker.local",
        8883,
        "edge-1",
        "p@ss",
        True,
        "/etc/ca.pem",
        60,
    )
    assert "p@ss" not in repr(s)
    assert str(s) == "mqtts://broker.local:8883"


@pytest.mark.parametrize(
    ("url", "overrides", "match"),
    [
        ("mqtt://h", {"ca_file": "/ca.pem"}, "TLS options given but TLS is off"),
        ("mqtts://h", {"key_file": "/k.pem"}, "key_file given without cert_file"),
        ("mqtt://h", {"password": "x"}, "a password needs a username"),
        ("mqtt://h", {"protocol": "4"}, "protocol must be one of"),
        ("mqtt://h", {"max_queued_messages": -1}, "max_queued_messages"),
        ("mqtt://h", {"reconnect_min_s": 5, "reconnect_max_s": 1}, "reconnect delays"),
        ("mqtt://h", {"reconnect_jitter": 1.0}, "jitter"),
        ("mqtt://h", {"session_expiry_s": -1}, "session expiry"),
        ("mqtt://h", {"colour": "blue"}, "unknown option"),
        ("http://h", {}, "scheme must be"),
        ("mqtt://h:99999", {}, "invalid port"),
    ],
)
def test_settings_refuse_bad_values(url: str, overrides: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MqttSettings.from_url(url, **overrides)


def test_missing_tls_files_are_a_value_error() -> None:
    with pytest.raises(ValueError, match="cannot load the TLS files"):
        MqttLink(MqttSettings.from_url("mqtts://h", ca_file="/nonexistent/ca.pem"), cid())


def test_backoff_doubles_caps_and_jitters() -> None:
    s = MqttSettings()
    # 0.5 s doubling per failure, capped at 30 s, then +-20 %: rng 0 -> -20 %, 0.5 -> exact, 1 -> +20 %.
    assert [round(s.backoff_s(n, lambda: 0.5), 3) for n in range(8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert round(s.backoff_s(0, lambda: 0.0), 3) == 0.4
    assert round(s.backoff_s(20, lambda: 1.0), 3) == 36.0


# ---- against Mosquitto --------------------------------------------------------------------------------------


def test_v5_connect_and_roundtrip(mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="shopfloor.mqtt")
    got: list[InboundMessage] = []
    settings = MqttSettings.from_url(mosquitto.url)
    with running(MqttLink(settings, cid(), on_message=got.append)) as link:
        assert link.wait_connected(10)
        topic = f"t/{uuid.uuid4().hex}"
        link.subscribe([topic])
        time.sleep(0.2)
        assert link.publish(topic, b"hello").wait(5)
        wait_for(lambda: len(got) == 1, "the message back")
        assert (link.protocol, link.stats["connects"]) == ("5", 1)
    assert got[0].payload == b"hello"
    assert messages(caplog.records, "(MQTT 5)") == 1


class V311OnlyFront:
    """A TCP front that answers a v5 CONNECT the way a 3.1.1-only broker must (CONNACK 0x01, close) and passes
    any other connection through to a real Mosquitto. Mosquitto 2.0 itself cannot refuse v5 on a listener."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.refused_v5 = 0
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._server.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            first = read_packet(conn)
            header_len = 2 + (first[1] & 0x80 and 1)  # fixed header; CONNECTs here are < 16 kB
            level = first[header_len + 6]  # after the 2-byte name length and "MQTT"
            if level == 5:
                self.refused_v5 += 1
                conn.sendall(b"\x20\x02\x00\x01")
                return
            with socket.create_connection(("127.0.0.1", self.upstream_port)) as up:
                up.sendall(first)
                pump = threading.Thread(target=self._pipe, args=(up, conn), daemon=True)
                pump.start()
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


def test_falls_back_to_311_when_the_broker_refuses_v5(mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="shopfloor.mqtt")
    front = V311OnlyFront(mosquitto.port)
    got: list[InboundMessage] = []
    try:
        settings = MqttSettings(port=front.port)
        with running(MqttLink(settings, cid(), persistent_session=True, on_message=got.append)) as link:
            topic = f"t/{uuid.uuid4().hex}"
            link.subscribe([topic])
            # Published before the first connect: queued, and delivered once 3.1.1 is up.
            handle = link.publish(topic, b"queued early")
            assert link.wait_connected(10)
            assert handle.wait(5)
            wait_for(lambda: len(got) == 1, "the message back over 3.1.1")
            assert link.protocol == "3.1.1"
            # Reconnects keep speaking 3.1.1: no second refusal.
            assert front.refused_v5 == 1
    finally:
        front.close()
    assert messages(caplog.records, "does not speak MQTT v5; falling back to MQTT 3.1.1") == 1
    assert messages(caplog.records, "(MQTT 3.1.1)") == 1


def test_explicit_311(mosquitto: Mosquitto) -> None:
    with running(MqttLink(MqttSettings.from_url(mosquitto.url, protocol="3.1.1"), cid())) as link:
        assert link.wait_connected(10)
        assert link.protocol == "3.1.1"
        assert link.publish("t/x", b"x").wait(5)


def test_reconnects_after_sigkill_and_logs_once_each_way(
    fresh_mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="shopfloor.mqtt")
    connects: list[float] = []
    settings = MqttSettings.from_url(fresh_mosquitto.url, reconnect_min_s=0.1, reconnect_max_s=0.4)
    with running(MqttLink(settings, cid(), on_connect=lambda: connects.append(time.monotonic()))) as link:
        assert link.wait_connected(10)
        fresh_mosquitto.kill()
        wait_for(lambda: not link.connected, "the loss noticed")
        time.sleep(2.0)  # several failed attempts (at most 0.4 s apart) while the broker is away
        fresh_mosquitto.start()
        wait_for(lambda: len(connects) == 2, "the reconnect", 10)
        stats = link.stats
        assert (stats["connects"], stats["disconnects"]) == (2, 1)
        assert stats["connect_failures"] >= 4
        assert link.publish("t/after", b"x").wait(5)
    assert messages(caplog.records, "lost MQTT broker") == 1
    assert messages(caplog.records, "is back after") == 1
    assert messages(caplog.records, "cannot connect") == 0


def test_persistent_session_gets_what_was_published_while_offline(fresh_mosquitto: Mosquitto) -> None:
    client_id, topic = cid(), f"t/{uuid.uuid4().hex}"
    settings = MqttSettings.from_url(fresh_mosquitto.url)
    first = MqttLink(settings, client_id, persistent_session=True)
    first.subscribe([topic])
    with running(first):
        assert first.wait_connected(10)
        time.sleep(0.3)  # the SUBACK
    with running(MqttLink(settings, cid())) as publisher:
        assert publisher.wait_connected(10)
        assert all(publisher.publish(topic, f"m{i}".encode()).wait(5) for i in range(3))
    got: list[InboundMessage] = []
    with running(MqttLink(settings, client_id, persistent_session=True, on_message=got.append)) as again:
        assert again.wait_connected(10)
        wait_for(lambda: len(got) == 3, "the three queued messages")
    assert [m.payload for m in got] == [b"m0", b"m1", b"m2"]
    # A non-persistent link with the same id starts afresh: nothing queued for it.
    empty: list[InboundMessage] = []
    with running(MqttLink(settings, client_id, on_message=empty.append)) as clean:
        assert clean.wait_connected(10)
        time.sleep(0.5)
    assert empty == []


@pytest.fixture
def secured_broker() -> Iterator[Mosquitto]:
    """A broker with a password file and an ACL: user 'edge-1' may publish only under ok/."""
    if shutil.which("mosquitto_passwd") is None:
        # CI installs mosquitto (which brings mosquitto_passwd): there a missing tool is a failure, not a skip.
        if os.environ.get("CI"):
            pytest.fail("mosquitto_passwd is not installed (Debian: apt-get install mosquitto)")
        pytest.skip("mosquitto_passwd is not installed")
    workdir = temp_workdir("sf-mosquitto-acl-")
    passwd, acl = workdir / "passwd", workdir / "acl"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwd), "edge-1", "s3cret"], check=True)
    acl.write_text("user edge-1\ntopic readwrite ok/#\n")
    broker = Mosquitto(workdir)
    broker.conf.write_text(
        "per_listener_settings false\n"
        "allow_anonymous false\n"
        f"password_file {passwd}\n"
        f"acl_file {acl}\n"
        f"listener {broker.port} 127.0.0.1\n"
        f"user {getpass.getuser()}\n"
        "persistence false\n"
        f"log_dest file {broker.log_path}\n"
    )
    broker.start()
    yield broker
    broker.stop()
    shutil.rmtree(workdir, ignore_errors=True)


def test_refused_publish_is_counted_and_logged_once(
    secured_broker: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="shopfloor.mqtt")
    done: list[tuple[int, bool, str]] = []
    settings = MqttSettings(port=secured_broker.port, username="edge-1", password="s3cret")
    link = MqttLink(settings, cid())
    link.on_publish_done(lambda mid, ok, reason: done.append((mid, ok, reason)))
    with running(link):
        assert link.wait_connected(10)
        good = link.publish("ok/a", b"x")
        bad = [link.publish("forbidden/a", b"x") for _ in range(3)]
        assert good.wait(5)
        for handle in bad:
            assert not handle.wait(5)
            assert (handle.done, handle.ok, handle.reason) == (True, False, "Not authorized")
        assert link.stats["refused_publishes"] == {"Not authorized": 3}
        wait_for(lambda: len(done) == 4, "four publish outcomes")
    assert sorted(ok for _, ok, _ in done) == [False, False, False, True]
    assert {reason for _, ok, reason in done if not ok} == {"Not authorized"}
    assert messages(caplog.records, "refused a publish") == 1


def test_refused_login_is_logged_once_and_retried(secured_broker: Mosquitto, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="shopfloor.mqtt")
    settings = MqttSettings(
        port=secured_broker.port, username="edge-1", password="wrong", reconnect_min_s=0.05, reconnect_max_s=0.1
    )
    with running(MqttLink(settings, cid())) as link:
        wait_for(lambda: sum(link.stats["refused_connects"].values()) >= 3, "three refused attempts")
        assert not link.connected
    assert messages(caplog.records, "refused the connection") == 1


def test_queue_is_bounded_while_the_broker_is_down(
    fresh_mosquitto: Mosquitto, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="shopfloor.mqtt")
    settings = MqttSettings.from_url(
        fresh_mosquitto.url, max_queued_messages=5, reconnect_min_s=0.1, reconnect_max_s=0.3
    )
    with running(MqttLink(settings, cid())) as link:
        assert link.wait_connected(10)
        fresh_mosquitto.kill()
        wait_for(lambda: not link.connected, "the loss noticed")
        handles = [link.publish("t/q", b"x" * 1000) for _ in range(12)]
        assert [h.queued for h in handles] == [True] * 5 + [False] * 7
        assert all(h.done and h.reason == "queue full" and not h.wait(0) for h in handles[5:])
        assert link.stats["queue_full"] == 7
        fresh_mosquitto.start()
        assert all(h.wait(15) for h in handles[:5])
        assert link.stats["awaiting_ack"] == 0
        # Room again: publishing works as before.
        assert link.publish("t/q", b"y").wait(5)
    assert messages(caplog.records, "messages already queued") == 1


def test_broker_never_there_logs_one_line(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    caplog.set_level(logging.INFO, logger="shopfloor.mqtt")
    settings = MqttSettings(port=free_port(), reconnect_min_s=0.05, reconnect_max_s=0.1)
    with running(MqttLink(settings, cid())) as link:
        wait_for(lambda: link.stats["connect_failures"] >= 5, "five failed attempts")
    assert messages(caplog.records, "cannot connect to MQTT broker") == 1


def test_receive_maximum_bounds_what_the_broker_sends_before_our_acks(mosquitto: Mosquitto) -> None:
    # A consumer that acks only after its store wrote tells the broker how many QoS 1 messages may be in flight.
    got: list[InboundMessage] = []
    lock = threading.Lock()

    def on(msg: InboundMessage) -> None:
        with lock:
            got.append(msg)

    topic = f"test/rm/{uuid.uuid4().hex[:8]}"
    consumer = MqttLink(MqttSettings.from_url(mosquitto.url), cid(), manual_ack=True, on_message=on, receive_maximum=5)
    consumer.subscribe([topic], qos=1)
    publisher = MqttLink(MqttSettings.from_url(mosquitto.url), cid())
    with running(consumer), running(publisher):
        assert consumer.wait_connected(10) and publisher.wait_connected(10)
        time.sleep(0.3)  # the consumer's SUBACK
        for i in range(20):
            assert publisher.publish(topic, str(i).encode(), qos=1).wait(5)
        wait_for(lambda: len(got) >= 5, "the first 5 messages")
        time.sleep(0.5)  # the broker would have sent more by now if it did not honour the limit
        with lock:
            first = list(got)
        assert [m.payload for m in first] == [str(i).encode() for i in range(5)]
        for msg in first:
            consumer.ack(msg.mid, msg.qos)
        wait_for(lambda: len(got) >= 10, "5 more after the acks")
    with pytest.raises(ValueError, match=r"receive maximum must be 1\.\.65535"):
        MqttLink(MqttSettings.from_url(mosquitto.url), cid(), receive_maximum=0)
