"""The admin endpoints (/v1 tenants, badges, keys, bookings, tariffs, cost pools, billing settings) over a real
business DB (SQLite and PostgreSQL): role x route x (own / foreign / nonexistent id) tables, bodies a tenant may not
send, overlaps, field-naming validation errors, hostile input, and the life of an API key.

The clock is frozen at Monday 2026-11-02 08:00 Asia/Jakarta (01:00 UTC). Tenants acme and batik; the tenant key
under test is acme's, so "own" objects are acme's and "foreign" ones batik's.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from api.admin_models import TariffCreate, to_ms
from api.app import create_app
from api.db import crud, models
from api.db.engine import Conflict, open_engine, sessions
from api.policy import Role
from shopfloor.config import SiteConfig
from shopfloor.keys import hash_key
from shopfloor.memstore import MemoryStore

pytestmark = pytest.mark.integration

JKT = ZoneInfo("Asia/Jakarta")
NOW = datetime(2026, 11, 2, 8, 0, tzinfo=JKT)
ROLES = ("admin", "operator", "auditor", "acme")
MISSING = 987_654  # no row has this id


def at(hours: float) -> datetime:
    """NOW plus hours."""
    return NOW + timedelta(hours=hours)


def iso(when: datetime) -> str:
    return when.isoformat()


@dataclass
class World:
    """The app over a fresh business DB, with keys for every role and a factory of fresh objects."""

    client: TestClient
    db: sessionmaker[Session]
    keys: dict[str, str] = field(default_factory=dict)
    serial: int = 0

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[who]}"}

    def call(self, who: str, method: str, path: str, body: Any = None, raw: bytes | None = None) -> Any:
        headers = self.auth(who)
        if raw is not None:
            return self.client.request(method, path, content=raw, headers=headers)
        if body is None:
            return self.client.request(method, path, headers=headers)
        return self.client.request(method, path, content=json.dumps(body), headers=headers)

    def next(self) -> int:
        self.serial += 1
        return self.serial

    def fresh(self, kind: str, owner: str) -> int | str:
        """Make a new object of kind owned by owner (acme / batik; ignored for kinds no tenant owns); its id."""
        n = self.next()
        with self.db() as s:
            if kind == "tenant":
                row_id: int | str = (
                    owner if owner == "acme" else crud.create_tenant(s, tenant_id=f"t-{n}", name="", now_ms=0).id
                )
            elif kind == "badge":
                row_id = crud.create_badge(
                    s, number=50_000 + n, tenant_id=owner, valid_from="2026-01-01", valid_to=None
                ).id
            elif kind == "key":
                row_id = crud.create_key(s, name=f"k-{n}", role=Role.TENANT, tenant_id=owner, now_ms=0)[0].id
            elif kind == "booking":
                # Each its own future day on press-01, so no two overlap and a tenant may still change it.
                start = to_ms(at(24 * n))
                row_id = crud.create_booking(
                    s,
                    machine="press-01",
                    tenant_id=owner,
                    start_ms=start,
                    end_ms=start + 3_600_000,
                    now_ms=0,
                    machines={"press-01"},
                ).id
            elif kind == "tariff":
                spec = TariffCreate.model_validate_json(
                    json.dumps(
                        {
                            "code": f"tr-{n}",
                            "machine": "brake-01",
                            "valid_from": f"{2100 - n}-01-01",
                            "valid_to": f"{2100 - n}-06-01",
                            "rate_per_hour": 1000,
                        }
                    )
                )
                row_id = crud.create_tariff(s, spec, now_ms=0, machines={"brake-01"}, classes=set()).id
            elif kind == "cost_pool":
                row_id = crud.create_cost_pool(
                    s,
                    machine="brake-01",
                    period=f"{2099 - n // 4}-01",
                    category=("depreciation", "maintenance", "space", "staff")[n % 4],
                    amount=5,
                    machines={"brake-01"},
                ).id
            else:  # pragma: no cover - a typo in a table
                raise AssertionError(kind)
            s.commit()
        return row_id


@pytest.fixture
def world(migrated_db_url: str, example_site: SiteConfig) -> Iterator[World]:
    engine = open_engine(migrated_db_url)
    factory = sessions(engine)
    site = example_site.model_copy(update={"tenants": [], "api_keys": []})
    app = create_app(site, MemoryStore(), db=factory, clock=lambda: NOW)
    w = World(TestClient(app), factory)
    with factory() as s:
        for tenant_id, name in (("acme", "PT Acme Presisi"), ("batik", "CV Batik Logam")):
            crud.create_tenant(s, tenant_id=tenant_id, name=name, now_ms=0)
        for who, role, tenant in (
            ("admin", Role.ADMIN, None),
            ("operator", Role.OPERATOR, None),
            ("auditor", Role.AUDITOR, None),
            ("acme", Role.TENANT, "acme"),
            ("batik", Role.TENANT, "batik"),
        ):
            w.keys[who] = crud.create_key(s, name=f"{who}-key", role=role, tenant_id=tenant, now_ms=0)[1]
        s.commit()
    yield w
    w.client.close()
    engine.dispose()


# ---- role x route x id -----------------------------------------------------------------------------------------------

# Expected status per relation of the id to acme, for (admin, operator, auditor, acme). "own": acme's object,
# "foreign": batik's, "missing": no such id. Kinds no tenant owns (tariffs, cost pools) have "own" = "foreign" =
# an existing object. Reasons in the comments; the policy table is api.policy.ACCESS.
ITEM_TABLE: list[tuple[str, str, str, Any, dict[str, tuple[int, int, int, int]]]] = [
    # kind, method, path, body
    (
        "tenant",
        "GET",
        "/v1/tenants/{id}",
        None,
        {"own": (200, 200, 200, 200), "foreign": (200, 200, 200, 404), "missing": (404, 404, 404, 404)},
    ),
    (
        "tenant",
        "PATCH",
        "/v1/tenants/{id}",
        {"name": "Renamed"},
        {"own": (200, 403, 403, 403), "foreign": (200, 403, 403, 403), "missing": (404, 403, 403, 403)},
    ),
    # acme has keys (and so cannot be deleted: 409); a fresh foreign tenant has nothing referring to it.
    (
        "tenant",
        "DELETE",
        "/v1/tenants/{id}",
        None,
        {"own": (409, 403, 403, 403), "foreign": (204, 403, 403, 403), "missing": (404, 403, 403, 403)},
    ),
    (
        "badge",
        "GET",
        "/v1/badges/{id}",
        None,
        {"own": (200, 200, 200, 200), "foreign": (200, 200, 200, 404), "missing": (404, 404, 404, 404)},
    ),
    (
        "badge",
        "PATCH",
        "/v1/badges/{id}",
        {"valid_to": "2027-01-01"},
        {"own": (200, 403, 403, 403), "foreign": (200, 403, 403, 403), "missing": (404, 403, 403, 403)},
    ),
    (
        "badge",
        "DELETE",
        "/v1/badges/{id}",
        None,
        {"own": (204, 403, 403, 403), "foreign": (204, 403, 403, 403), "missing": (404, 403, 403, 403)},
    ),
    # Keys are the admin's (and the auditor's to read); a tenant sees its own tenant's keys.
    (
        "key",
        "GET",
        "/v1/keys/{id}",
        None,
        {"own": (200, 403, 200, 200), "foreign": (200, 403, 200, 404), "missing": (404, 403, 404, 404)},
    ),
    (
        "key",
        "POST",
        "/v1/keys/{id}/revoke",
        None,
        {"own": (200, 403, 403, 403), "foreign": (200, 403, 403, 403), "missing": (404, 403, 403, 403)},
    ),
    # Bookings: a tenant reads and changes its own (future) ones; operators see them, change nothing.
    (
        "booking",
        "GET",
        "/v1/bookings/{id}",
        None,
        {"own": (200, 200, 200, 200), "foreign": (200, 200, 200, 404), "missing": (404, 404, 404, 404)},
    ),
    (
        "booking",
        "PATCH",
        "/v1/bookings/{id}",
        {"machine": "laser-01"},
        {"own": (200, 403, 403, 200), "foreign": (200, 403, 403, 404), "missing": (404, 403, 403, 404)},
    ),
    (
        "booking",
        "DELETE",
        "/v1/bookings/{id}",
        None,
        {"own": (204, 403, 403, 204), "foreign": (204, 403, 403, 404), "missing": (404, 403, 403, 404)},
    ),
    # Money: never the operator's; tariffs are the price list a tenant pays by, cost pools the facility's.
    (
        "tariff",
        "GET",
        "/v1/tariffs/{id}",
        None,
        {"own": (200, 403, 200, 200), "foreign": (200, 403, 200, 200), "missing": (404, 403, 404, 404)},
    ),
    (
        "tariff",
        "PATCH",
        "/v1/tariffs/{id}",
        {"valid_to": "2000-03-01"},
        {"own": (200, 403, 403, 403), "foreign": (200, 403, 403, 403), "missing": (404, 403, 403, 403)},
    ),
    (
        "cost_pool",
        "GET",
        "/v1/cost-pools/{id}",
        None,
        {"own": (200, 403, 200, 403), "foreign": (200, 403, 200, 403), "missing": (404, 403, 404, 403)},
    ),
    (
        "cost_pool",
        "PATCH",
        "/v1/cost-pools/{id}",
        {"amount": 7},
        {"own": (200, 403, 403, 403), "foreign": (200, 403, 403, 403), "missing": (404, 403, 403, 403)},
    ),
    (
        "cost_pool",
        "DELETE",
        "/v1/cost-pools/{id}",
        None,
        {"own": (204, 403, 403, 403), "foreign": (204, 403, 403, 403), "missing": (404, 403, 403, 403)},
    ),
]


def test_role_x_item_route_x_id(world: World) -> None:
    wrong = []
    for kind, method, path, body, table in ITEM_TABLE:
        for relation, expected in table.items():
            for who, status in zip(ROLES, expected, strict=True):
                if relation == "missing":
                    obj: int | str = "nobody-here" if kind == "tenant" else MISSING
                else:
                    obj = world.fresh(kind, "acme" if relation == "own" else "batik")
                body_now = body
                if kind == "tariff" and body is not None:
                    # close a fresh version (valid [Y-01-01, Y-06-01)) in its own year, so it is only ever earlier
                    body_now = {"valid_to": "2099-12-31"} if relation == "missing" else None
                    if relation != "missing":
                        with world.db() as s:
                            row = s.get(models.Tariff, obj)
                            assert row is not None
                            body_now = {"valid_to": row.valid_from[:4] + "-03-01"}
                got = world.call(who, method, path.format(id=obj), body_now)
                if got.status_code != status:
                    wrong.append((method, path, relation, who, got.status_code, status, got.text[:120]))
    assert wrong == []


def test_foreign_and_nonexistent_ids_get_identical_404s(world: World) -> None:
    # The same id before and after the object is gone: the tenant key's answers must not differ.
    for kind, path in (
        ("badge", "/v1/badges/{id}"),
        ("key", "/v1/keys/{id}"),
        ("booking", "/v1/bookings/{id}"),
    ):
        obj = world.fresh(kind, "batik")
        foreign = world.call("acme", "GET", path.format(id=obj))
        with world.db() as s:
            s.delete(s.get({"badge": models.Badge, "key": models.ApiKey, "booking": models.Booking}[kind], obj))
            s.commit()
        gone = world.call("acme", "GET", path.format(id=obj))
        assert (foreign.status_code, foreign.json(), dict(foreign.headers)) == (
            gone.status_code,
            gone.json(),
            dict(gone.headers),
        ), kind
        assert foreign.json() == {
            "detail": f"{ {'badge': 'badge', 'key': 'API key', 'booking': 'booking'}[kind] } {obj} not found"
        }
    # A tenant id: batik (foreign) and a never-existing one read the same, once the id is swapped.
    foreign = world.call("acme", "GET", "/v1/tenants/batik")
    missing = world.call("acme", "GET", "/v1/tenants/zzz-nobody")
    assert foreign.status_code == missing.status_code == 404
    assert foreign.json()["detail"].replace("batik", "X") == missing.json()["detail"].replace("zzz-nobody", "X")
    # Writes too: a tenant changing batik's booking or a nonexistent one.
    booking = world.fresh("booking", "batik")
    changes = [
        world.call("acme", m, f"/v1/bookings/{i}", b)
        for i in (booking, MISSING)
        for m, b in (("PATCH", {"machine": "laser-01"}), ("DELETE", None))
    ]
    assert [c.status_code for c in changes] == [404] * 4
    assert changes[0].json()["detail"].replace(str(booking), "X") == changes[2].json()["detail"].replace(
        str(MISSING), "X"
    )


LIST_TABLE: list[tuple[str, tuple[int, int, int, int]]] = [
    ("/v1/tenants", (200, 200, 200, 200)),
    ("/v1/badges", (200, 200, 200, 200)),
    ("/v1/keys", (200, 403, 200, 200)),
    ("/v1/bookings", (200, 200, 200, 200)),
    ("/v1/tariffs", (200, 403, 200, 200)),
    ("/v1/cost-pools", (200, 403, 200, 403)),
    ("/v1/billing-settings", (200, 403, 200, 403)),
]


def test_role_x_list_route(world: World) -> None:
    for kind in ("badge", "booking", "key"):
        for owner in ("acme", "batik"):
            world.fresh(kind, owner)
    wrong = []
    for path, expected in LIST_TABLE:
        for who, status in zip(ROLES, expected, strict=True):
            got = world.call(who, "GET", path)
            if got.status_code != status:
                wrong.append((path, who, got.status_code, status))
    assert wrong == []
    # A tenant's listings hold only its own objects, even when it asks for another tenant's.
    assert [t["id"] for t in world.call("acme", "GET", "/v1/tenants").json()] == ["acme"]
    assert [t["id"] for t in world.call("admin", "GET", "/v1/tenants").json()] == ["acme", "batik"]
    for path in ("/v1/badges", "/v1/bookings", "/v1/keys"):
        mine = world.call("acme", "GET", path).json()
        assert mine and {r["tenant_id"] for r in mine} == {"acme"}, path
        assert world.call("acme", "GET", path + "?tenant=batik").json() == []
        assert world.call("acme", "GET", path + "?tenant=nobody").json() == []  # same answer as a foreign one
        everyone = world.call("admin", "GET", path).json()
        staff = {None} if path == "/v1/keys" else set()  # the admin's, operator's and auditor's own keys
        assert {r["tenant_id"] for r in everyone} == {"acme", "batik"} | staff, path
        assert {r["tenant_id"] for r in world.call("admin", "GET", path + "?tenant=batik").json()} == {"batik"}


# (path, body, statuses for admin, operator, auditor, acme). Admin creates; a tenant creates only its own bookings.
CREATE_TABLE: list[tuple[str, dict[str, Any], tuple[int, int, int, int]]] = [
    ("/v1/tenants", {"id": "new-{n}", "name": "New"}, (201, 403, 403, 403)),
    ("/v1/badges", {"number": "{n}", "tenant_id": "acme", "valid_from": "2026-01-01"}, (201, 403, 403, 403)),
    ("/v1/keys", {"name": "key-{n}", "role": "operator"}, (201, 403, 403, 403)),
    (
        "/v1/bookings",
        {"machine": "cnc-01", "start": "{start}", "end": "{end}", "tenant_id": "acme"},
        (201, 403, 403, 422),  # a tenant's body naming tenant_id: refused, not ignored
    ),
    ("/v1/bookings", {"machine": "cnc-01", "start": "{start}", "end": "{end}"}, (422, 403, 403, 201)),
    (
        "/v1/tariffs",
        {
            "code": "t-{n}",
            "machine_class": "cnc-mill-v1",
            "valid_from": "{year}-01-01",
            "valid_to": "{year}-02-01",
            "rate_per_hour": 150_000,
        },
        (201, 403, 403, 403),
    ),
    (
        "/v1/cost-pools",
        {"machine": "cnc-01", "period": "2026-{month}", "category": "space", "amount": 1},
        (201, 403, 403, 403),
    ),
]


def test_role_x_create_route(world: World) -> None:
    wrong = []
    for path, template, expected in CREATE_TABLE:
        for who, status in zip(ROLES, expected, strict=True):
            n = world.next()
            start = at(24 * n)
            values = {
                "{n}": str(1000 + n),
                "{start}": iso(start),
                "{end}": iso(start + timedelta(hours=1)),
                "{year}": str(2030 + n),
                "{month}": f"{n % 12 + 1:02d}",
            }
            body = {}
            for k, v in template.items():
                if isinstance(v, str):
                    for placeholder, value in values.items():
                        v = v.replace(placeholder, value)
                    body[k] = int(v) if k == "number" else v
                else:
                    body[k] = v
            got = world.call(who, "POST", path, body)
            if got.status_code != status:
                wrong.append((path, who, got.status_code, status, got.text[:200]))
    assert wrong == []


def test_billing_settings(world: World) -> None:
    assert world.call("auditor", "GET", "/v1/billing-settings").json() == {
        "policy": "capacity",
        "facility_name": "",
        "watermark_grace_min": 60,
    }
    got = world.call("admin", "PATCH", "/v1/billing-settings", {"policy": "full_recovery", "facility_name": "LIK Bdg"})
    assert got.status_code == 200
    assert got.json() == {"policy": "full_recovery", "facility_name": "LIK Bdg", "watermark_grace_min": 60}
    got = world.call("admin", "PATCH", "/v1/billing-settings", {"watermark_grace_min": 120})
    assert got.json() == {"policy": "full_recovery", "facility_name": "LIK Bdg", "watermark_grace_min": 120}
    for body, loc in (
        ({"policy": "cheapest"}, ["body", "policy"]),
        ({"watermark_grace_min": 1.5}, ["body", "watermark_grace_min"]),
        ({"watermark_grace_min": 100_001}, ["body", "watermark_grace_min"]),
        ({"facility_name": None}, ["body", "facility_name"]),
        ({"currency": "IDR"}, ["body", "currency"]),
    ):
        got = world.call("admin", "PATCH", "/v1/billing-settings", body)
        assert got.status_code == 422 and [e["loc"] for e in got.json()["detail"]] == [loc], body
    assert world.call("operator", "PATCH", "/v1/billing-settings", {"policy": "capacity"}).status_code == 403
    assert world.call("acme", "PATCH", "/v1/billing-settings", {"policy": "capacity"}).status_code == 403
    assert world.call("auditor", "GET", "/v1/billing-settings").json()["watermark_grace_min"] == 120


# ---- what a tenant may not send --------------------------------------------------------------------------------------


def booking_body(start: datetime, hours: float = 1.0, **extra: Any) -> dict[str, Any]:
    return {"machine": "cnc-01", "start": iso(start), "end": iso(start + timedelta(hours=hours)), **extra}


def test_a_tenant_cannot_set_tenant_prices_or_roles(world: World) -> None:
    start = at(2)
    for extra, field_name in (
        ({"tenant_id": "batik"}, "tenant_id"),
        ({"tenant_id": "acme"}, "tenant_id"),  # even its own: the body names no tenant at all
        ({"rate_per_hour": 0}, "rate_per_hour"),
        ({"price": 1}, "price"),
        ({"role": "admin"}, "role"),
        ({"id": 1}, "id"),
        ({"created": iso(NOW)}, "created"),
    ):
        got = world.call("acme", "POST", "/v1/bookings", booking_body(start, **extra))
        assert got.status_code == 422, extra
        errors = got.json()["detail"]
        assert [(e["loc"], e["type"]) for e in errors] == [(["body", field_name], "extra_forbidden")], extra
        assert errors[0]["msg"].startswith(f"{field_name}: "), errors
    own = world.fresh("booking", "acme")
    for extra in ({"tenant_id": "batik"}, {"rate_per_hour": 1}, {"role": "admin"}):
        got = world.call("acme", "PATCH", f"/v1/bookings/{own}", extra)
        assert got.status_code == 422 and got.json()["detail"][0]["loc"] == ["body", next(iter(extra))]
    # Nothing was created or moved.
    bookings = world.call("admin", "GET", "/v1/bookings").json()
    assert [(b["id"], b["tenant_id"], b["machine"]) for b in bookings] == [(own, "acme", "press-01")]
    # Kinds it may not write at all: 403 before the body is even read.
    assert world.call("acme", "POST", "/v1/keys", {"name": "mine", "role": "admin"}).status_code == 403
    assert world.call("acme", "POST", "/v1/tariffs", {"code": "x", "rate_per_hour": 0}).status_code == 403
    assert world.call("acme", "POST", "/v1/badges", {"number": 2001, "tenant_id": "acme"}).status_code == 403
    assert world.call("acme", "PATCH", "/v1/tenants/acme", {"name": "x"}).status_code == 403
    # The admin's booking body names the tenant, and must.
    got = world.call("admin", "POST", "/v1/bookings", booking_body(start))
    assert got.status_code == 422 and got.json()["detail"][0]["loc"] == ["body", "tenant_id"]
    got = world.call("admin", "POST", "/v1/bookings", booking_body(start, tenant_id="batik"))
    assert got.status_code == 201 and got.json()["tenant_id"] == "batik"
    got = world.call("acme", "POST", "/v1/bookings", booking_body(at(30)))
    assert got.status_code == 201 and got.json()["tenant_id"] == "acme"


def test_a_tenant_changes_only_bookings_that_have_not_started(world: World) -> None:
    # In the past or now: 422 on start (time that has begun is billed as booked).
    for start in (at(-1), NOW):
        got = world.call("acme", "POST", "/v1/bookings", booking_body(start))
        assert got.status_code == 422 and got.json()["detail"][0]["loc"] == ["body", "start"], start
    # A booking that started (the admin made it) cannot be moved or cancelled by the tenant...
    with world.db() as s:
        started = crud.create_booking(
            s,
            machine="cnc-01",
            tenant_id="acme",
            start_ms=to_ms(at(-1)),
            end_ms=to_ms(at(1)),
            now_ms=0,
            machines={"cnc-01"},
        ).id
        s.commit()
    assert world.call("acme", "DELETE", f"/v1/bookings/{started}").status_code == 409
    assert world.call("acme", "PATCH", f"/v1/bookings/{started}", {"end": iso(at(0.5))}).status_code == 409
    # ...nor a future one moved into the past; the admin may do both.
    future = world.call("acme", "POST", "/v1/bookings", booking_body(at(5))).json()["id"]
    got = world.call("acme", "PATCH", f"/v1/bookings/{future}", {"start": iso(at(-0.5))})
    assert got.status_code == 422 and got.json()["detail"][0]["loc"] == ["body", "start"]
    assert world.call("admin", "PATCH", f"/v1/bookings/{started}", {"end": iso(at(0.5))}).status_code == 200
    assert world.call("admin", "DELETE", f"/v1/bookings/{started}").status_code == 204


# ---- overlaps and versions -----------------------------------------------------------------------------------------


def test_overlapping_bookings_on_one_machine_are_refused(world: World) -> None:
    first = world.call("admin", "POST", "/v1/bookings", booking_body(at(1), 2, tenant_id="batik"))  # 09:00-11:00
    assert first.status_code == 201
    for start, hours in ((at(1.5), 1), (at(0.5), 1), (at(0.25), 4), (at(1), 2), (at(1.25), 0.25)):
        got = world.call("acme", "POST", "/v1/bookings", booking_body(start, hours))
        assert got.status_code == 409, (start, hours)
        # The clash is named by machine and time; whose it is, a tenant does not learn.
        detail = got.json()["detail"]
        assert (
            detail == "machine 'cnc-01' is already booked from 2026-11-02T02:00:00+00:00 to 2026-11-02T04:00:00+00:00"
        )
        assert "batik" not in got.text
    got = world.call("admin", "POST", "/v1/bookings", booking_body(at(1.5), 1, tenant_id="acme"))
    assert got.status_code == 409 and got.json()["detail"].endswith(f"by tenant 'batik' (booking {first.json()['id']})")
    # Half-open: [09:00, 11:00) and [11:00, 12:00) touch, they do not overlap; neither does [08:00, 09:00).
    after = world.call("acme", "POST", "/v1/bookings", booking_body(at(3), 1))
    before = world.call("acme", "POST", "/v1/bookings", booking_body(at(0.5), 0.5))
    assert (after.status_code, before.status_code) == (201, 201)
    # Another machine at the same time is free.
    other = {**booking_body(at(1), 2), "machine": "cnc-02"}
    assert world.call("acme", "POST", "/v1/bookings", other).status_code == 201
    # Moving a booking into another is refused too; moving it within its own time is not a clash with itself.
    assert world.call("acme", "PATCH", f"/v1/bookings/{after.json()['id']}", {"start": iso(at(2.5))}).status_code == 409
    got = world.call("acme", "PATCH", f"/v1/bookings/{after.json()['id']}", {"end": iso(at(3.5))})
    assert got.status_code == 200 and got.json()["end"] == "2026-11-02T04:30:00Z"
    # An unknown machine is the field's error, not a clash.
    got = world.call("acme", "POST", "/v1/bookings", {**booking_body(at(8)), "machine": "cnc-99"})
    assert got.status_code == 422 and got.json()["detail"][0]["loc"] == ["body", "machine"]


def test_concurrent_overlapping_bookings_one_wins(world: World) -> None:
    # Two transactions check and insert overlapping bookings at once: the second waits for the first's lock
    # (PostgreSQL advisory lock / SQLite write lock), then sees its row and is refused.
    start = to_ms(at(48))
    kwargs = {"machine": "cnc-01", "start_ms": start, "end_ms": start + 3_600_000, "now_ms": 0, "machines": {"cnc-01"}}
    outcome: list[str] = []
    first = world.db()
    crud.create_booking(first, tenant_id="acme", **kwargs)  # type: ignore[arg-type]

    def second() -> None:
        with world.db() as s:
            try:
                crud.create_booking(s, tenant_id="batik", **kwargs)  # type: ignore[arg-type]
                s.commit()
                outcome.append("created")
            except Conflict as exc:
                outcome.append(str(exc))

    thread = threading.Thread(target=second)
    thread.start()
    thread.join(0.5)  # it is waiting for the first transaction
    assert outcome == []
    first.commit()
    first.close()
    thread.join(30)
    assert len(outcome) == 1 and outcome[0].startswith("machine 'cnc-01' is already booked"), outcome


def test_badge_validity_of_one_number_never_overlaps(world: World) -> None:
    def badge(tenant: str, valid_from: str, valid_to: str | None = None, number: int = 4242) -> Any:
        return world.call(
            "admin",
            "POST",
            "/v1/badges",
            {"number": number, "tenant_id": tenant, "valid_from": valid_from, "valid_to": valid_to},
        )

    first = badge("acme", "2026-01-01", "2026-11-15")
    assert first.status_code == 201
    clash = badge("batik", "2026-11-14")
    assert clash.status_code == 409
    assert clash.json()["detail"].startswith("badge 4242 is held by 'acme' [2026-01-01, 2026-11-15)")
    assert badge("batik", "2025-12-31", "2026-01-02").status_code == 409
    # The badge moves to batik on 2026-11-15: [.., 11-15) and [11-15, ..) touch, not overlap.
    moved = badge("batik", "2026-11-15")
    assert moved.status_code == 201
    assert badge("batik", "2026-11-16", number=4243).status_code == 201  # another number is another badge
    # Extending acme's row into batik's is refused; the row does not clash with itself.
    assert world.call("admin", "PATCH", f"/v1/badges/{first.json()['id']}", {"valid_to": None}).status_code == 409
    got = world.call("admin", "PATCH", f"/v1/badges/{first.json()['id']}", {"valid_to": "2026-11-10"})
    assert got.status_code == 200 and got.json()["valid_to"] == "2026-11-10"
    got = world.call("admin", "PATCH", f"/v1/badges/{first.json()['id']}", {"valid_from": "2026-11-10"})
    assert got.status_code == 422 and got.json()["detail"][0]["loc"] == ["body", "valid_from"]
    assert badge("cipta", "2026-01-01").status_code == 422  # no such tenant: the field's error


def tariff(code: str, valid_from: str, valid_to: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "code": code,
        "machine_class": "cnc-mill-v1",
        "valid_from": valid_from,
        "valid_to": valid_to,
        "rate_per_hour": 150_000,
        **extra,
    }


def test_tariff_versions(world: World) -> None:
    v1 = world.call("admin", "POST", "/v1/tariffs", tariff("cnc-std", "2026-01-01"))
    assert v1.status_code == 201
    assert (v1.json()["version"], v1.json()["ref"], v1.json()["valid_to"]) == (1, "cnc-std@1", None)
    assert v1.json()["billable"] == ["running", "setup", "idle", "stopped"]
    # A new version overlapping the open-ended one: refused, naming it; close v1 first.
    got = world.call("admin", "POST", "/v1/tariffs", tariff("cnc-std", "2026-12-01", rate_per_hour=175_000))
    assert got.status_code == 409 and "cnc-std@1" in got.json()["detail"]
    # Another code for the same class and time is just as ambiguous.
    assert (
        world.call("admin", "POST", "/v1/tariffs", tariff("cnc-promo", "2026-06-01", "2026-07-01")).status_code == 409
    )
    closed = world.call("admin", "PATCH", f"/v1/tariffs/{v1.json()['id']}", {"valid_to": "2026-12-01"})
    assert closed.status_code == 200 and closed.json()["valid_to"] == "2026-12-01"
    v2 = world.call("admin", "POST", "/v1/tariffs", tariff("cnc-std", "2026-12-01", rate_per_hour=175_000))
    assert v2.status_code == 201 and (v2.json()["version"], v2.json()["rate_per_hour"]) == (2, 175_000)
    # A version is closed only ever earlier, and nothing else of it changes.
    assert world.call("admin", "PATCH", f"/v1/tariffs/{v1.json()['id']}", {"valid_to": "2027-01-01"}).status_code == 409
    got = world.call("admin", "PATCH", f"/v1/tariffs/{v1.json()['id']}", {"rate_per_hour": 1})
    assert got.status_code == 422 and [e["loc"] for e in got.json()["detail"]] == [
        ["body", "valid_to"],
        ["body", "rate_per_hour"],
    ]
    got = world.call("admin", "PATCH", f"/v1/tariffs/{v1.json()['id']}", {"valid_to": "2025-12-31"})
    assert got.status_code == 422 and got.json()["detail"][0]["loc"] == ["body", "valid_to"]
    # A machine's own tariff may overlap its class's (the machine's wins); the code keeps its target.
    own = world.call(
        "admin",
        "POST",
        "/v1/tariffs",
        {**tariff("cnc01-own", "2026-01-01"), "machine_class": None, "machine": "cnc-01"},
    )
    assert own.status_code == 201
    got = world.call(
        "admin", "POST", "/v1/tariffs", {**tariff("cnc-std", "2030-01-01"), "machine_class": "fiber-laser-v1"}
    )
    assert got.status_code == 409 and "machine class 'cnc-mill-v1'" in got.json()["detail"]
    codes = [(t["ref"], t["valid_from"], t["valid_to"]) for t in world.call("acme", "GET", "/v1/tariffs").json()]
    assert codes == [
        ("cnc-std@1", "2026-01-01", "2026-12-01"),
        ("cnc-std@2", "2026-12-01", None),
        ("cnc01-own@1", "2026-01-01", None),
    ]
    for body, loc in (
        ({**tariff("x", "2026-01-01"), "machine_class": "no-such-profile"}, "machine_class"),
        ({**tariff("x", "2026-01-01"), "machine": "cnc-01"}, "machine_class"),  # both
        ({**tariff("x", "2026-01-01"), "machine_class": None}, "machine_class"),  # neither
        ({**tariff("x", "2026-01-01"), "billable": ["running", "breakdown"]}, "billable"),
        ({**tariff("x", "2026-01-01"), "billable": ["unknown"]}, "billable"),
        ({**tariff("x", "2026-01-01"), "billable": []}, "billable"),
        ({**tariff("x", "2026-01-01"), "tax_rate_bp": 10_001}, "tax_rate_bp"),
        ({**tariff("x", "2026-01-01"), "increment_min": 0}, "increment_min"),
        ({**tariff("x", "2026-01-01"), "max_booked_actual": 1}, "max_booked_actual"),
        ({**tariff("x", "2026-01-01"), "version": 7}, "version"),  # versions are the server's to number
        (tariff("x", "2026-01-01", "2026-01-01"), "valid_to"),
    ):
        got = world.call("admin", "POST", "/v1/tariffs", body)
        assert got.status_code == 422 and [e["loc"] for e in got.json()["detail"]] == [["body", loc]], (body, got.text)


def test_cost_pools_and_tenant_deletion(world: World) -> None:
    body = {"machine": "cnc-01", "period": "2026-11", "category": "depreciation", "amount": 12_500_000}
    first = world.call("admin", "POST", "/v1/cost-pools", body)
    assert first.status_code == 201 and first.json()["amount"] == 12_500_000
    again = world.call("admin", "POST", "/v1/cost-pools", {**body, "amount": 1})
    assert again.status_code == 409
    assert again.json()["detail"] == (
        f"machine 'cnc-01' already has a depreciation cost pool for 2026-11 (cost pool {first.json()['id']}); "
        "change its amount instead"
    )
    assert world.call("admin", "POST", "/v1/cost-pools", {**body, "category": "staff"}).status_code == 201
    got = world.call("admin", "PATCH", f"/v1/cost-pools/{first.json()['id']}", {"amount": 10**15})
    assert got.status_code == 200 and got.json()["amount"] == 10**15
    listed = world.call("auditor", "GET", "/v1/cost-pools?machine=cnc-01&period=2026-11").json()
    assert [(p["category"], p["amount"]) for p in listed] == [("depreciation", 10**15), ("staff", 12_500_000)]
    # A tenant is deleted only when nothing refers to it.
    assert world.call("admin", "POST", "/v1/tenants", {"id": "cipta", "name": "Cipta Plastik"}).status_code == 201
    assert world.call("admin", "POST", "/v1/tenants", {"id": "cipta"}).status_code == 409
    badge = world.call(
        "admin", "POST", "/v1/badges", {"number": 3001, "tenant_id": "cipta", "valid_from": "2026-01-01"}
    )
    world.call("admin", "POST", "/v1/bookings", {**booking_body(at(3)), "tenant_id": "cipta"})
    got = world.call("admin", "DELETE", "/v1/tenants/cipta")
    assert got.status_code == 409
    assert got.json()["detail"].startswith("tenant 'cipta' is still referred to by 1 badge, 1 booking: ")
    assert world.call("admin", "DELETE", f"/v1/badges/{badge.json()['id']}").status_code == 204
    for b in world.call("admin", "GET", "/v1/bookings?tenant=cipta").json():
        assert world.call("admin", "DELETE", f"/v1/bookings/{b['id']}").status_code == 204
    assert world.call("admin", "DELETE", "/v1/tenants/cipta").status_code == 204
    assert world.call("admin", "GET", "/v1/tenants/cipta").status_code == 404


# ---- API keys --------------------------------------------------------------------------------------------------------


def test_a_key_is_shown_once_stored_hashed_and_revocable(world: World) -> None:
    created = world.call("admin", "POST", "/v1/keys", {"name": "acme-robot", "role": "tenant", "tenant_id": "acme"})
    assert created.status_code == 201
    body = created.json()
    clear = body["key"]
    assert set(body) == {"id", "name", "role", "tenant_id", "created", "revoked", "last_used", "key"}
    assert (body["role"], body["tenant_id"], body["revoked"], body["last_used"]) == ("tenant", "acme", None, None)
    digest = hash_key(clear)
    # The key works, as the tenant it was made for.
    world.keys["robot"] = clear
    got = world.call("robot", "GET", "/v1/tenants")
    assert got.status_code == 200 and [t["id"] for t in got.json()] == ["acme"]
    # Never shown again, and its hash never at all.
    for who, path in (
        ("admin", "/v1/keys"),
        ("auditor", "/v1/keys"),
        ("acme", "/v1/keys"),
        ("admin", f"/v1/keys/{body['id']}"),
    ):
        text = world.call(who, "GET", path).text
        assert clear not in text and digest not in text and "sha256" not in text, (who, path)
    shown = world.call("admin", "GET", f"/v1/keys/{body['id']}").json()
    assert shown["last_used"] == "2026-11-02T01:00:00Z"  # used once, at the frozen now
    with world.db() as s:
        row = s.scalars(sa.select(models.ApiKey).where(models.ApiKey.name == "acme-robot")).one()
        assert row.sha256 == digest
    # Revoked: 401 at once; revoking again keeps the first time.
    revoked = world.call("admin", "POST", f"/v1/keys/{body['id']}/revoke")
    assert revoked.status_code == 200 and revoked.json()["revoked"] == "2026-11-02T01:00:00Z"
    assert world.call("robot", "GET", "/v1/tenants").status_code == 401
    assert world.call("admin", "POST", f"/v1/keys/{body['id']}/revoke").json()["revoked"] == "2026-11-02T01:00:00Z"
    # Duplicate names, roles and tenants.
    for payload, status, loc in (
        ({"name": "acme-robot", "role": "auditor"}, 409, None),
        ({"name": "x", "role": "tenant"}, 422, ["body", "tenant_id"]),
        ({"name": "x", "role": "admin", "tenant_id": "acme"}, 422, ["body", "tenant_id"]),
        ({"name": "x", "role": "tenant", "tenant_id": "nobody"}, 422, ["body", "tenant_id"]),
        ({"name": "x", "role": "root"}, 422, ["body", "role"]),
        ({"name": "", "role": "admin"}, 422, ["body", "name"]),
        ({"name": "x", "role": "admin", "sha256": digest}, 422, ["body", "sha256"]),
    ):
        got = world.call("admin", "POST", "/v1/keys", payload)
        assert got.status_code == status, payload
        if loc is not None:
            assert [e["loc"] for e in got.json()["detail"]] == [loc], payload


def test_unknown_and_missing_keys_are_401(world: World) -> None:
    assert world.client.get("/v1/tenants").status_code == 401
    assert world.client.get("/v1/tenants", headers={"Authorization": "Bearer sfk_nope"}).status_code == 401
    # A body is not read before the caller is known.
    got = world.client.post("/v1/tenants", content=b"x" * 2_000_000, headers={"Authorization": "Bearer sfk_nope"})
    assert got.status_code == 401


# ---- validation and hostile input --------------------------------------------------------------------------------


HOSTILE: list[tuple[str, str, Any, int, list[Any] | None]] = [
    # method, path, body (bytes: sent as is), status, locs of the errors (None: not a validation error)
    ("POST", "/v1/tenants", {"id": "big", "name": "x" * 201}, 422, [["body", "name"]]),
    ("POST", "/v1/tenants", {"id": "big", "name": "x" * 60_000}, 422, [["body", "name"]]),
    ("POST", "/v1/tenants", {"id": "Acme", "name": ""}, 422, [["body", "id"]]),
    ("POST", "/v1/tenants", {"id": "acme\n"}, 422, [["body", "id"]]),
    ("POST", "/v1/tenants", {"id": "ａｃｍｅ"}, 422, [["body", "id"]]),  # fullwidth letters are not an id
    ("POST", "/v1/tenants", {"id": "a" * 64}, 422, [["body", "id"]]),
    ("POST", "/v1/tenants", {"id": "nul", "name": "a\u0000b"}, 422, [["body", "name"]]),
    ("POST", "/v1/tenants", {"id": "bidi", "name": "\u202e\u0007"}, 422, [["body", "name"]]),
    ("POST", "/v1/tenants", b'{"id": "surrogate", "name": "\\ud800"}', 422, [["body"]]),
    ("POST", "/v1/tenants", {"id": "nested", "name": {"a": [{"b": 1}]}}, 422, [["body", "name"]]),
    ("POST", "/v1/tenants", b"[" * 5000 + b"]" * 5000, 422, [["body"]]),
    ("POST", "/v1/tenants", b'{"id": "x", "id": "y"', 422, [["body"]]),
    ("POST", "/v1/tenants", b"", 422, [["body"]]),
    ("POST", "/v1/tenants", b"[]", 422, [["body"]]),
    ("POST", "/v1/tenants", b"null", 422, [["body"]]),
    ("POST", "/v1/tenants", b"x" * 1_048_576, 413, None),
    ("POST", "/v1/tenants", {"id": "huge", "name": "x" * 1_048_576}, 413, None),
    (
        "POST",
        "/v1/cost-pools",
        {"machine": "cnc-01", "period": "2026-11", "category": "space", "amount": 1e308},
        422,
        [["body", "amount"]],
    ),
    (
        "POST",
        "/v1/cost-pools",
        {"machine": "cnc-01", "period": "2026-11", "category": "space", "amount": -1},
        422,
        [["body", "amount"]],
    ),
    (
        "POST",
        "/v1/cost-pools",
        {"machine": "cnc-01", "period": "2026-11", "category": "space", "amount": 10**15 + 1},
        422,
        [["body", "amount"]],
    ),
    (
        "POST",
        "/v1/cost-pools",
        {"machine": "cnc-01", "period": "2026-11", "category": "space", "amount": 2**70},
        422,
        [["body", "amount"]],
    ),
    (
        "POST",
        "/v1/cost-pools",
        {"machine": "cnc-01", "period": "2026-11", "category": "space", "amount": True},
        422,
        [["body", "amount"]],
    ),
    (
        "POST",
        "/v1/cost-pools",
        {"machine": "cnc-01", "period": "2026-11", "category": "space", "amount": "100"},
        422,
        [["body", "amount"]],
    ),
    (
        "POST",
        "/v1/cost-pools",
        {"machine": "cnc-01", "period": "2026-11", "category": "space", "amount": 100.0},
        422,
        [["body", "amount"]],
    ),
    (
        "POST",
        "/v1/cost-pools",
        {"machine": "cnc-01", "period": "2026-13", "category": "space", "amount": 1},
        422,
        [["body", "period"]],
    ),
    (
        "POST",
        "/v1/cost-pools",
        {"machine": "cnc-01", "period": "2026-11", "category": "snacks", "amount": 1},
        422,
        [["body", "category"]],
    ),
    (
        "POST",
        "/v1/cost-pools",
        {"machine": "cnc-99", "period": "2026-11", "category": "space", "amount": 1},
        422,
        [["body", "machine"]],
    ),
    ("POST", "/v1/badges", {"number": 0, "tenant_id": "acme", "valid_from": "2026-01-01"}, 422, [["body", "number"]]),
    (
        "POST",
        "/v1/badges",
        {"number": 2**31, "tenant_id": "acme", "valid_from": "2026-01-01"},
        422,
        [["body", "number"]],
    ),
    (
        "POST",
        "/v1/badges",
        {"number": 7, "tenant_id": "acme", "valid_from": "2026-02-30"},
        422,
        [["body", "valid_from"]],
    ),
    ("POST", "/v1/badges", {"number": 7, "tenant_id": "acme", "valid_from": "2026-1-1"}, 422, [["body", "valid_from"]]),
    (
        "POST",
        "/v1/badges",
        {"number": 7, "tenant_id": "acme", "valid_from": "2026-01-01T00:00:00"},
        422,
        [["body", "valid_from"]],
    ),
    (
        "POST",
        "/v1/badges",
        {"number": 7, "tenant_id": "acme", "valid_from": "2026-01-01", "valid_to": "2025-01-01"},
        422,
        [["body", "valid_to"]],
    ),
    # Instants: an offset is required (naive is refused), ranges are checked, numbers are not times.
    (
        "POST",
        "/v1/bookings",
        {"machine": "cnc-01", "tenant_id": "acme", "start": "2026-11-03T08:00:00", "end": "2026-11-03T09:00:00+07:00"},
        422,
        [["body", "start"]],
    ),
    (
        "POST",
        "/v1/bookings",
        {"machine": "cnc-01", "tenant_id": "acme", "start": 1793692800000, "end": "2026-11-03T09:00:00+07:00"},
        422,
        [["body", "start"]],
    ),
    (
        "POST",
        "/v1/bookings",
        {
            "machine": "cnc-01",
            "tenant_id": "acme",
            "start": "2026-11-03T08:00:00+07:00",
            "end": "2226-11-03T09:00:00+07:00",
        },
        422,
        [["body", "end"]],
    ),
    (
        "POST",
        "/v1/bookings",
        {
            "machine": "cnc-01",
            "tenant_id": "acme",
            "start": "2026-11-03T08:00:00+07:00",
            "end": "2026-11-03T08:00:00+07:00",
        },
        422,
        [["body", "end"]],
    ),
    (
        "POST",
        "/v1/bookings",
        {
            "machine": "cnc-01",
            "tenant_id": "acme",
            "start": "2026-11-03T08:00:00+07:00",
            "end": "2026-12-05T08:00:00+07:00",
        },
        422,
        [["body", "end"]],
    ),  # longer than 31 days
    (
        "POST",
        "/v1/bookings",
        {
            "machine": "cnc-01",
            "tenant_id": "nobody",
            "start": "2026-11-03T08:00:00+07:00",
            "end": "2026-11-03T09:00:00+07:00",
        },
        422,
        [["body", "tenant_id"]],
    ),
    ("PATCH", f"/v1/badges/{2**63}", {"valid_to": "2027-01-01"}, 404, None),
    ("GET", f"/v1/bookings/{10**30}", None, 404, None),
    ("GET", "/v1/bookings/-1", None, 404, None),
    ("GET", "/v1/bookings/abc", None, 422, [["path", "booking_id"]]),
    ("GET", "/v1/tenants/" + "é" * 300, None, 404, None),
    ("GET", "/v1/tenants/%00", None, 404, None),
    ("GET", "/v1/bookings?from=2026-11-02T08:00:00", None, 422, [["query", "from"]]),
    ("GET", "/v1/bookings?limit=0", None, 422, [["query", "limit"]]),
    ("GET", "/v1/bookings?limit=10001", None, 422, [["query", "limit"]]),
    ("GET", "/v1/bookings?tenant=" + "x" * 65, None, 422, [["query", "tenant"]]),
]


def test_hostile_and_malformed_input(world: World) -> None:
    wrong: list[tuple[Any, ...]] = []
    for method, path, body, status, locs in HOSTILE:
        raw = body if isinstance(body, bytes) else None
        got = world.call("admin", method, path, None if raw is not None else body, raw=raw)
        if got.status_code != status:
            wrong.append((method, path[:60], got.status_code, status, got.text[:200]))
            continue
        if locs is not None:
            errors = got.json()["detail"]
            if [e["loc"] for e in errors] != locs:
                wrong.append((method, path[:60], "locs", [e["loc"] for e in errors], locs))
            # Each message names its field, and a refused input is echoed only cut short.
            for e in errors:
                where = ".".join(str(p) for p in e["loc"][1:]) or "body"
                if e["loc"][0] == "body" and not e["msg"].startswith(f"{where}: "):
                    wrong.append((method, path[:60], "msg", e["msg"]))
            if len(got.content) > 2000:
                wrong.append((method, path[:60], "echo", len(got.content)))
    assert wrong == []
    # Nothing hostile got in; unicode that is text is kept as sent.
    assert [t["id"] for t in world.call("admin", "GET", "/v1/tenants").json()] == ["acme", "batik"]
    name = "PT Batik Ñusantara 🏭 — 株式会社"
    got = world.call("admin", "POST", "/v1/tenants", {"id": "nusantara", "name": name})
    assert got.status_code == 201
    assert world.call("admin", "GET", "/v1/tenants/nusantara").json()["name"] == name


def test_validation_errors_name_every_field(world: World) -> None:
    got = world.call("admin", "POST", "/v1/tariffs", {"code": "BAD CODE", "rate_per_hour": 1.5, "tax_rate_bp": -1})
    assert got.status_code == 422
    errors = {tuple(e["loc"]): e["msg"] for e in got.json()["detail"]}
    assert set(errors) == {
        ("body", "code"),
        ("body", "machine_class"),  # neither machine nor machine_class
        ("body", "valid_from"),
        ("body", "rate_per_hour"),
        ("body", "tax_rate_bp"),
    }
    assert errors[("body", "valid_from")] == "valid_from: Field required"
    assert errors[("body", "rate_per_hour")] == "rate_per_hour: Input should be a valid integer"
    assert errors[("body", "tax_rate_bp")] == "tax_rate_bp: Input should be greater than or equal to 0"


def test_the_api_answers_in_utc_with_epoch_ms_precision(world: World) -> None:
    got = world.call(
        "admin",
        "POST",
        "/v1/bookings",
        {
            "machine": "cnc-01",
            "tenant_id": "acme",
            "start": "2026-11-03T08:00:00.123456+07:00",
            "end": "2026-11-03T09:30:00+07:00",
        },
    )
    assert got.status_code == 201
    assert (got.json()["start"], got.json()["end"]) == ("2026-11-03T01:00:00.123000Z", "2026-11-03T02:30:00Z")
    with world.db() as s:
        row = s.get(models.Booking, got.json()["id"])
        assert row is not None
        # 2026-11-03T01:00:00Z = 1793667600 s; the microseconds beyond the ms are dropped.
        assert (row.start_ms, row.end_ms) == (1_793_667_600_123, 1_793_673_000_000)
    assert datetime(2026, 11, 3, 1, 0, tzinfo=UTC).timestamp() == 1_793_667_600
