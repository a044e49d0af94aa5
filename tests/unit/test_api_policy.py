"""The visibility policy (api/policy.py) as tables: role x route x field, for own / other / nobody's / unowned."""

from __future__ import annotations

import ast
import re
import sys
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import pytest

from api.core import Counts, UsageRow, build_timeline, sessions
from api.policy import (
    ACCESS,
    HIDDEN,
    NOBODY,
    SCOPES,
    TENANT_FIELDS,
    Access,
    Action,
    Counters,
    Field,
    IntervalView,
    Kind,
    MachineView,
    Occupancy,
    Principal,
    Relation,
    Role,
    TotalsScope,
    access,
    booking_changeable,
    can_manage_invoices,
    can_read_invoice,
    can_see_machine_totals,
    can_see_tenant,
    listing_tenant,
    mask_interval,
    mask_intervals,
    mask_machine,
    may,
    owns,
    relation,
    sees_money,
    timeline_figures,
    visible_fields,
    visible_rows,
)
from shopfloor import config

POLICY = Path(__file__).resolve().parents[2] / "api" / "policy.py"

# A tenant may be called "unknown": it must not be mistaken for the badges nobody owns.
OWNERS = {1001: "acme", 1002: "acme", 2001: "batik", 5555: "unknown"}
ADMIN = Principal("admin", Role.ADMIN)
OPERATOR = Principal("operator", Role.OPERATOR)
AUDITOR = Principal("auditor", Role.AUDITOR)
ACME = Principal("acme-portal", Role.TENANT, "acme")
UNKNOWN_T = Principal("unknown-portal", Role.TENANT, "unknown")
ALL_SEEING = [ADMIN, OPERATOR, AUDITOR]

OWN = Occupancy.of(1001, OWNERS)  # acme's
OTHER = Occupancy.of(2001, OWNERS)  # batik's
UNOWNED = Occupancy.of(4242, OWNERS)  # nobody owns badge 4242
FREE = Occupancy.of(0, OWNERS)  # nobody logged in
NAMED_UNKNOWN = Occupancy.of(5555, OWNERS)  # the tenant called "unknown"


# -- the module stays pure -----------------------------------------------------------------------------------------


def test_policy_imports_only_stdlib_and_the_core() -> None:
    tree = ast.parse(POLICY.read_text())
    modules = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    modules |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    foreign = {m for m in modules if m.split(".")[0] not in sys.stdlib_module_names | {"__future__"}}
    assert all(m.startswith("api.core") for m in foreign), foreign


# -- roles and principals ------------------------------------------------------------------------------------------


def test_every_role_has_a_scope_and_every_key_file_role_is_a_policy_role() -> None:
    assert set(SCOPES) == set(Role)
    # deps.current_principal converts by value: a role the site file accepts must exist here.
    assert {r.value for r in config.Role} <= {r.value for r in Role}


@pytest.mark.parametrize(
    ("role", "tenant", "message"),
    [
        (Role.TENANT, None, "'acme-portal': a tenant principal needs a non-empty 'tenant'"),
        (Role.TENANT, "", "'acme-portal': a tenant principal needs a non-empty 'tenant'"),
        (Role.ADMIN, "acme", "'acme-portal': role admin must not name a tenant"),
        (Role.AUDITOR, "", "'acme-portal': role auditor must not name a tenant"),
        ("admin", None, "'acme-portal': role 'admin' is not an api.policy.Role"),  # a bare string, not a Role
        (
            config.Role.TENANT,
            "acme",
            "'acme-portal': role <Role.TENANT: 'tenant'> is not an api.policy.Role",
        ),  # the key file's enum must be converted first
    ],
)
def test_bad_principals_are_refused_naming_the_field(role: Any, tenant: str | None, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape("principal " + message)):
        Principal("acme-portal", role, tenant)


@pytest.mark.parametrize(
    ("who", "tenant", "sees"),
    [
        *[(p, t, True) for p in ALL_SEEING for t in ("acme", "batik", "unknown", None)],
        (ACME, "acme", True),
        (ACME, "batik", False),
        (ACME, "ACME", False),  # ids are compared exactly
        (ACME, "acme ", False),
        (ACME, "", False),
        (ACME, None, False),  # an unowned badge is never a tenant's own
        (ACME, "unknown", False),
        (UNKNOWN_T, "unknown", True),  # its own rows: named "unknown", owned by it
        (UNKNOWN_T, None, False),  # ...but never the unowned badges'
        (UNKNOWN_T, "acme", False),
    ],
)
def test_can_see_tenant(who: Principal, tenant: str | None, sees: bool) -> None:
    assert can_see_tenant(who, tenant) is sees


@pytest.mark.parametrize(("who", "sees"), [(ADMIN, True), (OPERATOR, True), (AUDITOR, True), (ACME, False)])
def test_machine_totals_only_for_all_seeing_roles(who: Principal, sees: bool) -> None:
    assert can_see_machine_totals(who) is sees


# -- occupancy -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("badge", "expected"),
    [
        (None, NOBODY),
        (0, NOBODY),
        (-5, NOBODY),  # the timeline treats a negative badge as none: so does the machine list
        (True, NOBODY),  # a bool is not a badge number
        (1001, Occupancy(1001, "acme", occupied=True, unowned=False)),
        (5555, Occupancy(5555, "unknown", occupied=True, unowned=False)),  # a real tenant called "unknown"
        (4242, Occupancy(4242, None, occupied=True, unowned=True)),  # nobody owns it: None, never a name
        (2**31 - 1, Occupancy(2**31 - 1, None, occupied=True, unowned=True)),
    ],
)
def test_occupancy_of_a_badge(badge: Any, expected: Occupancy) -> None:
    assert Occupancy.of(badge, OWNERS) == expected


@pytest.mark.parametrize(
    ("who", "occupancy", "expected"),
    [
        (ACME, OWN, Relation.OWN),
        (ACME, Occupancy.of(1002, OWNERS), Relation.OWN),  # acme's other badge
        (ACME, OTHER, Relation.OTHER),
        (ACME, FREE, Relation.NOBODY),
        (ACME, UNOWNED, Relation.UNOWNED),
        (ACME, HIDDEN, Relation.UNOWNED),  # masked once, it stays masked
        (UNKNOWN_T, NAMED_UNKNOWN, Relation.OWN),
        (UNKNOWN_T, UNOWNED, Relation.UNOWNED),
        (ADMIN, OWN, Relation.OTHER),  # a caller without a tenant owns nothing (it sees all the same)
    ],
)
def test_relation(who: Principal, occupancy: Occupancy, expected: Relation) -> None:
    assert relation(who, occupancy) is expected


def test_tenant_field_table_covers_every_relation_and_never_shows_counters() -> None:
    assert set(TENANT_FIELDS) == set(Relation)
    assert all(Field.COUNTERS not in shown for shown in TENANT_FIELDS.values())


# -- GET /v1/machines: role x occupant x field ---------------------------------------------------------------------


def machine(occupancy: Occupancy) -> MachineView:
    """A machine with every field filled, so that anything a rule hides shows up as None."""
    return MachineView(
        machine="cnc-01",
        link="online",
        state="RUNNING",
        last_state="RUNNING",
        last_seen_ms=1_000,
        occupancy=occupancy,
        job="J-7",
        stop_reason=3,
        counters=Counters(good_count=910_041, reject_count=91_014, energy_kwh=9104.821),
        power_kw=27.25,
    )


def shown_machine_fields(view: MachineView) -> set[str]:
    """The JSON fields of /v1/machines that carry a value."""
    plain = ("state", "last_state", "last_seen_ms", "job", "stop_reason", "power_kw")
    out = {name for name in plain if getattr(view, name) is not None}
    if view.occupancy.tenant is not None:
        out.add("tenant")
    if view.occupancy.badge is not None:
        out.add("badge")
    if view.occupancy.unowned:
        out.add("unowned")
    if view.counters != Counters():
        out.add("counters")
    return out


EVERYTHING = {"state", "last_state", "last_seen_ms", "job", "stop_reason", "power_kw", "counters"}
MACHINE_TABLE = [
    # (caller, occupant, fields with a value, occupied). Admin, operator and auditor see every field there is:
    # of a free machine there is no tenant or badge to see; of an unowned badge no tenant, but unowned: true.
    *[(p, OWN, EVERYTHING | {"tenant", "badge"}, True) for p in ALL_SEEING],
    *[(p, OTHER, EVERYTHING | {"tenant", "badge"}, True) for p in ALL_SEEING],
    *[(p, FREE, EVERYTHING, False) for p in ALL_SEEING],
    *[(p, UNOWNED, EVERYTHING | {"badge", "unowned"}, True) for p in ALL_SEEING],
    # A tenant: its own session without the cumulative counters (every tenant's history)...
    (ACME, OWN, {"state", "last_state", "last_seen_ms", "job", "stop_reason", "power_kw", "tenant", "badge"}, True),
    # ...a free machine's condition, not its job register or meters (the previous tenant's)...
    (ACME, FREE, {"state", "last_state", "last_seen_ms", "stop_reason"}, False),
    # ...and of anyone else's session, only that it is occupied.
    (ACME, OTHER, set(), True),
    (ACME, UNOWNED, set(), True),
    (ACME, NAMED_UNKNOWN, set(), True),
    (UNKNOWN_T, UNOWNED, set(), True),  # a tenant called "unknown" does not own the unowned badges
    (
        UNKNOWN_T,
        NAMED_UNKNOWN,
        {"state", "last_state", "last_seen_ms", "job", "stop_reason", "power_kw"} | {"tenant", "badge"},
        True,
    ),
]


@pytest.mark.parametrize(("who", "occupancy", "shown", "occupied"), MACHINE_TABLE)
def test_machines_fields_by_role_and_occupant(
    who: Principal, occupancy: Occupancy, shown: set[str], occupied: bool
) -> None:
    masked = mask_machine(who, machine(occupancy))
    assert shown_machine_fields(masked) == shown
    assert (masked.machine, masked.link, masked.occupancy.occupied) == ("cnc-01", "online", occupied)
    # What is shown is shown unchanged, and masking twice changes nothing more.
    full = machine(occupancy)
    for name in shown & {f.name for f in fields(MachineView)}:
        assert getattr(masked, name) == getattr(full, name), name
    assert mask_machine(who, masked) == masked


def test_a_hidden_occupant_says_nothing_but_occupied() -> None:
    masked = mask_machine(ACME, machine(OTHER))
    assert masked.occupancy == Occupancy(badge=None, tenant=None, occupied=True, unowned=False)
    # Unowned or another tenant's: a tenant cannot tell them apart.
    assert mask_machine(ACME, machine(UNOWNED)) == masked


def test_visible_fields_of_all_seeing_roles_are_all() -> None:
    for who in ALL_SEEING:
        for occupancy in (OWN, OTHER, FREE, UNOWNED):
            assert visible_fields(who, occupancy) == frozenset(Field)


# -- GET /v1/machines/{id}/timeline: intervals ----------------------------------------------------------------------


def iv(
    start: int, end: int, state: str | None, occ: Occupancy = NOBODY, job: str | None = None, stop: int | None = None
) -> IntervalView:
    return IntervalView(start, end, state, occ, job=job, stop_reason=stop)


# cnc-01, in seconds: acme idle then running, batik running then stopped (reason 7), an unowned badge running,
# nobody there with job J-X then J-Y left in the register, then silence.
INTERVALS = [
    iv(0, 1, "IDLE", OWN, "J-A"),
    iv(1, 3, "RUNNING", OWN, "J-A"),
    iv(3, 5, "RUNNING", OTHER, "J-B"),
    iv(5, 6, "STOPPED", OTHER, "J-B", 7),
    iv(6, 8, "RUNNING", UNOWNED, "J-U"),
    iv(8, 9, "IDLE", FREE, "J-X"),
    iv(9, 10, "IDLE", FREE, "J-Y"),
    iv(10, 12, "UNKNOWN"),
]


@pytest.mark.parametrize("who", ALL_SEEING)
def test_intervals_unchanged_for_all_seeing_roles(who: Principal) -> None:
    assert mask_intervals(who, INTERVALS) == INTERVALS


def test_intervals_for_a_tenant() -> None:
    assert mask_intervals(ACME, INTERVALS) == [
        iv(0, 1, "IDLE", OWN, "J-A"),
        iv(1, 3, "RUNNING", OWN, "J-A"),
        # batik's running and stopped and the unowned badge's run: one stretch, 3..8 s, only "occupied". Separate
        # intervals would show batik's running hours and when its stop (and the badge change) happened.
        iv(3, 8, None, HIDDEN),
        # Nobody there: the state shows, the job register (the previous user's) does not, so 8..9 and 9..10 merge.
        iv(8, 10, "IDLE", FREE),
        iv(10, 12, "UNKNOWN"),
    ]


def test_interval_merging_needs_touching_intervals() -> None:
    # A gap between two masked intervals (not produced by the core, which covers the window) is kept apart.
    got = mask_intervals(ACME, [iv(0, 1, "RUNNING", OTHER), iv(2, 3, "RUNNING", OTHER)])
    assert got == [iv(0, 1, None, HIDDEN), iv(2, 3, None, HIDDEN)]


def test_interval_of_a_tenant_called_unknown() -> None:
    unowned, own = iv(0, 1, "RUNNING", UNOWNED, "J-U"), iv(1, 2, "RUNNING", NAMED_UNKNOWN, "J-N")
    assert [mask_interval(UNKNOWN_T, v) for v in (unowned, own)] == [iv(0, 1, None, HIDDEN), own]


# -- GET /v1/machines/{id}/timeline: totals --------------------------------------------------------------------------

S = 1000
# cnc-01 samples, 1 s apart (max gap 4 s): acme's badge 1001 at 0-1 s, batik's 2001 at 2-3 s, unowned 4242 at 4 s,
# then 10 s of silence, and a sample at 15 s under nobody's badge.
SAMPLES: list[tuple[int, dict[str, object]]] = [
    (0 * S, {"state": "RUNNING", "badge": 1001, "good_count": 100, "reject_count": 10, "energy_kwh": 50.0}),
    (1 * S, {"state": "RUNNING", "badge": 1001, "good_count": 104, "reject_count": 11, "energy_kwh": 50.5}),
    (2 * S, {"state": "RUNNING", "badge": 2001, "good_count": 107, "reject_count": 11, "energy_kwh": 51.0}),
    (3 * S, {"state": "RUNNING", "badge": 2001, "good_count": 127, "reject_count": 13, "energy_kwh": 52.25}),
    (4 * S, {"state": "RUNNING", "badge": 4242, "good_count": 130, "reject_count": 13, "energy_kwh": 52.5}),
    (15 * S, {"state": "IDLE", "badge": 0, "good_count": 138, "reject_count": 14, "energy_kwh": 53.0}),
]
# Increments (each belongs to the interval of the sample before it):
#   at 1 s: +4 good +1 reject +0.5 kWh     in acme's interval 0-1 s
#   at 2 s: +3 good        +0.5 kWh        in acme's interval 1-2 s
#   at 3 s: +20 good +2 reject +1.25 kWh   in batik's 2-3 s
#   at 4 s: +3 good        +0.25 kWh       in batik's 3-4 s
#   at 15 s: +8 good +1 reject +0.5 kWh    across the UNKNOWN gap 8-15 s (4 s + 4 s max gap): unattributed
# Machine: 4+3+20+3+8 = 38 good, 1+2+1 = 4 reject, 0.5+0.5+1.25+0.25+0.5 = 3.0 kWh; unattributed 8, 1, 0.5.
# acme: 4+3 = 7 good, 1 reject, 1.0 kWh. batik: 23 good, 2 reject, 1.5 kWh. The unowned badge (4-8 s): nothing.


@pytest.fixture
def timeline_and_sessions() -> tuple[Any, Any]:
    timeline = build_timeline(SAMPLES, [], 0, 16 * S, 4 * S)
    return timeline, sessions(timeline, OWNERS)


@pytest.mark.parametrize("who", ALL_SEEING)
def test_timeline_totals_for_all_seeing_roles(who: Principal, timeline_and_sessions: tuple[Any, Any]) -> None:
    figures = timeline_figures(who, *timeline_and_sessions)
    assert figures.scope is TotalsScope.MACHINE
    assert figures.totals == Counts(38, 4, 3.0)
    assert figures.unattributed == Counts(8, 1, 0.5)


@pytest.mark.parametrize(
    ("who", "totals"),
    [
        (ACME, Counts(7, 1, 1.0)),
        (Principal("batik-portal", Role.TENANT, "batik"), Counts(23, 2, 1.5)),
        (Principal("cipta-portal", Role.TENANT, "cipta"), Counts()),  # no session of its own: zero, not others'
    ],
)
def test_timeline_totals_of_a_tenant_are_its_own_sessions(
    who: Principal, totals: Counts, timeline_and_sessions: tuple[Any, Any]
) -> None:
    figures = timeline_figures(who, *timeline_and_sessions)
    assert (figures.scope, figures.totals, figures.unattributed) == (TotalsScope.OWN_SESSIONS, totals, None)


@dataclass(frozen=True)
class FakeSession:
    """A session as the core gives it once unowned badges map to None (H5)."""

    tenant: str | None
    counts: Counts


def test_timeline_totals_of_a_tenant_called_unknown_exclude_unowned_sessions(
    timeline_and_sessions: tuple[Any, Any],
) -> None:
    timeline, _ = timeline_and_sessions
    mine = [FakeSession("unknown", Counts(2, 0, 0.25)), FakeSession(None, Counts(9, 9, 9.0))]
    figures = timeline_figures(UNKNOWN_T, timeline, [*mine, FakeSession("unknown", Counts(1, 1, 0.5))])
    assert figures.totals == Counts(3, 1, 0.75)  # 2+1 good, 0+1 reject, 0.25+0.5 kWh; the None session's 9s left out


# -- GET /v1/usage: rows -------------------------------------------------------------------------------------------


def row(tenant: str, machine: str = "cnc-01") -> UsageRow:
    return UsageRow(tenant, machine, 1.0, 0.5, 7, 1, 1.0, 1, 1.0)


@dataclass(frozen=True)
class Row:
    tenant: str | None
    machine: str


USAGE_ROWS = [Row("acme", "cnc-01"), Row("batik", "cnc-01"), Row(None, "brake-01"), Row("unknown", "cnc-02")]


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        *[(p, USAGE_ROWS) for p in ALL_SEEING],  # the unowned row too, as tenant None
        (ACME, [Row("acme", "cnc-01")]),
        (UNKNOWN_T, [Row("unknown", "cnc-02")]),  # its own row, never the unowned one
        (Principal("cipta-portal", Role.TENANT, "cipta"), []),
    ],
)
def test_usage_rows_by_role(who: Principal, expected: list[Row]) -> None:
    assert visible_rows(who, USAGE_ROWS) == expected


def test_visible_rows_takes_the_core_usage_rows() -> None:
    rows = [row("acme"), row("batik"), row("acme", "cnc-02")]
    assert visible_rows(ACME, rows) == [rows[0], rows[2]]
    assert visible_rows(OPERATOR, iter(rows)) == rows


# -- admin objects and invoices: role x kind x action x owner -------------------------------------------------------

BATIK = Principal("batik-portal", Role.TENANT, "batik")
R, W = Action.READ, Action.WRITE
NO, OWN_T, ALL_T = Access.NONE, Access.OWN, Access.ALL

# (kind, admin, operator, auditor, tenant) as (read, write). Admin: all; auditor: reads all, writes nothing;
# operator: usage (tenants, badges, bookings), no keys, no money; tenant: its own, writing only its bookings.
ACCESS_TABLE = [
    (Kind.TENANT, (ALL_T, ALL_T), (ALL_T, NO), (ALL_T, NO), (OWN_T, NO)),
    (Kind.BADGE, (ALL_T, ALL_T), (ALL_T, NO), (ALL_T, NO), (OWN_T, NO)),
    (Kind.KEY, (ALL_T, ALL_T), (NO, NO), (ALL_T, NO), (OWN_T, NO)),
    (Kind.BOOKING, (ALL_T, ALL_T), (ALL_T, NO), (ALL_T, NO), (OWN_T, OWN_T)),
    (Kind.TARIFF, (ALL_T, ALL_T), (NO, NO), (ALL_T, NO), (ALL_T, NO)),  # the price list a tenant pays by
    (Kind.COST_POOL, (ALL_T, ALL_T), (NO, NO), (ALL_T, NO), (NO, NO)),
    (Kind.BILLING_SETTINGS, (ALL_T, ALL_T), (NO, NO), (ALL_T, NO), (NO, NO)),
    (Kind.INVOICE, (ALL_T, ALL_T), (NO, NO), (ALL_T, NO), (OWN_T, NO)),
]


def test_access_table_covers_every_role_and_kind() -> None:
    assert set(ACCESS) == set(Role)
    assert all(set(kinds) == set(Kind) for kinds in ACCESS.values())
    assert {row[0] for row in ACCESS_TABLE} == set(Kind)


@pytest.mark.parametrize(("kind", "admin", "operator", "auditor", "tenant"), ACCESS_TABLE)
def test_access_by_role_and_kind(
    kind: Kind,
    admin: tuple[Access, Access],
    operator: tuple[Access, Access],
    auditor: tuple[Access, Access],
    tenant: tuple[Access, Access],
) -> None:
    for who, expected in ((ADMIN, admin), (OPERATOR, operator), (AUDITOR, auditor), (ACME, tenant)):
        assert (access(who, kind, R), access(who, kind, W)) == expected, (who.role, kind)


@pytest.mark.parametrize(
    ("who", "kind", "action", "owner", "allowed"),
    [
        (ACME, Kind.BOOKING, W, "acme", True),
        (ACME, Kind.BOOKING, W, "batik", False),  # another tenant's: answered as nonexistent
        (ACME, Kind.BOOKING, W, None, False),  # an object of no tenant is never a tenant's own
        (ACME, Kind.BOOKING, R, "ACME", False),  # ids compare exactly
        (ACME, Kind.BADGE, R, "acme", True),
        (ACME, Kind.BADGE, W, "acme", False),  # reading its own is not writing it
        (ACME, Kind.TARIFF, R, None, True),
        (ACME, Kind.COST_POOL, R, None, False),
        (BATIK, Kind.KEY, R, "batik", True),
        (BATIK, Kind.KEY, R, "acme", False),
        (OPERATOR, Kind.BOOKING, R, "acme", True),
        (OPERATOR, Kind.BOOKING, W, "acme", False),
        (OPERATOR, Kind.TARIFF, R, None, False),
        (AUDITOR, Kind.COST_POOL, R, None, True),
        (AUDITOR, Kind.BOOKING, W, "acme", False),
        (ADMIN, Kind.KEY, W, None, True),
        (ADMIN, Kind.BOOKING, W, "batik", True),
    ],
)
def test_may(who: Principal, kind: Kind, action: Action, owner: str | None, allowed: bool) -> None:
    assert may(who, kind, action, owner) is allowed


@pytest.mark.parametrize(
    ("who", "tenant", "owned"),
    [
        (ACME, "acme", True),
        (ACME, "batik", False),
        (ACME, None, False),
        (ACME, "", False),
        (ADMIN, None, False),
        (ADMIN, "acme", False),
        (UNKNOWN_T, "unknown", True),
    ],
)
def test_owns(who: Principal, tenant: str | None, owned: bool) -> None:
    assert owns(who, tenant) is owned


def test_money_is_never_the_operators() -> None:
    assert [sees_money(p) for p in (ADMIN, OPERATOR, AUDITOR, ACME)] == [True, False, True, True]
    # ...and every money kind is refused to the operator, read or write.
    for kind in (Kind.TARIFF, Kind.COST_POOL, Kind.BILLING_SETTINGS, Kind.INVOICE):
        assert (access(OPERATOR, kind, R), access(OPERATOR, kind, W)) == (NO, NO), kind


@pytest.mark.parametrize(
    ("who", "invoice_tenant", "readable"),
    [
        (ADMIN, "acme", True),
        (AUDITOR, "batik", True),
        (OPERATOR, "acme", False),  # usage yes, money no
        (ACME, "acme", True),
        (ACME, "batik", False),
        (BATIK, "acme", False),
        (UNKNOWN_T, "unknown", True),
    ],
)
def test_can_read_invoice(who: Principal, invoice_tenant: str, readable: bool) -> None:
    assert can_read_invoice(who, invoice_tenant) is readable


def test_only_the_admin_manages_invoices() -> None:
    assert [can_manage_invoices(p) for p in (ADMIN, OPERATOR, AUDITOR, ACME)] == [True, False, False, False]


@pytest.mark.parametrize(
    ("who", "kind", "cut_to"),
    [
        (ACME, Kind.BOOKING, "acme"),
        (ACME, Kind.TARIFF, None),
        (ADMIN, Kind.BOOKING, None),
        (OPERATOR, Kind.BADGE, None),
        (BATIK, Kind.KEY, "batik"),
    ],
)
def test_listing_tenant(who: Principal, kind: Kind, cut_to: str | None) -> None:
    assert listing_tenant(who, kind) == cut_to


NOW_MS = 1_000_000


@pytest.mark.parametrize(
    ("who", "start_ms", "changeable"),
    [
        (ACME, NOW_MS + 1, True),  # not started yet
        (ACME, NOW_MS, False),  # starts now: it has begun
        (ACME, NOW_MS - 1, False),  # billed as booked: a tenant cannot undo it
        (ADMIN, NOW_MS - 86_400_000, True),  # the admin corrects the past
    ],
)
def test_booking_changeable(who: Principal, start_ms: int, changeable: bool) -> None:
    assert booking_changeable(who, start_ms, NOW_MS) is changeable
