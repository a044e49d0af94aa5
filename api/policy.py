"""Who may see what: every visibility rule of the API in one pure module (no I/O, no web framework).

Routes, and later the live stream and the OEE routes, build plain views of what the store holds, then ask this
module what the caller may see of them. Nothing else decides visibility.

Roles (``Role``):
- ``admin`` and ``operator`` see everything: every machine, badge, tenant, job, counter and machine-wide figure.
- ``auditor`` (DESIGN.md: read-only usage and invoices) is treated like ``operator`` for machines and usage for now:
  no route writes anything yet, so read-only holds trivially; whether an auditor should see live machine detail is
  to be decided when invoices land (one row of ``SCOPES``).
- ``tenant`` sees only its own sessions' figures. Of a machine, by who is at it (``Relation``):

  =============  =====  ===========  ======================  ===  =====  ========  =========
  occupant       state  stop reason  tenant, badge, unowned  job  power  counters  last_seen
  =============  =====  ===========  ======================  ===  =====  ========  =========
  own badge      yes    yes          yes                     yes  yes    no        yes
  nobody         yes    yes          (nobody)                no   no     no        yes
  other tenant   no     no           no                      no   no     no        no
  unowned badge  no     no           no                      no   no     no        no
  =============  =====  ===========  ======================  ===  =====  ========  =========

  Always shown: the machine's id, ``link`` and ``occupied``. Why each "no":

  * Cumulative counters (``good_count``, ``reject_count``, ``energy_kwh``) are the machine's whole production
    history: two readings taken before and after another tenant's session give that session's parts and energy.
    So no tenant sees them, not on a free machine and not during its own session either (its own parts are its
    sessions' counts: the timeline's ``totals`` and its ``/v1/usage`` rows).
  * Of a free machine, state and stop reason tell whether it can be booked; its job register and power meter may
    still hold the previous tenant's job and load, so they stay hidden.
  * Of another tenant's (or an unowned badge's) session only ``occupied``: the state over time would give its
    running hours, and ``last_seen`` would too (telemetry is reported by exception: a new sample arrives when a
    signal changes, so its time marks each part made).
  * Timeline intervals masked alike become equal and merge, so nobody learns when another tenant's state, job or
    badge changed.

Figures: machine-wide figures (a timeline's totals over all sessions, ``unattributed``, the usage route's machine
totals with ``no_badge`` and counter anomalies) only for roles that see everything. A tenant's timeline ``totals``
are the sum of its own sessions' counts in the window (``TotalsScope.OWN_SESSIONS``), the same figures its usage
rows sum; its ``unattributed`` is omitted (parts nobody can attribute are nobody's to show to a tenant). Rows of
figures (usage rows, sessions, OEE rows) are visible to a tenant only when they are its own (``can_see_tenant``).

Unowned badges: a badge no tenant owns maps to tenant ``None`` with ``unowned`` set, never to a placeholder name
(a tenant may be called "unknown"). A ``None`` tenant is never a tenant key's own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Literal, Protocol, TypeVar

from api.core.counters import Counts
from api.core.owners import OwnerBook, owner_at
from api.core.timeline import Timeline, sum_counts

Link = Literal["online", "unreachable", "stale"]


class Role(StrEnum):
    """What an API key's holder is (the values of shopfloor.config.Role)."""

    ADMIN = "admin"
    OPERATOR = "operator"
    AUDITOR = "auditor"
    TENANT = "tenant"


class Scope(StrEnum):
    """How much of the site a role sees."""

    ALL = "all"  # every machine, tenant and figure
    OWN_TENANT = "own-tenant"  # its own tenant's sessions; of others only "occupied"


# One row per role: adding a role is adding a row (a test checks every Role has one).
SCOPES: Mapping[Role, Scope] = {
    Role.ADMIN: Scope.ALL,
    Role.OPERATOR: Scope.ALL,
    Role.AUDITOR: Scope.ALL,  # for now; see the module docstring
    Role.TENANT: Scope.OWN_TENANT,
}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the API key's name, role and (for tenant keys only) tenant."""

    name: str
    role: Role
    tenant: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.role, Role):
            raise ValueError(
                f"principal {self.name!r}: role {self.role!r} is not an api.policy.Role; convert it with Role(value) "
                f"(one of {', '.join(Role)})"
            )
        if self.role is Role.TENANT and not self.tenant:
            raise ValueError(f"principal {self.name!r}: a tenant principal needs a non-empty 'tenant'")
        if self.role is not Role.TENANT and self.tenant is not None:
            raise ValueError(f"principal {self.name!r}: role {self.role} must not name a tenant")


def sees_everything(principal: Principal) -> bool:
    """Return whether principal sees every machine, tenant and machine-wide figure."""
    return SCOPES[principal.role] is Scope.ALL


def can_see_tenant(principal: Principal, tenant: str | None) -> bool:
    """Return whether principal may see figures of tenant (None: an unowned badge, never a tenant's own)."""
    if sees_everything(principal):
        return True
    return tenant is not None and tenant == principal.tenant


class Owned(Protocol):
    """Anything whose figures belong to one tenant (None: an unowned badge): usage rows, sessions, OEE rows."""

    @property
    def tenant(self) -> str | None: ...


OwnedT = TypeVar("OwnedT", bound=Owned)


def visible_rows(principal: Principal, rows: Iterable[OwnedT]) -> list[OwnedT]:
    """Keep the rows principal may see, in order (a tenant key: only its own tenant's)."""
    return [row for row in rows if can_see_tenant(principal, row.tenant)]


class NotVisible(LookupError):
    """What was asked for does not exist for this caller: answer as for something nonexistent (404)."""


def figures_tenant(principal: Principal, requested: str | None, tenants: Iterable[str]) -> str | None:
    """The tenant whose sessions a figure (OEE, usage) may cover: a tenant key's own, else the one requested.

    None: every tenant's (and, on the calendar basis, the machine's whole planned time). Raise NotVisible for a
    tenant that does not exist or is not the caller's: the same answer for both, so ids cannot be probed.
    """
    if requested is not None and requested not in set(tenants):
        raise NotVisible(requested)
    if SCOPES[principal.role] is Scope.OWN_TENANT:
        if requested is not None and requested != principal.tenant:
            raise NotVisible(requested)
        return principal.tenant
    return requested


def can_see_machine_totals(principal: Principal) -> bool:
    """Return whether principal sees machine-wide figures: all-session totals, no-badge, unattributed, anomalies."""
    return sees_everything(principal)


# -- occupancy ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Occupancy:
    """Who is logged in at a machine: the badge and the tenant owning it.

    badge None: nobody (or hidden); tenant None: nobody, an unowned badge (``unowned``) or hidden.
    """

    badge: int | None = None
    tenant: str | None = None
    occupied: bool = False
    unowned: bool = False

    @classmethod
    def of(cls, badge: int | None, badge_owner: OwnerBook, at_ms: int = 0) -> Occupancy:
        """Return the occupancy of a badge reading (None or 0: nobody), its tenant (at at_ms) from badge_owner."""
        # The same rule as the timeline's: only a positive integer is a badge; 0 means nobody is logged in.
        if badge is None or isinstance(badge, bool) or badge <= 0:
            return NOBODY
        tenant = owner_at(badge_owner, badge, at_ms)
        return cls(badge, tenant, occupied=True, unowned=tenant is None)


NOBODY = Occupancy()
HIDDEN = Occupancy(occupied=True)  # someone is there, not the caller's to know who


class Relation(StrEnum):
    """How the occupant of a machine (or of an interval) stands to the caller."""

    NOBODY = "nobody"  # no badge logged in
    OWN = "own"  # a badge of the caller's own tenant
    OTHER = "other"  # another tenant's badge (or any badge, for a caller without a tenant)
    UNOWNED = "unowned"  # a badge no tenant owns


def relation(principal: Principal, occupancy: Occupancy) -> Relation:
    """Return how occupancy stands to principal."""
    if not occupancy.occupied:
        return Relation.NOBODY
    if occupancy.unowned or occupancy.tenant is None:
        return Relation.UNOWNED
    if principal.tenant is not None and occupancy.tenant == principal.tenant:
        return Relation.OWN
    return Relation.OTHER


class Field(StrEnum):
    """A group of maskable fields of a machine or interval view (id, link and occupied are always shown)."""

    STATE = "state"  # state, last_state
    STOP_REASON = "stop_reason"
    OCCUPANT = "occupant"  # tenant, badge, unowned
    JOB = "job"
    POWER = "power"  # power_kw
    COUNTERS = "counters"  # cumulative good_count, reject_count, energy_kwh
    FRESHNESS = "freshness"  # last_seen, age_s


ALL_FIELDS = frozenset(Field)
# What a tenant key sees, by relation: the table of the module docstring. Other roles see ALL_FIELDS.
TENANT_FIELDS: Mapping[Relation, frozenset[Field]] = {
    Relation.OWN: frozenset({Field.STATE, Field.STOP_REASON, Field.OCCUPANT, Field.JOB, Field.POWER, Field.FRESHNESS}),
    Relation.NOBODY: frozenset({Field.STATE, Field.STOP_REASON, Field.FRESHNESS}),
    Relation.OTHER: frozenset(),
    Relation.UNOWNED: frozenset(),
}


def visible_fields(principal: Principal, occupancy: Occupancy) -> frozenset[Field]:
    """Return the field groups principal may see of a machine or interval with this occupancy."""
    if sees_everything(principal):
        return ALL_FIELDS
    return TENANT_FIELDS[relation(principal, occupancy)]


# -- machines -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Counters:
    """A machine's cumulative counters as last reported (None: not reported, or hidden)."""

    good_count: int | None = None
    reject_count: int | None = None
    energy_kwh: float | None = None


@dataclass(frozen=True, slots=True)
class MachineView:
    """A machine's latest state as the store has it; masked by mask_machine before anyone sees it."""

    machine: str
    link: Link
    state: str | None = None  # the latest state while the link is online, else UNKNOWN; None: hidden
    last_state: str | None = None  # the last state reported, however old
    last_seen_ms: int | None = None
    occupancy: Occupancy = NOBODY
    job: str | None = None
    stop_reason: int | None = None
    counters: Counters = field(default_factory=Counters)
    power_kw: float | None = None


def mask_machine(principal: Principal, view: MachineView) -> MachineView:
    """Return view with every field principal may not see set to None (counters to all None)."""
    shown = visible_fields(principal, view.occupancy)
    if shown == ALL_FIELDS:
        return view
    state = Field.STATE in shown
    return MachineView(
        machine=view.machine,
        link=view.link,
        state=view.state if state else None,
        last_state=view.last_state if state else None,
        last_seen_ms=view.last_seen_ms if Field.FRESHNESS in shown else None,
        occupancy=_occupancy(view.occupancy, shown),
        job=view.job if Field.JOB in shown else None,
        stop_reason=view.stop_reason if Field.STOP_REASON in shown else None,
        counters=view.counters if Field.COUNTERS in shown else Counters(),
        power_kw=view.power_kw if Field.POWER in shown else None,
    )


def _occupancy(occupancy: Occupancy, shown: frozenset[Field]) -> Occupancy:
    if Field.OCCUPANT in shown or not occupancy.occupied:
        return occupancy
    return HIDDEN


# -- timelines ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IntervalView:
    """A stretch [start_ms, end_ms) of constant state, occupancy, job and stop reason (state None: hidden)."""

    start_ms: int
    end_ms: int
    state: str | None
    occupancy: Occupancy = NOBODY
    job: str | None = None
    stop_reason: int | None = None
    reason: str | None = None  # why the state is UNKNOWN (silence, unreachable, agent-offline, outbox-loss, ...)


def mask_interval(principal: Principal, view: IntervalView) -> IntervalView:
    """Return view with every field principal may not see set to None."""
    shown = visible_fields(principal, view.occupancy)
    if shown == ALL_FIELDS:
        return view
    return IntervalView(
        view.start_ms,
        view.end_ms,
        state=view.state if Field.STATE in shown else None,
        occupancy=_occupancy(view.occupancy, shown),
        job=view.job if Field.JOB in shown else None,
        stop_reason=view.stop_reason if Field.STOP_REASON in shown else None,
        reason=view.reason if Field.STATE in shown else None,
    )


def mask_intervals(principal: Principal, views: Iterable[IntervalView]) -> list[IntervalView]:
    """Mask each interval, then merge touching ones that became equal (masking must not show where they changed)."""
    out: list[IntervalView] = []
    for view in views:
        masked = mask_interval(principal, view)
        if out and out[-1].end_ms == masked.start_ms and _same_but_time(out[-1], masked):
            out[-1] = replace(out[-1], end_ms=masked.end_ms)
        else:
            out.append(masked)
    return out


def _same_but_time(a: IntervalView, b: IntervalView) -> bool:
    return (a.state, a.occupancy, a.job, a.stop_reason, a.reason) == (
        b.state,
        b.occupancy,
        b.job,
        b.stop_reason,
        b.reason,
    )


class TotalsScope(StrEnum):
    """What a timeline's totals add up."""

    MACHINE = "machine"  # every increment in the window, whoever made it
    OWN_SESSIONS = "own_sessions"  # the caller's own sessions' counts in the window


@dataclass(frozen=True, slots=True)
class TimelineFigures:
    """A timeline's counts as one caller may see them (unattributed None: not the caller's to see)."""

    totals: Counts
    scope: TotalsScope
    unattributed: Counts | None


class SessionLike(Owned, Protocol):
    """A session's tenant and counts (api.core.sessions.Session)."""

    @property
    def counts(self) -> Counts: ...


def timeline_figures(principal: Principal, timeline: Timeline, sessions: Sequence[SessionLike]) -> TimelineFigures:
    """Return the timeline's totals for principal: the machine's for all-seeing roles, else its own sessions' sum."""
    if can_see_machine_totals(principal):
        return TimelineFigures(timeline.totals(), TotalsScope.MACHINE, timeline.unattributed())
    own = sum_counts(s.counts for s in visible_rows(principal, sessions))
    return TimelineFigures(own, TotalsScope.OWN_SESSIONS, None)


# -- business objects (admin endpoints) and invoices -----------------------------------------------------------------


class Kind(StrEnum):
    """A kind of business object the API manages."""

    TENANT = "tenant"
    BADGE = "badge"
    KEY = "key"
    BOOKING = "booking"
    TARIFF = "tariff"
    COST_POOL = "cost_pool"
    BILLING_SETTINGS = "billing_settings"
    INVOICE = "invoice"


class Action(StrEnum):
    """What a caller does with objects of a kind."""

    READ = "read"
    WRITE = "write"  # create, update, delete, revoke


class Access(StrEnum):
    """Which objects of a kind a role may act on."""

    NONE = "none"  # none: the whole kind is refused (403)
    OWN = "own"  # its own tenant's only; any other answers as nonexistent (404)
    ALL = "all"


# Money: prices, costs and amounts. Operators run the floor and see usage, never money; a tenant sees the money of
# its own objects (its invoices) and the price list it is charged by.
MONEY_KINDS = frozenset({Kind.TARIFF, Kind.COST_POOL, Kind.BILLING_SETTINGS, Kind.INVOICE})
SEES_MONEY: Mapping[Role, bool] = {Role.ADMIN: True, Role.OPERATOR: False, Role.AUDITOR: True, Role.TENANT: True}

_N, _O, _A = Access.NONE, Access.OWN, Access.ALL
# (read, write) per role and kind; a test checks every (role, kind) has a row. Why each cell:
# - admin: everything. auditor: reads everything (keys without their hashes), writes nothing.
# - operator: tenants, badges and bookings (who uses which machine when); no money kinds; API keys are the
#   admin's (an operator has no use for who holds which key).
# - tenant: its own tenant, badges, keys (to see when each was last used) and bookings; it writes only its own
#   bookings (not started ones: booking_changeable). Tariffs are the price list every tenant pays by, not another
#   tenant's object: readable, so it can check its invoice's unit prices. Cost pools and settings are the facility's.
ACCESS: Mapping[Role, Mapping[Kind, tuple[Access, Access]]] = {
    Role.ADMIN: {kind: (_A, _A) for kind in Kind},
    Role.AUDITOR: {kind: (_A, _N) for kind in Kind},
    Role.OPERATOR: {
        Kind.TENANT: (_A, _N),
        Kind.BADGE: (_A, _N),
        Kind.KEY: (_N, _N),
        Kind.BOOKING: (_A, _N),
        Kind.TARIFF: (_N, _N),
        Kind.COST_POOL: (_N, _N),
        Kind.BILLING_SETTINGS: (_N, _N),
        Kind.INVOICE: (_N, _N),
    },
    Role.TENANT: {
        Kind.TENANT: (_O, _N),
        Kind.BADGE: (_O, _N),
        Kind.KEY: (_O, _N),
        Kind.BOOKING: (_O, _O),
        Kind.TARIFF: (_A, _N),
        Kind.COST_POOL: (_N, _N),
        Kind.BILLING_SETTINGS: (_N, _N),
        Kind.INVOICE: (_O, _N),
    },
}


def sees_money(principal: Principal) -> bool:
    """Return whether principal may see money at all (prices, costs, amounts): every role but operator."""
    return SEES_MONEY[principal.role]


def owns(principal: Principal, tenant_id: str | None) -> bool:
    """Return whether tenant_id is principal's own tenant (never for None, never for a key without a tenant)."""
    return principal.tenant is not None and tenant_id is not None and tenant_id == principal.tenant


def access(principal: Principal, kind: Kind, action: Action) -> Access:
    """Return which objects of kind principal may act on."""
    read, write = ACCESS[principal.role][kind]
    return read if action is Action.READ else write


def may(principal: Principal, kind: Kind, action: Action, tenant_id: str | None = None) -> bool:
    """Return whether principal may act on an object of kind owned by tenant_id (None: an object of no tenant)."""
    granted = access(principal, kind, action)
    if granted is Access.ALL:
        return True
    return granted is Access.OWN and owns(principal, tenant_id)


def listing_tenant(principal: Principal, kind: Kind) -> str | None:
    """The tenant a listing of kind is cut to (a tenant key's own), None: every object. Call after checking access."""
    return principal.tenant if access(principal, kind, Action.READ) is Access.OWN else None


def booking_changeable(principal: Principal, start_ms: int, now_ms: int) -> bool:
    """Return whether principal may create, move or delete a booking starting at start_ms (of a kind it may write).

    A tenant only before the booking starts: a booking that has begun is billed (booked minimum, no-show), and
    nothing a tenant sends may change its own bill. The admin corrects past bookings.
    """
    if principal.role is Role.ADMIN:
        return True
    return start_ms > now_ms


def can_read_invoice(principal: Principal, invoice_tenant: str) -> bool:
    """Return whether principal may read an invoice of invoice_tenant (admin, auditor: all; tenant: own)."""
    return may(principal, Kind.INVOICE, Action.READ, invoice_tenant)


def can_manage_invoices(principal: Principal) -> bool:
    """Return whether principal may draft, finalize and void invoices (admin only)."""
    return access(principal, Kind.INVOICE, Action.WRITE) is Access.ALL
