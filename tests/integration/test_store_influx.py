"""InfluxStore against a real InfluxDB: round trips, failures classified as retry or reject, 413 and partial writes."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from shopfloor.influx import InfluxStore, Point, StoreRejected, StoreUnavailable, to_line
from shopfloor.services import InfluxDB, free_port

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


# ---- write errors: 413, partial writes, auth, retention policy, Retry-After -----------------------------------

TAGS = {"site": "bdg", "machine": "m"}


def own_influxdb(tmp_path: Path, **http: str) -> InfluxDB:
    """An InfluxDB of the test's own with extra [http] settings, e.g. max_body_size="20000"."""
    server = InfluxDB(tmp_path)
    conf = server.conf.read_text()
    for key, value in http.items():
        name = key.replace("_", "-")
        conf = re.sub(rf"^  {name} = .*\n", "", conf, flags=re.M)
        conf = conf.replace("[http]\n", f"[http]\n  {name} = {value}\n")
    server.conf.write_text(conf)
    return server.start()


@pytest.fixture
def small_body_influxdb(tmp_path: Path) -> Iterator[InfluxDB]:
    """InfluxDB refusing request bodies over 20,000 bytes with 413."""
    server = own_influxdb(tmp_path, max_body_size="20000")
    yield server
    server.stop()


def count(store: InfluxStore, field_name: str = "x") -> int:
    series = store.query(f"SELECT count({field_name}) FROM telemetry")
    return int(series[0]["values"][0][1]) if series else 0


def test_oversize_batch_is_split_until_it_fits(small_body_influxdb: InfluxDB) -> None:
    with InfluxStore(small_body_influxdb.url, "split") as store:
        store.ensure_database()
        lines = [to_line(Point("telemetry", TAGS, {"x": i, "job": f"job-{i:06d}"}, T0 + i)) for i in range(2000)]
        assert sum(len(line) + 1 for line in lines) > 5 * 20000
        assert store.write_lines(lines) == []
        assert count(store) == 2000
        stats = store.stats
        assert stats["splits"] >= 5
        assert stats["rejected_lines"] == 0


def test_a_partial_answer_is_an_error_never_data(tmp_path: Path) -> None:
    # InfluxDB cuts an answer at max-row-limit and says "partial": true; a figure from it would be wrong.
    server = own_influxdb(tmp_path, max_row_limit="100")
    try:
        with InfluxStore(server.url, "partial") as store:
            store.ensure_database()
            assert store.write_lines([to_line(Point("telemetry", TAGS, {"x": i}, T0 + i)) for i in range(150)]) == []
            assert len(store.telemetry("bdg", TAGS["machine"], T0 - 1, T0 + 100)) == 100  # at the limit: whole
            with pytest.raises(StoreRejected, match="partial"):
                store.telemetry("bdg", TAGS["machine"], T0 - 1, T0 + 1000)
    finally:
        server.stop()


def test_a_line_over_the_body_limit_is_rejected_alone(small_body_influxdb: InfluxDB) -> None:
    with InfluxStore(small_body_influxdb.url, "huge") as store:
        store.ensure_database()
        lines = [to_line(Point("telemetry", TAGS, {"x": i}, T0 + i)) for i in range(10)]
        huge = to_line(Point("telemetry", TAGS, {"blob": "z" * 25_000}, T0 + 100))
        lines.insert(4, huge)
        [rejected] = store.write_lines(lines)
        assert (rejected.index, rejected.line) == (4, huge)
        assert "larger than the store accepts" in rejected.reason
        assert count(store) == 10


def test_partial_write_lands_the_good_lines_and_names_the_bad_ones(influx_store: InfluxStore) -> None:
    # "mode" is a string in this shard: integer modes are a field type conflict, refused line by line.
    influx_store.write([Point("telemetry", TAGS, {"mode": "auto"}, T0)])
    lines = [to_line(Point("telemetry", TAGS, {"x": i}, T0 + 1 + i)) for i in range(100)]
    bad = {17: "mode=3i", 60: "mode=4i"}
    for i, field_text in bad.items():
        lines[i] = f"telemetry,machine=m,site=bdg {field_text} {T0 + 1 + i}"
    lines.append("this is not line protocol")
    rejected = influx_store.write_lines(lines)
    assert [r.index for r in rejected] == [17, 60, 100]
    assert all("field type conflict" in r.reason for r in rejected[:2])
    assert "unable to parse" in rejected[2].reason
    assert count(influx_store) == 98
    assert influx_store.stats["bisections"] >= 1


def test_write_raises_with_the_refused_lines_after_writing_the_rest(influx_store: InfluxStore) -> None:
    influx_store.write([Point("telemetry", TAGS, {"mode": "auto"}, T0)])
    points = [Point("telemetry", TAGS, {"x": 1}, T0 + 1), Point("telemetry", TAGS, {"mode": 3}, T0 + 2)]
    with pytest.raises(StoreRejected, match="refused 1 line") as exc:
        influx_store.write(points)
    assert [r.index for r in exc.value.rejected] == [1]
    assert count(influx_store) == 1


def test_retention_policy_is_written_to_and_checked(influx_store: InfluxStore) -> None:
    influx_store.query(f'CREATE RETENTION POLICY "week" ON "{influx_store.database}" DURATION 7d REPLICATION 1')
    with InfluxStore(influx_store.url, influx_store.database, retention_policy="week") as store:
        store.ensure_database()
        now_ms = int(time.time() * 1000)
        assert store.write_lines([to_line(Point("telemetry", TAGS, {"x": 1}, now_ms))]) == []
    series = influx_store.query('SELECT count(x) FROM "week".telemetry')
    assert series[0]["values"][0][1] == 1
    assert influx_store.query("SELECT count(x) FROM telemetry") == []  # not in the default policy
    with (
        InfluxStore(influx_store.url, influx_store.database, retention_policy="nope") as store,
        pytest.raises(StoreRejected, match="retention policy 'nope' does not exist"),
    ):
        store.ensure_database()


def test_user_and_password_against_an_auth_enabled_store(tmp_path: Path) -> None:
    server = own_influxdb(tmp_path, auth_enabled="true")
    try:
        httpx.post(f"{server.url}/query", data={"q": "CREATE USER admin WITH PASSWORD 's3cret' WITH ALL PRIVILEGES"})
        with InfluxStore(server.url, "authdb", username="admin", password="s3cret") as store:
            store.ensure_database()
            assert store.write_lines([to_line(Point("telemetry", TAGS, {"x": 1}, T0))]) == []
            assert count(store) == 1
        with InfluxStore(server.url, "authdb", username="admin", password="wrong") as store:
            # The request itself is refused, not a line: no bisection, no retry.
            with pytest.raises(StoreRejected, match="401"):
                store.write_lines([to_line(Point("telemetry", TAGS, {"x": i}, T0 + i)) for i in range(50)])
            assert store.stats["bisections"] == 0
    finally:
        server.stop()


class _StandIn(ThreadingHTTPServer):
    """A real HTTP server answering /write as configured: for answers InfluxDB 1.6 cannot be made to give
    (429/503 with Retry-After as 2.x Cloud and proxies send them) and to see the Authorization header on the wire."""

    status = 204
    headers_out: dict[str, str]
    seen: list[dict[str, str]]


class _Handler(BaseHTTPRequestHandler):
    server: _StandIn

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        self.server.seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
        self.send_response(self.server.status)
        for k, v in self.server.headers_out.items():
            self.send_header(k, v)
        body = b"" if self.server.status == 204 else b'{"error":"slow down"}'
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def stand_in() -> Iterator[_StandIn]:
    server = _StandIn(("127.0.0.1", 0), _Handler)
    server.seen = []
    server.headers_out = {}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_token_and_retention_policy_go_over_the_wire(stand_in: _StandIn) -> None:
    url = f"http://127.0.0.1:{stand_in.server_address[1]}"
    with InfluxStore(url, "db", token="tok-123", retention_policy="autogen") as store:
        assert store.write_lines(["t x=1i 1"]) == []
    [request] = stand_in.seen
    assert request["authorization"] == "Token tok-123"
    assert "rp=autogen" in request["path"] and "db=db" in request["path"] and "precision=ms" in request["path"]


@pytest.mark.parametrize(
    ("status", "retry_after", "expected"),
    [(429, "7", 7.0), (503, "Wed, 21 Oct 2015 07:28:00 GMT", 0.0), (500, None, None), (502, "soon", None)],
)
def test_overload_is_unavailable_with_the_wait_asked_for(
    stand_in: _StandIn, status: int, retry_after: str | None, expected: float | None
) -> None:
    stand_in.status = status
    if retry_after is not None:
        stand_in.headers_out = {"Retry-After": retry_after}
    url = f"http://127.0.0.1:{stand_in.server_address[1]}"
    with InfluxStore(url, "db") as store, pytest.raises(StoreUnavailable, match=str(status)) as exc:
        store.write_lines(["t x=1i 1", "t x=2i 2"])
    assert exc.value.retry_after_s == expected
    assert len(stand_in.seen) == 1  # neither split nor bisected
