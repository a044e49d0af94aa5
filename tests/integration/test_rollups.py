"""Roll-ups against real InfluxDB, real SQLite and real PostgreSQL: exact, rebuilt on late data, deletable, safe.

The data is the simulator's replay of the month scenario (the agent's own reporting code on simulated reads) for
8 hours of a Monday, written to InfluxDB as the collector writes it; the late-data tests send messages through a
real collector (Mosquitto + InfluxDB). "Raw" means api.reader.raw_timeline over exactly one hour, or gather()
without roll-ups: what a query computes when nothing is rolled up.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api.core.counters import Anomaly
from api.core.pieces import HOUR_MS, HourSummary, Piece, hour_of, hour_summaries
from api.figures import gather
from api.reader import raw_timeline
from api.rollups import cli as rollup_cli
from api.rollups import job, schema
from api.rollups.store import RollupError, RollupStore, _new_piece
from collector.convert import batch_to_lines, status_to_point
from collector.registry import Registry
from collector.service import Collector
from launcher.services import Mosquitto, free_port
from shopfloor.config import SiteConfig, default_site_path, load_site
from shopfloor.contracts import Topic
from shopfloor.influx import InfluxStore, to_line
from shopfloor.mqtt import MqttLink, MqttSettings
from shopfloor.store import Point
from simulators.replay import ReplayOptions, replay_messages
from simulators.scenario import load_scenario, scenarios_dir
from simulators.world import World

pytestmark = pytest.mark.integration

SITE_PATH = default_site_path()
SID = "bdg"
# Monday 2026-11-02 05:00 Asia/Jakarta (22:00 UTC the day before): machines come on at 06:00-08:30, cnc-01 changes
# badge over lunch; 8 hours of it.
REPLAY_START = 1_793_466_000_000 + 29 * HOUR_MS
REPLAY_END = REPLAY_START + 8 * HOUR_MS
# "Now" for building the replay: 3 hours after it ends, so the job also builds closed hours of pure silence.
REPLAY_NOW = REPLAY_END + 3 * HOUR_MS
PG_DSN = os.environ.get("SHOPFLOOR_TEST_PG", "host=127.0.0.1 port=5432 user=postgres dbname=postgres")


# ---- fixtures --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site() -> SiteConfig:
    return load_site(SITE_PATH)


@pytest.fixture(scope="module")
def replay_lines(site: SiteConfig) -> list[str]:
    """Line protocol of 8 hours of the month scenario replayed at 1 s polls, as the collector writes it."""
    scenario = load_scenario(scenarios_dir() / "month.yaml", site)
    world = World(site, scenario, 1, REPLAY_START, REPLAY_END)
    lines: list[str] = []
    for message in replay_messages(world, "replay", ReplayOptions(poll_ms=1000)):
        if message.batch is not None:
            lines.extend(batch_to_lines(message.batch))
        else:
            assert message.status is not None
            lines.append(to_line(status_to_point(Topic.parse(message.topic), message.status)))
    return lines


@pytest.fixture
def filled(influx_store: InfluxStore, replay_lines: list[str]) -> InfluxStore:
    assert influx_store.write_lines(replay_lines) == []
    return influx_store


def _pg_url(name: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(PG_DSN)
    return (
        f"postgresql://{info.get('user', 'postgres')}@{info.get('host', '127.0.0.1')}:{info.get('port', 5432)}/{name}"
    )


@pytest.fixture
def db_url(business_db_url: str) -> str:
    """A fresh, empty roll-up database: a SQLite file, or a PostgreSQL database of the test's own."""
    return business_db_url


@pytest.fixture
def rollups(db_url: str) -> Iterator[RollupStore]:
    store = RollupStore(db_url)
    yield store
    store.close()


# ---- helpers ---------------------------------------------------------------------------------------------------


def raw_hour(store: InfluxStore, site: SiteConfig, machine: str, hour: int) -> HourSummary:
    """The hour as a query of just that hour computes it from raw data."""
    m = site.machine(machine)
    assert m is not None
    [summary] = hour_summaries(raw_timeline(store, site, m, hour, hour + HOUR_MS).timeline, machine)
    return summary


def build_all(store: InfluxStore, rollups: RollupStore, site: SiteConfig, now: int, **kwargs: Any) -> job.BuildReport:
    return job.run_until_done(store, rollups, site, clock=lambda: now, **kwargs)


def by_hour(pieces: list[Piece]) -> list[Piece]:
    """Pieces in hour order, each hour's in the order given (a stable sort)."""
    return sorted(pieces, key=lambda p: hour_of(p.at_ms))


def machine_ids(site: SiteConfig) -> list[str]:
    return [m.id for m in site.machines]


def all_hours(rollups: RollupStore, site: SiteConfig) -> dict[tuple[str, int], HourSummary]:
    return rollups.load(SID, machine_ids(site), 0, 2**62)


def built_at(rollups: RollupStore, machine: str) -> dict[int, int]:
    h = schema.hours
    with rollups.engine.connect() as conn:
        rows = conn.execute(sa.select(h.c.hour_ms, h.c.built_at_ms).where(h.c.site == SID, h.c.machine == machine))
        return {hour: at for hour, at in rows}


def consistent(rollups: RollupStore) -> None:
    """Every hour's piece and anomaly counts match its rows, and no piece or anomaly is left without its hour."""
    with rollups.engine.connect() as conn:
        for table, column in ((schema.pieces, "n_pieces"), (schema.anomalies, "n_anomalies")):
            counted = {
                (m, h): n
                for m, h, n in conn.execute(
                    sa.select(table.c.machine, table.c.hour_ms, sa.func.count()).group_by(
                        table.c.machine, table.c.hour_ms
                    )
                )
            }
            declared = {
                (m, h): n
                for m, h, n in conn.execute(
                    sa.select(schema.hours.c.machine, schema.hours.c.hour_ms, schema.hours.c[column])
                )
            }
            assert set(counted) <= set(declared), f"{table.name} rows without an hour"
            assert {k: n for k, n in declared.items() if n} == counted, f"{table.name} counts disagree"


# ---- exactness ---------------------------------------------------------------------------------------------------


def test_built_hours_equal_raw_and_a_window_from_rollups_equals_raw(
    filled: InfluxStore, rollups: RollupStore, site: SiteConfig
) -> None:
    report = build_all(filled, rollups, site, REPLAY_NOW)
    assert report.done and report.built > 0
    loaded = all_hours(rollups, site)
    # Every closed hour from each machine's first sample to REPLAY_NOW - context - grace, for every machine.
    first = hour_of(REPLAY_START)
    closed = hour_of(REPLAY_NOW - 600_000 - job.DEFAULT_GRACE_MS)  # context 10 min (gap 64 s) + grace 10 min
    assert {h for _, h in loaded} == set(range(first, closed, HOUR_MS))
    assert {m for m, _ in loaded} == set(machine_ids(site))
    assert report.built == len(loaded) == 5 * (closed - first) // HOUR_MS
    interesting = 0
    for (machine, hour), summary in sorted(loaded.items()):
        # repr, not ==: 5 == 5.0 would hide a type that changed on the way through the database.
        assert repr(summary) == repr(raw_hour(filled, site, machine, hour)), (machine, hour)
        interesting += any(p.known for p in summary.pieces) and any(p.good for p in summary.pieces)
    assert interesting >= 10  # the comparison covered hours with known time and parts, not just silence
    consistent(rollups)

    # The real property: any window gathered with the roll-ups equals the same window from raw.
    calendar = site.calendar_model()
    windows = [
        (REPLAY_START, REPLAY_END),  # whole hours only: all rolled
        (REPLAY_START + 17 * 60_000, REPLAY_END - 5 * 60_000),  # partial edge hours come from raw
        (REPLAY_START + 3 * HOUR_MS, REPLAY_START + 3 * HOUR_MS + 1),
        (REPLAY_START - 5 * HOUR_MS, REPLAY_NOW),  # before the data (not rolled: no data there) through the silence
    ]
    for start, end in windows:
        rolled = gather(filled, site, start, end, calendar=calendar, rollups=rollups)
        raw = gather(filled, site, start, end, calendar=calendar)
        for machine in machine_ids(site):
            # gather() lists rolled hours before the raw ones: compare hour by hour (each hour's pieces in order).
            assert repr(by_hour(rolled[machine].pieces)) == repr(by_hour(raw[machine].pieces)), (machine, start, end)
            assert rolled[machine].anomalies == raw[machine].anomalies
        if end - start > 2 * HOUR_MS:
            assert sum(f.rolled_hours for f in rolled.values()) > 0  # the roll-ups were really used
    assert (
        sum(f.rolled_hours for f in gather(filled, site, *windows[0], calendar=calendar, rollups=rollups).values())
        == 40
    )


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    start=st.integers(REPLAY_START - 2 * HOUR_MS, REPLAY_NOW - 1),
    length=st.integers(1, 9 * HOUR_MS),
)
def test_any_window_from_rollups_equals_the_window_from_raw(
    built_sqlite: tuple[InfluxStore, RollupStore], site: SiteConfig, start: int, length: int
) -> None:
    store, rollups = built_sqlite
    end = start + length
    calendar = site.calendar_model()
    rolled = gather(store, site, start, end, calendar=calendar, rollups=rollups)
    raw = gather(store, site, start, end, calendar=calendar)
    for machine in machine_ids(site):
        assert repr(by_hour(rolled[machine].pieces)) == repr(by_hour(raw[machine].pieces)), machine
        assert rolled[machine].anomalies == raw[machine].anomalies


@pytest.fixture
def built_sqlite(filled: InfluxStore, tmp_path: Path, site: SiteConfig) -> Iterator[tuple[InfluxStore, RollupStore]]:
    with RollupStore(f"sqlite:///{tmp_path / 'rollups.db'}") as rollups:
        build_all(filled, rollups, site, REPLAY_NOW)
        yield filled, rollups


def test_a_second_build_builds_nothing_and_a_later_now_builds_the_newly_closed_hours(
    filled: InfluxStore, rollups: RollupStore, site: SiteConfig
) -> None:
    first = build_all(filled, rollups, site, REPLAY_NOW)
    again = build_all(filled, rollups, site, REPLAY_NOW)
    assert again.built == 0 and again.done
    later = build_all(filled, rollups, site, REPLAY_NOW + 2 * HOUR_MS)
    assert later.built == 5 * 2  # two more closed hours of each machine
    assert len(all_hours(rollups, site)) == first.built + 10


def test_a_bounded_step_leaves_the_rest_for_the_next_and_progress_survives_a_new_store(
    filled: InfluxStore, db_url: str, site: SiteConfig
) -> None:
    with RollupStore(db_url) as rollups:
        step = job.build(filled, rollups, site, REPLAY_NOW, max_hours=7, clock=lambda: REPLAY_NOW)
        assert step.built == 7 and step.remaining > 0
        total = step.built + step.remaining
    # A restart: a new store on the same database carries on where the last step stopped.
    with RollupStore(db_url) as rollups:
        rest = build_all(filled, rollups, site, REPLAY_NOW)
        assert rest.built == total - 7 and rest.done
        assert len(all_hours(rollups, site)) == total
        # Day by day across machines: the first 7 built were the oldest hours, not one machine's whole day.
        assert rollups.get_state(SID, job.STATE_LATE) is not None


def test_delete_then_rebuild_equals_before(filled: InfluxStore, rollups: RollupStore, site: SiteConfig) -> None:
    build_all(filled, rollups, site, REPLAY_NOW)
    before = all_hours(rollups, site)
    # Part of one machine, then everything.
    middle = hour_of(REPLAY_START) + 3 * HOUR_MS
    assert rollups.delete(SID, ["cnc-01"], middle, middle + 2 * HOUR_MS) == 2
    assert ("cnc-01", middle) not in all_hours(rollups, site) and ("cnc-02", middle) in all_hours(rollups, site)
    assert rollups.delete(SID) == len(before) - 2
    assert all_hours(rollups, site) == {}
    consistent(rollups)  # the pieces went with their hours
    assert build_all(filled, rollups, site, REPLAY_NOW).built == len(before)
    assert repr(all_hours(rollups, site)) == repr(before)


def test_a_site_file_change_that_shapes_the_figures_rebuilds_that_machines_hours(
    filled: InfluxStore, rollups: RollupStore, site: SiteConfig
) -> None:
    first = build_all(filled, rollups, site, REPLAY_NOW)
    # cnc-01's heartbeat doubles: its max gap, so its UNKNOWN time, changes. Nobody else's does.
    machines = [m.model_copy(update={"heartbeat_s": 120.0}) if m.id == "cnc-01" else m for m in site.machines]
    changed = SiteConfig.model_validate({**site.model_dump(), "profiles": site.profiles, "machines": machines})
    assert job.fingerprint(changed, machines[0]) != job.fingerprint(site, site.machines[0])
    stamps = {m: built_at(rollups, m) for m in machine_ids(site)}
    report = build_all(filled, rollups, changed, REPLAY_NOW + 1)  # stamped 1 ms later: rebuilt hours show
    assert report.unbuilt_stale == first.built // 5 == report.built
    assert {m: built_at(rollups, m) == stamps[m] for m in machine_ids(site)} == {
        m: m != "cnc-01" for m in machine_ids(site)
    }
    for (machine, hour), summary in all_hours(rollups, site).items():
        assert repr(summary) == repr(raw_hour(filled, changed, machine, hour)), (machine, hour)


# ---- the database ------------------------------------------------------------------------------------------------


def _summary(machine: str, hour: int, tag: str, n: int = 3) -> HourSummary:
    pieces = tuple(
        Piece(machine, hour, "RUNNING", None, 1001, f"{tag}-{i}", None, 0, HOUR_MS // n, i, 0, 0.1 * i, 0)
        for i in range(n)
    )
    return HourSummary(machine, hour, pieces, (Anomaly(hour + 5, "good_count", 3, 9_000_000_000_000_000_001, 5),))


H0 = 1_764_547_200_000  # 2025-12-01T00:00Z


def test_save_replaces_an_hour_whole_and_hostile_text_round_trips(rollups: RollupStore) -> None:
    hostile = "'); DROP TABLE rollup_hours; --\u00e9\U0001f600\"\\"
    first = HourSummary(
        "cnc-01",
        H0,
        (
            Piece("cnc-01", H0, "UNKNOWN", "silence", 0, None, None, 0, 1000),
            Piece("cnc-01", H0, "STOPPED", None, 2**63 - 1, hostile, 4, 600_000, HOUR_MS - 1000, 2, 1, 0.1 + 0.2, 1),
        ),
        (Anomaly(H0 + 1, "energy_kwh", 1.5, 1e300, 10), Anomaly(H0 + 2, "good_count", 0, 2**70, 10, badge=1001)),
    )
    assert rollups.save(SID, [first], 1) == 1
    assert repr(rollups.load(SID, ["cnc-01"], H0, H0 + HOUR_MS)[("cnc-01", H0)]) == repr(first)
    second = _summary("cnc-01", H0, "second", n=1)
    rollups.save(SID, [second], 2)
    assert rollups.load(SID, ["cnc-01"], H0, H0 + HOUR_MS) == {("cnc-01", H0): second}
    consistent(rollups)
    # Another site's hours are its own.
    rollups.save("other", [first], 3)
    assert rollups.load(SID, ["cnc-01"], H0, H0 + HOUR_MS) == {("cnc-01", H0): second}
    assert rollups.load("other", ["cnc-01"], H0, H0 + HOUR_MS) == {("cnc-01", H0): first}


def test_load_takes_only_the_hours_and_machines_asked_for(rollups: RollupStore) -> None:
    rollups.save(SID, [_summary(m, H0 + k * HOUR_MS, f"{m}{k}") for m in ("a", "b") for k in range(5)], 1)
    assert sorted(rollups.load(SID, ["a"], H0 + HOUR_MS, H0 + 3 * HOUR_MS)) == [
        ("a", H0 + HOUR_MS),
        ("a", H0 + 2 * HOUR_MS),
    ]
    # An end inside an hour takes the hour starting before it (gather asks for hour_of(start) .. end).
    assert sorted(rollups.load(SID, ["b", "ghost"], H0 + 4 * HOUR_MS, H0 + 4 * HOUR_MS + 1)) == [
        ("b", H0 + 4 * HOUR_MS)
    ]
    assert rollups.load(SID, [], H0, H0 + 9 * HOUR_MS) == {}
    assert rollups.load(SID, ["a"], H0, H0) == {}
    with pytest.raises(ValueError, match="before start"):
        rollups.load(SID, ["a"], H0 + HOUR_MS, H0)
    assert rollups.invalidate(SID, [("a", H0), ("a", H0 + 9 * HOUR_MS), ("ghost", H0)]) == 1
    assert ("a", H0) not in rollups.load(SID, ["a"], H0, H0 + HOUR_MS)
    assert rollups.built_hours(SID, ["a"]) == {"a": [H0 + k * HOUR_MS for k in range(1, 5)]}
    cov = rollups.coverage(SID)
    assert (cov["a"].hours, cov["a"].contiguous, cov["b"].hours, cov["b"].contiguous) == (4, True, 5, True)
    consistent(rollups)


@pytest.mark.parametrize(
    ("summary", "message"),
    [
        (HourSummary("cnc-01", H0 + 1, ()), "not the start of a UTC hour"),
        (HourSummary("x" * 64, H0, ()), "not a valid id"),
        (HourSummary("cnc-01", H0, (Piece("cnc-02", H0, "IDLE", None, 0, None, None, 0, 1),)), "belongs to machine"),
        (
            HourSummary("cnc-01", H0, (Piece("cnc-01", H0 + HOUR_MS, "IDLE", None, 0, None, None, 0, 1),)),
            "not to this hour",
        ),
        (HourSummary("cnc-01", H0, (Piece("cnc-01", H0, "IDLE", None, 2**63, None, None, 0, 1),)), "badge"),
        (HourSummary("cnc-01", H0, (Piece("cnc-01", H0, "IDLE", None, 0, "a\x00b", None, 0, 1),)), "job"),
        (HourSummary("cnc-01", H0, (Piece("cnc-01", H0, "X" * 17, None, 0, None, None, 0, 1),)), "state"),
        (HourSummary("cnc-01", H0, (Piece("cnc-01", H0, "IDLE", None, 0, None, None, 0, 1, kwh=float("nan")),)), "kwh"),
        (HourSummary("cnc-01", H0, (), (Anomaly(H0, "good_count", 1, float("inf"), 1),)), "finite"),
    ],
)
def test_save_refuses_what_does_not_fit_naming_it_and_stores_nothing(
    rollups: RollupStore, summary: HourSummary, message: str
) -> None:
    good = _summary("cnc-01", H0 + HOUR_MS, "ok")
    with pytest.raises(ValueError, match=message):
        rollups.save(SID, [good, summary], 1)
    assert rollups.load(SID, ["cnc-01", "x" * 64], 0, 2**62) == {}  # nothing of the batch was written


def test_save_refuses_an_hour_given_twice(rollups: RollupStore) -> None:
    with pytest.raises(ValueError, match="given twice"):
        rollups.save(SID, [_summary("a", H0, "x"), _summary("a", H0, "y")], 1)


def test_concurrent_saves_of_the_same_hours_leave_one_whole_copy_of_each(db_url: str) -> None:
    # Two stores (two connection pools: two database clients) save the same 30 hours in turns, each with its own
    # content (pieces tagged A or B, a different number of them). However they interleave, each hour must end as
    # one writer's copy, whole: never A's hour row with B's pieces, never pieces of both.
    hours = [H0 + k * HOUR_MS for k in range(30)]
    errors: list[BaseException] = []

    def writer(tag: str, n: int) -> None:
        try:
            with RollupStore(db_url) as store:
                for round_ in range(8):
                    for k in range(0, len(hours), 5):
                        store.save(SID, [_summary("a", h, tag, n) for h in hours[k : k + 5]], round_)
        except BaseException as exc:
            errors.append(exc)

    with RollupStore(db_url) as store:  # the tables exist before the race
        threads = [threading.Thread(target=writer, args=(tag, n)) for tag, n in (("A", 3), ("B", 5))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert errors == []
        loaded = store.load(SID, ["a"], H0, H0 + 30 * HOUR_MS)
        assert len(loaded) == 30
        for summary in loaded.values():
            tags = {p.job.split("-")[0] for p in summary.pieces if p.job}
            assert len(tags) == 1, summary
            assert len(summary.pieces) == (3 if tags == {"A"} else 5)
        consistent(store)


def test_a_database_that_cannot_be_opened_is_one_clear_line(tmp_path: Path) -> None:
    cases = [
        (f"sqlite:///{tmp_path}/no/such/dir/rollups.db", "does not exist"),
        ("not a url", "is not a database URL"),
        ("mysql://root@127.0.0.1/x", "only sqlite and postgresql"),
        (f"postgresql://postgres:s3cret@127.0.0.1:{free_port()}/x", "cannot open"),
    ]
    for url, message in cases:
        with pytest.raises(RollupError) as caught:
            RollupStore(url)
        text = str(caught.value)
        assert message in text, text
        assert "\n" not in text
        assert "s3cret" not in text  # the password never reaches a log


def test_a_postgresql_url_without_a_driver_uses_psycopg() -> None:
    name = f"test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(PG_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with RollupStore(_pg_url(name)) as store:
            assert store.url.startswith("postgresql+psycopg://")
            assert store.load(SID, ["a"], H0, H0 + HOUR_MS) == {}
    finally:
        with psycopg.connect(PG_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_the_fast_piece_constructor_builds_what_piece_builds() -> None:
    rows = [
        ("cnc-01", H0, "RUNNING", None, 1001, "J-1", None, 0, 1000, 3, 1, 0.30000000000000004, 1),
        ("m", 0, "UNKNOWN", "silence", 0, None, None, 0, 0, 0, 0, 0.0, 0),
    ]
    for row in rows:
        made, real = _new_piece(*row), Piece(*row)
        assert (made, repr(made), hash(made)) == (real, repr(real), hash(real))
        with pytest.raises(AttributeError):
            made.state = "IDLE"  # type: ignore[misc]  # still frozen


# ---- build arguments -----------------------------------------------------------------------------------------------


def test_build_refuses_bad_arguments_naming_them(filled: InfluxStore, rollups: RollupStore, site: SiteConfig) -> None:
    with pytest.raises(ValueError, match="unknown machine 'nope'"):
        job.build(filled, rollups, site, REPLAY_NOW, machines=["cnc-01", "nope"])
    with pytest.raises(ValueError, match="before start"):
        job.build(filled, rollups, site, REPLAY_NOW, start_ms=REPLAY_END, end_ms=REPLAY_START)
    with pytest.raises(ValueError, match="start_ms"):
        job.build(filled, rollups, site, REPLAY_NOW, start_ms=-5)
    with pytest.raises(ValueError, match="max_hours"):
        job.build(filled, rollups, site, REPLAY_NOW, max_hours=0)
    with pytest.raises(ValueError, match="grace_ms"):
        job.build(filled, rollups, site, REPLAY_NOW, grace_ms=-1)
    assert all_hours(rollups, site) == {}


def test_a_machine_without_data_builds_nothing_and_one_machine_can_be_built_alone(
    influx_store: InfluxStore, replay_lines: list[str], rollups: RollupStore, site: SiteConfig
) -> None:
    assert (
        influx_store.write_lines(
            [line for line in replay_lines if ",machine=cnc-01," in line or "machine=cnc-01 " in line]
        )
        == []
    )
    report = build_all(influx_store, rollups, site, REPLAY_NOW, machines=["cnc-01", "cnc-02"])
    assert set(report.machines) == {"cnc-01"}
    assert {m for m, _ in all_hours(rollups, site)} == {"cnc-01"}
    assert rollups.get_state(SID, job.STATE_LATE) is None  # a partial build does not record late-mark progress


# ---- late data ---------------------------------------------------------------------------------------------------


def _recent_samples(base: int) -> list[Point]:
    """cnc-01 for 6 hours from base: a sample every 30 s; RUNNING 7 min, IDLE 2 min, STOPPED 1 min, repeating."""
    points = []
    for k in range(6 * 120):
        t = base + k * 30_000
        minute = (k // 2) % 10
        state = "RUNNING" if minute < 7 else "IDLE" if minute < 9 else "STOPPED"
        values: dict[str, Any] = {"state": state, "badge": 1001, "job": "J-1", "good_count": k, "energy_kwh": k * 0.01}
        if state == "STOPPED":
            values["stop_reason"] = 2
        points.append(Point("telemetry", {"site": SID, "machine": "cnc-01"}, values, t))
    return points


class Publisher:
    """A test-side MQTT client."""

    def __init__(self, url: str) -> None:
        self.link = MqttLink(MqttSettings.from_url(url), f"test-{uuid.uuid4().hex[:10]}")
        self.link.start()
        assert self.link.wait_connected(10)

    def publish(self, topic: Topic, payload: dict[str, Any]) -> None:
        assert self.link.publish(str(topic), json.dumps(payload).encode(), qos=1).wait(10)

    def close(self) -> None:
        self.link.stop()


def wait_for(check: Callable[[], bool], what: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def collector_for(fresh_mosquitto: Mosquitto, site: SiteConfig) -> Iterator[Callable[[InfluxStore], Collector]]:
    made: list[Collector] = []

    def make(store: InfluxStore) -> Collector:
        c = Collector(
            MqttSettings.from_url(fresh_mosquitto.url),
            store,
            client_id=f"collector-{uuid.uuid4().hex[:8]}",
            flush_interval_s=0.05,
            registry=Registry.from_site(site),
        )
        c.start()
        assert c.wait_connected(10)
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop(timeout_s=2)


def _sync(publisher: Publisher, collector: Collector) -> None:
    """Publish probes until the collector's subscription receives one."""
    start = collector.stats["received"]
    deadline = time.monotonic() + 15
    while collector.stats["received"] == start:
        assert time.monotonic() < deadline, "collector never received a probe"
        publisher.publish(
            Topic.agent_status(SID, "edge-1"),
            {"v": 1, "status": "online", "ts": int(time.time() * 1000), "agent": "edge-1"},
        )
        time.sleep(0.1)


def test_late_data_through_a_real_collector_rebuilds_its_hours_and_they_equal_raw_again(
    influx_store: InfluxStore,
    rollups: RollupStore,
    site: SiteConfig,
    fresh_mosquitto: Mosquitto,
    collector_for: Callable[[InfluxStore], Collector],
) -> None:
    now = int(time.time() * 1000)
    base = hour_of(now) - 7 * HOUR_MS
    influx_store.write(_recent_samples(base))

    def wall() -> int:  # built_at must be comparable with the collector's clock
        return int(time.time() * 1000)

    job.run_until_done(influx_store, rollups, site, clock=wall)  # every machine: late-mark progress is recorded
    before = rollups.load(SID, ["cnc-01"], base, base + 6 * HOUR_MS)
    stamps = built_at(rollups, "cnc-01")
    late = base + 2 * HOUR_MS  # K: the hour the late data lands in
    assert len(before) == 6

    collector = collector_for(influx_store)
    publisher = Publisher(fresh_mosquitto.url)
    try:
        _sync(publisher, collector)
        # Two hours old, on a time nothing was stored at: the machine stopped for a spindle fault, then ran again.
        samples = [
            {"ts": late + 17 * 60_000 + 123, "values": {"state": "STOPPED", "stop_reason": 4}},
            {"ts": late + 17 * 60_000 + 20_123, "values": {"state": "RUNNING"}},
        ]
        publisher.publish(
            Topic.telemetry(SID, "cnc-01"),
            {"v": 1, "agent": "edge-1", "site": SID, "machine": "cnc-01", "seq": 1, "samples": samples},
        )
        wait_for(lambda: any(m == "cnc-01" and h == late for m, h, _ in influx_store.late_hours(SID, 0)), "the mark")
        # The collector counts the mark once its write returned, a moment after the store shows it.
        wait_for(lambda: collector.stats["late_hours_marked"] >= 1, "the collector to count the mark")
        assert collector.stats["late_hours_marked"] == 1 and collector.stats["late_hours_pending"] == 0
        # New data, the normal case, is not marked.
        fresh = int(time.time() * 1000)
        publisher.publish(
            Topic.telemetry(SID, "cnc-02"),
            {
                "v": 1,
                "agent": "edge-1",
                "site": SID,
                "machine": "cnc-02",
                "seq": 1,
                "samples": [{"ts": fresh, "values": {"state": "IDLE"}}],
            },
        )
        wait_for(lambda: len(influx_store.samples(SID, "cnc-02", fresh, fresh + 1)) == 1, "cnc-02's new sample")
        time.sleep(0.3)
        assert collector.stats["late_hours_marked"] == 1
        assert [m for m, _, _ in influx_store.late_hours(SID, 0)] == ["cnc-01"]
    finally:
        publisher.close()

    step = job.build(influx_store, rollups, site, wall())
    # K and its neighbours K-1, K+1 (the context reaches them), and K+2: the first hour after the span with data in
    # it (nothing silent lies between, so it stops there). Older and later hours stay as they were built.
    rebuilt = {h for h, at in built_at(rollups, "cnc-01").items() if at != stamps.get(h)}
    assert rebuilt == {late - HOUR_MS, late, late + HOUR_MS, late + 2 * HOUR_MS}
    assert step.unbuilt_late == 4 and step.late_marks == 1
    after = rollups.load(SID, ["cnc-01"], base, base + 6 * HOUR_MS)
    assert after[("cnc-01", late)] != before[("cnc-01", late)]
    assert any(p.state == "STOPPED" and p.stop_reason == 4 for p in after[("cnc-01", late)].pieces)
    for hour in range(base, base + 6 * HOUR_MS, HOUR_MS):
        assert repr(after[("cnc-01", hour)]) == repr(raw_hour(influx_store, site, "cnc-01", hour)), hour
    # The next step reads the same mark again (the late window) and keeps what was rebuilt after it.
    again = job.build(influx_store, rollups, site, wall())
    assert again.unbuilt_late == 0 and again.built == 0


def test_a_late_outbox_loss_marks_every_hour_it_spans_and_a_resend_is_not_marked_again(
    influx_store: InfluxStore, fresh_mosquitto: Mosquitto, collector_for: Callable[[InfluxStore], Collector]
) -> None:
    now = int(time.time() * 1000)
    late = hour_of(now) - 5 * HOUR_MS
    collector = collector_for(influx_store)
    publisher = Publisher(fresh_mosquitto.url)
    try:
        _sync(publisher, collector)
        # The agent's outbox dropped samples from K + 10 min to K + 2 h 5 min: [ts, until] spans hours K, K+1, K+2.
        loss = {"v": 1, "status": "unreachable", "ts": late + 600_000, "agent": "edge-1", "until": late + 7_500_000}
        telemetry = {
            "v": 1,
            "agent": "edge-1",
            "site": SID,
            "machine": "press-01",
            "seq": 3,
            "samples": [{"ts": late + 1, "values": {"state": "IDLE"}}, {"ts": now, "values": {"state": "RUNNING"}}],
        }
        for _ in range(2):  # each sent twice: the same points again
            publisher.publish(Topic.machine_status(SID, "cnc-02"), loss)
            publisher.publish(Topic.telemetry(SID, "press-01"), telemetry)
        wait_for(lambda: collector.stats["written_messages"] >= 4, "all four messages written")
        wait_for(lambda: collector.stats["late_hours_marked"] >= 4, "the marks")
        time.sleep(0.3)
        marks = sorted((m, (h - late) // HOUR_MS) for m, h, _ in influx_store.late_hours(SID, 0))
        # press-01: only the hour of its old sample (the new one, now, is not late).
        assert marks == [("cnc-02", 0), ("cnc-02", 1), ("cnc-02", 2), ("press-01", 0)]
        assert collector.stats["late_hours_marked"] == 4
    finally:
        publisher.close()


def test_a_failed_mark_keeps_the_ack_and_is_written_once_the_store_takes_it(
    influx_store: InfluxStore, fresh_mosquitto: Mosquitto, collector_for: Callable[[InfluxStore], Collector]
) -> None:
    now = int(time.time() * 1000)
    late = hour_of(now) - 3 * HOUR_MS
    # A real refusal: the late_hours measurement already holds received_ms as a float, so the collector's integer
    # mark is a field type conflict (InfluxDB 400) while telemetry writes go on.
    assert influx_store.write_lines([f"late_hours,machine=zz,site={SID} received_ms=1.5 {late}"]) == []
    collector = collector_for(influx_store)
    publisher = Publisher(fresh_mosquitto.url)
    try:
        _sync(publisher, collector)
        acked = collector.stats["acked"]
        publisher.publish(
            Topic.telemetry(SID, "cnc-01"),
            {
                "v": 1,
                "agent": "edge-1",
                "site": SID,
                "machine": "cnc-01",
                "seq": 7,
                "samples": [{"ts": late + 5, "values": {"state": "IDLE"}}],
            },
        )
        wait_for(lambda: collector.stats["late_hours_pending"] == 1, "the refused mark")
        # Written and acked all the same: every message received (the probes and this one) is acked.
        wait_for(lambda: collector.stats["acked"] == collector.stats["received"] > acked, "every message acked")
        assert influx_store.samples(SID, "cnc-01", late, late + 10) == [(late + 5, {"state": "IDLE"})]
        assert collector.stats["late_hours_marked"] == 0
        httpx.post(
            f"{influx_store.url}/query", params={"db": influx_store.database, "q": "DROP MEASUREMENT late_hours"}
        ).raise_for_status()
        # Retried on the writer's idle ticks (backoff from 1 s) with nothing more arriving.
        wait_for(lambda: collector.stats["late_hours_pending"] == 0, "the retried mark", timeout_s=60)
        assert [(m, h) for m, h, _ in influx_store.late_hours(SID, 0)] == [("cnc-01", late)]
        assert collector.stats["late_hours_marked"] == 1
    finally:
        publisher.close()


# ---- the background thread and the CLI -------------------------------------------------------------------------------


def test_the_background_thread_builds_and_stops(filled: InfluxStore, rollups: RollupStore, site: SiteConfig) -> None:
    stop = job.start_rollup_thread(filled, rollups, site, interval_s=0.2, clock=lambda: REPLAY_NOW)
    try:
        wait_for(lambda: len(rollups.coverage(SID)) == 5, "every machine built", timeout_s=120)
    finally:
        started = time.monotonic()
        stop()
        assert time.monotonic() - started < 30


def test_the_background_thread_logs_a_failing_store_once(
    rollups: RollupStore, site: SiteConfig, caplog: pytest.LogCaptureFixture
) -> None:
    dead = InfluxStore(f"http://127.0.0.1:{free_port()}", "nothing", timeout_s=0.5)
    caplog.set_level(logging.WARNING, logger="api.rollups.job")
    stop = job.start_rollup_thread(dead, rollups, site, interval_s=0.05)
    try:
        time.sleep(1.0)
    finally:
        stop()
        dead.close()
    warnings = [r for r in caplog.records if r.name == "api.rollups.job"]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "unreachable" in warnings[0].getMessage()


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="shopfloor")
    rollup_cli.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code = args.func(args)
    out, err = capsys.readouterr()
    return code, out, err


def _common(influx: InfluxStore, db_url: str) -> list[str]:
    return ["--site", str(SITE_PATH), "--influx-url", influx.url, "--influx-db", influx.database, "--db-url", db_url]


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def test_cli_build_status_delete_rebuild(
    filled: InfluxStore, db_url: str, site: SiteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    common = _common(filled, db_url)
    span = ["--from", _iso(REPLAY_START), "--to", _iso(REPLAY_END)]
    code, out, _ = _cli(["rollup", "build", *common, *span], capsys)
    assert code == 0 and "built 40 machine-hour(s)" in out
    code, out, _ = _cli(["rollup", "status", *common, "--json"], capsys)
    status = json.loads(out)
    assert code == 0 and {r["machine"]: r["built_hours"] for r in status["machines"]} == {
        m: 8 for m in machine_ids(site)
    }
    code, out, _ = _cli(
        [
            "rollup",
            "delete",
            *common,
            "--machine",
            "cnc-01",
            "--from",
            _iso(REPLAY_START),
            "--to",
            _iso(REPLAY_START + 2 * HOUR_MS),
        ],
        capsys,
    )
    assert code == 0 and "deleted 2 machine-hour(s)" in out
    code, out, _ = _cli(["rollup", "rebuild", *common, "--machine", "cnc-01", *span], capsys)
    assert code == 0 and "built 8 machine-hour(s)" in out
    code, out, _ = _cli(["rollup", "status", *common], capsys)
    assert code == 0 and "cnc-01" in out and "brake-01" in out
    with RollupStore(db_url) as rollups:
        assert len(all_hours(rollups, site)) == 40
        for (machine, hour), summary in all_hours(rollups, site).items():
            assert repr(summary) == repr(raw_hour(filled, site, machine, hour))


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["build", "--machine", "nope"], 2, "--machine 'nope': no such machine"),
        (["rebuild", "--from", "2026-11-03", "--to", "2026-11-02"], 2, "is not after --from"),
        (["rebuild", "--from", "2026-11-03"], 2, "give both --from and --to"),
        (["build", "--from", "yesterday"], 2, "--from 'yesterday': not an ISO date"),
        (["build", "--step-hours", "0"], 2, "--step-hours must be at least 1"),
        (["delete", "--db-url", "sqlite:////no/such/dir/x.db"], 1, "does not exist"),
        (["status", "--db-url", "postgresql://postgres@127.0.0.1:1/x"], 1, "cannot open"),
    ],
)
def test_cli_refuses_bad_input_with_one_line(
    influx_store: InfluxStore,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    code: int,
    message: str,
) -> None:
    common = _common(influx_store, f"sqlite:///{tmp_path / 'r.db'}")
    if "--db-url" in argv:
        common = common[:-2]
    got, out, err = _cli(["rollup", argv[0], *common, *argv[1:]], capsys)
    assert got == code
    assert message in err and err.count("\n") == 1, err
    assert out == ""


_RUN_CLI = (
    "import argparse, sys\n"
    "from api.rollups import cli\n"
    "p = argparse.ArgumentParser(prog='shopfloor')\n"
    "cli.add_parser(p.add_subparsers(dest='command', required=True))\n"
    "a = p.parse_args(sys.argv[1:])\n"
    "sys.exit(a.func(a))\n"
)


def test_two_processes_building_at_once_do_not_corrupt(filled: InfluxStore, db_url: str, site: SiteConfig) -> None:
    RollupStore(db_url).close()  # the tables exist before the race: it is about the rows
    argv = [sys.executable, "-c", _RUN_CLI, "rollup", "build", *_common(filled, db_url)]
    argv += ["--from", _iso(REPLAY_START), "--to", _iso(REPLAY_END), "--step-hours", "2"]
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=240) for p in procs]
    for proc, (_out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err
    with RollupStore(db_url) as rollups:
        consistent(rollups)
        loaded = all_hours(rollups, site)
        assert len(loaded) == 40
        for (machine, hour), summary in loaded.items():
            assert repr(summary) == repr(raw_hour(filled, site, machine, hour))
