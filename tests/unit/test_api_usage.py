"""Sessions and usage: hand-computed tables of tenant hours, running hours, parts, energy, time by state and OEE."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from api.core import (
    Breakdown,
    Counts,
    MachineTotals,
    Session,
    UsageRow,
    classify,
    cut,
    hour_timelines,
    machine_totals,
    pieces,
    sessions,
    usage,
    usage_from_pieces,
)

T0 = 1_764_291_600_000
GAP = 4000
H = 3_600_000
OWNERS = {1001: "acme", 1002: "acme", 2001: "batik"}


def s(sec: float) -> int:
    return T0 + int(sec * 1000)


def sample(sec: float, state: str, badge: int, good: int, rej: int, kwh: float) -> tuple[int, Mapping[str, object]]:
    return (s(sec), {"state": state, "badge": badge, "good_count": good, "reject_count": rej, "energy_kwh": kwh})


CNC = [
    sample(0, "IDLE", 1001, 0, 0, 1.0),
    sample(1, "RUNNING", 1001, 0, 0, 1.0),
    sample(2, "RUNNING", 1001, 2, 1, 1.5),
    sample(3, "RUNNING", 1001, 4, 1, 2.0),
    sample(4, "IDLE", 2001, 4, 1, 2.0),
    sample(5, "RUNNING", 2001, 4, 1, 2.25),
    sample(6, "RUNNING", 2001, 7, 1, 2.5),
    sample(7, "IDLE", 0, 7, 1, 2.5),
    sample(8, "IDLE", 0, 8, 1, 2.5),  # a part made with nobody logged in
    sample(9, "RUNNING", 1002, 8, 1, 2.5),  # acme again, with its other badge: a second session
    sample(10, "RUNNING", 1002, 9, 2, 3.0),
]
LASER = [
    sample(0, "RUNNING", 9999, 0, 0, 0.0),  # a badge nobody owns
    sample(2, "RUNNING", 9999, 5, 0, 1.0),
    sample(20, "RUNNING", 9999, 8, 0, 2.0),  # after an 18 s silence: counted, not attributed
]


def core(row: UsageRow) -> tuple[object, ...]:
    """The fields /v1/usage has always had."""
    return (
        row.tenant,
        row.machine,
        row.session_hours,
        row.running_hours,
        row.good,
        row.reject,
        row.kwh,
        row.sessions,
        row.coverage,
    )


def test_sessions_of_one_machine() -> None:
    window = cut(classify(CNC, [], GAP), s(0), s(20))
    got = sessions(window, OWNERS)
    assert [(x.tenant, x.badge, x.start_ms, x.end_ms, x.running_ms, x.counts) for x in got] == [
        ("acme", 1001, s(0), s(4), 3000, Counts(good=4, reject=1, kwh=1.0)),
        ("batik", 2001, s(4), s(7), 2000, Counts(good=3, kwh=0.5)),
        # 9..10 RUNNING, 10..14 RUNNING (the last sample holds for max_gap).
        ("acme", 1002, s(9), s(14), 5000, Counts(good=1, reject=1, kwh=0.5)),
    ]
    # Time by state: 0..1 IDLE, 1..4 RUNNING; 4..5 IDLE, 5..7 RUNNING; 9..14 RUNNING.
    assert [x.breakdown for x in got] == [
        Breakdown(running_ms=3000, idle_ms=1000),
        Breakdown(running_ms=2000, idle_ms=1000),
        Breakdown(running_ms=5000),
    ]
    assert all(isinstance(x, Session) and x.breakdown.total_ms == x.duration_ms for x in got)


def test_a_session_has_its_oee_on_the_session_basis() -> None:
    window = cut(classify(CNC, [], GAP), s(0), s(20))
    first = sessions(window, OWNERS, machine="cnc-01", ideal_cycle_ms=lambda machine, job: 500)[0]
    assert first.oee is not None
    # PBT = the session, 4 s; APT = RUNNING 3 s; 5 parts (4 good) at an ideal 0.5 s = 2.5 s.
    # A = 3/4, E = 2.5/3, Q = 4/5; OEE = 0.75 x 0.8333 x 0.8 = 0.5 (= 4 x 0.5 s / 4 s).
    assert (first.oee.machine, first.oee.tenant, first.oee.basis) == ("cnc-01", "acme", "session")
    assert (first.oee.pbt_ms, first.oee.apt_ms, first.oee.produced) == (4000, 3000, 5)
    assert first.oee.oee == pytest.approx(0.5)
    # IDLE 1 s (no operator... a tenant logged in and idle) + speed loss 0.5 s + rejects 0.5 s + 2 s good = 4 s.
    assert {k: v for k, v in first.oee.losses.items() if v} == {"no_operator": 1000, "speed_loss": 500, "rejects": 500}
    # Without ideal cycles: availability still, no effectiveness, and the flag says why.
    plain = sessions(window, OWNERS)[0].oee
    assert plain is not None
    assert (plain.availability, plain.effectiveness, plain.flags) == (0.75, None, ("no_ideal_cycle",))


def test_usage_table() -> None:
    rows = usage({"cnc-01": classify(CNC, [], GAP), "laser-01": classify(LASER, [], GAP)}, OWNERS, s(0), s(20))
    cnc_cov = 14 / 20  # known 0..14
    laser_cov = (6 + 0) / 20  # 0..2, 2..6 known; 6..20 unknown (the sample at 20 is the window end)
    assert [core(r) for r in rows] == [
        ("acme", "cnc-01", 9000 / H, 8000 / H, 5, 2, 1.5, 2, cnc_cov),
        ("batik", "cnc-01", 3000 / H, 2000 / H, 3, 0, 0.5, 1, cnc_cov),
        (None, "laser-01", 6000 / H, 6000 / H, 5, 0, 1.0, 1, laser_cov),  # an unowned badge: tenant None
    ]
    acme, batik, unowned = rows
    assert acme.breakdown == Breakdown(running_ms=8000, idle_ms=1000)
    assert batik.breakdown == Breakdown(running_ms=2000, idle_ms=1000)
    assert unowned.breakdown == Breakdown(running_ms=6000)


def test_usage_rows_carry_their_sessions_oee() -> None:
    rows = usage({"cnc-01": classify(CNC, [], GAP)}, OWNERS, s(0), s(20), ideal_cycle_ms=lambda machine, job: 500)
    acme = rows[0].oee
    assert acme is not None
    # acme's two sessions: PBT 4 + 5 = 9 s, APT 3 + 5 = 8 s, 7 parts (5 good) x 0.5 s = 3.5 s.
    # A = 8/9, E = 3.5/8, Q = 5/7; OEE = 5 x 0.5 s / 9 s = 0.2778.
    assert (acme.tenant, acme.machine, acme.pbt_ms, acme.apt_ms, acme.produced) == ("acme", "cnc-01", 9000, 8000, 7)
    assert acme.oee == pytest.approx(2.5 / 9)
    assert sum(acme.losses.values()) + acme.ideal_good_ms == acme.pbt_ms


def test_machine_totals_show_what_no_session_claims() -> None:
    assert machine_totals("cnc-01", classify(CNC, [], GAP), s(0), s(20)) == MachineTotals(
        "cnc-01", 14 / 20, Counts(good=9, reject=2, kwh=2.0), Counts(good=1), Counts()
    )
    laser = machine_totals("laser-01", classify(LASER, [], GAP), s(0), s(20))
    assert laser.total == Counts(good=8, kwh=2.0)
    assert laser.unattributed == Counts(good=3, kwh=1.0)


def test_usage_parts_add_up_to_machine_totals() -> None:
    full = classify(CNC, [], GAP)
    rows = usage({"cnc-01": full}, OWNERS, s(0), s(20))
    totals = machine_totals("cnc-01", full, s(0), s(20))
    session_good = sum(r.good for r in rows)
    assert session_good + totals.no_badge.good + totals.unattributed.good == totals.total.good


@pytest.mark.parametrize("split", [1.5, 4, 6.5, 9.25])
def test_usage_is_additive_over_adjacent_windows(split: float) -> None:
    full = {"cnc-01": classify(CNC, [], GAP)}
    whole = usage(full, OWNERS, s(0), s(20))
    halves = usage(full, OWNERS, s(0), s(split)) + usage(full, OWNERS, s(split), s(20))
    for tenant in ("acme", "batik"):
        mine = [r for r in halves if r.tenant == tenant]
        (total,) = [r for r in whole if r.tenant == tenant]
        assert sum(r.session_hours for r in mine) == pytest.approx(total.session_hours)
        assert sum(r.running_hours for r in mine) == pytest.approx(total.running_hours)
        assert sum(r.good for r in mine) == total.good
        assert sum(r.reject for r in mine) == total.reject
        assert sum(r.kwh for r in mine) == pytest.approx(total.kwh)


def test_badge_mapping_is_applied_at_compute_time() -> None:
    full = {"cnc-01": classify(CNC, [], GAP)}
    rows = usage(full, {2001: "acme"}, s(0), s(20))
    assert [(r.tenant, r.sessions, r.good) for r in rows] == [("acme", 1, 3), (None, 2, 5)]


def test_a_tenant_called_unknown_is_an_ordinary_tenant() -> None:
    # The placeholder name of old: a real tenant may be called so, and gets its own badges' rows only.
    full = {"cnc-01": classify(CNC, [], GAP), "laser-01": classify(LASER, [], GAP)}
    rows = usage(full, {1001: "unknown", 1002: "unknown"}, s(0), s(20))
    assert [(r.tenant, r.machine, r.sessions, r.good) for r in rows] == [
        ("unknown", "cnc-01", 2, 5),
        (None, "cnc-01", 1, 3),  # batik's badge, owned by nobody here
        (None, "laser-01", 1, 5),  # the unowned badge's parts are not "unknown"'s
    ]
    assert [x.tenant for x in sessions(cut(full["laser-01"], s(0), s(20)), {1001: "unknown"})] == [None]


def test_empty_timeline_gives_no_rows() -> None:
    assert usage({"cnc-01": classify([], [], GAP)}, OWNERS, s(0), s(20)) == []
    assert usage_from_pieces([], OWNERS) == []


# --- from pieces of block-local timelines (what the roll-ups serve) ---------------------------------------------


def hourly_rows(start: float, end: float) -> list[UsageRow]:
    got = []
    for machine, samples in (("cnc-01", CNC), ("laser-01", LASER)):
        got += pieces(hour_timelines(samples, [], s(start), s(end), GAP), machine)
    return usage_from_pieces(got, OWNERS, ideal_cycle_ms=lambda machine, job: 500)


def test_usage_from_pieces_equals_usage_from_timelines() -> None:
    # Every session here begins inside the window, so both count them alike (see the next test).
    old = usage(
        {"cnc-01": classify(CNC, [], GAP), "laser-01": classify(LASER, [], GAP)},
        OWNERS,
        s(0),
        s(20),
        ideal_cycle_ms=lambda machine, job: 500,
    )
    assert hourly_rows(0, 20) == old
    assert [core(r) for r in old] == [
        ("acme", "cnc-01", 9000 / H, 8000 / H, 5, 2, 1.5, 2, 14 / 20),
        ("batik", "cnc-01", 3000 / H, 2000 / H, 3, 0, 0.5, 1, 14 / 20),
        (None, "laser-01", 6000 / H, 6000 / H, 5, 0, 1.0, 1, 6 / 20),
    ]


def test_a_session_running_at_the_window_start_is_counted_where_it_begins() -> None:
    # From 2 s: acme's first session (0..4) runs at the window start. A plain timeline cut to the window counts it
    # (it cannot see it began before); block-local pieces count it in the window it began in, so sums add up.
    plain = usage({"cnc-01": classify(CNC, [], GAP)}, OWNERS, s(2), s(20))
    assert [(r.tenant, r.sessions) for r in plain] == [("acme", 2), ("batik", 1)]
    hourly = [r for r in hourly_rows(2, 20) if r.machine == "cnc-01"]
    assert [(r.tenant, r.sessions) for r in hourly] == [("acme", 1), ("batik", 1)]
    assert [(r.tenant, r.sessions) for r in hourly_rows(0, 2) if r.machine == "cnc-01"] == [("acme", 1)]


@pytest.mark.parametrize("split", [0.5, 1.5, 4, 6.5, 9.25, 13, 19])
def test_block_local_usage_is_additive_over_adjacent_windows_sessions_too(split: float) -> None:
    whole = hourly_rows(0, 20)
    halves = hourly_rows(0, split) + hourly_rows(split, 20)
    for row in whole:
        mine = [r for r in halves if (r.tenant, r.machine) == (row.tenant, row.machine)]
        assert sum(r.sessions for r in mine) == row.sessions
        assert sum(r.good for r in mine) == row.good
        assert sum(r.reject for r in mine) == row.reject
        assert sum(r.kwh for r in mine) == row.kwh  # dyadic energy: exact
        assert sum(r.session_hours for r in mine) * H == pytest.approx(row.session_hours * H, abs=1e-6)
        assert sum(r.breakdown.running_ms for r in mine) == row.breakdown.running_ms
        assert sum(r.breakdown.idle_ms for r in mine) == row.breakdown.idle_ms
        assert row.oee is not None
        assert sum(r.oee.pbt_ms for r in mine if r.oee) == row.oee.pbt_ms
        assert sum(r.oee.ideal_good_ms for r in mine if r.oee) == row.oee.ideal_good_ms


def test_stopped_time_is_broken_down_by_stop_reason() -> None:
    samples = [
        (s(0), {"state": "RUNNING", "badge": 1001, "stop_reason": 0}),
        (s(2), {"state": "STOPPED", "badge": 1001, "stop_reason": 4}),
        (s(5), {"state": "STOPPED", "badge": 1001, "stop_reason": 12}),
        (s(6), {"state": "SETUP", "badge": 1001, "stop_reason": 0}),
        (s(8), {"state": "STOPPED", "badge": 1001}),  # no stop reason given: 0 still holds
        # Every value must come again within max_gap (4 s) or it lapses: the stop reason of 6 is repeated here.
        (s(9), {"state": "MAINTENANCE", "badge": 1001, "stop_reason": 0}),
        (s(10), {"state": "OFF", "badge": 1001, "stop_reason": 0}),
    ]
    (row,) = usage_from_pieces(pieces(hour_timelines(samples, [], s(0), s(12), GAP), "cnc-01"), OWNERS)
    # RUNNING 0..2; STOPPED 2..5 (4), 5..6 (12), 8..9 (0); SETUP 6..8; MAINTENANCE 9..10; OFF 10..12 (holds 4 s).
    assert row.breakdown == Breakdown(
        running_ms=2000, setup_ms=2000, stopped_ms=((0, 1000), (4, 3000), (12, 1000)), off_ms=2000, maintenance_ms=1000
    )
    assert row.breakdown.stopped_total_ms == 5000
    assert row.breakdown.total_ms == row.session_hours * H == 12_000
