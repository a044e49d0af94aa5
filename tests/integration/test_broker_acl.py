"""A real Mosquitto started from deploy/mosquitto/ (ports and paths moved to a temp dir) enforces who may do what.

Users are made with the `shopfloor mqtt` functions for a test site. Mosquitto 2.0.11 answers an unauthorised
QoS 1 publish from an MQTT v5 client with PUBACK reason 0x87 (not authorized) and drops it; an MQTT 3.1.1 client
gets a plain PUBACK (it cannot carry a reason) and the message is dropped all the same; QoS 0 is dropped silently.
It grants every SUBSCRIBE and filters each message against the ACL when delivering it, so "cannot subscribe" is
checked as "never receives". To see that a refused message went nowhere, whatever its topic, the test adds an
observer user who may read everything (the only change to the generated ACL).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from test_deploy_config import make_certs, relocate, start  # tests/integration/ is on sys.path

from launcher.services import find_binary, free_ports
from shopfloor.brokerconf import Role, hash_password
from shopfloor.config import default_site_path, load_site
from shopfloor.contracts import Topic, subscription_filters
from shopfloor.mqtt import InboundMessage, MqttLink, MqttSettings, Will
from shopfloor.mqtt_cli import add_user, check_dir

pytestmark = pytest.mark.integration
DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"
PROFILES = default_site_path().parent / "profiles"
DENIED = "Not authorized"  # paho's name for reason code 0x87
OBSERVER = "observer"
SHARE = "$share/collectors/"


def site_yaml() -> str:
    """Site bdg: edge-1 serves cnc-01 and cnc-02, edge-2 serves laser-01."""
    return (
        "site: {id: bdg, name: Test, timezone: Asia/Jakarta}\n"
        f"profiles: ['{PROFILES}/cnc-mill-v1.yaml', '{PROFILES}/fiber-laser-v1.yaml']\n"
        "machines:\n"
        "  - {id: cnc-01, name: a, profile: cnc-mill-v1, host: 127.0.0.1, port: 15020, unit_id: 1}\n"
        "  - {id: cnc-02, name: b, profile: cnc-mill-v1, host: 127.0.0.1, port: 15021, unit_id: 1}\n"
        "  - {id: laser-01, name: c, profile: fiber-laser-v1, host: 127.0.0.1, port: 15022, unit_id: 1}\n"
        "agents:\n"
        "  - {id: edge-1, machines: [cnc-01, cnc-02]}\n"
        "  - {id: edge-2, machines: [laser-01]}\n"
    )


@dataclass
class Broker:
    folder: Path
    port: int
    tls_port: int | None
    passwords: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def settings(self, user: str | None, password: str | None = None, **kw: Any) -> MqttSettings:
        if user is not None and password is None:
            password = self.passwords.get(user)
        options: dict[str, Any] = {"port": self.port, "protocol": "5", "reconnect_min_s": 0.2, "reconnect_max_s": 1.0}
        return MqttSettings(username=user, password=password, **(options | kw))


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    tmp = tmp_path_factory.mktemp("broker-acl")
    folder = tmp / "mosquitto"
    shutil.copytree(DEPLOY, folder)
    for example in ("users.yaml", "acl"):
        (folder / example).unlink()
    have_tls = make_certs(folder / "certs")
    site_path = tmp / "site.yaml"
    site_path.write_text(site_yaml())
    site = load_site(site_path)
    passwords = {
        # edge-1 hashed in Python, the others by mosquitto_passwd (if installed): the broker must take both.
        "edge-1": add_user(folder, site, "edge-1", Role.AGENT, ["cnc-01", "cnc-02"], passwd_binary=""),
        "edge-2": add_user(folder, site, "edge-2", Role.AGENT),
        "collector-1": add_user(folder, site, "collector-1", Role.COLLECTOR),
        "api": add_user(folder, site, "api", Role.READER),
    }
    problems = check_dir(folder, site)
    assert problems == [] if have_tls else all("listener 8883" in p for p in problems), problems
    passwords[OBSERVER] = "observer-password"
    with (folder / "acl").open("a") as fh:
        fh.write(f"\n# test only: sees every message, so a test can tell that a refused one went nowhere\n"
                 f"user {OBSERVER}\ntopic read #\n")  # fmt: skip
    with (folder / "passwd").open("a") as fh:
        fh.write(f"{OBSERVER}:{hash_password(passwords[OBSERVER])}\n")
    port, tls_port = free_ports(2)
    conf = folder / "run.conf"
    conf.write_text(relocate((DEPLOY / "mosquitto.conf").read_text(), folder, port, tls_port if have_tls else None))
    b = Broker(folder, port, tls_port if have_tls else None, passwords, tmp / "mosquitto.log")
    b.proc = start([find_binary("mosquitto"), "-c", str(conf)], port, b.log)
    yield b
    b.proc.terminate()
    b.proc.wait(10)
    assert "Error" not in b.log.read_text(errors="replace"), b.log.read_text(errors="replace")[-2000:]


@dataclass
class Client:
    """A link and everything it received."""

    link: MqttLink
    received: list[InboundMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def topics(self) -> list[str]:
        with self.lock:
            return [m.topic for m in self.received]

    def payloads(self, topic: str) -> list[bytes]:
        with self.lock:
            return [m.payload for m in self.received if m.topic == topic]

    def wait_for(self, topic: str, payload: bytes, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while payload not in self.payloads(topic):
            assert time.monotonic() < deadline, f"{payload!r} never arrived on {topic}; got {self.topics()}"
            time.sleep(0.02)

    def publish_ok(self, topic: str, payload: bytes, retain: bool = False) -> None:
        handle = self.link.publish(topic, payload, qos=1, retain=retain)
        assert handle.wait(10), f"{self.link.client_id}: publish to {topic} refused ({handle.reason!r})"

    def publish_denied(self, topic: str, payload: bytes, retain: bool = False) -> None:
        handle = self.link.publish(topic, payload, qos=1, retain=retain)
        handle.wait(10)
        assert handle.done and not handle.ok and handle.reason == DENIED, (topic, handle.reason)


Connect = Callable[..., Client]


@pytest.fixture
def connect(broker: Broker) -> Iterator[Connect]:
    """connect(user, client_id=..., subscribe=[...], wait=True, **settings) -> a connected Client."""
    made: list[Client] = []

    def _connect(
        user: str | None,
        client_id: str | None = None,
        subscribe: list[str] | None = None,
        wait: bool = True,
        password: str | None = None,
        persistent: bool = False,
        will: Will | None = None,
        **kw: Any,
    ) -> Client:
        received: list[InboundMessage] = []
        lock = threading.Lock()

        def on_message(msg: InboundMessage) -> None:
            with lock:
                received.append(msg)

        link = MqttLink(
            broker.settings(user, password, **kw),
            client_id or f"test-{user}",
            on_message=on_message,
            persistent_session=persistent,
            will=will,
        )
        client = Client(link, received, lock)
        if subscribe:
            client.link.subscribe(subscribe)
        client.link.start()
        made.append(client)
        if wait:
            assert client.link.wait_connected(10), f"{user} could not connect: {client.link.stats}"
            if subscribe:
                time.sleep(0.3)  # SUBACK: MqttLink subscribes from its on_connect callback
        return client

    yield _connect
    for client in made:
        client.link.stop()


def observer(connect: Connect) -> Client:
    return connect(OBSERVER, subscribe=["#"])


def barrier(sender: Client, watcher: Client, topic: str) -> None:
    """Publish a marker and wait until watcher has it: whatever sender published before has been routed too."""
    marker = f"barrier-{time.monotonic_ns()}".encode()
    sender.publish_ok(topic, marker)
    watcher.wait_for(topic, marker)


TEL1 = str(Topic.telemetry("bdg", "cnc-01"))
TEL2 = str(Topic.telemetry("bdg", "cnc-02"))
LASER = str(Topic.telemetry("bdg", "laser-01"))


def test_agents_publish_their_own_topics_and_collector_reads_all_and_commits(connect: Connect) -> None:
    collector = connect("collector-1", subscribe=[SHARE + f for f in subscription_filters()])
    edge1 = connect("edge-1", subscribe=[str(Topic.commits("bdg", "edge-1"))])
    edge2 = connect("edge-2", subscribe=[str(Topic.commits("bdg", "edge-2"))])
    sent = {
        TEL1: (edge1, b"t1"),
        TEL2: (edge1, b"t2"),
        str(Topic.machine_status("bdg", "cnc-01")): (edge1, b"s1"),
        str(Topic.agent_status("bdg", "edge-1")): (edge1, b"a1"),
        LASER: (edge2, b"t3"),
        str(Topic.machine_status("bdg", "laser-01")): (edge2, b"s3"),
        str(Topic.agent_status("bdg", "edge-2")): (edge2, b"a2"),
    }
    for topic, (client, payload) in sent.items():
        client.publish_ok(topic, payload)
    for topic, (_, payload) in sent.items():
        collector.wait_for(topic, payload)
    collector.publish_ok(str(Topic.commits("bdg", "edge-1")), b"c1")
    collector.publish_ok(str(Topic.commits("bdg", "edge-2")), b"c2")
    edge1.wait_for(str(Topic.commits("bdg", "edge-1")), b"c1")
    edge2.wait_for(str(Topic.commits("bdg", "edge-2")), b"c2")


@pytest.mark.parametrize(
    "topic",
    [
        str(Topic.agent_status("bdg", "edge-2")),  # as another agent
        str(Topic.machine_status("bdg", "laser-01")),  # a machine it does not serve
        LASER,
        str(Topic.telemetry("jkt", "cnc-01")),  # another site
        str(Topic.agent_status("jkt", "edge-1")),
        str(Topic.commits("bdg", "edge-1")),  # commits come from collectors only
        str(Topic.commits("bdg", "edge-2")),
        "shopfloor/v1/bdg/cnc-01/other",
        "shopfloor/v2/bdg/cnc-01/telemetry",
        "probe/anything",
    ],
)
def test_agent_cannot_publish_outside_its_own_topics(connect: Connect, topic: str) -> None:
    watcher = observer(connect)
    edge1 = connect("edge-1")
    edge1.publish_denied(topic, b"forged")  # MQTT v5: PUBACK 0x87
    edge1.publish_denied(topic, b"forged-retained", retain=True)
    edge1.link.publish(topic, b"forged-qos0", qos=0)
    barrier(edge1, watcher, TEL1)
    assert watcher.payloads(topic) == []
    late = connect(OBSERVER, client_id="late-observer", subscribe=[topic])  # nothing was retained either
    barrier(edge1, watcher, TEL1)
    assert late.payloads(topic) == []


def test_mqtt311_refusal_looks_like_success_but_delivers_nothing(connect: Connect) -> None:
    watcher = observer(connect)
    edge1 = connect("edge-1", protocol="3.1.1")
    handle = edge1.link.publish(LASER, b"forged-311", qos=1)
    assert handle.wait(10)  # a 3.1.1 PUBACK cannot say "refused"
    barrier(edge1, watcher, TEL1)
    assert watcher.payloads(LASER) == []


def test_agent_cannot_read_others_commits_or_any_telemetry(connect: Connect) -> None:
    edge1 = connect(
        "edge-1",
        subscribe=[str(Topic.commits("bdg", "edge-2")), "shopfloor/v1/bdg/+/telemetry", "shopfloor/#", "#"],
    )
    edge2 = connect("edge-2")
    collector = connect("collector-1")
    collector.publish_ok(str(Topic.commits("bdg", "edge-2")), b"for-edge-2")
    edge2.publish_ok(LASER, b"laser")
    edge2.publish_ok(str(Topic.agent_status("bdg", "edge-2")), b"status")
    collector.publish_ok(str(Topic.commits("bdg", "edge-1")), b"own")  # after the others: arrives after them
    edge1.wait_for(str(Topic.commits("bdg", "edge-1")), b"own")
    assert set(edge1.topics()) == {str(Topic.commits("bdg", "edge-1"))}


@pytest.mark.parametrize(
    ("user", "password"),
    [
        ("edge-1", "wrong"),
        ("edge-2", "edge-1's"),
        ("ghost", "whatever"),
        (None, None),  # anonymous
    ],
)
def test_bad_logins_are_refused(broker: Broker, connect: Connect, user: str | None, password: str | None) -> None:
    if password == "edge-1's":
        password = broker.passwords["edge-1"]
    client = connect(user, password=password, wait=False)
    assert not client.link.wait_connected(3)
    stats = client.link.stats
    assert stats["connects"] == 0
    assert set(stats["refused_connects"]) == {DENIED}, stats  # CONNACK 0x87


def test_another_users_client_id_cannot_take_over_a_session(broker: Broker, connect: Connect) -> None:
    commits = str(Topic.commits("bdg", "edge-1"))
    edge1 = connect("edge-1", client_id="shopfloor-agent-bdg-edge-1", subscribe=[commits], persistent=True)
    collector = connect("collector-1")
    # edge-2 asks for edge-1's client id (the one our agent uses, and the one the broker actually gives it).
    thief = connect("edge-2", client_id="shopfloor-agent-bdg-edge-1", subscribe=[commits], persistent=True)
    thief2 = connect("edge-2", client_id="edge-1", subscribe=[commits], persistent=True)
    collector.publish_ok(commits, b"live")
    edge1.wait_for(commits, b"live")
    assert edge1.link.stats["disconnects"] == 0, "edge-1 was kicked off by another user's client id"
    # edge-1's persistent session outlives its connection; another user asking for its id gets its own session.
    thief.link.stop()
    thief2.link.stop()
    edge1.link.stop()
    collector.publish_ok(commits, b"queued-for-edge-1")
    thief3 = connect("edge-2", client_id="edge-1", persistent=True)
    back = connect("edge-1", client_id="shopfloor-agent-bdg-edge-1", subscribe=[commits], persistent=True)
    back.wait_for(commits, b"queued-for-edge-1")
    for other in (thief, thief2, thief3):
        assert other.payloads(commits) == []
    assert "as edge-2 " in broker.log.read_text(errors="replace")


def test_oversize_packet_drops_that_client_while_others_flow(connect: Connect) -> None:
    collector = connect("collector-1", subscribe=[SHARE + f for f in subscription_filters()])
    edge1 = connect("edge-1")
    edge2 = connect("edge-2")
    n = 300
    done = threading.Event()

    def legit() -> None:
        for i in range(n):
            edge2.link.publish(LASER, f"m{i}".encode(), qos=1)
            time.sleep(0.002)
        done.set()

    sender = threading.Thread(target=legit)
    sender.start()
    edge1.link.publish(TEL1, b"x" * 400_000, qos=1)  # > max_packet_size 300000
    sender.join(30)
    assert done.is_set()
    deadline = time.monotonic() + 15
    while len(set(collector.payloads(LASER))) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    assert set(collector.payloads(LASER)) == {f"m{i}".encode() for i in range(n)}
    assert edge1.link.stats["disconnects"] >= 1, "the oversize sender was not disconnected"
    assert edge2.link.stats["disconnects"] == 0
    assert all(len(p) < 300_000 for p in collector.payloads(TEL1))
    edge1.link.stop()  # paho would resend the oversize message after every reconnect


def test_a_packet_just_under_the_limit_passes(connect: Connect) -> None:
    collector = connect("collector-1", subscribe=[SHARE + f for f in subscription_filters()])
    edge1 = connect("edge-1")
    payload = b"y" * (256 * 1024)  # the contract's largest payload
    edge1.publish_ok(TEL2, payload)
    collector.wait_for(TEL2, payload)


def test_reader_reads_telemetry_and_statuses_but_publishes_nothing(connect: Connect) -> None:
    watcher = observer(connect)
    reader = connect("api", subscribe=[*subscription_filters(), "shopfloor/v1/+/agents/+/commits"])
    edge1 = connect("edge-1")
    collector = connect("collector-1")
    for topic in (TEL1, str(Topic.commits("bdg", "edge-1")), str(Topic.agent_status("bdg", "edge-1")), "probe/x"):
        reader.publish_denied(topic, b"from-reader")
    collector.publish_ok(str(Topic.commits("bdg", "edge-1")), b"commit")
    edge1.publish_ok(str(Topic.agent_status("bdg", "edge-1")), b"agent-status")
    edge1.publish_ok(TEL1, b"reading")
    reader.wait_for(TEL1, b"reading")
    reader.wait_for(str(Topic.agent_status("bdg", "edge-1")), b"agent-status")
    assert str(Topic.commits("bdg", "edge-1")) not in reader.topics()
    barrier(edge1, watcher, TEL1)
    assert not any(m.payload == b"from-reader" for m in watcher.received)


def test_collector_publishes_only_its_sites_commits(connect: Connect) -> None:
    watcher = observer(connect)
    collector = connect("collector-1")
    for topic in (TEL1, str(Topic.agent_status("bdg", "edge-1")), str(Topic.commits("jkt", "edge-1")), "probe/x"):
        collector.publish_denied(topic, b"from-collector")
    collector.publish_ok(str(Topic.commits("bdg", "edge-9")), b"any-agent")
    watcher.wait_for(str(Topic.commits("bdg", "edge-9")), b"any-agent")
    assert not any(m.payload == b"from-collector" for m in watcher.received)


def test_last_will_is_published_only_on_own_agent_status(connect: Connect) -> None:
    # Mosquitto 2.0.11 accepts a CONNECT whose will topic the user may not publish to, and checks the ACL when
    # it would publish the will. An oversize packet makes the broker drop the connection: the will goes out.
    watcher = observer(connect)
    own_topic, other_topic = str(Topic.agent_status("bdg", "edge-1")), str(Topic.agent_status("bdg", "edge-2"))
    forged = connect("edge-1", will=Will(other_topic, b"forged-offline", retain=True))
    forged.link.publish(TEL1, b"x" * 400_000, qos=1)
    deadline = time.monotonic() + 10
    while forged.link.stats["disconnects"] == 0:
        assert time.monotonic() < deadline, "the broker did not drop the oversize sender"
        time.sleep(0.02)
    forged.link.stop()
    own = connect("edge-1", will=Will(own_topic, b"offline", retain=False))
    own.link.publish(TEL1, b"x" * 400_000, qos=1)
    watcher.wait_for(own_topic, b"offline")  # the control: a will does go out on such a drop
    own.link.stop()
    assert watcher.payloads(other_topic) == []


def test_tls_listener(broker: Broker, connect: Connect) -> None:
    if broker.tls_port is None:
        # CI installs openssl (.ci/run): there no certificates is a failure, not a skip.
        if os.environ.get("CI"):
            pytest.fail("openssl is not installed (Debian: apt-get install openssl): no test certificates")
        pytest.skip("openssl is not installed (Debian: apt-get install openssl): no test certificates")
    ca = str(broker.folder / "certs" / "ca.crt")
    edge1 = connect("edge-1", port=broker.tls_port, tls=True, ca_file=ca)
    edge1.publish_ok(TEL1, b"over-tls")
    edge1.publish_denied(LASER, b"over-tls")
    anonymous = connect(None, wait=False, port=broker.tls_port, tls=True, ca_file=ca)
    assert not anonymous.link.wait_connected(3)
