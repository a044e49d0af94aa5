"""InfluxStore against a real InfluxDB: round trips, failures classified as retry or reject."""

from __future__ import annotations

import pytest

from shopfloor.influx import InfluxStore, Point, StoreRejected, StoreUnavailable
from shopfloor.services import free_port

pytestmark = pytest.mark.integration
T0 = 1764291600000


def test_write_and_read_back(influx_store: InfluxStore) -> None:
    tags = {"site": "bdg", "machine": "cnc-01"}
    influx_store.write(
        [
            Point("telemetry", tags, {"state": "RUNNING", "good_count": 1, "energy_kwh": 2, "job": "J 'x'"}, T0),
            Point("telemetry", tags, {"state": "IDLE", "good_count": 2, "energy_kwh": 2.5}, T0 + 1000),
            Point("telemetry", {"site": "bdg", "machine": "cnc-02"}, {"state": "OFF"}, T0 + 500),
        ]
    )
    rows = influx_store.telemetry("bdg", "cnc-01", T0, T0 + 1000)
    assert [(r.ts_ms, r.fields) for r in rows] == [
        (T0, {"state": "RUNNING", "good_count": 1, "energy_kwh": 2.0, "job": "J 'x'"})
    ]
    latest = influx_store.latest("bdg")
    assert latest["cnc-01"].fields["state"] == "IDLE"
    assert latest["cnc-02"].ts_ms == T0 + 500


def test_latest_carries_each_fields_last_value(influx_store: InfluxStore) -> None:
    # Report by exception: the newest row holds only what changed; the rest holds from older rows.
    tags = {"site": "bdg", "machine": "cnc-01"}
    influx_store.write(
        [
            Point("telemetry", tags, {"state": "RUNNING", "badge": 1001, "job": "J-1", "energy_kwh": 2.5}, T0),
            Point("telemetry", tags, {"state": "STOPPED", "stop_reason": 4}, T0 + 1000),
            Point("telemetry", tags, {"energy_kwh": 2.75}, T0 + 2000),
        ]
    )
    row = influx_store.latest("bdg")["cnc-01"]
    assert row.ts_ms == T0 + 2000
    assert row.tags["machine"] == "cnc-01"
    assert row.fields == {"state": "STOPPED", "badge": 1001, "job": "J-1", "stop_reason": 4, "energy_kwh": 2.75}


def test_same_point_twice_is_one_point(influx_store: InfluxStore) -> None:
    point = Point("telemetry", {"site": "bdg", "machine": "m"}, {"good_count": 5}, T0)
    influx_store.write([point])
    influx_store.write([point])
    assert len(influx_store.telemetry("bdg", "m", T0 - 1, T0 + 1)) == 1


def test_type_conflict_is_rejected_not_retried(influx_store: InfluxStore) -> None:
    influx_store.write([Point("telemetry", {"site": "bdg", "machine": "m"}, {"mode": "auto"}, T0)])
    with pytest.raises(StoreRejected, match="field type conflict"):
        influx_store.write([Point("telemetry", {"site": "bdg", "machine": "m"}, {"mode": 3}, T0 + 1)])


def test_unreachable_store_is_retryable() -> None:
    with InfluxStore(f"http://127.0.0.1:{free_port()}", "x", timeout_s=1) as store:
        assert not store.ping()
        with pytest.raises(StoreUnavailable, match="unreachable"):
            store.write([Point("telemetry", {"site": "bdg"}, {"a": 1}, T0)])


def test_bad_query_is_rejected(influx_store: InfluxStore) -> None:
    with pytest.raises(StoreRejected):
        influx_store.query("SELEKT nonsense")


def test_hostile_ids_stay_literals(influx_store: InfluxStore) -> None:
    influx_store.write([Point("telemetry", {"site": "bdg", "machine": "m"}, {"good_count": 5}, T0)])
    assert influx_store.telemetry("bdg", "m' OR machine =~ /.*/ --", T0 - 1, T0 + 1) == []
