"""What is particular to the embedded SQLite time-series store (the contract suite covers the rest).

Line protocol as the collector writes it (every escape, checked against a real InfluxDB given the same lines),
lines refused one by one with their reasons while the rest land, field type conflicts, two processes on one file,
a file that is not a store, a busy database, threads sharing one store, and a real collector on a real Mosquitto
writing into it. Times are hand-picked around T0 = 2025-11-28T01:00:00Z.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from collector.registry import Registry
from collector.service import Collector
from launcher.services import Mosquitto
from shopfloor.cli import build_parser, open_store
from shopfloor.config import default_site_path, load_site
from shopfloor.contracts import LinkStatus, SignalValue, StatusMessage, Topic
from shopfloor.influx import InfluxStore, to_line
from shopfloor.mqtt import MqttLink, MqttSettings
from shopfloor.sqlitestore import MAX_IDLE, MAX_LINE_BYTES, MAX_STRING_BYTES, SqliteStore
from shopfloor.store import TELEMETRY, Point, StoreRejected, StoreUnavailable

pytestmark = pytest.mark.integration

T0 = 1_764_291_600_000
SITE = "bdg"
PREFIX = "telemetry,machine=cnc-01,site=bdg"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SqliteStore]:
    s = SqliteStore(tmp_path / "ts.db", timeout_s=2)
    s.ensure_database()
    yield s
    s.close()


def wait_for(check: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


# ---- line protocol: the same lines give the same values as InfluxDB --------------------------------------------

# (line as the collector or a hand would write it, the fields InfluxDB keeps)
ESCAPED_LINES: list[tuple[str, dict[str, SignalValue]]] = [
    (f'{PREFIX} job="say \\"hi\\"" {T0}', {"job": 'say "hi"'}),
    (f'{PREFIX} job="back\\\\slash\\\\" {T0}', {"job": "back\\slash\\"}),
    (f'{PREFIX} job="a,b=c d e" {T0}', {"job": "a,b=c d e"}),  # commas, equals and spaces need no escape in quotes
    (f'{PREFIX} job="tab\\there" {T0}', {"job": "tab\\there"}),  # a backslash before another char stays as it is
    (f'{PREFIX} job="line\\nbreak" {T0}', {"job": "line\\nbreak"}),  # what render_line makes of a newline
    (f'{PREFIX} job="" {T0}', {"job": ""}),
    (f'{PREFIX} job="Jöb ✓ 工件 🙂" {T0}', {"job": "Jöb ✓ 工件 🙂"}),
    (f"{PREFIX} good_count=-3i,badge=0i {T0}", {"good_count": -3, "badge": 0}),
    (f"{PREFIX} reject_count=9223372036854775807i {T0}", {"reject_count": 2**63 - 1}),
    (f"{PREFIX} power_kw=1,energy_kwh=-0.5 {T0}", {"power_kw": 1.0, "energy_kwh": -0.5}),  # no i: a float
    (f"{PREFIX} power_kw=1e3,energy_kwh=2.5E-3 {T0}", {"power_kw": 1000.0, "energy_kwh": 0.0025}),
    (f"{PREFIX} a=t,b=T,c=true,d=True,e=TRUE {T0}", {"a": True, "b": True, "c": True, "d": True, "e": True}),
    (f"{PREFIX} a=f,b=F,c=false,d=False,e=FALSE {T0}", {"a": False, "b": False, "c": False, "d": False, "e": False}),
    (f'telemetry,site=bdg,machine=cnc-01 state="RUNNING",good_count=1i {T0}', {"state": "RUNNING", "good_count": 1}),
    (f'{PREFIX} zeta=1i,alpha="x" {T0}', {"zeta": 1, "alpha": "x"}),  # fields in any order
]


@pytest.mark.parametrize(("line", "fields"), ESCAPED_LINES, ids=[f"line{i}" for i in range(len(ESCAPED_LINES))])
def test_escapes_and_values_read_back_as_influxdb_keeps_them(
    store: SqliteStore, influx_store: InfluxStore, line: str, fields: dict[str, SignalValue]
) -> None:
    assert influx_store.write_lines([line]) == []
    assert store.write_lines([line]) == []
    want = [(T0, fields)]
    assert influx_store.samples(SITE, "cnc-01", T0, T0 + 1) == want
    got = store.samples(SITE, "cnc-01", T0, T0 + 1)
    assert got == want
    assert [{k: type(v) for k, v in f.items()} for _, f in got] == [{k: type(v) for k, v in fields.items()}]


def test_rendered_points_read_back_unchanged(store: SqliteStore) -> None:
    # write() goes through to_line, the collector's rendering: every type and escape render_line makes.
    fields: dict[str, SignalValue] = {"job": 'a "b" \\ c,d=e f', "good_count": 2**53 + 1, "energy_kwh": 3, "ok": True}
    store.write([Point(TELEMETRY, {"site": SITE, "machine": "cnc-01"}, fields, T0)])
    assert to_line(Point(TELEMETRY, {"site": SITE, "machine": "cnc-01"}, fields, T0)).endswith(f" {T0}")
    assert store.samples(SITE, "cnc-01", T0, T0 + 1) == [(T0, {**fields, "energy_kwh": 3.0})]  # a canonical float


# ---- refused lines: one by one, with reasons, the rest written --------------------------------------------------

BAD_LINES: list[tuple[Any, str]] = [
    ("garbage", "not line protocol"),
    (f"{PREFIX} good_count=1i", "not line protocol"),  # no timestamp
    (f"{PREFIX}  good_count=1i {T0}", "not line protocol"),  # two spaces
    (f"{PREFIX} good_count=1i 1.7e12", "not line protocol"),
    (f'{PREFIX} job="unterminated {T0}', "not line protocol"),
    (f"{PREFIX} {T0}", "not line protocol"),  # no fields
    (f"{PREFIX} good_count=1i 1764291600", "timestamp 1764291600 is outside"),  # seconds, not ms
    (f"{PREFIX} good_count=1i {T0}000000", "is outside"),  # nanoseconds
    (f"{PREFIX} good_count=1i -{T0}", "is outside"),
    (f"cpu,machine=cnc-01,site=bdg x=1 {T0}", "measurement 'cpu' is not in the schema"),
    (f"tele\\ metry,machine=cnc-01,site=bdg x=1 {T0}", "measurement 'tele metry' is not in the schema"),
    (f"telemetry,site=bdg good_count=1i {T0}", "needs the tag(s) machine"),
    (f"telemetry,machine=cnc-01,site=bdg,tenant=acme good_count=1i {T0}", "tag 'tenant' is not a tag of telemetry"),
    (f"telemetry,machine=cnc-01,machine=cnc-02,site=bdg good_count=1i {T0}", "tag 'machine' given twice"),
    (f"telemetry,machine=CNC-01,site=bdg good_count=1i {T0}", "machine='CNC-01' is not a valid id"),
    (f"telemetry,machine=..\\/etc,site=bdg good_count=1i {T0}", "is not a valid id"),
    (f"telemetry,machine=m\\,x\\ y\\=z,site=bdg good_count=1i {T0}", "machine='m,x y=z' is not a valid id"),
    (f"{PREFIX} time=1i {T0}", "field 'time' is not a signal name"),
    (f"{PREFIX} _hidden=1i {T0}", "field '_hidden' is not a signal name"),
    (f'{PREFIX} site="sby" {T0}', "field 'site' is not a signal name"),
    (f"{PREFIX} Good=1i {T0}", "field 'Good' is not a signal name"),
    (f"{PREFIX} good\\ count=1i {T0}", "field 'good count' is not a signal name"),
    (f"{PREFIX} good_count=1i,good_count=2i {T0}", "field 'good_count' given twice"),
    (f"{PREFIX} good_count=9223372036854775808i {T0}", "out of the 64-bit range"),
    (f"{PREFIX} good_count=12ai {T0}", "is not an integer"),
    (f"{PREFIX} good_count=5u {T0}", "is not a value"),
    (f"{PREFIX} power_kw=nan {T0}", "is not a value"),
    (f"{PREFIX} power_kw=1e999 {T0}", "out of the float range"),
    (f'{PREFIX} job="{"x" * (MAX_STRING_BYTES + 1)}" {T0}', f"longer than {MAX_STRING_BYTES} bytes"),
    (f'{PREFIX} job="{"ü" * (MAX_STRING_BYTES // 2 + 1)}" {T0}', f"longer than {MAX_STRING_BYTES} bytes"),
    (f"{PREFIX} {','.join(f'f{i}=1i' for i in range(1001))} {T0}", "more than 1000 in one line"),
    (f'{PREFIX} job="{"x" * MAX_LINE_BYTES}" {T0}', f"line longer than {MAX_LINE_BYTES} bytes"),
    (f"{PREFIX} good_count=1i {T0}\n{PREFIX} good_count=2i {T0 + 1}", "line break"),
    (f'{PREFIX} job="\ud800" {T0}', "lone surrogate"),
    (f'machine_status,machine=cnc-01,site=bdg status="online",colour="red" {T0}', "'colour' is not a field"),
    (f'machine_status,machine=cnc-01,site=bdg status="online",heartbeat_ms=5.0 {T0}', "heartbeat_ms' is integer"),
    (f"agent_status,agent=edge-1,site=bdg status=1i {T0}", "'status' is string, this line has integer"),
    (f"late_hours,machine=cnc-01,site=bdg received_ms=1 {T0}", "'received_ms' is integer, this line has float"),
    (f'agent_status,machine=cnc-01,site=bdg status="online" {T0}', "tag 'machine' is not a tag of agent_status"),
    (42, "not a line of text: int"),
]


def test_bad_lines_are_refused_one_by_one_and_the_rest_land(store: SqliteStore) -> None:
    # Good line k at T0 + k s between the bad ones; empty lines and comments are skipped, as InfluxDB does.
    lines: list[Any] = []
    bad_at: dict[int, str] = {}
    for k, (bad, why) in enumerate(BAD_LINES):
        lines.append(f"{PREFIX} good_count={k}i {T0 + k * 1000}")
        bad_at[len(lines)] = why
        lines.append(bad)
    lines += ["", "   ", "# a comment"]
    rejected = store.write_lines(lines)
    assert [r.index for r in rejected] == sorted(bad_at)
    for r in rejected:
        assert bad_at[r.index] in r.reason, (r.index, r.reason)
        assert r.line[:100] == str(lines[r.index])[:100]
    assert store.samples(SITE, "cnc-01", T0, T0 + 10**7) == [
        (T0 + k * 1000, {"good_count": k}) for k in range(len(BAD_LINES))
    ]
    assert store.latest(SITE)["cnc-01"].fields == {"good_count": len(BAD_LINES) - 1}
    assert store.latest_statuses(SITE) == {} and store.latest_agent_statuses(SITE) == {}


def test_a_store_written_nothing_but_bad_lines_stays_empty(store: SqliteStore) -> None:
    assert len(store.write_lines([bad for bad, _ in BAD_LINES])) == len(BAD_LINES)
    assert store.newest_ts(SITE) == {} and store.latest(SITE) == {}


# ---- field types ------------------------------------------------------------------------------------------------


def test_a_field_keeps_the_type_of_its_first_value_per_series(store: SqliteStore) -> None:
    assert store.write_lines([f"{PREFIX} spindle=1i {T0}"]) == []
    # Later batch: the float and the string are refused whole (their other fields too), the int lands.
    rejected = store.write_lines(
        [
            f"{PREFIX} spindle=2.5,good_count=7i {T0 + 1000}",
            f'{PREFIX} spindle="fast" {T0 + 2000}',
            f"{PREFIX} spindle=3i {T0 + 3000}",
        ]
    )
    assert [(r.index, r.reason) for r in rejected] == [
        (0, "field type conflict: field 'spindle' of telemetry bdg/cnc-01 is integer, this line has float"),
        (1, "field type conflict: field 'spindle' of telemetry bdg/cnc-01 is integer, this line has string"),
    ]
    assert store.samples(SITE, "cnc-01", T0, T0 + 10_000) == [(T0, {"spindle": 1}), (T0 + 3000, {"spindle": 3})]
    # Within one batch the first line sets the type; another series (machine) has types of its own.
    rejected = store.write_lines(
        [
            f"telemetry,machine=cnc-02,site=bdg spindle=true {T0}",
            f"telemetry,machine=cnc-02,site=bdg spindle=1i {T0 + 1000}",
        ]
    )
    assert [r.index for r in rejected] == [1]
    assert store.samples(SITE, "cnc-02", T0, T0 + 10_000) == [(T0, {"spindle": True})]
    with pytest.raises(StoreRejected, match=r"store refused 1 line.*is integer, this line has float") as caught:
        store.write([Point(TELEMETRY, {"site": SITE, "machine": "cnc-01"}, {"spindle": 4.5}, T0 + 5000)])
    assert [r.index for r in caught.value.rejected] == [0]


def test_a_type_is_kept_across_stores_and_processes_on_the_file(tmp_path: Path) -> None:
    path = tmp_path / "ts.db"
    with SqliteStore(path) as first:
        assert first.write_lines([f"{PREFIX} spindle=1i {T0}"]) == []
    with SqliteStore(path) as second:  # a fresh store: nothing cached, the file says integer
        [r] = second.write_lines([f"{PREFIX} spindle=1.5 {T0 + 1}"])
        assert "is integer, this line has float" in r.reason


# ---- two processes on one file ----------------------------------------------------------------------------------

CHILD = """
import sys, time
from shopfloor.sqlitestore import SqliteStore
path, n, t0 = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
store = SqliteStore(path, timeout_s=20)
for batch in range(0, n, 50):
    lines = [f"telemetry,machine=cnc-02,site=bdg good_count={k}i {t0 + k * 1000}" for k in range(batch, batch + 50)]
    assert store.write_lines(lines) == []
deadline = time.monotonic() + 60
while len(store.samples("bdg", "cnc-01", t0, t0 + n * 1000)) < n:  # what the other process writes
    assert time.monotonic() < deadline, "never saw the parent's samples"
    time.sleep(0.01)
print(len(store.samples("bdg", "cnc-01", t0, t0 + n * 1000)), len(store.samples("bdg", "cnc-02", t0, t0 + n * 1000)))
"""


def test_two_processes_write_and_read_one_file(tmp_path: Path) -> None:
    path = tmp_path / "ts.db"
    n = 2000
    with SqliteStore(path, timeout_s=20) as store:
        store.ensure_database()
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), str(n), str(T0)], stdout=subprocess.PIPE, text=True
        )
        for batch in range(0, n, 50):  # interleaved with the child's batches: the busy timeout orders them
            lines = [f"{PREFIX} good_count={k}i {T0 + k * 1000}" for k in range(batch, batch + 50)]
            assert store.write_lines(lines) == []
        out, _ = child.communicate(timeout=120)
        assert child.returncode == 0
        assert out.split() == [str(n), str(n)]  # the child read every sample of both processes
        assert store.samples(SITE, "cnc-02", T0, T0 + n * 1000) == [
            (T0 + k * 1000, {"good_count": k}) for k in range(n)
        ]
        assert store.newest_ts(SITE) == {"cnc-01": T0 + (n - 1) * 1000, "cnc-02": T0 + (n - 1) * 1000}


def test_threads_share_one_store(store: SqliteStore) -> None:
    # Four writer threads (one machine each) and two reader threads at once; every write lands, every read is whole
    # (a prefix of a machine's samples, oldest first, never a torn row).
    n, errors = 400, []

    def writer(machine: str) -> None:
        try:
            for k in range(0, n, 20):
                lines = [
                    f'telemetry,machine={machine},site=bdg good_count={j}i,state="RUNNING" {T0 + j}'
                    for j in range(k, k + 20)
                ]
                assert store.write_lines(lines) == []
        except Exception as exc:  # reported below
            errors.append(exc)

    def reader() -> None:
        try:
            for _ in range(50):
                for m in ("m-0", "m-1", "m-2", "m-3"):
                    got = store.samples(SITE, m, T0, T0 + n)
                    assert got == [(T0 + j, {"good_count": j, "state": "RUNNING"}) for j in range(len(got))]
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(f"m-{i}",)) for i in range(4)]
    threads += [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert store.newest_ts(SITE) == {f"m-{i}": T0 + n - 1 for i in range(4)}


def test_short_lived_threads_leave_no_connections_behind(store: SqliteStore) -> None:
    # The API fetches machines on a new thread pool per request: 200 threads, one read each, must not leave 200
    # open files (each connection holds the database and its WAL open).
    store.write_lines([f"{PREFIX} good_count=1i {T0}"])

    def open_files() -> int:
        return len(list(Path("/proc/self/fd").iterdir()))

    before = open_files()
    for _ in range(200):
        t = threading.Thread(target=store.samples, args=(SITE, "cnc-01", T0, T0 + 1))
        t.start()
        t.join()
    assert open_files() <= before + 3 * MAX_IDLE  # at most the pool's idle connections, three files each


# ---- files that are not a store, a busy database -----------------------------------------------------------------


def test_a_file_that_is_not_a_database_is_refused_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are not the pages of a database\n" * 200)
    with SqliteStore(path) as store:
        assert not store.ping()
        with pytest.raises(StoreRejected, match=r"notes\.db.*not a SQLite database"):
            store.ensure_database()
        with pytest.raises(StoreRejected, match="not a SQLite database"):
            store.samples(SITE, "cnc-01", T0, T0 + 1)
        with pytest.raises(StoreRejected, match="not a SQLite database"):
            store.write_lines([f"{PREFIX} good_count=1i {T0}"])
    assert path.read_bytes() == b"these are not the pages of a database\n" * 200  # left as it was


def test_another_sqlite_database_is_not_written_into(tmp_path: Path) -> None:
    # E.g. the business DB given by mistake: it is a database, but not a time-series store.
    path = tmp_path / "shopfloor.db"
    other = sqlite3.connect(path)
    other.execute("CREATE TABLE tenants (id TEXT)")
    other.commit()
    other.close()
    with SqliteStore(path) as store:
        assert not store.ping()
        with pytest.raises(StoreRejected, match=r"shopfloor\.db.*another SQLite database"):
            store.write_lines([f"{PREFIX} good_count=1i {T0}"])
    check = sqlite3.connect(path)
    assert [r[0] for r in check.execute("SELECT name FROM sqlite_master")] == ["tenants"]
    check.close()


def test_a_path_that_cannot_be_opened_is_unavailable_until_it_can(tmp_path: Path) -> None:
    path = tmp_path / "later" / "ts.db"
    with SqliteStore(path) as store:
        assert not store.ping()
        with pytest.raises(StoreUnavailable, match=r"later/ts\.db.*cannot open"):
            store.write_lines([f"{PREFIX} good_count=1i {T0}"])
        path.parent.mkdir()  # the volume is mounted: the same store works (the collector's retry)
        assert store.write_lines([f"{PREFIX} good_count=1i {T0}"]) == []
        assert store.ping()


def test_a_busy_database_is_unavailable_and_reads_go_on(tmp_path: Path) -> None:
    path = tmp_path / "ts.db"
    with SqliteStore(path, timeout_s=0.3) as store:
        assert store.write_lines([f"{PREFIX} good_count=1i {T0}"]) == []
        holder = sqlite3.connect(path, isolation_level=None)  # another writer that keeps its write lock
        holder.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StoreUnavailable, match=r"busy.*longer than 0.3 s"):
                store.write_lines([f"{PREFIX} good_count=2i {T0 + 1000}"])
            assert store.samples(SITE, "cnc-01", T0, T0 + 2000) == [(T0, {"good_count": 1})]  # WAL: reads go on
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert store.write_lines([f"{PREFIX} good_count=2i {T0 + 1000}"]) == []  # nothing half-written before
        assert store.samples(SITE, "cnc-01", T0, T0 + 2000) == [(T0, {"good_count": 1}), (T0 + 1000, {"good_count": 2})]


def test_a_closed_store_is_unavailable(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "ts.db")
    store.ensure_database()
    store.close()
    assert not store.ping()
    with pytest.raises(StoreUnavailable, match="is closed"):
        store.samples(SITE, "cnc-01", T0, T0 + 1)


@pytest.mark.parametrize(("path", "message"), [(":memory:", "not a file path"), ("", "not a file path")])
def test_a_path_that_is_no_file_is_refused(path: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SqliteStore(path)


def test_the_command_line_opens_the_sqlite_store(tmp_path: Path) -> None:
    parser = build_parser()
    args = parser.parse_args(["rollup", "status", "--sqlite-store", str(tmp_path / "ts.db")])
    with open_store(args) as opened:
        assert isinstance(opened, SqliteStore) and opened.path == tmp_path / "ts.db"
    with pytest.raises(ValueError, match="is a directory"):
        open_store(parser.parse_args(["rollup", "status", "--sqlite-store", str(tmp_path)]))
    args = parser.parse_args(["api", "--influx-url", "http://127.0.0.1:1", "--influx-db", "x"])
    with open_store(args) as influx:
        assert isinstance(influx, InfluxStore) and influx.database == "x"


# ---- a real collector writes into it ------------------------------------------------------------------------------


def test_a_collector_on_mosquitto_writes_into_a_sqlite_store(tmp_path: Path, fresh_mosquitto: Mosquitto) -> None:
    now = (int(time.time() * 1000) // 60_000 - 1) * 60_000  # within the collector's skew window
    site = load_site(default_site_path())
    store = SqliteStore(tmp_path / "ts.db")
    store.ensure_database()
    dead = tmp_path / "dead.jsonl"
    collector = Collector(
        MqttSettings.from_url(fresh_mosquitto.url),
        store,
        client_id=f"sqlite-collector-{uuid.uuid4().hex[:8]}",
        flush_interval_s=0.05,
        dead_letter=dead,
        registry=Registry.from_site(site),
    )
    link = MqttLink(MqttSettings.from_url(fresh_mosquitto.url), f"test-{uuid.uuid4().hex[:8]}")
    try:
        collector.start()
        assert collector.wait_connected(10)
        link.start()
        assert link.wait_connected(10)
        status = StatusMessage(status=LinkStatus.ONLINE, ts=now, agent="edge-1", heartbeat_ms=60_000)
        topic = str(Topic.machine_status(SITE, "cnc-01"))
        wait_for(
            lambda: (
                bool(link.publish(topic, status.to_json(), qos=1).wait(5))
                and bool(store.statuses(SITE, "cnc-01", now, now + 1))
            ),
            "the collector's first status write",
        )
        samples = [
            {"ts": now + k * 1000, "values": {"state": "RUNNING", "good_count": k, "energy_kwh": 1, "job": 'J "7"'}}
            for k in range(1, 4)
        ]
        batch = {"v": 1, "agent": "edge-1", "site": SITE, "machine": "cnc-01", "seq": 1, "samples": samples}
        forged = {**batch, "seq": 2, "samples": [{"ts": now + 5000, "values": {"_evil": 1}}]}
        for payload in (batch, forged):
            assert link.publish(str(Topic.telemetry(SITE, "cnc-01")), json.dumps(payload).encode(), qos=1).wait(5)
        wait_for(lambda: len(store.samples(SITE, "cnc-01", now, now + 10_000)) == 3, "the three samples")
        wait_for(lambda: dead.exists() and bool(dead.read_text().strip()), "the forged batch dead-lettered")
        assert store.samples(SITE, "cnc-01", now, now + 10_000) == [
            (now + k * 1000, {"state": "RUNNING", "good_count": k, "energy_kwh": 1.0, "job": 'J "7"'})
            for k in range(1, 4)
        ]
        assert store.heartbeat_ms(SITE, "cnc-01", now + 10_000) == 60_000
        assert store.latest(SITE)["cnc-01"].ts_ms == now + 3000
    finally:
        link.stop()
        collector.stop(timeout_s=2)
        store.close()


# ---- the commands -------------------------------------------------------------------------------------------------


def test_collect_writes_into_a_sqlite_file_another_process_reads(tmp_path: Path, fresh_mosquitto: Mosquitto) -> None:
    # `shopfloor collect --sqlite-store` as its own process; this process reads the same file meanwhile.
    now = (int(time.time() * 1000) // 60_000 - 1) * 60_000
    path = tmp_path / "ts.db"
    argv = [
        sys.executable, "-m", "shopfloor.cli", "collect",
        "--mqtt", fresh_mosquitto.url,
        "--sqlite-store", str(path),
        "--client-id", f"cli-{uuid.uuid4().hex[:8]}",
        "--flush-interval", "0.05",
    ]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    link = MqttLink(MqttSettings.from_url(fresh_mosquitto.url), f"test-{uuid.uuid4().hex[:8]}")
    link.start()
    store = SqliteStore(path)
    try:
        assert link.wait_connected(10)
        good = {"v": 1, "agent": "edge-1", "site": SITE, "machine": "cnc-01", "seq": 1}
        good["samples"] = [{"ts": now, "values": {"state": "IDLE", "good_count": 2}}]
        deadline = time.monotonic() + 30
        while not (path.exists() and store.ping() and store.samples(SITE, "cnc-01", now, now + 1)):
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            assert time.monotonic() < deadline, "the collector never wrote the batch"
            link.publish(str(Topic.telemetry(SITE, "cnc-01")), json.dumps(good).encode(), qos=1).wait(5)
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        link.stop()
        store.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out.decode()
    with SqliteStore(path) as again:
        assert again.samples(SITE, "cnc-01", now, now + 1) == [(now, {"state": "IDLE", "good_count": 2})]
    status = subprocess.run(
        [sys.executable, "-m", "shopfloor.cli", "rollup", "status", "--json", "--sqlite-store", str(path),
         "--db-url", f"sqlite:///{tmp_path / 'rollups.db'}"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert status.returncode == 0, status.stderr
    assert "cnc-01" in [m["machine"] for m in json.loads(status.stdout)["machines"]]


def test_collect_refuses_a_file_that_is_not_a_store(tmp_path: Path, fresh_mosquitto: Mosquitto) -> None:
    path = tmp_path / "business.db"
    path.write_bytes(b"not a database at all" * 100)
    done = subprocess.run(
        [sys.executable, "-m", "shopfloor.cli", "collect", "--mqtt", fresh_mosquitto.url, "--sqlite-store", str(path)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "business.db" in done.stderr and "not a SQLite database" in done.stderr
