"""InfluxStore against a real InfluxDB, beyond the store contract (test_store_contract.py): failures classified as
retry or reject, 413 and partial writes, streamed and paged answers, answers cut short."""

from __future__ import annotations

import gc
import json
import re
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from launcher.services import InfluxDB, free_port, temp_workdir
from shopfloor.influx import InfluxStore, Point, StoreRejected, StoreUnavailable, quote_literal, to_line

pytestmark = pytest.mark.integration
T0 = 1764291600000


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
        # A writer that is not an admin (as a deployment gives the collector): the database exists, so it starts;
        # a database it has no privileges on, or that does not exist, is refused with the reason.
        with InfluxStore(server.url, "authdb", username="admin", password="s3cret") as admin:
            admin.query("CREATE USER writer WITH PASSWORD 'w'")
            admin.query('GRANT ALL ON "authdb" TO "writer"')
        with InfluxStore(server.url, "authdb", username="writer", password="w") as store:
            store.ensure_database()
            assert store.write_lines([to_line(Point("telemetry", TAGS, {"x": 2}, T0 + 1))]) == []
            assert count(store) == 2
        with (
            InfluxStore(server.url, "otherdb", username="writer", password="w") as store,
            pytest.raises(StoreRejected, match=r"requires admin privilege.*needs the database to exist already"),
        ):
            store.ensure_database()
    finally:
        server.stop()


class _StandIn(ThreadingHTTPServer):
    """A real HTTP server answering /write as configured: for answers InfluxDB 1.6 cannot be made to give
    (429/503 with Retry-After as 2.x Cloud and proxies send them) and to see the Authorization header on the wire."""

    status = 204
    headers_out: dict[str, str]
    seen: list[dict[str, str]]
    answer = b""  # the body of a GET /query answer, sent as is
    cut = False  # announce more body than is sent, then hang up: an answer cut short on the wire
    drop_gets = 0  # hang up on this many GETs without a word: a pooled connection found dead when reused


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

    def do_GET(self) -> None:
        self.server.seen.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
        if self.server.drop_gets > 0:
            self.server.drop_gets -= 1
            self.close_connection = True
            return
        self.send_response(self.server.status if self.server.status != 204 else 200)
        for k, v in self.server.headers_out.items():
            self.send_header(k, v)
        body = self.server.answer
        self.send_header("Content-Length", str(len(body) + (1000 if self.server.cut else 0)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        if self.server.cut:
            self.close_connection = True

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


# ---- answers: streamed, paged, cut short ---------------------------------------------------------------------

ROW_LIMIT = 100


@pytest.fixture(scope="module")
def capped_influxdb() -> Iterator[InfluxDB]:
    """An InfluxDB capping every whole (not streamed) answer at ROW_LIMIT rows."""
    workdir = temp_workdir("sf-influx-capped-")
    server = InfluxDB(workdir, max_row_limit=ROW_LIMIT).start()
    yield server
    server.stop()
    shutil.rmtree(workdir, ignore_errors=True)


def fresh(server: InfluxDB, **options: Any) -> InfluxStore:
    store = InfluxStore(server.url, f"t_{uuid.uuid4().hex[:12]}", **options)
    store.ensure_database()
    return store


def test_a_streamed_answer_is_not_capped(capped_influxdb: InfluxDB) -> None:
    with fresh(capped_influxdb) as store:
        assert store.write_lines([to_line(Point("telemetry", TAGS, {"x": i}, T0 + i)) for i in range(250)]) == []
        [series] = store.query("SELECT x FROM telemetry")  # 250 rows in chunks of 10,000: one series, whole
        assert [row[1] for row in series["values"]] == list(range(250))
        assert len(store.samples("bdg", "m", T0, T0 + 250)) == 250
        assert store.read_pages == 0


def test_a_capped_whole_answer_is_paged_by_time(capped_influxdb: InfluxDB) -> None:
    # Without streaming the store sends at most 100 rows an answer ("partial": true): 250 rows take 3 answers.
    with fresh(capped_influxdb, chunk_rows=None) as store:
        assert store.write_lines([to_line(Point("telemetry", TAGS, {"x": i}, T0 + i)) for i in range(250)]) == []
        assert store.samples("bdg", "m", T0, T0 + 250) == [(T0 + i, {"x": i}) for i in range(250)]
        assert store.read_pages == 2
        assert len(store.samples("bdg", "m", T0 + 10, T0 + 110)) == 100  # exactly at the cap: one answer, whole
        assert store.read_pages == 2  # the cap is "more than 100": 100 rows come whole, unmarked


def test_a_partial_answer_is_an_error_never_data(capped_influxdb: InfluxDB) -> None:
    # Where a read cannot be paged by time, a capped answer is refused: a figure from it would be wrong.
    with fresh(capped_influxdb, chunk_rows=None) as store:
        lines = [
            to_line(Point("telemetry", {"site": "bdg", "machine": f"m-{i:03d}"}, {"x": i}, T0)) for i in range(150)
        ]
        assert store.write_lines(lines) == []
        with pytest.raises(StoreRejected, match="partial"):
            store.query("SELECT * FROM telemetry")
        # latest(): 150 machines' newest rows are over the cap, and the store drops the second statement.
        with pytest.raises(StoreRejected, match="partial"):
            store.latest("bdg")
    with fresh(capped_influxdb) as store:  # streamed, the same reads are whole
        assert store.write_lines(lines) == []
        assert len(store.latest("bdg")) == 150


def test_an_answer_still_partial_where_it_ends_is_refused(stand_in: _StandIn) -> None:
    # A streamed answer whose last part says more is coming: the store stopped before the end.
    part = {"statement_id": 0, "series": [{"name": "telemetry", "columns": ["time", "x"], "values": [[T0, 1]]}]}
    part["series"][0]["partial"] = True  # type: ignore[index]
    stand_in.answer = json.dumps({"results": [{**part, "partial": True}]}).encode() + b"\n"
    url = f"http://127.0.0.1:{stand_in.server_address[1]}"
    with InfluxStore(url, "db") as store, pytest.raises(StoreRejected, match="partial"):
        store.samples("bdg", "m", T0, T0 + 10)
    assert "chunked=true" in stand_in.seen[0]["path"]


def test_an_answer_cut_on_the_wire_is_unavailable(stand_in: _StandIn) -> None:
    stand_in.answer = b'{"results":[{"statement_id":0,"series":[{"name":"telemetry","columns":["time","x"],"values":[['
    stand_in.cut = True
    url = f"http://127.0.0.1:{stand_in.server_address[1]}"
    with InfluxStore(url, "db", timeout_s=2) as store, pytest.raises(StoreUnavailable, match="mid-answer"):
        store.samples("bdg", "m", T0, T0 + 10)
    assert len(stand_in.seen) == 1  # part of the answer had come: not sent again


def test_a_query_whose_connection_dies_before_the_answer_is_sent_once_more(stand_in: _StandIn) -> None:
    # What a dead pooled connection looks like: the request goes out, the connection closes without a word.
    part = {"statement_id": 0, "series": [{"name": "telemetry", "columns": ["time", "x"], "values": [[T0, 1]]}]}
    stand_in.answer = json.dumps({"results": [part]}).encode() + b"\n"
    stand_in.drop_gets = 1
    url = f"http://127.0.0.1:{stand_in.server_address[1]}"
    with InfluxStore(url, "db") as store:
        assert store.samples("bdg", "m", T0, T0 + 10) == [(T0, {"x": 1})]
        assert store.read_retries == 1
    paths = [r["path"] for r in stand_in.seen]
    assert paths[0] == paths[1] and len(paths) == len(set(paths)) + 1  # that query twice, every other once


def test_a_query_whose_connection_dies_twice_is_unavailable(stand_in: _StandIn) -> None:
    stand_in.drop_gets = 2
    url = f"http://127.0.0.1:{stand_in.server_address[1]}"
    with InfluxStore(url, "db") as store, pytest.raises(StoreUnavailable, match="unreachable"):
        store.samples("bdg", "m", T0, T0 + 10)
    assert len(stand_in.seen) == 2  # once more, not for ever


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        # InfluxDB reports a limit hit half-way through a streamed answer as an error result.
        (
            b'{"results":[{"statement_id":0,"series":[{"name":"t","columns":["time","x"],"values":[[1,1]],'
            b'"partial":true}],"partial":true}]}\n{"results":[{"statement_id":0,"error":"max-select-point limit '
            b'exceeeded: (10 > 5)"}]}\n',
            "max-select-point",
        ),
        (b'{"error":"query interrupted"}\n', "query interrupted"),
        (b"<html>proxy error</html>\n", "not JSON"),
        (b"[1, 2]\n", "unexpected document"),
        (b'{"results":[7]}\n', "malformed result"),
        (b'{"results":{"statement_id":0}}\n', "malformed result"),
        (b'{"results":[{"statement_id":0,"series":[{"name":"t","values":[[1,1]]}]}]}\n', "malformed series"),
        (b'{"results":[{"statement_id":0,"series":[{"columns":["time"],"values":7}]}]}\n', "malformed series"),
        (b"", "partial"),  # no answer at all: the statement is missing
    ],
)
def test_an_error_in_an_answer_is_rejected(stand_in: _StandIn, answer: bytes, message: str) -> None:
    stand_in.answer = answer
    url = f"http://127.0.0.1:{stand_in.server_address[1]}"
    with InfluxStore(url, "db") as store, pytest.raises(StoreRejected, match=message):
        store.samples("bdg", "m", T0, T0 + 10)


@pytest.mark.parametrize(("status", "error"), [(503, StoreUnavailable), (429, StoreUnavailable), (401, StoreRejected)])
def test_a_refused_query_is_classified(stand_in: _StandIn, status: int, error: type[Exception]) -> None:
    stand_in.status = status
    stand_in.answer = b'{"error":"nope"}'
    url = f"http://127.0.0.1:{stand_in.server_address[1]}"
    with InfluxStore(url, "db") as store, pytest.raises(error, match=f"{status}.*nope"):
        store.latest("bdg")


def test_a_new_float_field_is_typed_after_the_types_were_read(influx_store: InfluxStore) -> None:
    # The field types are read once and again when a column shows that was not known: a whole float stays a float.
    influx_store.write([Point("telemetry", TAGS, {"temp_c": 40.0}, T0)])
    assert influx_store.samples("bdg", "m", T0, T0 + 1) == [(T0, {"temp_c": 40.0})]
    influx_store.write([Point("telemetry", TAGS, {"flow_l": 3.0, "count_x": 3}, T0 + 1)])
    [(_, fields)] = influx_store.samples("bdg", "m", T0 + 1, T0 + 2)
    assert {k: type(v) for k, v in fields.items()} == {"flow_l": float, "count_x": int}


@pytest.mark.parametrize("enabled", [True, False])
def test_reads_leave_the_garbage_collector_as_they_found_it(influx_store: InfluxStore, enabled: bool) -> None:
    influx_store.write([Point("telemetry", TAGS, {"x": i}, T0 + i) for i in range(10)])
    was = gc.isenabled()
    (gc.enable if enabled else gc.disable)()
    try:
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda _: influx_store.samples("bdg", "m", T0, T0 + 10), range(16)))
        assert all(len(r) == 10 for r in results)
        assert gc.isenabled() is enabled
        with pytest.raises(ValueError):
            influx_store.samples("bdg", "m", T0, T0 - 1)
        with pytest.raises(StoreRejected):
            influx_store.query("SELEKT")
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()


def test_reads_come_from_the_retention_policy_written_to(influx_store: InfluxStore) -> None:
    influx_store.query(f'CREATE RETENTION POLICY "month" ON "{influx_store.database}" DURATION 30d REPLICATION 1')
    now_ms = int(time.time() * 1000) // 1000 * 1000
    with InfluxStore(influx_store.url, influx_store.database, retention_policy="month") as store:
        store.write([Point("telemetry", TAGS, {"x": 1}, now_ms)])
        assert store.samples("bdg", "m", now_ms, now_ms + 1) == [(now_ms, {"x": 1})]
        assert store.latest("bdg")["m"].ts_ms == now_ms
    assert influx_store.samples("bdg", "m", now_ms, now_ms + 1) == []  # not in the default policy


def test_hostile_strings_stay_literals_in_raw_queries(influx_store: InfluxStore) -> None:
    # The interface refuses such ids before any query; raw queries still quote them as literals.
    influx_store.write([Point("telemetry", TAGS, {"good_count": 5}, T0)])
    hostile = quote_literal("m' OR machine =~ /.*/ --")
    assert influx_store.rows(f"SELECT * FROM telemetry WHERE machine = {hostile}") == []
    assert len(influx_store.rows(f"SELECT * FROM telemetry WHERE machine = {quote_literal('m')}")) == 1
