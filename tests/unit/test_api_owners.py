"""Badge ownership over time: Owners at span edges, transfers, and sessions and usage split where a badge moves."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from api import analytics
from api.core import Breakdown, Counts, classify, cut, pieces, sessions, usage_from_pieces
from api.core.owners import BadgeSpan, Owners, as_owners, owner_at
from api.core.timeline import Timeline
from shopfloor.config import SiteConfig
from shopfloor.memstore import MemoryStore
from shopfloor.store import TELEMETRY, Point

H = 3_600_000
GAP = 4000  # max_gap_ms: a value holds 4 s after its sample
JAKARTA = ZoneInfo("Asia/Jakarta")

# Badge 1001: acme [100, 200), nobody [200, 300), batik [300, 400), cipta from 400 on (no end).
# Badge 2001: batik [0, 50). Badge 3001: nobody ever.
SPANS = (
    BadgeSpan(1001, "batik", 300, 400),  # out of order on purpose: Owners sorts each badge's spans
    BadgeSpan(1001, "acme", 100, 200),
    BadgeSpan(1001, "cipta", 400),
    BadgeSpan(2001, "batik", 0, 50),
)
BOOK = Owners(SPANS)


@pytest.mark.parametrize(
    ("badge", "at_ms", "tenant"),
    [
        pytest.param(1001, 99, None, id="before-the-first-span"),
        pytest.param(1001, 100, "acme", id="from-is-inclusive"),
        pytest.param(1001, 199, "acme", id="last-ms-of-a-span"),
        pytest.param(1001, 200, None, id="to-is-exclusive"),
        pytest.param(1001, 299, None, id="between-spans"),
        pytest.param(1001, 300, "batik", id="next-span-begins"),
        pytest.param(1001, 399, "batik", id="last-ms-before-a-back-to-back-span"),
        pytest.param(1001, 400, "cipta", id="back-to-back-span-owns-its-first-ms"),
        pytest.param(1001, 10**13, "cipta", id="open-ended-span-never-ends"),
        pytest.param(2001, 49, "batik", id="other-badge-in-span"),
        pytest.param(2001, 50, None, id="after-the-last-span"),
        pytest.param(2001, -1, None, id="before-epoch-start-of-span"),
        pytest.param(3001, 150, None, id="badge-without-spans"),
        pytest.param(0, 150, None, id="badge-zero-is-nobody"),
    ],
)
def test_owner_at_span_edges(badge: int, at_ms: int, tenant: str | None) -> None:
    assert BOOK.at(badge, at_ms) == tenant
    assert owner_at(BOOK, badge, at_ms) == tenant


@pytest.mark.parametrize(
    ("spans", "message"),
    [
        pytest.param(
            [BadgeSpan(1001, "acme", 0, 100), BadgeSpan(1001, "batik", 50, 150)],
            "badge 1001: validity of 'acme' and 'batik' overlap",
            id="partial-overlap",
        ),
        pytest.param(
            [BadgeSpan(1001, "batik", 10, 20), BadgeSpan(1001, "acme", 0, 100)],
            "badge 1001: validity of 'acme' and 'batik' overlap",
            id="nested-given-out-of-order",
        ),
        pytest.param(
            [BadgeSpan(1001, "acme", 0), BadgeSpan(1001, "batik", 10**12, 10**12 + 1)],
            "badge 1001: validity of 'acme' and 'batik' overlap",
            id="open-ended-span-before-another",
        ),
        pytest.param(
            [BadgeSpan(1001, "acme", 5, 6), BadgeSpan(1001, "batik", 5, 7)],
            "badge 1001: validity of",
            id="same-start",
        ),
        pytest.param(
            [BadgeSpan(1001, "acme", 0, 100), BadgeSpan(1001, "acme", 99, 200)],
            "badge 1001: validity of 'acme' and 'acme' overlap",
            id="one-tenant-twice",
        ),
    ],
)
def test_overlapping_spans_of_one_badge_are_refused(spans: list[BadgeSpan], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Owners(spans)


def test_back_to_back_spans_and_other_badges_at_the_same_time_are_fine() -> None:
    book = Owners([BadgeSpan(1001, "acme", 0, 100), BadgeSpan(1001, "batik", 100), BadgeSpan(1002, "batik", 0)])
    assert [book.at(1001, 99), book.at(1001, 100), book.at(1002, 99)] == ["acme", "batik", "batik"]
    assert book.tenants() == {"acme", "batik"}
    assert (book.badges_of("acme"), book.badges_of("batik"), book.badges_of("cipta")) == ({1001}, {1001, 1002}, set())


@pytest.mark.parametrize(("to_ms"), [100, 99, -5])
def test_a_span_must_end_after_it_begins(to_ms: int) -> None:
    with pytest.raises(ValueError, match="badge 1001 of 'acme': validity ends before it begins"):
        BadgeSpan(1001, "acme", 100, to_ms)


@pytest.mark.parametrize(
    ("start_ms", "end_ms", "badge", "expected"),
    [
        # Every edge of every badge: 2001 at 0, 50; 1001 at 100, 200, 300, 400.
        pytest.param(-1, 401, None, [0, 50, 100, 200, 300, 400], id="all-badges"),
        pytest.param(0, 400, None, [50, 100, 200, 300], id="interval-is-open-at-both-ends"),
        pytest.param(-1, 401, 1001, [100, 200, 300, 400], id="one-badge"),
        pytest.param(100, 300, 1001, [200], id="one-badge-open-interval"),
        pytest.param(99, 101, 1001, [100], id="edge-just-inside"),
        pytest.param(199, 201, 2001, [], id="another-badges-edge-is-not-mine"),
        pytest.param(-1, 401, 3001, [], id="badge-without-spans"),
        pytest.param(200, 200, None, [], id="empty-interval"),
        pytest.param(300, 100, None, [], id="reversed-interval"),
        pytest.param(400, 10**13, 1001, [], id="nothing-after-an-open-end"),
    ],
)
def test_transfers(start_ms: int, end_ms: int, badge: int | None, expected: list[int]) -> None:
    assert BOOK.transfers(start_ms, end_ms, badge) == expected


def test_back_to_back_spans_of_one_tenant_are_no_transfer() -> None:
    # billing.yaml may hold a badge twice for one tenant, e.g. until 2026-11-15 and again from 2026-11-15.
    book = Owners([BadgeSpan(1001, "acme", 0, 100), BadgeSpan(1001, "acme", 100)])
    assert [book.at(1001, 99), book.at(1001, 100)] == ["acme", "acme"]
    assert book.transfers(0, 200, 1001) == []


def test_as_owners_of_a_plain_mapping_owns_for_all_time() -> None:
    plain: Mapping[int, str] = {1001: "acme", 2001: "batik"}
    book = as_owners(plain)
    assert isinstance(book, Owners)
    # From long before the epoch to far past any real timestamp.
    for at_ms in (-(10**15), 0, 1_764_522_000_000, 2**62):
        assert [book.at(1001, at_ms), book.at(2001, at_ms), book.at(3001, at_ms)] == ["acme", "batik", None]
        assert [owner_at(plain, 1001, at_ms), owner_at(plain, 3001, at_ms)] == ["acme", None]
    # Owned since before any timestamp a machine sends: nothing ever changes in a real window.
    assert book.transfers(0, 2**62) == []
    assert book.tenants() == {"acme", "batik"}
    assert as_owners(BOOK) is BOOK


# --- sessions split where a badge moves -------------------------------------------------------------------------

# Badge 1001 moves from acme to batik on 2026-12-01, at local midnight in Asia/Jakarta (UTC+7, no DST).
T = int(datetime(2026, 12, 1, tzinfo=JAKARTA).timestamp() * 1000)
MOVED = Owners([BadgeSpan(1001, "acme", 0, T), BadgeSpan(1001, "batik", T), BadgeSpan(2001, "cipta", 0)])


def s(sec: float) -> int:
    return T + int(sec * 1000)


def test_transfer_instant_is_local_midnight() -> None:
    assert datetime(2026, 11, 30, 17, tzinfo=UTC) == datetime.fromtimestamp(T / 1000, UTC)


# Logged in across midnight: the RUNNING interval [-3 s, 1 s) spans the transfer instant.
ACROSS = [
    (s(-3), {"state": "RUNNING", "badge": 1001, "good_count": 10, "energy_kwh": 5.0}),
    (s(-2), {"state": "RUNNING", "badge": 1001, "good_count": 11, "energy_kwh": 5.25}),
    (s(-1), {"state": "RUNNING", "badge": 1001, "good_count": 12, "energy_kwh": 5.5}),
    (s(0), {"state": "RUNNING", "badge": 1001, "good_count": 13, "energy_kwh": 5.75}),  # made in the last second
    (s(1), {"state": "IDLE", "badge": 1001, "good_count": 14, "energy_kwh": 6.0}),  # made in the first second
    (s(2), {"state": "IDLE", "badge": 1001, "good_count": 14, "energy_kwh": 6.0}),
    (s(3), {"state": "RUNNING", "badge": 1001, "good_count": 14, "energy_kwh": 6.0}),
    (s(4), {"state": "IDLE", "badge": 0, "good_count": 15, "energy_kwh": 6.5}),
]


def across() -> Timeline:
    return cut(classify(ACROSS, [], GAP), s(-3), s(10))


def test_a_session_across_the_transfer_becomes_one_per_tenant() -> None:
    got = sessions(across(), MOVED, machine="cnc-01")
    # Increments at -2, -1 and 0 s happened before midnight (the one at 0 s in the second before it): acme's.
    # Those at 1 s (+1 good, +0.25 kWh) and 4 s (+1 good, +0.5 kWh) happened after it: batik's.
    assert [(x.tenant, x.badge, x.start_ms, x.end_ms, x.running_ms, x.counts) for x in got] == [
        ("acme", 1001, s(-3), T, 3000, Counts(good=3, kwh=0.75)),
        ("batik", 1001, T, s(4), 2000, Counts(good=2, kwh=0.75)),
    ]
    # acme: RUNNING -3..0; batik: RUNNING 0..1, IDLE 1..3, RUNNING 3..4.
    assert [x.breakdown for x in got] == [Breakdown(running_ms=3000), Breakdown(running_ms=2000, idle_ms=2000)]
    assert [(x.oee.tenant, x.oee.pbt_ms) for x in got if x.oee] == [("acme", 3000), ("batik", 4000)]
    # Each session's pieces begin inside it: the pieces are cut at the transfer.
    assert all(x.start_ms <= p.at_ms < x.end_ms for x in got for p in x.pieces)


def test_without_the_transfer_it_is_one_session() -> None:
    (one,) = sessions(across(), {1001: "acme"})
    assert (one.tenant, one.start_ms, one.end_ms, one.running_ms, one.counts) == (
        "acme",
        s(-3),
        s(4),
        5000,
        Counts(good=5, kwh=1.5),
    )


@pytest.mark.parametrize("state_at_t", ["RUNNING", "IDLE"])
def test_a_transfer_on_an_interval_edge_ends_the_session_there(state_at_t: str) -> None:
    # The state changes (or, for RUNNING, stays and the interval merges) exactly at the transfer instant.
    samples = [
        (s(-2), {"state": "SETUP", "badge": 1001}),
        (s(0), {"state": state_at_t, "badge": 1001}),
        (s(2), {"state": "OFF", "badge": 0}),
    ]
    got = sessions(cut(classify(samples, [], GAP), s(-2), s(8)), MOVED)
    assert [(x.tenant, x.start_ms, x.end_ms) for x in got] == [("acme", s(-2), T), ("batik", T, s(2))]


@pytest.mark.parametrize(
    ("span", "tenants"),
    [
        pytest.param(BadgeSpan(1001, "acme", 0, T), ("acme", None), id="validity-ends"),  # None: never a name
        pytest.param(BadgeSpan(1001, "acme", T), (None, "acme"), id="validity-begins"),
    ],
)
def test_a_badge_is_unowned_outside_its_validity(span: BadgeSpan, tenants: tuple[str | None, str | None]) -> None:
    got = sessions(across(), Owners([span]))
    assert [(x.tenant, x.start_ms, x.end_ms, x.counts.good) for x in got] == [
        (tenants[0], s(-3), T, 3),
        (tenants[1], T, s(4), 2),
    ]


def test_another_badges_transfer_does_not_split_my_session() -> None:
    book = Owners([BadgeSpan(1001, "acme", 0), BadgeSpan(2001, "cipta", 0, T), BadgeSpan(2001, "batik", T)])
    assert book.transfers(s(-3), s(4)) == [T]
    (one,) = sessions(across(), book)
    assert (one.tenant, one.start_ms, one.end_ms) == ("acme", s(-3), s(4))


# --- usage from pieces: each piece's owner at its at_ms ----------------------------------------------------------


def ms(hours: float) -> int:
    """Hours back to whole ms (ms / H * H is within a float's rounding of ms)."""
    return round(hours * H)


def test_usage_from_pieces_cut_at_the_transfer_goes_to_each_owner() -> None:
    rows = usage_from_pieces(pieces(across(), "cnc-01", [T]), MOVED)
    # acme: -3..0 RUNNING (3 good, 0.75 kWh); batik: 0..4 (RUNNING 2 s, IDLE 2 s; 2 good, 0.75 kWh).
    # Coverage: known -3..8 (the IDLE of badge 0 holds to 4 + 4) of the 13 s window.
    assert [(r.tenant, ms(r.session_hours), ms(r.running_hours), r.good, r.kwh, r.coverage) for r in rows] == [
        ("acme", 3000, 3000, 3, 0.75, 11 / 13),
        ("batik", 4000, 2000, 2, 0.75, 11 / 13),
    ]
    assert [r.breakdown for r in rows] == [Breakdown(running_ms=3000), Breakdown(running_ms=2000, idle_ms=2000)]


def test_a_piece_belongs_to_the_owner_at_its_start() -> None:
    # A transfer at 00:30 local (17:30Z), inside an hour: pieces not cut there start where the window starts (acme's
    # time), so the whole stretch is acme's. That is why callers cut pieces at transfers (api.figures: extra_cuts).
    half = T + H // 2
    book = Owners([BadgeSpan(1001, "acme", 0, half), BadgeSpan(1001, "batik", half)])
    samples = [(half + k * 1000, {"state": "RUNNING", "badge": 1001}) for k in range(-2, 3)]
    # RUNNING from half - 2 s to half + 2 s + 4 s (the last sample holds for max_gap).
    timeline = cut(classify(samples, [], GAP), half - 2000, half + 10_000)
    whole = usage_from_pieces(pieces(timeline, "cnc-01"), book)
    assert [(r.tenant, ms(r.session_hours)) for r in whole] == [("acme", 8000)]
    split = usage_from_pieces(pieces(timeline, "cnc-01", [half]), book)
    assert [(r.tenant, ms(r.session_hours)) for r in split] == [("acme", 2000), ("batik", 6000)]


def test_the_new_owner_has_one_session_in_its_usage_row() -> None:
    rows = usage_from_pieces(pieces(across(), "cnc-01", [T]), MOVED)
    assert [(r.tenant, r.sessions) for r in rows] == [("acme", 1), ("batik", 1)]


def test_a_window_is_cut_where_a_badge_changes_owner(example_site: SiteConfig) -> None:
    # Badge 1001 moves at 10:30 local (03:30Z), inside an hour and inside the morning shift (06-14 local): only the
    # transfer cuts the stretch there. Logged in 03:20Z-03:40Z, a sample every 10 s, then logged out.
    hour = utc_ms(2026, 11, 10, 3)
    move = hour + 30 * 60_000
    store = MemoryStore()
    store.write(
        Point(TELEMETRY, {"site": "bdg", "machine": "cnc-01"}, {"state": "RUNNING", "badge": 1001}, t)
        for t in range(hour + 20 * 60_000, hour + 40 * 60_000, 10_000)
    )
    store.write([Point(TELEMETRY, {"site": "bdg", "machine": "cnc-01"}, {"state": "IDLE", "badge": 0}, move + 600_000)])
    book = Owners([BadgeSpan(1001, "acme", 0, move), BadgeSpan(1001, "batik", move)])
    (cnc01,) = [m for m in example_site.machines if m.id == "cnc-01"]
    cut_at_move = analytics.window(store, example_site, hour, hour + H, machines=[cnc01], owners=book)
    # acme 03:20-03:30, batik 03:30-03:40: 600 s each.
    rows = usage_from_pieces(cut_at_move.pieces, book)
    assert [(r.tenant, ms(r.session_hours)) for r in rows] == [("acme", 600_000), ("batik", 600_000)]
    # Not told the owners, the window is not cut there: the hour's piece starts at 03:00Z, acme's then.
    uncut = analytics.window(store, example_site, hour, hour + H, machines=[cnc01])
    assert [(r.tenant, ms(r.session_hours)) for r in usage_from_pieces(uncut.pieces, book)] == [("acme", 1_200_000)]


def utc_ms(year: int, month: int, day: int, hour: int) -> int:
    return int(datetime(year, month, day, hour, tzinfo=UTC).timestamp() * 1000)
