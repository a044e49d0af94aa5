"""Collector delivery on real Mosquitto and real InfluxDB: replicas on a shared subscription, a store outage longer
than the queue holds, a kill -9 mid-batch, store refusals (partial write, 413) and the metrics/health endpoints."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from collector.metrics import start_metrics_server
from collector.service import Collector
from launcher.services import InfluxDB, Mosquitto, temp_workdir
from shopfloor.config import default_site_path
from shopfloor.contracts import Topic
from shopfloor.influx import InfluxStore, Point
from shopfloor.mqtt import MqttLink, MqttSettings

pytestmark = pytest.mark.integration

SITE = "bdg"
T0 = int(time.time() * 1000) - 3_600_000  # an hour ago: inside the registry's skew window
TOPIC = str(Topic.telemetry(SITE, "cnc-01"))


def wait_for(check: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def payload(seq: int, samples: int = 2, machine: str = "cnc-01", **values: Any) -> bytes:
    body = {
        "v": 1,
        "agent": "edge-1",
        "site": SITE,
        "machine": machine,
        "seq": seq,
        "samples": [
            {"ts": T0 + seq * 100 + k, "values": {"good_count": seq * 100 + k, **values}} for k in range(samples)
        ],
    }
    return json.dumps(body).encode()


def landed(store: InfluxStore, machine: str = "cnc-01") -> list[int]:
    """Timestamps of the telemetry rows of machine (one per point: InfluxDB keeps one per series and ts)."""
    try:
        return [r.ts_ms for r in store.telemetry(SITE, machine, T0 - 1, T0 + 10**9)]
    except Exception:
        return []


class Publisher:
    """A plain MqttLink publishing at QoS1 (as an agent does)."""

    def __init__(self, url: str) -> None:
        self.link = MqttLink(MqttSettings.from_url(url), f"pub-{uuid.uuid4().hex[:8]}")
        self.link.start()
        assert self.link.wait_connected(10)

    def send(self, topic: str, body: bytes) -> None:
        assert self.link.publish(topic, body, qos=1).wait(10)

    def close(self) -> None:
        self.link.stop()


def own_broker(workdir: Path, **settings: str) -> Mosquitto:
    """A Mosquitto of the test's own; settings override lines of its config (e.g. max_queued_messages="50")."""
    broker = Mosquitto(workdir)
    conf = broker.conf.read_text()
    for key, value in settings.items():
        conf = re.sub(rf"^{key} .*\n", "", conf, flags=re.M) + f"{key} {value}\n"
    # Log connects and disconnects too: the outage test reads them.
    broker.conf.write_text(conf + "log_type notice\nlog_type information\n")
    return broker.start()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    b = own_broker(tmp_path, max_queued_messages="100000")
    yield b
    b.stop()


@pytest.fixture
def publisher(broker: Mosquitto) -> Iterator[Publisher]:
    p = Publisher(broker.url)
    yield p
    p.close()


@pytest.fixture
def collectors(broker: Mosquitto) -> Iterator[Callable[..., Collector]]:
    made: list[Collector] = []

    def make(store: InfluxStore, **kwargs: Any) -> Collector:
        kwargs.setdefault("client_id", f"collector-{uuid.uuid4().hex[:8]}")
        kwargs.setdefault("flush_interval_s", 0.05)
        c = Collector(MqttSettings.from_url(broker.url), store, **kwargs)
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop(timeout_s=1)


def subscribed(collector: Collector, publisher: Publisher, machine: str = "probe") -> None:
    """Publish probes (their own machine) until the collector has received one."""
    assert collector.wait_connected(10)
    start = collector.stats["received"]
    seq = 0
    while collector.stats["received"] == start:
        seq += 1
        assert seq < 100, "the collector never received a probe"
        publisher.send(str(Topic.telemetry(SITE, machine)), payload(seq, 1, machine=machine))
        time.sleep(0.1)


# ---- (a) replicas on one shared subscription -----------------------------------------------------------------


def test_two_replicas_on_a_shared_subscription_write_every_sample_once(
    broker: Mosquitto, publisher: Publisher, influx_store: InfluxStore, collectors: Callable[..., Collector]
) -> None:
    a = collectors(influx_store, topic_prefix="$share/g/")
    b = collectors(influx_store, topic_prefix="$share/g/")
    assert a.client_id != b.client_id
    a.start()
    b.start()
    subscribed(a, publisher, "probe-a")
    subscribed(b, publisher, "probe-b")
    base = a.stats["written_messages"] + b.stats["written_messages"]
    batches, samples = 200, 5
    for seq in range(1, batches + 1):
        publisher.send(TOPIC, payload(seq, samples))
    wait_for(lambda: len(landed(influx_store)) >= batches * samples, "every sample in the store")
    ts = landed(influx_store)
    expected = sorted(T0 + seq * 100 + k for seq in range(1, batches + 1) for k in range(samples))
    assert ts == expected  # none missing, none twice (one row per machine and ts)
    wait_for(
        lambda: a.stats["written_messages"] + b.stats["written_messages"] >= base + batches, "both replicas' counts"
    )
    # Each message went to exactly one replica, and both took a share.
    assert a.stats["written_messages"] + b.stats["written_messages"] - base == batches
    assert a.stats["written_messages"] > 10 and b.stats["written_messages"] > 10


# ---- (b) a store outage longer than the queue holds ----------------------------------------------------------


def test_store_outage_past_the_queue_pauses_keeps_the_connection_and_loses_nothing(
    tmp_path: Path, fresh_influxdb: InfluxDB
) -> None:
    broker = own_broker(tmp_path, max_queued_messages="100000", max_inflight_messages="100")
    publisher = Publisher(broker.url)
    store = InfluxStore(fresh_influxdb.url, "outage", timeout_s=2)
    store.ensure_database()
    client_id = f"collector-{uuid.uuid4().hex[:8]}"
    collector = Collector(
        MqttSettings.from_url(broker.url, keepalive_s=5),
        store,
        client_id=client_id,
        flush_interval_s=0.05,
        max_queue_points=50,
        batch_points=20,
        summary_interval_s=1.0,
    )
    try:
        collector.start()
        subscribed(collector, publisher)
        fresh_influxdb.stop()
        batches = 300
        for seq in range(1, batches + 1):
            publisher.send(TOPIC, payload(seq, 2))
        wait_for(lambda: collector.stats["paused"], "the collector to pause")
        # Longer than 1.5 keepalives: a blocked network thread would have been dropped by the broker by now.
        time.sleep(10)
        stats = collector.stats
        assert stats["acked"] <= 1  # the probe at most; nothing received during the outage is acked
        assert stats["pauses"] == 1 and stats["deferred"] > 0
        assert collector.metrics_snapshot().store_down_s is not None
        fresh_influxdb.start()
        wait_for(lambda: len(landed(store)) == 2 * batches, "every sample after the store came back", 60)
        assert landed(store) == sorted(T0 + seq * 100 + k for seq in range(1, batches + 1) for k in range(2))
        wait_for(lambda: not collector.stats["paused"], "the collector to resume")
        assert collector.stats["resumes"] >= 1
    finally:
        collector.stop(timeout_s=2)
        publisher.close()
        store.close()
        broker.stop()
    log = broker.log_path.read_text()
    # The broker never dropped the collector (a keepalive timeout): it only saw clean disconnects on resume/stop.
    assert "exceeded timeout" not in log, log[-2000:]
    dropped = [line for line in log.splitlines() if client_id in line and "disconnected" in line.lower()]
    assert all("closed its connection" in line or "disconnected." in line for line in dropped), dropped


# ---- (c) kill -9 mid-batch ------------------------------------------------------------------------------------


def _collect(broker: Mosquitto, influx: InfluxDB, database: str, client_id: str, *extra: str) -> subprocess.Popen[str]:
    argv = [
        sys.executable, "-m", "shopfloor.cli", "collect",
        "--site", str(default_site_path()),
        "--mqtt", broker.url,
        "--influx-url", influx.url,
        "--influx-db", database,
        "--client-id", client_id,
        "--batch-points", "50",
        "--flush-interval", "0.05",
        *extra,
    ]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_kill_9_mid_batch_loses_nothing(broker: Mosquitto, publisher: Publisher, influxdb: InfluxDB) -> None:
    database = f"kill_{uuid.uuid4().hex[:8]}"
    client_id = f"collector-{uuid.uuid4().hex[:8]}"
    store = InfluxStore(influxdb.url, database)
    first = _collect(broker, influxdb, database, client_id)
    second: subprocess.Popen[str] | None = None
    try:
        # Wait until the first collector has its session (it writes a probe), then flood it and kill it mid-write.
        seq = 0
        while not landed(store):
            assert first.poll() is None, first.stdout.read() if first.stdout else ""
            seq += 1
            assert seq < 300, "the collector never wrote"
            publisher.send(TOPIC, payload(seq, 1))
            time.sleep(0.1)
        batches = 400
        for n in range(seq + 1, seq + batches + 1):
            publisher.send(TOPIC, payload(n, 5))
            if n == seq + batches // 2:
                assert 0 < len(landed(store)) < 5 * batches  # writing, not done
                first.send_signal(signal.SIGKILL)
        first.wait(10)
        partial = len(landed(store))
        second = _collect(broker, influxdb, database, client_id)
        flood = [T0 + n * 100 + k for n in range(seq + 1, seq + batches + 1) for k in range(5)]
        # Probes sent before the first collector subscribed reached no session; the flood all came after.
        probes = [T0 + s * 100 for s in range(1, seq + 1)]
        wait_for(lambda: set(flood) <= set(landed(store)), "every sample after the restart", 60)
        ts = landed(store)
        assert partial < len(flood)
        assert sorted(set(ts) - set(probes)) == flood
        assert len(ts) == len(set(ts))
        second.send_signal(signal.SIGTERM)
        out, _ = second.communicate(timeout=30)
        assert second.returncode == 0, out
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        store.close()


# ---- (d) store refusals: partial write and 413 --------------------------------------------------------------


def test_partial_write_lands_the_good_lines_and_dead_letters_the_bad_message(
    tmp_path: Path, publisher: Publisher, influx_store: InfluxStore, collectors: Callable[..., Collector]
) -> None:
    influx_store.write([Point("telemetry", {"site": SITE, "machine": "cnc-01"}, {"mode": "auto"}, T0)])
    dl = tmp_path / "dl.jsonl"
    # A long flush interval: the good and the bad messages share one batch (one write request).
    collector = collectors(influx_store, dead_letter=dl, flush_interval_s=1.0)
    collector.start()
    subscribed(collector, publisher)
    for seq in range(1, 11):
        publisher.send(TOPIC, payload(seq, 3, mode=3) if seq == 6 else payload(seq, 3, mode="manual"))
    wait_for(lambda: collector.stats["store_rejected"] == 1, "the bad message refused")
    wait_for(lambda: len(landed(influx_store)) == 1 + 9 * 3, "the good messages' samples")
    assert influx_store.stats["bisections"] >= 1  # narrowed down, not written message by message
    [letter] = [json.loads(line) for line in dl.read_text().splitlines()]
    assert letter["kind"] == "store-rejected" and "field type conflict" in letter["detail"]
    assert json.loads(__import__("base64").b64decode(letter["payload_b64"]))["seq"] == 6
    assert collector.metrics_snapshot().dead_letters["store-rejected"] == 1


def test_a_batch_over_the_stores_body_limit_is_split_and_lands(
    tmp_path: Path, publisher: Publisher, collectors: Callable[..., Collector]
) -> None:
    server = InfluxDB(temp_workdir("sf-influx-small-"))
    server.conf.write_text(server.conf.read_text().replace("max-body-size = 50000000", "max-body-size = 20000"))
    server.start()
    try:
        with InfluxStore(server.url, "small") as store:
            store.ensure_database()
            collector = collectors(store, batch_points=5000, flush_interval_s=1.0)
            collector.start()
            subscribed(collector, publisher)
            for seq in range(1, 41):
                publisher.send(TOPIC, payload(seq, 20, job=f"job-{seq:04d}-" + "x" * 40))
            wait_for(lambda: len(landed(store)) == 40 * 20, "all 800 samples")
            assert store.stats["splits"] >= 1
            assert collector.stats["store_rejected"] == 0
    finally:
        server.stop()


# ---- (e) metrics and health over HTTP ------------------------------------------------------------------------


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    resp = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert resp.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(resp.text)
        for s in family.samples
    }


def test_metrics_and_health_endpoints(
    publisher: Publisher, fresh_influxdb: InfluxDB, collectors: Callable[..., Collector]
) -> None:
    store = InfluxStore(fresh_influxdb.url, "metrics", timeout_s=1)
    store.ensure_database()
    collector = collectors(store)
    server = start_metrics_server(collector, "127.0.0.1", 0, unhealthy_after_s=2.0)
    try:
        collector.start()
        subscribed(collector, publisher)
        for seq in (1, 2, 5, 5):  # a gap (3, 4) and a duplicate (5)
            publisher.send(TOPIC, payload(seq, 2))
        publisher.send(TOPIC, b"not json")
        wait_for(lambda: len(landed(store)) == 6, "the samples")
        wait_for(lambda: collector.stats["written_messages"] >= 5, "the messages written")
        s = _scrape(server.port)
        assert s[("shopfloor_collector_samples_written_total", ())] >= 7  # 6 samples and the probe
        assert s[("shopfloor_collector_batches_written_total", ())] >= 1
        assert s[("shopfloor_collector_dead_letters_total", (("reason", "malformed-json"),))] == 1
        assert s[("shopfloor_collector_seq_gaps_total", (("agent", "edge-1"), ("site", SITE)))] == 1
        assert s[("shopfloor_collector_duplicates_total", (("agent", "edge-1"), ("site", SITE)))] == 1
        assert s[("shopfloor_collector_mqtt_connected", ())] == 1
        assert s[("shopfloor_collector_write_duration_seconds_count", ())] >= 1
        assert ("process_resident_memory_bytes", ()) in s
        health = httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=5)
        assert (health.status_code, health.json()["status"]) == (200, "ok")

        fresh_influxdb.stop()
        publisher.send(TOPIC, payload(9, 1))
        wait_for(lambda: collector.metrics_snapshot().store_down_s is not None, "the store to be seen down")
        time.sleep(2.5)
        health = httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=5)
        assert health.status_code == 503
        assert "time-series store unreachable" in health.json()["reason"]
        assert _scrape(server.port)[("shopfloor_collector_write_retries_total", ())] >= 1
        fresh_influxdb.start()
        wait_for(
            lambda: httpx.get(f"http://127.0.0.1:{server.port}/healthz", timeout=5).status_code == 200,
            "healthy again",
        )
    finally:
        server.close()
        store.close()
