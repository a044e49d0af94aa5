"""Sessions and usage: hand-computed tables of tenant hours, running hours, parts and energy."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from api.core import Counts, MachineTotals, Session, UsageRow, classify, cut, machine_totals, sessions, usage

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


def test_sessions_of_one_machine() -> None:
    window = cut(classify(CNC, [], GAP), s(0), s(20))
    assert sessions(window, OWNERS) == [
        Session("acme", 1001, s(0), s(4), 3000, Counts(good=4, reject=1, kwh=1.0)),
        Session("batik", 2001, s(4), s(7), 2000, Counts(good=3, kwh=0.5)),
        # 9..10 RUNNING, 10..14 RUNNING (the last sample holds for max_gap).
        Session("acme", 1002, s(9), s(14), 5000, Counts(good=1, reject=1, kwh=0.5)),
    ]


def test_usage_table() -> None:
    rows = usage({"cnc-01": classify(CNC, [], GAP), "laser-01": classify(LASER, [], GAP)}, OWNERS, s(0), s(20))
    cnc_cov = 14 / 20  # known 0..14
    laser_cov = (6 + 0) / 20  # 0..2, 2..6 known; 6..20 unknown (the sample at 20 is the window end)
    assert rows == [
        UsageRow("acme", "cnc-01", 9000 / H, 8000 / H, 5, 2, 1.5, 2, cnc_cov),
        UsageRow("batik", "cnc-01", 3000 / H, 2000 / H, 3, 0, 0.5, 1, cnc_cov),
        UsageRow("unknown", "laser-01", 6000 / H, 6000 / H, 5, 0, 1.0, 1, laser_cov),
    ]


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
    assert [(r.tenant, r.sessions, r.good) for r in rows] == [("acme", 1, 3), ("unknown", 2, 5)]


def test_empty_timeline_gives_no_rows() -> None:
    assert usage({"cnc-01": classify([], [], GAP)}, OWNERS, s(0), s(20)) == []
