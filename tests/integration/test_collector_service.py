"""The collector against real Mosquitto and real InfluxDB: exact writes, refusals, store outages, commits."""

from __future__ import annotations

import argparse
import base64
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from api.core.timeline import StatusEvent
from collector.cli import _reload
from collector.convert import seq_ranges
from collector.registry import Registry
from collector.service import Collector
from launcher.services import InfluxDB, Mosquitto, free_port
from shopfloor.config import Machine, SiteConfig, default_site_path, load_site
from shopfloor.contracts import MAX_PAYLOAD_BYTES, LinkStatus, StatusMessage, Topic
from shopfloor.influx import InfluxStore, Point, Row
from shopfloor.mqtt import InboundMessage, MqttLink, MqttSettings

pytestmark = pytest.mark.integration

# A minute ago, on a whole minute: the registry refuses timestamps more than 7 days old or 5 min ahead.
T0 = (int(time.time() * 1000) // 60_000 - 1) * 60_000
SITE = "bdg"
PROBE = Topic.machine_status(SITE, "probe")


def _test_site() -> SiteConfig:
    """The example site plus a 'probe' machine; edge-2 serves cnc-02, edge-1 every other machine."""
    base = load_site(default_site_path())
    probe = Machine(id="probe", profile="cnc-mill-v1", port=15099)
    agents = [
        {"id": "edge-1", "machines": [m.id for m in base.machines if m.id != "cnc-02"] + ["probe"]},
        {"id": "edge-2", "machines": ["cnc-02"]},
    ]
    return SiteConfig.model_validate(
        {**base.model_dump(), "profiles": base.profiles, "machines": [*base.machines, probe], "agents": agents}
    )


REGISTRY = Registry.from_site(_test_site())


def wait_for(check: Callable[[], bool], what: str, timeout_s: float = 15.0) -> None:
    """Poll check until it holds; fail naming what did not happen."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def telemetry(
    machine: str, seq: int, samples: list[dict[str, Any]], agent: str = "edge-1", site: str = SITE
) -> dict[str, Any]:
    """A telemetry payload as a dict (so tests can break it)."""
    return {"v": 1, "agent": agent, "site": site, "machine": machine, "seq": seq, "samples": samples}


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload).encode()


class Client:
    """A test-side MQTT client that publishes and records what it receives."""

    def __init__(self, url: str, filters: list[str] | None = None) -> None:
        self.received: list[InboundMessage] = []
        self._lock = threading.Lock()
        self.link = MqttLink(MqttSettings.from_url(url), f"test-{uuid.uuid4().hex[:10]}", on_message=self._on)
        if filters:
            self.link.subscribe(filters)
        self.link.start()
        assert self.link.wait_connected(10)

    def _on(self, msg: InboundMessage) -> None:
        with self._lock:
            self.received.append(msg)

    def messages(self) -> list[InboundMessage]:
        with self._lock:
            return list(self.received)

    def publish(self, topic: Topic | str, payload: bytes) -> None:
        assert self.link.publish(str(topic), payload, qos=1).wait(10)

    def close(self) -> None:
        self.link.stop()


@pytest.fixture
def broker(fresh_mosquitto: Mosquitto) -> Mosquitto:
    """A broker of the test's own: retained messages other tests leave on a shared broker cannot leak in."""
    return fresh_mosquitto


@pytest.fixture
def client(broker: Mosquitto) -> Iterator[Client]:
    c = Client(broker.url)
    yield c
    c.close()


@pytest.fixture
def make_collector(broker: Mosquitto) -> Iterator[Callable[..., Collector]]:
    """Build collectors on the session broker; each gets its own client id unless given one, and is stopped."""
    made: list[Collector] = []

    def make(store: InfluxStore, **kwargs: Any) -> Collector:
        kwargs.setdefault("client_id", f"collector-{uuid.uuid4().hex[:10]}")
        kwargs.setdefault("flush_interval_s", 0.05)
        kwargs.setdefault("registry", REGISTRY)
        c = Collector(MqttSettings.from_url(broker.url), store, **kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop(timeout_s=1)


def sync(collector: Collector, client: Client) -> None:
    """Wait until the collector's subscription is live, by publishing probes until one arrives."""
    assert collector.wait_connected(10)
    start = collector.stats["received"]
    deadline = time.monotonic() + 15
    probe = StatusMessage(status=LinkStatus.ONLINE, ts=T0, agent="edge-1").to_json()
    while collector.stats["received"] == start:
        assert time.monotonic() < deadline, "collector never received a probe"
        client.publish(PROBE, probe)
        time.sleep(0.1)


def rows(store: InfluxStore, machine: str) -> list[tuple[int, dict[str, Any]]]:
    return [(r.ts_ms, r.fields) for r in store.telemetry(SITE, machine, T0 - 10_000, T0 + 10_000_000)]


def all_telemetry(store: InfluxStore) -> list[Row]:
    return store.rows("SELECT * FROM telemetry")


def dead_letters(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def merged_commits(messages: list[InboundMessage]) -> dict[str, dict[str, list[tuple[int, int]]]]:
    """All commit messages received, merged per agent topic and machine."""
    seqs: dict[str, dict[str, set[int]]] = {}
    for msg in messages:
        body = json.loads(msg.payload)
        assert body["v"] == 1
        for machine, ranges in body["machines"].items():
            for first, last in ranges:
                assert first <= last
                seqs.setdefault(msg.topic, {}).setdefault(machine, set()).update(range(first, last + 1))
    return {t: {m: seq_ranges(s) for m, s in per.items()} for t, per in seqs.items()}


def test_valid_messages_land_exactly_and_are_committed(
    broker: Mosquitto, client: Client, influx_store: InfluxStore, make_collector: Callable[..., Collector]
) -> None:
    commits = Client(broker.url, [f"shopfloor/v1/{SITE}/agents/+/commits"])
    try:
        collector = make_collector(influx_store)
        collector.start()
        sync(collector, client)
        sent = [
            (
                "cnc-01",
                telemetry(
                    "cnc-01",
                    seq,
                    [
                        {"ts": T0 + seq * 1000, "values": {"state": "RUNNING", "good_count": seq, "energy_kwh": 2}},
                        {"ts": T0 + seq * 1000 + 500, "values": {"power_kw": 1.5, "job": "J-7", "badge": 1001}},
                    ],
                ),
            )
            for seq in (1, 2, 3, 5)
        ]
        sent.append(("laser-01", telemetry("laser-01", 10, [{"ts": T0, "values": {"state": "IDLE", "alarms": 4}}])))
        sent.append(("cnc-02", telemetry("cnc-02", 1, [{"ts": T0, "values": {"stop_reason": 3}}], agent="edge-2")))
        for machine, payload in sent:
            client.publish(Topic.telemetry(SITE, machine), encode(payload))
        status = StatusMessage(status=LinkStatus.UNREACHABLE, ts=T0 + 42, agent="edge-1", detail="no reply in 2 s")
        client.publish(Topic.machine_status(SITE, "cnc-01"), status.to_json())

        wait_for(lambda: len(rows(influx_store, "cnc-01")) == 8, "cnc-01's 8 samples in the store")
        wait_for(lambda: len(influx_store.statuses(SITE, "cnc-01", T0, T0 + 100)) == 1, "cnc-01's status")
        assert rows(influx_store, "cnc-01") == [
            r
            for seq in (1, 2, 3, 5)
            for r in (
                (T0 + seq * 1000, {"state": "RUNNING", "good_count": seq, "energy_kwh": 2.0}),
                (T0 + seq * 1000 + 500, {"power_kw": 1.5, "job": "J-7", "badge": 1001}),
            )
        ]
        wait_for(lambda: len(rows(influx_store, "cnc-02")) == 1, "cnc-02's sample")
        assert rows(influx_store, "laser-01") == [(T0, {"state": "IDLE", "alarms": 4})]
        assert rows(influx_store, "cnc-02") == [(T0, {"stop_reason": 3})]
        [status_row] = influx_store.statuses(SITE, "cnc-01", T0, T0 + 100)
        assert (status_row.ts_ms, status_row.fields) == (
            T0 + 42,
            {"status": "unreachable", "agent": "edge-1", "detail": "no reply in 2 s"},
        )
        # Tags are site and machine only.
        assert {tuple(sorted(r.tags)) for r in all_telemetry(influx_store)} == {("machine", "site")}

        expected = {
            f"shopfloor/v1/{SITE}/agents/edge-1/commits": {"cnc-01": [(1, 3), (5, 5)], "laser-01": [(10, 10)]},
            f"shopfloor/v1/{SITE}/agents/edge-2/commits": {"cnc-02": [(1, 1)]},
        }
        wait_for(lambda: merged_commits(commits.messages()) == expected, "commits covering every written seq")
        stats = collector.stats
        assert stats["invalid"] == {}
        assert stats["store_rejected"] == 0
        assert stats["written_points"] >= 11  # 10 samples and 1 status, plus the probes
    finally:
        commits.close()


def test_resent_batch_is_the_same_point(
    client: Client, influx_store: InfluxStore, make_collector: Callable[..., Collector]
) -> None:
    collector = make_collector(influx_store)
    collector.start()
    sync(collector, client)
    before = collector.stats["written_messages"]
    payload = encode(telemetry("cnc-01", 7, [{"ts": T0, "values": {"good_count": 5}}, {"ts": T0 + 1, "values": {}}]))
    client.publish(Topic.telemetry(SITE, "cnc-01"), payload)
    client.publish(Topic.telemetry(SITE, "cnc-01"), payload)
    wait_for(lambda: collector.stats["written_messages"] >= before + 2, "both copies written")
    assert rows(influx_store, "cnc-01") == [(T0, {"good_count": 5})]


def _good_samples() -> list[dict[str, Any]]:
    return [{"ts": T0, "values": {"state": "RUNNING", "good_count": 1}}]


def _with(**changes: Any) -> bytes:
    return encode({**telemetry("cnc-01", 1, _good_samples()), **changes})


def _values(values: dict[str, Any]) -> bytes:
    return encode(telemetry("cnc-01", 1, [{"ts": T0, "values": values}]))


TELEMETRY_TOPIC = str(Topic.telemetry(SITE, "cnc-01"))
STATUS_TOPIC = str(Topic.machine_status(SITE, "cnc-01"))
STATUS_OK = {"v": 1, "status": "online", "ts": T0, "agent": "edge-1"}

BAD_INPUTS: list[tuple[str, str, bytes, str]] = [
    ("non-json", TELEMETRY_TOPIC, b"hello, world", "malformed-json"),
    ("binary-garbage", TELEMETRY_TOPIC, bytes(range(256)) * 8, "malformed-json"),
    ("empty", TELEMETRY_TOPIC, b"", "malformed-json"),
    ("deep-nesting", TELEMETRY_TOPIC, b"[" * 200_000, "malformed-json"),
    ("oversize", TELEMETRY_TOPIC, _with() + b" " * MAX_PAYLOAD_BYTES, "oversize"),
    ("v2", TELEMETRY_TOPIC, _with(v=2), "unknown-version"),
    ("v-string", TELEMETRY_TOPIC, _with(v="1"), "unknown-version"),
    ("not-an-object", TELEMETRY_TOPIC, b"[1, 2, 3]", "invalid-payload"),
    ("bad-agent-id", TELEMETRY_TOPIC, _with(agent="Edge_1"), "invalid-payload"),
    ("bad-site-id", TELEMETRY_TOPIC, _with(site="bdg/../x"), "invalid-payload"),
    ("bad-id-in-topic", "shopfloor/v1/bdg/CNC_01/telemetry", _with(machine="CNC_01"), "unknown-topic"),
    ("topic-mismatch", TELEMETRY_TOPIC, _with(machine="cnc-02"), "topic-mismatch"),
    ("count-as-string", TELEMETRY_TOPIC, _values({"good_count": "12"}), "wrong-type"),
    ("count-as-bool", TELEMETRY_TOPIC, _values({"good_count": True}), "wrong-type"),
    ("count-as-float", TELEMETRY_TOPIC, _values({"good_count": 1.5}), "wrong-type"),
    ("nan", TELEMETRY_TOPIC, _values({"good_count": 1}).replace(b"1}", b'1, "energy_kwh": NaN}'), "out-of-range"),
    ("infinity", TELEMETRY_TOPIC, _values({"x": 1}).replace(b'"x": 1', b'"power_kw": Infinity'), "out-of-range"),
    ("negative-counter", TELEMETRY_TOPIC, _values({"good_count": -1}), "out-of-range"),
    ("negative-energy", TELEMETRY_TOPIC, _values({"energy_kwh": -0.5}), "out-of-range"),
    ("trillion-parts", TELEMETRY_TOPIC, _values({"good_count": 10**16}), "out-of-range"),
    ("huge-energy", TELEMETRY_TOPIC, _values({"energy_kwh": 1.7e308}), "out-of-range"),
    ("huge-seq", TELEMETRY_TOPIC, _with(seq=2**64), "invalid-payload"),
    ("negative-seq", TELEMETRY_TOPIC, _with(seq=-1), "invalid-payload"),
    ("unknown-state", TELEMETRY_TOPIC, _values({"state": "EXPLODING"}), "out-of-range"),
    ("lowercase-state", TELEMETRY_TOPIC, _values({"state": "running"}), "out-of-range"),
    ("extra-field", TELEMETRY_TOPIC, _with(extra=1), "invalid-payload"),
    ("extra-sample-field", TELEMETRY_TOPIC, _with(samples=[{"ts": T0, "values": {}, "x": 1}]), "invalid-payload"),
    ("bad-signal-name", TELEMETRY_TOPIC, _values({"good count": 1}), "undeclared-signal"),
    ("junk-signal", TELEMETRY_TOPIC, _values({"junk_1": 1}), "undeclared-signal"),
    ("signal-machine", TELEMETRY_TOPIC, _values({"machine": "cnc-02", "state": "OFF"}), "reserved-name"),
    ("signal-site", TELEMETRY_TOPIC, _values({"site": "x"}), "reserved-name"),
    ("nested-value", TELEMETRY_TOPIC, _values({"job": {"id": 1}}), "invalid-payload"),
    ("long-string", TELEMETRY_TOPIC, _values({"job": "x" * 300}), "out-of-range"),
    ("ts-next-week", TELEMETRY_TOPIC, _with(samples=[{"ts": T0 + 7 * 86_400_000, "values": {}}]), "too-new"),
    ("ts-8-days-old", TELEMETRY_TOPIC, _with(samples=[{"ts": T0 - 8 * 86_400_000, "values": {}}]), "too-old"),
    ("unknown-agent", TELEMETRY_TOPIC, _with(agent="edge-9"), "unknown-agent"),
    ("agent-not-serving", TELEMETRY_TOPIC, _with(agent="edge-2"), "agent-not-serving"),
    ("unknown-machine", "shopfloor/v1/bdg/cnc-99/telemetry", _with(machine="cnc-99"), "unknown-machine"),
    ("payload-of-another-site", TELEMETRY_TOPIC, _with(site="jkt"), "topic-mismatch"),
    ("ts-zero", TELEMETRY_TOPIC, _with(samples=[{"ts": 0, "values": {"good_count": 1}}]), "invalid-payload"),
    ("ts-float", TELEMETRY_TOPIC, _with(samples=[{"ts": T0 + 0.5, "values": {}}]), "invalid-payload"),
    ("no-samples", TELEMETRY_TOPIC, _with(samples=[]), "invalid-payload"),
    ("too-many-samples", TELEMETRY_TOPIC, _with(samples=[{"ts": T0, "values": {}}] * 1001), "invalid-payload"),
    ("status-unknown", STATUS_TOPIC, encode({**STATUS_OK, "status": "exploded"}), "invalid-payload"),
    ("status-v2", STATUS_TOPIC, encode({**STATUS_OK, "v": 2}), "unknown-version"),
    ("status-extra", STATUS_TOPIC, encode({**STATUS_OK, "x": 1}), "invalid-payload"),
    ("status-garbage", STATUS_TOPIC, b"\xff\xfe\x00", "malformed-json"),
    ("status-not-serving", STATUS_TOPIC, encode({**STATUS_OK, "agent": "edge-2"}), "agent-not-serving"),
    ("status-too-new", STATUS_TOPIC, encode({**STATUS_OK, "ts": T0 + 86_400_000}), "too-new"),
    ("agent-status-unknown", str(Topic.agent_status(SITE, "edge-9")), encode({**STATUS_OK, "agent": "edge-9"}),
     "unknown-agent"),
]  # fmt: skip


@pytest.mark.parametrize(("topic", "payload", "kind"), [b[1:] for b in BAD_INPUTS], ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_counted_dead_lettered_and_never_written(
    tmp_path: Path,
    client: Client,
    influx_store: InfluxStore,
    make_collector: Callable[..., Collector],
    topic: str,
    payload: bytes,
    kind: str,
) -> None:
    dl = tmp_path / "dl.jsonl"
    collector = make_collector(influx_store, dead_letter=dl)
    collector.start()
    sync(collector, client)
    client.publish(topic, payload)
    # The collector keeps working: the next valid message is written.
    client.publish(TELEMETRY_TOPIC, encode(telemetry("cnc-01", 2, [{"ts": T0 + 5, "values": {"good_count": 9}}])))
    wait_for(lambda: len(rows(influx_store, "cnc-01")) == 1, "the next valid message in the store")

    assert collector.stats["invalid"] == {kind: 1}
    assert collector.stats["dead_lettered"] == 1
    [letter] = dead_letters(dl)
    assert (letter["topic"], letter["kind"], letter["payload_bytes"]) == (topic, kind, len(payload))
    assert base64.b64decode(letter["payload_b64"]) == payload[:MAX_PAYLOAD_BYTES]
    assert letter["detail"]
    assert [(r.ts_ms, r.fields) for r in all_telemetry(influx_store)] == [(T0 + 5, {"good_count": 9})]
    assert [r.tags["machine"] for r in influx_store.rows("SELECT * FROM machine_status")] == ["probe"]


def test_stop_flushes_and_acks_so_a_restart_gets_nothing_again(
    tmp_path: Path, client: Client, influx_store: InfluxStore, make_collector: Callable[..., Collector]
) -> None:
    client_id = f"collector-{uuid.uuid4().hex[:10]}"
    # A long flush interval: only stop() can write these.
    first = make_collector(influx_store, client_id=client_id, flush_interval_s=60, dead_letter=tmp_path / "dl.jsonl")
    first.start()
    sync(first, client)
    base = first.stats["received"]
    for seq in (1, 2, 3):
        # Two samples each, so a redelivered batch would show as more points than messages below.
        samples = [{"ts": T0 + seq, "values": {"badge": seq}}, {"ts": T0 + 100 + seq, "values": {"badge": 0}}]
        client.publish(TELEMETRY_TOPIC, encode(telemetry("cnc-01", seq, samples)))
    client.publish(TELEMETRY_TOPIC, b"not json")
    wait_for(lambda: first.stats["received"] == base + 4, "four messages received")
    assert rows(influx_store, "cnc-01") == []
    first.stop()
    assert rows(influx_store, "cnc-01") == [(T0 + seq, {"badge": seq}) for seq in (1, 2, 3)] + [
        (T0 + 100 + seq, {"badge": 0}) for seq in (1, 2, 3)
    ]

    second = make_collector(influx_store, client_id=client_id, dead_letter=tmp_path / "dl2.jsonl")
    second.start()
    sync(second, client)
    # The broker resends unacked messages first on reconnect; only probes (1 point each) may arrive after that.
    wait_for(lambda: second.stats["written_messages"] == second.stats["received"], "probes written")
    stats = second.stats
    assert stats["invalid"] == {}
    assert stats["written_points"] == stats["written_messages"], "a telemetry batch was redelivered"
    assert not (tmp_path / "dl2.jsonl").exists()


def test_store_down_acks_nothing_and_a_restart_loses_nothing(
    client: Client, influxdb: Any, influx_store: InfluxStore, make_collector: Callable[..., Collector]
) -> None:
    client_id = f"collector-{uuid.uuid4().hex[:10]}"
    closed = InfluxStore(f"http://127.0.0.1:{free_port()}", influx_store.database, timeout_s=1)
    first = make_collector(closed, client_id=client_id, max_queue_points=4)
    first.start()
    sync(first, client)
    for seq in range(1, 11):
        client.publish(TELEMETRY_TOPIC, encode(telemetry("cnc-01", seq, [{"ts": T0 + seq, "values": {"badge": seq}}])))
    wait_for(lambda: first.stats["store_failures"] >= 3, "three failed writes")
    stats = first.stats
    assert (stats["acked"], stats["written_messages"], stats["commits_published"]) == (0, 0, 0)
    # Bounded queue: at most 4 points held plus the one message blocked in the MQTT callback.
    assert stats["received"] <= 5
    first.stop(timeout_s=0.5)
    assert first.stats["abandoned"] >= 1
    closed.close()

    second = make_collector(influx_store, client_id=client_id)
    second.start()
    wait_for(lambda: len(rows(influx_store, "cnc-01")) == 10, "all ten redelivered batches in the store")
    assert rows(influx_store, "cnc-01") == [(T0 + seq, {"badge": seq}) for seq in range(1, 11)]
    assert second.stats["invalid"] == {}


def test_field_type_conflict_dead_letters_only_the_poison_message(
    tmp_path: Path,
    broker: Mosquitto,
    client: Client,
    influx_store: InfluxStore,
    make_collector: Callable[..., Collector],
) -> None:
    # The store already holds "job" as an integer (written before the registry checked types): a valid string "job"
    # is refused by InfluxDB itself.
    influx_store.write([Point("telemetry", {"site": SITE, "machine": "cnc-01"}, {"job": 7}, T0 - 1000)])
    commits = Client(broker.url, [str(Topic.commits(SITE, "edge-1"))])
    try:
        dl = tmp_path / "dl.jsonl"
        collector = make_collector(influx_store, dead_letter=dl, flush_interval_s=0.3)
        collector.start()
        sync(collector, client)
        payloads = {
            1: encode(telemetry("cnc-01", 1, [{"ts": T0 + 1, "values": {"good_count": 1}}])),
            2: encode(telemetry("cnc-01", 2, [{"ts": T0 + 2, "values": {"job": "J-2", "good_count": 2}}])),
            3: encode(telemetry("cnc-01", 3, [{"ts": T0 + 3, "values": {"good_count": 3}}])),
        }
        for payload in payloads.values():
            client.publish(TELEMETRY_TOPIC, payload)
        wait_for(lambda: collector.stats["store_rejected"] == 1, "the poison message refused")
        wait_for(lambda: len(rows(influx_store, "cnc-01")) == 3, "the other two messages written")
        assert rows(influx_store, "cnc-01") == [
            (T0 - 1000, {"job": 7}),
            (T0 + 1, {"good_count": 1}),
            (T0 + 3, {"good_count": 3}),
        ]
        [letter] = dead_letters(dl)
        assert (letter["kind"], letter["topic"]) == ("store-rejected", TELEMETRY_TOPIC)
        assert "field type conflict" in letter["detail"]
        assert base64.b64decode(letter["payload_b64"]) == payloads[2]
        assert collector.stats["invalid"] == {}
        # The poison message is committed too: it is dead-lettered for good, resending it cannot help.
        expected = {str(Topic.commits(SITE, "edge-1")): {"cnc-01": [(1, 3)]}}
        wait_for(lambda: merged_commits(commits.messages()) == expected, "commits for seqs 1..3")
    finally:
        commits.close()


def test_a_receive_window_of_messages_is_flushed_without_waiting_for_the_age(
    client: Client, influx_store: InfluxStore, make_collector: Callable[..., Collector]
) -> None:
    # 1-sample messages never make a batch of points, and a broker that keeps to the Receive Maximum sends no more
    # until the write's acks: a window's worth queued is written at once. The age (an hour here) never comes into it.
    collector = make_collector(influx_store, flush_interval_s=3600.0, batch_points=5000)
    assert collector.flush_messages == 500  # the default queue, 10 batches of 5,000 points: Receive Maximum 500
    collector.start()
    sync(collector, client)  # the probes (machine statuses) sit in the queue from here on
    time.sleep(0.3)  # a probe still on its way lands before the count
    probes = collector.stats["queued_messages"]
    assert 1 <= probes < 10
    for seq in range(1, 600):
        client.publish(TELEMETRY_TOPIC, encode(telemetry("cnc-01", seq, [{"ts": T0 + seq, "values": {"alarms": 1}}])))
    # The probes and the first messages make 500; the rest wait for more (or the age).
    wait_for(lambda: len(rows(influx_store, "cnc-01")) == 500 - probes, "the first 500 messages written")
    time.sleep(0.5)
    assert len(rows(influx_store, "cnc-01")) == 500 - probes
    assert collector.stats["written_messages"] == 500
    assert collector.stats["queued_messages"] == 599 - (500 - probes)


def test_topic_prefix_makes_a_shared_subscription(
    client: Client, influx_store: InfluxStore, make_collector: Callable[..., Collector]
) -> None:
    collector = make_collector(influx_store, topic_prefix="$share/collectors/")
    assert collector.filters == [
        "$share/collectors/shopfloor/v1/bdg/+/telemetry",
        "$share/collectors/shopfloor/v1/bdg/+/status",
        "$share/collectors/shopfloor/v1/bdg/agents/+/status",
    ]
    collector.start()
    sync(collector, client)
    client.publish(TELEMETRY_TOPIC, encode(telemetry("cnc-01", 1, [{"ts": T0, "values": {"good_count": 4}}])))
    wait_for(lambda: rows(influx_store, "cnc-01") == [(T0, {"good_count": 4})], "the batch in the store")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"batch_points": 0},
        {"flush_interval_s": 0},
        {"flush_interval_s": float("nan")},
        {"max_queue_points": 0},
        {"writes_in_flight": 0},
    ],
)
def test_refuses_bad_settings(influx_store: InfluxStore, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="collector: "):
        Collector(MqttSettings(), influx_store, **kwargs)


def test_copies_received_before_a_reconnect_are_written_but_not_acked(
    fresh_mosquitto: Mosquitto, influx_store: InfluxStore
) -> None:
    # After a reconnect the broker may reuse the message ids of the old connection: acking an old copy could ack a
    # different, unwritten message.
    collector = Collector(
        MqttSettings.from_url(fresh_mosquitto.url),
        influx_store,
        client_id=f"collector-{uuid.uuid4().hex[:10]}",
        flush_interval_s=60,
        registry=REGISTRY,
    )
    collector.start()
    publisher = Client(fresh_mosquitto.url)
    try:
        sync(collector, publisher)
        base = collector.stats["received"]
        for seq in (1, 2):
            publisher.publish(TELEMETRY_TOPIC, encode(telemetry("cnc-01", seq, [{"ts": T0 + seq, "values": {}}])))
        wait_for(lambda: collector.stats["received"] >= base + 2, "both messages received")
        fresh_mosquitto.kill()
        fresh_mosquitto.start()
        wait_for(lambda: collector.stats["connects"] == 2, "the collector reconnected")
    finally:
        publisher.close()
        collector.stop()
    stats = collector.stats
    assert stats["received"] >= base + 2
    assert (stats["written_messages"], stats["acked"], stats["stale_acks_skipped"]) == (
        stats["received"],
        0,
        stats["received"],
    )


def test_cleared_retained_status_is_ignored_not_refused(
    tmp_path: Path, client: Client, influx_store: InfluxStore, make_collector: Callable[..., Collector]
) -> None:
    dl = tmp_path / "dl.jsonl"
    collector = make_collector(influx_store, dead_letter=dl)
    collector.start()
    sync(collector, client)
    # An empty retained payload is how MQTT deletes a retained message; subscribers see it as an empty message.
    assert client.link.publish(STATUS_TOPIC, b"", qos=1, retain=True).wait(10)
    wait_for(lambda: collector.stats["ignored"] == 1, "the empty status ignored")
    assert collector.stats["invalid"] == {}
    assert not dl.exists()
    # The probe is written by the writer thread a flush later; the empty status never is.
    wait_for(lambda: collector.stats["written_messages"] >= 1, "the probe written")
    assert [r.tags["machine"] for r in influx_store.rows("SELECT * FROM machine_status")] == ["probe"]


def test_agent_status_is_stored_stamped_when_received(
    client: Client, influx_store: InfluxStore, make_collector: Callable[..., Collector]
) -> None:
    collector = make_collector(influx_store)
    collector.start()
    sync(collector, client)
    # A last will carries the agent's connect time (here a day ago): the loss is when the broker published it.
    will = StatusMessage(status=LinkStatus.OFFLINE, ts=T0 - 86_400_000, agent="edge-1", detail="connection lost")
    before = int(time.time() * 1000)
    client.publish(Topic.agent_status(SITE, "edge-1"), will.to_json())
    wait_for(lambda: bool(influx_store.rows("SELECT * FROM agent_status")), "the agent status in the store")
    [row] = influx_store.rows("SELECT * FROM agent_status")
    assert before <= row.ts_ms <= int(time.time() * 1000)
    assert row.tags["site"] == SITE
    assert row.fields == {"agent": "edge-1", "status": "offline", "detail": "connection lost"}
    assert collector.stats["invalid"] == {}


def test_an_outbox_loss_is_stored_with_its_until_and_a_grown_loss_replaces_it(
    client: Client, influx_store: InfluxStore, make_collector: Callable[..., Collector]
) -> None:
    collector = make_collector(influx_store)
    collector.start()
    sync(collector, client)
    topic = Topic.machine_status(SITE, "cnc-01")

    def loss(until: int, detail: str) -> bytes:
        return StatusMessage(
            status=LinkStatus.UNREACHABLE, ts=T0 + 7, until=until, agent="edge-1", detail=detail
        ).to_json()

    def stored() -> list[Row]:
        return influx_store.statuses(SITE, "cnc-01", T0, T0 + 100)

    client.publish(topic, loss(T0 + 2007, "outbox full: 2 batches"))
    wait_for(lambda: len(stored()) == 1, "the loss status in the store")
    # The agent publishes the loss again as it grows: same ts, the same point, the newer until.
    client.publish(topic, loss(T0 + 9007, "outbox full: 9 batches"))
    wait_for(lambda: stored()[0].fields.get("until") == T0 + 9007, "the grown loss")
    # A loss claiming to end a day from now would blank out data not yet received: refused, not written.
    client.publish(topic, loss(T0 + 86_400_000, "outbox full: forged"))
    wait_for(lambda: collector.stats["invalid"].get("too-new") == 1, "the future loss refused")
    [row] = stored()
    assert (row.ts_ms, row.fields) == (
        T0 + 7,
        {"status": "unreachable", "agent": "edge-1", "detail": "outbox full: 9 batches", "until": T0 + 9007},
    )
    assert type(row.fields["until"]) is int
    # What the timeline reads of it.
    assert StatusEvent.from_fields(row.ts_ms, "machine", row.fields) == StatusEvent(
        T0 + 7, "machine", "unreachable", T0 + 9007, "edge-1"
    )


def test_a_seq_reused_for_other_content_is_flagged_but_written(
    tmp_path: Path, client: Client, influx_store: InfluxStore, make_collector: Callable[..., Collector]
) -> None:
    dl = tmp_path / "dl.jsonl"
    collector = make_collector(influx_store, dead_letter=dl)
    collector.start()
    sync(collector, client)
    first = encode(telemetry("cnc-01", 5, [{"ts": T0, "values": {"good_count": 1}}]))
    other = encode(telemetry("cnc-01", 5, [{"ts": T0 + 1, "values": {"good_count": 2}}]))
    for payload in (first, first, other):  # a resend of the same bytes is normal
        client.publish(TELEMETRY_TOPIC, payload)
    wait_for(lambda: len(rows(influx_store, "cnc-01")) == 2, "both contents written")
    stats = collector.stats
    assert (stats["flagged"], stats["invalid"]) == ({"seq-conflict": 1}, {})
    [letter] = dead_letters(dl)
    assert (letter["kind"], base64.b64decode(letter["payload_b64"])) == ("seq-conflict", other)
    assert "seq 5" in letter["detail"]


def test_retained_junk_is_refused_once_not_on_every_reconnect(
    tmp_path: Path,
    broker: Mosquitto,
    client: Client,
    influx_store: InfluxStore,
    make_collector: Callable[..., Collector],
) -> None:
    junk = encode({**STATUS_OK, "agent": "edge-2"})  # edge-2 does not serve cnc-01
    assert client.link.publish(STATUS_TOPIC, junk, qos=1, retain=True).wait(10)
    dl = tmp_path / "dl.jsonl"
    client_id = f"collector-{uuid.uuid4().hex[:10]}"
    collector = make_collector(influx_store, dead_letter=dl, client_id=client_id)
    collector.start()
    wait_for(lambda: collector.stats["invalid"] == {"agent-not-serving": 1}, "the retained junk refused")
    # Take the session over: the collector reconnects, subscribes again and the broker resends what it retains.
    intruder = MqttLink(MqttSettings.from_url(broker.url), client_id)
    intruder.start()
    assert intruder.wait_connected(10)
    intruder.stop()
    wait_for(lambda: collector.stats["connects"] >= 2, "the collector reconnected")
    wait_for(lambda: collector.stats["retained_repeats"] == 1, "the resent junk acked silently")
    assert collector.stats["invalid"] == {"agent-not-serving": 1}
    assert [letter["kind"] for letter in dead_letters(dl)] == ["agent-not-serving"]


# ---- stored history cannot be rewritten (collector.history) ----------------------------------------------------
# A type-valid message resending a stored sample with other values (another tenant's badge on acme's sample) is
# refused as sample-conflict, dead-lettered, acked and committed, and the store keeps what it had; the agent's own
# resends, late data on time nothing was stored at, and an outbox fold carrying the value in effect still land.

ACME, BATIK = 1001, 2001
# acme's session on cnc-01 as the agent reported it: badge on change only (report by exception).
REAL = [
    {"ts": T0, "values": {"state": "RUNNING", "badge": ACME, "good_count": 10}},
    {"ts": T0 + 1000, "values": {"good_count": 11}},
    {"ts": T0 + 2000, "values": {"good_count": 12, "state": "IDLE"}},
]


def _publish_real(collector: Collector, client: Client, store: InfluxStore) -> None:
    before = collector.stats["written_messages"]
    for seq, sample in enumerate(REAL, start=1):
        client.publish(TELEMETRY_TOPIC, encode(telemetry("cnc-01", seq, [sample])))
    wait_for(lambda: collector.stats["written_messages"] >= before + len(REAL), "acme's samples written")
    assert len(rows(store, "cnc-01")) == len(REAL)


def _stored(store: InfluxStore) -> list[tuple[int, dict[str, Any]]]:
    return rows(store, "cnc-01")


def test_a_resent_sample_with_another_badge_is_refused_and_the_store_keeps_history(
    tmp_path: Path, client: Client, influx_store: InfluxStore, make_collector: Callable[..., Collector]
) -> None:
    dl = tmp_path / "dl.jsonl"
    collector = make_collector(influx_store, dead_letter=dl)
    collector.start()
    sync(collector, client)
    _publish_real(collector, client, influx_store)
    before = _stored(influx_store)
    forged = [
        # Another tenant's badge added to acme's stored sample (the badge is in effect there, not in the point).
        encode(telemetry("cnc-01", 2, [{"ts": T0 + 1000, "values": {"good_count": 11, "badge": BATIK}}])),
        # A stored value changed, under a fresh seq.
        encode(telemetry("cnc-01", 99, [{"ts": T0 + 2000, "values": {"good_count": 5000}}])),
        # A new sample and a rewrite in one message: the whole message is refused.
        encode(
            telemetry(
                "cnc-01",
                100,
                [{"ts": T0 + 3000, "values": {"good_count": 13}}, {"ts": T0, "values": {"state": "STOPPED"}}],
            )
        ),
    ]
    for payload in forged:
        client.publish(TELEMETRY_TOPIC, payload)
    wait_for(lambda: collector.stats["invalid"].get("sample-conflict", 0) == len(forged), "every rewrite refused")
    assert _stored(influx_store) == before
    letters = [d for d in dead_letters(dl) if d["kind"] == "sample-conflict"]
    assert [base64.b64decode(d["payload_b64"]) for d in letters] == forged
    assert "stored without badge, where badge = 1001 was in effect" in letters[0]["detail"]
    assert "stored with good_count = 12" in letters[1]["detail"]
    assert "stored with state = 'RUNNING'" in letters[2]["detail"]


def test_resends_late_data_and_an_outbox_fold_still_land(
    client: Client, influx_store: InfluxStore, make_collector: Callable[..., Collector]
) -> None:
    collector = make_collector(influx_store)
    collector.start()
    sync(collector, client)
    _publish_real(collector, client, influx_store)
    accepted = [
        # The agent resending a batch the store holds (its commit was lost): the same point again.
        encode(telemetry("cnc-01", 2, [REAL[1]])),
        # A batch the broker dropped, resent from the outbox after newer ones landed: on time nothing holds.
        encode(telemetry("cnc-01", 4, [{"ts": T0 + 1500, "values": {"good_count": 11}}])),
        # An outbox fold: the values of dropped samples carried into a stored sample, equal to what is in effect.
        encode(
            telemetry("cnc-01", 3, [{"ts": T0 + 2000, "values": {"good_count": 12, "state": "IDLE", "badge": ACME}}])
        ),
    ]
    before = collector.stats["written_messages"]
    for payload in accepted:
        client.publish(TELEMETRY_TOPIC, payload)
    wait_for(lambda: collector.stats["written_messages"] >= before + len(accepted), "all three written")
    assert collector.stats["invalid"] == {}
    assert _stored(influx_store) == [
        (T0, REAL[0]["values"]),
        (T0 + 1000, REAL[1]["values"]),
        (T0 + 1500, {"good_count": 11}),
        (T0 + 2000, {"good_count": 12, "state": "IDLE", "badge": ACME}),
    ]


def test_the_original_and_a_rewrite_in_one_flush_keep_the_original(
    client: Client, influx_store: InfluxStore, make_collector: Callable[..., Collector]
) -> None:
    # A long flush interval puts both in one batch: the rewrite is checked after the original is written.
    collector = make_collector(influx_store, flush_interval_s=1.0)
    collector.start()
    sync(collector, client)
    original = encode(telemetry("cnc-01", 1, [REAL[0]]))
    rewrite = encode(telemetry("cnc-01", 2, [{"ts": T0, "values": {"badge": BATIK}}]))
    client.publish(TELEMETRY_TOPIC, original)
    client.publish(TELEMETRY_TOPIC, rewrite)
    wait_for(lambda: collector.stats["invalid"].get("sample-conflict", 0) == 1, "the rewrite refused")
    assert _stored(influx_store) == [(T0, REAL[0]["values"])]


def test_a_restarted_collector_knows_what_is_stored(
    client: Client, influx_store: InfluxStore, make_collector: Callable[..., Collector]
) -> None:
    first = make_collector(influx_store)
    first.start()
    sync(first, client)
    _publish_real(first, client, influx_store)
    first.stop()
    second = make_collector(influx_store)  # another client id: knows nothing but what the store holds
    second.start()
    sync(second, client)
    client.publish(TELEMETRY_TOPIC, encode(telemetry("cnc-01", 9, [{"ts": T0 + 1000, "values": {"badge": BATIK}}])))
    wait_for(lambda: second.stats["invalid"].get("sample-conflict", 0) == 1, "the rewrite refused")
    assert _stored(influx_store)[1] == (T0 + 1000, REAL[1]["values"])


def _other_site(site_id: str) -> Registry:
    """The test site under another id: the same machines and agents, another site's topics."""
    base = _test_site()
    return Registry.from_site(
        SiteConfig.model_validate(
            {**base.model_dump(), "profiles": base.profiles, "site": {**base.site.model_dump(), "id": site_id}}
        )
    )


def test_collectors_of_two_sites_in_one_share_group_each_take_only_their_own_site(
    tmp_path: Path, client: Client, influx_store: InfluxStore, make_collector: Callable[..., Collector]
) -> None:
    # One broker carries two sites, and both sites' collectors joined one $share group. Each subscribes to its own
    # site's topics only, so no message of one site can reach the other site's collector, be refused there as an
    # unknown site and be acked away from the collector that would have written it.
    group = f"$share/all-{uuid.uuid4().hex[:6]}/"
    jkt = _other_site("jkt")
    letters = {site: tmp_path / f"{site}.jsonl" for site in (SITE, "jkt")}
    ours = make_collector(influx_store, topic_prefix=group, dead_letter=letters[SITE])
    theirs = make_collector(influx_store, topic_prefix=group, dead_letter=letters["jkt"], registry=jkt)
    assert theirs.filters == [f"{group}shopfloor/v1/jkt/+/telemetry", f"{group}shopfloor/v1/jkt/+/status",
                              f"{group}shopfloor/v1/jkt/agents/+/status"]  # fmt: skip
    for c in (ours, theirs):
        c.start()
    sync(ours, client)
    jkt_probe = Topic.machine_status("jkt", "probe")
    start = theirs.stats["received"]
    deadline = time.monotonic() + 15
    while theirs.stats["received"] == start:
        assert time.monotonic() < deadline, "the jkt collector never received a probe"
        client.publish(jkt_probe, StatusMessage(status=LinkStatus.ONLINE, ts=T0, agent="edge-1").to_json())
        time.sleep(0.1)
    received = {"ours": ours.stats["received"], "theirs": theirs.stats["received"]}
    for seq in range(1, 21):
        for site in (SITE, "jkt"):
            sample = {"ts": T0 + 100 * seq, "values": {"good_count": seq}}
            client.publish(Topic.telemetry(site, "cnc-01"), encode(telemetry("cnc-01", seq, [sample], site=site)))

    def stored(site: str) -> list[int]:
        return [r.ts_ms for r in influx_store.telemetry(site, "cnc-01", T0, T0 + 10_000)]

    want = [T0 + 100 * seq for seq in range(1, 21)]
    wait_for(lambda: stored(SITE) == want and stored("jkt") == want, "both sites' 20 samples stored")
    # Each collector got its own site's 20 messages and nothing else; neither refused anything.
    assert ours.stats["received"] - received["ours"] == 20
    assert theirs.stats["received"] - received["theirs"] == 20
    assert ours.stats["invalid"] == {} and theirs.stats["invalid"] == {}
    assert dead_letters(letters[SITE]) == [] and dead_letters(letters["jkt"]) == []


def test_a_reload_of_another_site_is_refused(
    influx_store: InfluxStore, make_collector: Callable[..., Collector]
) -> None:
    collector = make_collector(influx_store)
    with pytest.raises(ValueError, match=r"subscribes to site 'bdg'.*restart it to change site"):
        collector.set_registry(_other_site("jkt"))
    assert collector.registry is REGISTRY
    same_site = Registry.from_site(_test_site(), max_ahead_ms=1000)
    collector.set_registry(same_site)
    assert collector.registry is same_site


def test_sighup_with_a_site_file_of_another_site_keeps_the_registry_and_says_why(
    tmp_path: Path,
    influx_store: InfluxStore,
    make_collector: Callable[..., Collector],
    caplog: pytest.LogCaptureFixture,
) -> None:
    example = default_site_path()
    text = example.read_text().replace("id: bdg ", "id: jkt ", 1)
    assert "id: jkt" in text
    moved = tmp_path / "site.yaml"
    moved.write_text(text.replace("  - profiles/", f"  - {example.parent}/profiles/"))
    collector = make_collector(influx_store)
    before = collector.registry
    args = argparse.Namespace(site=str(moved), max_ahead=300_000, max_behind=7 * 86_400_000, backfill=False)
    with caplog.at_level(logging.INFO, logger="collector.cli"):
        _reload(collector, args)
    assert collector.registry is before
    assert [r.getMessage() for r in caplog.records if r.name == "collector.cli"] == [
        "site registry not reloaded, keeping the previous one: the site file is now of site 'jkt', but this "
        "collector subscribes to site 'bdg''s topics: restart it to change site"
    ]


def test_replicas_refuse_rewrites_of_what_the_other_wrote(
    broker: Mosquitto, client: Client, influx_store: InfluxStore, make_collector: Callable[..., Collector]
) -> None:
    group = f"$share/h-{uuid.uuid4().hex[:6]}/"
    replicas = [make_collector(influx_store, topic_prefix=group, history_refresh_s=0.2) for _ in range(2)]
    for replica in replicas:
        replica.start()
    for replica in replicas:
        assert replica.wait_connected(10)
    # Both subscriptions in place: probe until each replica has received one (the broker shares the group's
    # messages only among members it already has).
    starts = [r.stats["received"] for r in replicas]
    deadline = time.monotonic() + 15
    probe = StatusMessage(status=LinkStatus.ONLINE, ts=T0, agent="edge-1").to_json()
    while any(r.stats["received"] == s for r, s in zip(replicas, starts, strict=True)):
        assert time.monotonic() < deadline, "a replica never received a probe"
        client.publish(PROBE, probe)
        time.sleep(0.1)
    samples = [{"ts": T0 + 100 * i, "values": {"good_count": i, "badge": ACME}} for i in range(20)]
    for seq, sample in enumerate(samples, start=1):
        client.publish(TELEMETRY_TOPIC, encode(telemetry("cnc-01", seq, [sample])))
    wait_for(lambda: len(_stored(influx_store)) == 20, "all 20 samples stored")
    assert all(r.stats["written_messages"] > 0 for r in replicas), "the shared subscription split the stream"
    time.sleep(0.5)  # past both replicas' refresh: each knows what the other wrote
    for seq, sample in enumerate(samples, start=100):
        client.publish(
            TELEMETRY_TOPIC, encode(telemetry("cnc-01", seq, [{"ts": sample["ts"], "values": {"badge": BATIK}}]))
        )
    wait_for(lambda: sum(r.stats["invalid"].get("sample-conflict", 0) for r in replicas) == 20, "every rewrite refused")
    assert {v["badge"] for _, v in _stored(influx_store)} == {ACME}


def test_a_store_outage_during_the_check_loses_nothing(
    fresh_influxdb: InfluxDB, client: Client, make_collector: Callable[..., Collector]
) -> None:
    store = InfluxStore(fresh_influxdb.url, f"test_{uuid.uuid4().hex[:10]}", timeout_s=2)
    store.ensure_database()
    collector = make_collector(store)
    collector.start()
    sync(collector, client)
    _publish_real(collector, client, store)
    fresh_influxdb.stop()
    # A resend and a rewrite while the store is down: the check cannot read, so nothing is acked or refused.
    client.publish(TELEMETRY_TOPIC, encode(telemetry("cnc-01", 2, [REAL[1]])))
    client.publish(TELEMETRY_TOPIC, encode(telemetry("cnc-01", 7, [{"ts": T0 + 1000, "values": {"badge": BATIK}}])))
    wait_for(lambda: collector.stats["store_failures"] >= 2, "the check to fail on the store")
    assert collector.stats["invalid"] == {}
    fresh_influxdb.start()
    wait_for(lambda: collector.stats["invalid"].get("sample-conflict", 0) == 1, "the rewrite refused once back")
    assert _stored(store)[1] == (T0 + 1000, REAL[1]["values"])
    store.close()


def test_commits_cover_refused_rewrites(
    broker: Mosquitto, client: Client, influx_store: InfluxStore, make_collector: Callable[..., Collector]
) -> None:
    commits = Client(broker.url, [str(Topic.commits(SITE, "edge-1"))])
    try:
        collector = make_collector(influx_store)
        collector.start()
        sync(collector, client)
        _publish_real(collector, client, influx_store)
        client.publish(TELEMETRY_TOPIC, encode(telemetry("cnc-01", 4, [{"ts": T0, "values": {"badge": BATIK}}])))
        wait_for(lambda: collector.stats["invalid"].get("sample-conflict", 0) == 1, "the rewrite refused")
        # Committed like every refusal for good, or a broken agent would resend it forever.
        wait_for(
            lambda: (
                merged_commits(commits.messages()).get(str(Topic.commits(SITE, "edge-1")), {}).get("cnc-01") == [(1, 4)]
            ),
            "seqs 1..4 committed",
        )
    finally:
        commits.close()


# ---- writes in flight: order and history ------------------------------------------------------------------------


def _commits_for(messages: list[InboundMessage], agent: str = "edge-1") -> list[dict[str, list[list[int]]]]:
    """The machines part of each commit published for agent, in the order the broker delivered them."""
    topic = str(Topic.commits(SITE, agent))
    return [json.loads(m.payload)["machines"] for m in messages if m.topic == topic]


def _slow_first_write(
    fresh_influxdb: InfluxDB, client: Client, make_collector: Callable[..., Collector], first: bytes
) -> tuple[Collector, InfluxStore]:
    """A collector whose write of `first` is retrying with an 8 s backoff ahead, on a store that is up again.

    The store is stopped before `first` comes and started after its fifth failure (no jitter: it waits 0.5, 1,
    2, 4, then 8 s), so anything written next reaches the store seconds before `first` is tried again.
    """
    store = InfluxStore(fresh_influxdb.url, f"test_{uuid.uuid4().hex[:10]}", timeout_s=2)
    store.ensure_database()
    collector = make_collector(store, rng=lambda: 0.5, batch_points=1)
    collector.start()
    sync(collector, client)
    # Written while the store is up, so the history's newest times are read (no refresh is due for 30 s).
    client.publish(
        Topic.telemetry(SITE, "laser-01"), encode(telemetry("laser-01", 1, [{"ts": T0, "values": {"good_count": 0}}]))
    )
    wait_for(lambda: collector.stats["acked"] >= 2, "the warm-up message acked")
    fresh_influxdb.stop()
    client.publish(TELEMETRY_TOPIC, first)
    wait_for(lambda: collector.stats["store_failures"] >= 5, "the first write to fail five times", 20)
    fresh_influxdb.start()
    return collector, store


@pytest.mark.parametrize("machine", ["cnc-01", "laser-01"])
def test_a_later_write_lands_first_but_is_acked_and_committed_after_the_slow_one(
    fresh_influxdb: InfluxDB, broker: Mosquitto, client: Client, make_collector: Callable[..., Collector], machine: str
) -> None:
    commits = Client(broker.url, [str(Topic.commits(SITE, "edge-1"))])
    try:
        slow = encode(telemetry("cnc-01", 5, [{"ts": T0 + 1000, "values": {"good_count": 1}}]))
        collector, store = _slow_first_write(fresh_influxdb, client, make_collector, slow)
        acked = collector.stats["acked"]
        # Later data of the same machine, or of another one: nothing it checks or overlaps is in flight.
        fast = telemetry(machine, 6, [{"ts": T0 + 2000, "values": {"good_count": 2}}])
        client.publish(Topic.telemetry(SITE, machine), encode(fast))
        wait_for(lambda: (T0 + 2000, {"good_count": 2}) in rows(store, machine), "the later write stored", 5)
        # Stored while the slow write waits for its retry: the writer did not wait for it...
        assert (T0 + 1000, {"good_count": 1}) not in rows(store, "cnc-01")
        # ...but its message is neither acked nor committed before the slow one's.
        assert collector.stats["acked"] == acked
        assert all(seqs.get(machine) != [[6, 6]] for seqs in _commits_for(commits.messages()))
        wait_for(lambda: collector.stats["acked"] == acked + 2, "both messages acked", 20)
        assert (T0 + 1000, {"good_count": 1}) in rows(store, "cnc-01")
        wait_for(lambda: len(_commits_for(commits.messages())) >= 3, "three commits")
        # The warm-up's, then the slow one's, then the later one's: the order the messages came in.
        assert _commits_for(commits.messages()) == [{"laser-01": [[1, 1]]}, {"cnc-01": [[5, 5]]}, {machine: [[6, 6]]}]
        store.close()
    finally:
        commits.close()


def test_a_chunk_overlapping_a_write_in_flight_is_checked_after_it_lands(
    fresh_influxdb: InfluxDB, client: Client, make_collector: Callable[..., Collector]
) -> None:
    original = encode(telemetry("cnc-01", 5, [{"ts": T0 + 1000, "values": {"good_count": 1, "badge": ACME}}]))
    collector, store = _slow_first_write(fresh_influxdb, client, make_collector, original)
    # Another badge on the same sample, while the original is still in flight: checked before the original were
    # written, it would find nothing stored and land (and the original's retry then merge over it).
    rewrite = telemetry("cnc-01", 6, [{"ts": T0 + 1000, "values": {"good_count": 1, "badge": BATIK}}])
    client.publish(TELEMETRY_TOPIC, encode(rewrite))
    time.sleep(1)  # the rewrite's chunk waits for the original (a writer that did not would store it meanwhile)
    assert rows(store, "cnc-01") == []
    wait_for(lambda: collector.stats["invalid"].get("sample-conflict", 0) == 1, "the rewrite refused", 20)
    assert rows(store, "cnc-01") == [(T0 + 1000, {"good_count": 1, "badge": ACME})]
    store.close()
