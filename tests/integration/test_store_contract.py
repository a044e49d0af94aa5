"""The TimeSeriesStore contract: every store implementation must pass this file unchanged (shopfloor/store.py).

Parametrized over IMPLEMENTATIONS: InfluxDB, the embedded SQLite store (a fresh file per test) and the in-memory
reference. The InfluxDB of this suite caps a whole
answer at ROW_LIMIT rows, as deployments may (max-row-limit): every read here must still come back whole.
Times are hand-picked around T0 = 2025-11-28T01:00:00Z; the expected rows are written out in each test.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from collector.convert import agent_status_to_point, status_to_point
from launcher.services import InfluxDB, free_port, temp_workdir
from shopfloor.contracts import MAX_TS_MS, MIN_TS_MS, LinkStatus, SignalValue, StatusMessage, Topic
from shopfloor.influx import InfluxStore
from shopfloor.memstore import MemoryStore
from shopfloor.sqlitestore import SqliteStore
from shopfloor.store import (
    HOUR_MS,
    TELEMETRY,
    Point,
    Row,
    StoreUnavailable,
    TimeSeriesStore,
)

pytestmark = pytest.mark.integration

IMPLEMENTATIONS = ["influx", "sqlite", "memory"]
ROW_LIMIT = 100
T0 = 1_764_291_600_000  # 2025-11-28T01:00:00Z, an hour start
SITE = "bdg"


def _implements(store: InfluxStore | SqliteStore) -> TimeSeriesStore:
    return store  # mypy (run on this file too) checks that both stores match the interface


@pytest.fixture(scope="module")
def capped_influxdb() -> Iterator[InfluxDB]:
    """An InfluxDB that caps every whole query answer at ROW_LIMIT rows."""
    workdir = temp_workdir("sf-influx-capped-")
    server = InfluxDB(workdir, max_row_limit=ROW_LIMIT).start()
    yield server
    server.stop()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(params=IMPLEMENTATIONS)
def store(request: pytest.FixtureRequest) -> Iterator[TimeSeriesStore]:
    """An empty store of each implementation."""
    if request.param == "influx":
        server: InfluxDB = request.getfixturevalue("capped_influxdb")
        influx = InfluxStore(server.url, f"contract_{uuid.uuid4().hex[:12]}")
        influx.ensure_database()
        yield _implements(influx)
        influx.close()
    elif request.param == "sqlite":
        tmp_path: Path = request.getfixturevalue("tmp_path")
        sqlite = SqliteStore(tmp_path / "timeseries.db")
        sqlite.ensure_database()
        yield _implements(sqlite)
        sqlite.close()
    elif request.param == "memory":
        yield MemoryStore()
    else:  # pragma: no cover - a new implementation needs its branch here
        raise AssertionError(f"no fixture for store implementation {request.param!r}")


@pytest.fixture(params=[i for i in IMPLEMENTATIONS if i != "memory"])  # memory cannot be down
def down_store(request: pytest.FixtureRequest) -> Iterator[TimeSeriesStore]:
    """A store of each implementation whose backend cannot be reached."""
    if request.param == "influx":
        influx = InfluxStore(f"http://127.0.0.1:{free_port()}", "down", timeout_s=1)
        yield _implements(influx)
        influx.close()
    elif request.param == "sqlite":
        tmp_path: Path = request.getfixturevalue("tmp_path")
        sqlite = SqliteStore(tmp_path / "no-such-directory" / "timeseries.db", timeout_s=1)  # cannot be opened
        yield _implements(sqlite)
        sqlite.close()
    else:  # pragma: no cover
        raise AssertionError(f"no fixture for store implementation {request.param!r}")


def tele(machine: str, ts: int, /, **fields: SignalValue) -> Point:
    return Point(TELEMETRY, {"site": SITE, "machine": machine}, dict(fields), ts)


def machine_status(machine: str, ts: int, status: str, heartbeat_ms: int | None = None, detail: str = "") -> Point:
    message = StatusMessage(status=LinkStatus(status), ts=ts, agent="edge-1", detail=detail, heartbeat_ms=heartbeat_ms)
    return status_to_point(Topic.machine_status(SITE, machine), message)  # as the collector writes it


def agent_status(agent: str, ts: int, status: str, detail: str = "") -> Point:
    message = StatusMessage(status=LinkStatus(status), ts=ts - 5000, agent=agent, detail=detail)
    return agent_status_to_point(Topic.agent_status(SITE, agent), message, ts)  # stamped when received


# ---- samples ------------------------------------------------------------------------------------------------------


def test_samples_are_the_window_start_included_end_excluded_oldest_first(store: TimeSeriesStore) -> None:
    # Written out of order; the window [T0, T0+3000) holds T0, T0+1000, T0+2000 and T0+2999.
    store.write(
        [
            tele("cnc-01", T0 + 3000, state="IDLE"),
            tele("cnc-01", T0 + 1000, good_count=2),
            tele("cnc-01", T0, state="RUNNING", good_count=1),
            tele("cnc-01", T0 - 1, state="OFF"),
            tele("cnc-01", T0 + 2999, power_kw=4.5),
            tele("cnc-01", T0 + 2000, energy_kwh=0.25),
        ]
    )
    assert store.samples(SITE, "cnc-01", T0, T0 + 3000) == [
        (T0, {"state": "RUNNING", "good_count": 1}),
        (T0 + 1000, {"good_count": 2}),
        (T0 + 2000, {"energy_kwh": 0.25}),
        (T0 + 2999, {"power_kw": 4.5}),
    ]
    assert store.samples(SITE, "cnc-01", T0 + 3000, T0 + 3001) == [(T0 + 3000, {"state": "IDLE"})]
    assert store.samples(SITE, "cnc-01", T0, T0) == []  # an empty window
    assert store.samples(SITE, "cnc-01", T0 + 3001, T0 + 9000) == []


def test_report_by_exception_rows_carry_only_their_own_fields(store: TimeSeriesStore) -> None:
    # Each sample carries what changed; a signal it did not carry is absent (not None, not the previous value).
    store.write(
        [
            tele("cnc-01", T0, state="RUNNING", badge=1001, job="J-1", good_count=0, energy_kwh=1.5),
            tele("cnc-01", T0 + 1000, power_kw=3.25),
            tele("cnc-01", T0 + 2000, good_count=1),
            tele("cnc-01", T0 + 3000, stop_reason=4, state="STOPPED"),
        ]
    )
    got = store.samples(SITE, "cnc-01", T0, T0 + 4000)
    assert [sorted(fields) for _, fields in got] == [
        ["badge", "energy_kwh", "good_count", "job", "state"],
        ["power_kw"],
        ["good_count"],
        ["state", "stop_reason"],
    ]
    assert all(value is not None for _, fields in got for value in fields.values())


TYPED: dict[str, SignalValue] = {
    "state": "RUNNING",
    "job": "",  # PLCs show "no job" as an empty string
    "good_count": 0,
    "reject_count": 2**53 + 1,  # beyond a float's exact integers
    "badge": -5,
    "energy_kwh": 2.0,  # canonical float, whole: JSON would drop its ".0"
    "power_kw": 1e-300,
    "spindle_temp_c": 40.0,  # a profile's float signal, whole
    "feed_override": 0.1 + 0.2,  # 0.30000000000000004: every bit kept
    "door_open": True,
    "coolant_ok": False,
    "program": "O1234",
}


def test_values_keep_their_types(store: TimeSeriesStore) -> None:
    store.write([tele("cnc-01", T0, **TYPED), tele("cnc-01", T0 + 1000, door_open=False, spindle_temp_c=41.5)])
    [(ts, fields), (_, second)] = store.samples(SITE, "cnc-01", T0, T0 + 2000)
    assert ts == T0
    assert fields == TYPED
    assert {k: type(v) for k, v in fields.items()} == {k: type(v) for k, v in TYPED.items()}
    assert second == {"door_open": False, "spindle_temp_c": 41.5}
    [(_, last)] = store.last_before(SITE, "cnc-01", T0 + 1, ["spindle_temp_c"])
    assert type(last["spindle_temp_c"]) is float and type(last["energy_kwh"]) is float
    latest = store.latest(SITE)["cnc-01"].fields
    assert type(latest["energy_kwh"]) is float and type(latest["good_count"]) is int


@pytest.mark.parametrize(
    "text",
    [
        "Jöb ✓ 工件 №7",
        'say "hi"',
        "it's",
        "back\\slash\\",
        "a,b=c d",
        "🙂 emoji",
        "trailing space ",
        "x" * 256,  # the longest string value the wire contract allows
    ],
)
def test_strings_round_trip_unchanged(store: TimeSeriesStore, text: str) -> None:
    store.write([tele("cnc-01", T0, job=text), machine_status("cnc-01", T0, "unreachable", detail=text)])
    assert store.samples(SITE, "cnc-01", T0, T0 + 1) == [(T0, {"job": text})]
    assert store.statuses(SITE, "cnc-01", T0, T0 + 1)[0].fields["detail"] == text
    assert store.latest(SITE)["cnc-01"].fields == {"job": text}


def test_a_point_written_again_merges_into_the_stored_one(store: TimeSeriesStore) -> None:
    point = tele("cnc-01", T0, good_count=5)
    store.write([point])
    store.write([point])  # an agent's resend: harmless
    assert store.samples(SITE, "cnc-01", T0 - 1, T0 + 1) == [(T0, {"good_count": 5})]
    store.write([tele("cnc-01", T0, state="RUNNING", good_count=6)])  # same time: fields join, later values win
    assert store.samples(SITE, "cnc-01", T0, T0 + 1) == [(T0, {"good_count": 6, "state": "RUNNING"})]


def test_many_machines_and_sites_stay_apart(store: TimeSeriesStore) -> None:
    # 150 machines x 3 samples on bdg (more series than ROW_LIMIT), and one machine of the same id on sby.
    machines = [f"m-{i:03d}" for i in range(150)]
    store.write([tele(m, T0 + k * 1000, good_count=i * 10 + k) for i, m in enumerate(machines) for k in range(3)])
    store.write([Point(TELEMETRY, {"site": "sby", "machine": "m-007"}, {"good_count": 999}, T0 + 500)])
    assert store.samples(SITE, "m-007", T0, T0 + 3000) == [
        (T0, {"good_count": 70}),
        (T0 + 1000, {"good_count": 71}),
        (T0 + 2000, {"good_count": 72}),
    ]
    assert store.samples("sby", "m-007", T0, T0 + 3000) == [(T0 + 500, {"good_count": 999})]
    latest = store.latest(SITE)
    assert sorted(latest) == machines
    assert latest["m-149"] == Row(T0 + 2000, {"site": SITE, "machine": "m-149"}, {"good_count": 1492})
    assert store.newest_ts(SITE) == dict.fromkeys(machines, T0 + 2000)
    assert store.newest_ts("sby") == {"m-007": T0 + 500}
    assert store.latest("sby")["m-007"].fields == {"good_count": 999}


def test_a_read_larger_than_the_servers_row_limit_comes_back_whole(store: TimeSeriesStore) -> None:
    n = 3 * ROW_LIMIT + 7
    store.write([tele("cnc-01", T0 + i * 1000, good_count=i) for i in range(n)])
    store.write([machine_status("cnc-01", T0 + i * 1000, "online", heartbeat_ms=60_000) for i in range(n)])
    store.write([agent_status("edge-1", T0 + i * 1000, "online") for i in range(n)])
    got = store.samples(SITE, "cnc-01", T0, T0 + n * 1000)
    assert got == [(T0 + i * 1000, {"good_count": i}) for i in range(n)]
    assert [r.ts_ms for r in store.statuses(SITE, "cnc-01", T0, T0 + n * 1000)] == [T0 + i * 1000 for i in range(n)]
    assert len(store.agent_statuses(SITE, "edge-1", T0, T0 + n * 1000)) == n
    # A window starting inside the data: the first ROW_LIMIT rows of it are not the first of the series.
    assert store.samples(SITE, "cnc-01", T0 + 150_000, T0 + 290_500)[0] == (T0 + 150_000, {"good_count": 150})
    assert len(store.samples(SITE, "cnc-01", T0 + 150_000, T0 + 290_500)) == 141  # 150..290


# ---- baselines before a window ------------------------------------------------------------------------------------

BASELINE_ROWS: list[tuple[int, dict[str, SignalValue]]] = [
    (T0, {"state": "RUNNING", "badge": 1001, "good_count": 1, "energy_kwh": 0.5}),
    (T0 + 1000, {"power_kw": 3.0}),
    (T0 + 2000, {"good_count": 2, "reject_count": 1}),
    (T0 + 3000, {"energy_kwh": 0.75}),
    (T0 + 4000, {"good_count": 3}),  # at the time asked about: not "before"
]


def test_last_before_takes_each_signals_own_newest_sample(store: TimeSeriesStore) -> None:
    store.write([tele("cnc-01", ts, **fields) for ts, fields in BASELINE_ROWS])
    # Before T0+4000: state and badge last at T0, good_count and reject_count at T0+2000, energy_kwh at T0+3000;
    # job was never reported. Whole rows, each once, oldest first.
    assert store.last_before(
        SITE, "cnc-01", T0 + 4000, ["state", "badge", "good_count", "reject_count", "energy_kwh", "job"]
    ) == [BASELINE_ROWS[0], BASELINE_ROWS[2], BASELINE_ROWS[3]]
    # Before T0+2000: good_count's newest is the T0 sample, power_kw's T0+1000.
    assert store.last_before(SITE, "cnc-01", T0 + 2000, {"good_count", "power_kw"}) == BASELINE_ROWS[:2]
    assert store.last_before(SITE, "cnc-01", T0 + 4001, ["good_count"]) == [BASELINE_ROWS[4]]
    assert store.last_before(SITE, "cnc-01", T0, ["state"]) == []  # nothing before the first sample
    assert store.last_before(SITE, "cnc-01", T0 + 4000, []) == []
    assert store.last_before(SITE, "cnc-02", T0 + 4000, ["state"]) == []


def test_values_before_takes_each_signals_last_value(store: TimeSeriesStore) -> None:
    store.write([tele("cnc-01", ts, **fields) for ts, fields in BASELINE_ROWS])
    assert store.values_before(SITE, "cnc-01", T0 + 4000, ["state", "good_count", "energy_kwh", "job"]) == {
        "state": "RUNNING",
        "good_count": 2,
        "energy_kwh": 0.75,
    }
    assert store.values_before(SITE, "cnc-01", T0, ["state"]) == {}
    assert store.values_before(SITE, "cnc-01", T0 + 4000, []) == {}


# ---- machine and agent statuses -----------------------------------------------------------------------------------


def test_statuses_of_a_machine_in_a_window_and_before_it(store: TimeSeriesStore) -> None:
    store.write(
        [
            machine_status("cnc-01", T0, "online", heartbeat_ms=5000),
            machine_status("cnc-01", T0 + 10_000, "unreachable", detail="timeout after 2.0 s"),
            machine_status("cnc-01", T0 + 20_000, "online", heartbeat_ms=7000),
            machine_status("cnc-02", T0 + 15_000, "online", heartbeat_ms=9000),
        ]
    )
    tags = {"site": SITE, "machine": "cnc-01"}
    online = Row(T0, tags, {"status": "online", "agent": "edge-1", "detail": "", "heartbeat_ms": 5000})
    dark = Row(T0 + 10_000, tags, {"status": "unreachable", "agent": "edge-1", "detail": "timeout after 2.0 s"})
    back = Row(T0 + 20_000, tags, {"status": "online", "agent": "edge-1", "detail": "", "heartbeat_ms": 7000})
    assert store.statuses(SITE, "cnc-01", T0, T0 + 20_000) == [online, dark]
    assert store.statuses(SITE, "cnc-01", T0 + 1, T0 + 20_001) == [dark, back]
    assert store.status_before(SITE, "cnc-01", T0 + 20_000) == dark
    assert store.status_before(SITE, "cnc-01", T0 + 20_001) == back
    assert store.status_before(SITE, "cnc-01", T0) is None
    assert store.status_before(SITE, "cnc-03", T0 + 20_001) is None


def test_heartbeat_is_the_last_one_reported_at_or_before_the_end(store: TimeSeriesStore) -> None:
    store.write(
        [
            machine_status("cnc-01", T0, "online", heartbeat_ms=5000),
            machine_status("cnc-01", T0 + 10_000, "unreachable"),  # says no heartbeat: the last reported holds
            machine_status("cnc-01", T0 + 20_000, "online", heartbeat_ms=7000),
        ]
    )
    assert store.heartbeat_ms(SITE, "cnc-01", T0 + 20_000) == 7000  # at the end counts
    assert store.heartbeat_ms(SITE, "cnc-01", T0 + 19_999) == 5000
    assert store.heartbeat_ms(SITE, "cnc-01", T0 + 10_000) == 5000
    assert store.heartbeat_ms(SITE, "cnc-01", T0 - 1) is None
    assert store.heartbeat_ms(SITE, "cnc-02", T0 + 20_000) is None


def test_agent_statuses_are_their_own_series(store: TimeSeriesStore) -> None:
    store.write(
        [
            agent_status("edge-1", T0, "online"),
            agent_status("edge-1", T0 + 60_000, "offline", detail="last will"),
            agent_status("edge-2", T0 + 30_000, "online"),
            machine_status("edge-1", T0 + 45_000, "unreachable"),  # a machine that shares the agent's id
        ]
    )
    tags = {"site": SITE, "agent": "edge-1"}
    up = Row(T0, tags, {"status": "online", "detail": ""})
    lost = Row(T0 + 60_000, tags, {"status": "offline", "detail": "last will"})
    assert store.agent_statuses(SITE, "edge-1", T0, T0 + 60_001) == [up, lost]
    assert store.agent_statuses(SITE, "edge-1", T0 + 1, T0 + 60_000) == []
    assert store.agent_status_before(SITE, "edge-1", T0 + 60_000) == up
    assert store.agent_status_before(SITE, "edge-1", T0) is None
    assert store.agent_status_before(SITE, "edge-3", T0 + 90_000) is None
    assert set(store.latest_agent_statuses(SITE)) == {"edge-1", "edge-2"}
    assert store.latest_agent_statuses(SITE)["edge-1"] == lost
    assert [r.ts_ms for r in store.statuses(SITE, "edge-1", T0, T0 + 90_000)] == [T0 + 45_000]


# ---- latest -------------------------------------------------------------------------------------------------------


def test_latest_carries_each_fields_last_value(store: TimeSeriesStore) -> None:
    # Report by exception: the newest row holds only what changed; the rest holds from older rows.
    store.write(
        [
            tele("cnc-01", T0, state="RUNNING", badge=1001, job="J-1", energy_kwh=2.5),
            tele("cnc-01", T0 + 1000, state="STOPPED", stop_reason=4),
            tele("cnc-01", T0 + 2000, energy_kwh=2.75),
            tele("cnc-02", T0 + 500, state="OFF"),
        ]
    )
    latest = store.latest(SITE)
    assert latest["cnc-01"] == Row(
        T0 + 2000,
        {"site": SITE, "machine": "cnc-01"},
        {"state": "STOPPED", "badge": 1001, "job": "J-1", "stop_reason": 4, "energy_kwh": 2.75},
    )
    assert latest["cnc-02"] == Row(T0 + 500, {"site": SITE, "machine": "cnc-02"}, {"state": "OFF"})


def test_latest_statuses_keep_the_last_heartbeat_reported(store: TimeSeriesStore) -> None:
    store.write(
        [
            machine_status("cnc-01", T0, "online", heartbeat_ms=5000),
            machine_status("cnc-01", T0 + 10_000, "unreachable", detail="no route"),
            machine_status("cnc-02", T0 + 5000, "online", heartbeat_ms=9000),
        ]
    )
    statuses = store.latest_statuses(SITE)
    assert statuses["cnc-01"] == Row(
        T0 + 10_000,
        {"site": SITE, "machine": "cnc-01"},
        {"status": "unreachable", "agent": "edge-1", "detail": "no route", "heartbeat_ms": 5000},
    )
    assert statuses["cnc-02"].fields["heartbeat_ms"] == 9000
    assert store.latest(SITE) == {}  # statuses are not telemetry


# ---- late-hour marks ----------------------------------------------------------------------------------------------

H0, H1 = T0, T0 + HOUR_MS
R1, R2 = T0 + 3 * HOUR_MS, T0 + 5 * HOUR_MS


def test_late_hours_are_marked_and_a_later_mark_overwrites(store: TimeSeriesStore) -> None:
    store.mark_late_hours(SITE, {"cnc-01": [H1, H0, H1], "cnc-02": (H1,)}, R1)
    store.mark_late_hours("sby", {"cnc-01": [H0]}, R1)
    # Oldest hour first, then by machine; the repeated H1 of cnc-01 is one mark.
    assert store.late_hours(SITE, 0) == [("cnc-01", H0, R1), ("cnc-01", H1, R1), ("cnc-02", H1, R1)]
    assert store.late_hours(SITE, R1) == []  # received after R1 only
    store.mark_late_hours(SITE, {"cnc-01": [H1]}, R2)
    assert store.late_hours(SITE, R1) == [("cnc-01", H1, R2)]
    assert store.late_hours(SITE, R1 - 1) == [("cnc-01", H0, R1), ("cnc-01", H1, R2), ("cnc-02", H1, R1)]
    assert store.late_hours(SITE, R2) == []
    assert store.late_hours("sby", 0) == [("cnc-01", H0, R1)]
    store.mark_late_hours(SITE, {}, R2)  # nothing to mark
    store.mark_late_hours(SITE, {"cnc-03": []}, R2)
    assert len(store.late_hours(SITE, 0)) == 3


def test_a_late_mark_of_an_old_hour_is_found(store: TimeSeriesStore) -> None:
    # An operator's backfill 60 days back (past the collector's skew window) still gets its hour rebuilt.
    old = T0 - 60 * 24 * HOUR_MS
    store.mark_late_hours(SITE, {"cnc-01": [old]}, R1)
    assert store.late_hours(SITE, R1 - 1) == [("cnc-01", old, R1)]


def test_late_marks_are_not_telemetry(store: TimeSeriesStore) -> None:
    store.mark_late_hours(SITE, {"cnc-01": [H0]}, R1)
    assert store.samples(SITE, "cnc-01", H0, H0 + 1) == []
    assert store.latest(SITE) == {}
    assert store.newest_ts(SITE) == {}


# ---- empty answers, bad arguments, a store that is down --------------------------------------------------------


def test_an_empty_store_answers_empty(store: TimeSeriesStore) -> None:
    assert store.ping()
    assert store.samples(SITE, "cnc-01", T0, T0 + HOUR_MS) == []
    assert store.last_before(SITE, "cnc-01", T0, ["state"]) == []
    assert store.values_before(SITE, "cnc-01", T0, ["state"]) == {}
    assert store.statuses(SITE, "cnc-01", T0, T0 + HOUR_MS) == []
    assert store.status_before(SITE, "cnc-01", T0) is None
    assert store.agent_statuses(SITE, "edge-1", T0, T0 + HOUR_MS) == []
    assert store.agent_status_before(SITE, "edge-1", T0) is None
    assert store.heartbeat_ms(SITE, "cnc-01", T0) is None
    assert store.latest(SITE) == {}
    assert store.latest_statuses(SITE) == {}
    assert store.latest_agent_statuses(SITE) == {}
    assert store.newest_ts(SITE) == {}
    assert store.late_hours(SITE, 0) == []


def test_the_edges_of_the_time_range_are_readable(store: TimeSeriesStore) -> None:
    store.write([tele("cnc-01", MIN_TS_MS, good_count=1), tele("cnc-01", MAX_TS_MS, good_count=2)])
    assert store.samples(SITE, "cnc-01", MIN_TS_MS, MAX_TS_MS + 1) == [
        (MIN_TS_MS, {"good_count": 1}),
        (MAX_TS_MS, {"good_count": 2}),
    ]
    assert store.last_before(SITE, "cnc-01", MAX_TS_MS + 1, ["good_count"]) == [(MAX_TS_MS, {"good_count": 2})]


Call = Callable[[TimeSeriesStore], Any]
HOSTILE = "m' OR machine =~ /.*/ --"
BAD_CALLS: list[tuple[str, Call, str]] = [
    ("end before start", lambda s: s.samples(SITE, "m", T0, T0 - 1), "end_ms .* before its start_ms"),
    ("end far out", lambda s: s.statuses(SITE, "m", T0, 2**62), "end_ms 4611686018427387904 is outside"),
    ("start before 2000", lambda s: s.samples(SITE, "m", 0, T0), "start_ms 0 is outside"),
    ("start as float", lambda s: s.samples(SITE, "m", float(T0), T0), "start_ms must be epoch milliseconds"),  # type: ignore[arg-type]
    ("start as bool", lambda s: s.agent_statuses(SITE, "a", True, T0), "start_ms must be epoch milliseconds"),
    ("end past 2100", lambda s: s.agent_statuses(SITE, "a", T0, MAX_TS_MS + 2), "end_ms .* is outside"),
    ("hostile machine", lambda s: s.samples(SITE, HOSTILE, T0, T0 + 1), "machine .* is not a valid id"),
    ("upper-case site", lambda s: s.latest("BDG"), "site 'BDG' is not a valid id"),
    ("empty site", lambda s: s.newest_ts(""), "site '' is not a valid id"),
    ("site as int", lambda s: s.latest_statuses(7), "site 7 is not a valid id"),  # type: ignore[arg-type]
    ("long machine", lambda s: s.status_before(SITE, "m" * 64, T0), "machine 'm+' is not a valid id"),
    ("agent with space", lambda s: s.agent_status_before(SITE, "edge 1", T0), "agent 'edge 1' is not a valid id"),
    ("agents of a bad site", lambda s: s.latest_agent_statuses("a/b"), "site 'a/b' is not a valid id"),
    ("heartbeat end far out", lambda s: s.heartbeat_ms(SITE, "m", 2**62), "end_ms .* is outside"),
    ("before far out", lambda s: s.last_before(SITE, "m", -1, ["state"]), "ts_ms -1 is outside"),
    ("reserved signal", lambda s: s.last_before(SITE, "m", T0, ["time"]), "signal 'time' is not a signal name"),
    ("hidden signal", lambda s: s.values_before(SITE, "m", T0, ["_x"]), "signal '_x' is not a signal name"),
    ("hostile signal", lambda s: s.values_before(SITE, "m", T0, ['a") FROM x; --']), "is not a signal name"),
    ("signals as a string", lambda s: s.last_before(SITE, "m", T0, "state"), "collection of names"),
    ("late hour off the hour", lambda s: s.mark_late_hours(SITE, {"m": [T0 + 1]}, T0), "not a UTC hour start"),
    ("late hours not a list", lambda s: s.mark_late_hours(SITE, {"m": T0}, T0), "collection of hour starts"),  # type: ignore[dict-item]
    ("late hour of a bad machine", lambda s: s.mark_late_hours(SITE, {"M": [T0]}, T0), "machine 'M' is not a valid id"),
    ("late hour far out", lambda s: s.mark_late_hours(SITE, {"m": [2**62]}, T0), "late hour of machine 'm'"),
    ("received far out", lambda s: s.mark_late_hours(SITE, {"m": [T0]}, -1), "received_ms -1 is outside"),
    ("since negative", lambda s: s.late_hours(SITE, -1), "since_received_ms must be"),
]


@pytest.mark.parametrize(("call", "message"), [(c, m) for _, c, m in BAD_CALLS], ids=[n for n, _, _ in BAD_CALLS])
def test_bad_arguments_are_refused_naming_them(store: TimeSeriesStore, call: Call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call(store)


@pytest.mark.parametrize(("call", "message"), [(c, m) for _, c, m in BAD_CALLS], ids=[n for n, _, _ in BAD_CALLS])
def test_bad_arguments_are_refused_before_any_io(down_store: TimeSeriesStore, call: Call, message: str) -> None:
    # A store that is down answers ValueError, not StoreUnavailable: nothing was sent.
    with pytest.raises(ValueError, match=message):
        call(down_store)


GOOD_CALLS: list[tuple[str, Call]] = [
    ("write", lambda s: s.write([tele("cnc-01", T0, good_count=1)])),
    ("samples", lambda s: s.samples(SITE, "cnc-01", T0, T0 + 1)),
    ("last_before", lambda s: s.last_before(SITE, "cnc-01", T0, ["state"])),
    ("values_before", lambda s: s.values_before(SITE, "cnc-01", T0, ["state"])),
    ("statuses", lambda s: s.statuses(SITE, "cnc-01", T0, T0 + 1)),
    ("status_before", lambda s: s.status_before(SITE, "cnc-01", T0)),
    ("agent_statuses", lambda s: s.agent_statuses(SITE, "edge-1", T0, T0 + 1)),
    ("agent_status_before", lambda s: s.agent_status_before(SITE, "edge-1", T0)),
    ("heartbeat_ms", lambda s: s.heartbeat_ms(SITE, "cnc-01", T0)),
    ("latest", lambda s: s.latest(SITE)),
    ("latest_statuses", lambda s: s.latest_statuses(SITE)),
    ("latest_agent_statuses", lambda s: s.latest_agent_statuses(SITE)),
    ("newest_ts", lambda s: s.newest_ts(SITE)),
    ("mark_late_hours", lambda s: s.mark_late_hours(SITE, {"cnc-01": [H0]}, R1)),
    ("late_hours", lambda s: s.late_hours(SITE, 0)),
]


@pytest.mark.parametrize("call", [c for _, c in GOOD_CALLS], ids=[n for n, _ in GOOD_CALLS])
def test_a_store_that_is_down_is_unavailable(down_store: TimeSeriesStore, call: Call) -> None:
    assert not down_store.ping()
    with pytest.raises(StoreUnavailable):
        call(down_store)


@pytest.mark.parametrize("call", [c for _, c in GOOD_CALLS], ids=[n for n, _ in GOOD_CALLS])
def test_every_method_answers_a_running_store(store: TimeSeriesStore, call: Call) -> None:
    call(store)  # the same calls as above do not fail against a store that is up: the test above is about "down"
