"""`shopfloor collect` as a process: creates the database, writes, dead-letters, stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from launcher.services import InfluxDB, Mosquitto
from shopfloor.contracts import Topic
from shopfloor.influx import InfluxStore, StoreRejected
from shopfloor.mqtt import MqttLink, MqttSettings

pytestmark = pytest.mark.integration

# A minute ago: the collector refuses timestamps more than 7 days old (its default --max-behind).
T0 = (int(time.time() * 1000) // 60_000 - 1) * 60_000


def _written(store: InfluxStore) -> bool:
    try:
        return bool(store.telemetry("bdg", "cnc-01", T0, T0 + 1))
    except StoreRejected:  # the collector has not created the database yet
        return False


def test_collect_command_runs_until_sigterm(tmp_path: Path, fresh_mosquitto: Mosquitto, influxdb: InfluxDB) -> None:
    database = f"test_cli_{uuid.uuid4().hex[:10]}"
    dead_letter = tmp_path / "dl.jsonl"
    argv = [
        sys.executable, "-m", "shopfloor.cli", "collect",
        "--mqtt", fresh_mosquitto.url,
        "--influx-url", influxdb.url,
        "--influx-db", database,
        "--client-id", f"cli-{uuid.uuid4().hex[:8]}",
        "--dead-letter", str(dead_letter),
        "--flush-interval", "0.05",
    ]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    link = MqttLink(MqttSettings.from_url(fresh_mosquitto.url), f"test-{uuid.uuid4().hex[:8]}")
    link.start()
    store = InfluxStore(influxdb.url, database)
    try:
        assert link.wait_connected(10)
        topic = str(Topic.telemetry("bdg", "cnc-01"))
        good = {"v": 1, "agent": "edge-1", "site": "bdg", "machine": "cnc-01", "seq": 1}
        good["samples"] = [{"ts": T0, "values": {"state": "IDLE", "good_count": 2}}]
        payload = json.dumps(good).encode()
        # Resending is harmless (same point), so publish until the collector is subscribed and has written it.
        deadline = time.monotonic() + 30
        while not _written(store):
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline, "the collector never wrote the batch"
            link.publish(topic, payload, qos=1).wait(5)
            time.sleep(0.2)
        # The site file (the example's, by default) is reloaded on SIGHUP.
        proc.send_signal(signal.SIGHUP)
        assert link.publish(topic, b"\x00garbage", qos=1).wait(5)
        while not dead_letter.exists():
            assert time.monotonic() < deadline, "the garbage was never dead-lettered"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        link.stop()
        store.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = out.decode()
    assert proc.returncode == 0, log
    assert [
        (r.ts_ms, r.fields) for r in InfluxStore(influxdb.url, database).telemetry("bdg", "cnc-01", T0, T0 + 1)
    ] == [(T0, {"state": "IDLE", "good_count": 2})]
    assert [json.loads(line)["kind"] for line in dead_letter.read_text().splitlines()] == ["malformed-json"]
    assert "received SIGTERM" in log
    assert "site registry: site 'bdg': 5 machines, 1 agents" in log, log
    assert "site registry reloaded: 5 machines, 1 agents" in log, log
    assert "invalid 1 (malformed-json 1)" in log, log


def test_collect_command_refuses_a_bad_site_file(tmp_path: Path, influxdb: InfluxDB) -> None:
    site = tmp_path / "site.yaml"
    site.write_text("site: {id: bdg}\nprofiles: []\nmachines: []\n")
    argv = [sys.executable, "-m", "shopfloor.cli", "collect", "--site", str(site), "--influx-url", influxdb.url]
    result = subprocess.run(argv, capture_output=True, timeout=30, check=False)
    assert result.returncode == 2
    assert b"configuration error" in result.stderr
    assert str(site).encode() in result.stderr


def test_collect_command_refuses_a_bad_mqtt_url(influxdb: InfluxDB) -> None:
    argv = [sys.executable, "-m", "shopfloor.cli", "collect", "--mqtt", "ftp://x", "--influx-url", influxdb.url]
    result = subprocess.run(argv, capture_output=True, timeout=30, check=False)
    assert result.returncode == 2
    assert b"scheme must be mqtt://" in result.stderr
