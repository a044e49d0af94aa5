"""The invoice routes (/v1/invoices ...) over a real business DB (SQLite and PostgreSQL) and an in-memory store.

A hand-made November 2026 at the example site (Asia/Jakarta): on cnc-01 (class cnc-mill-v1) acme's badge 1001 runs
Tuesday 3 November 08:00-10:00 and batik's badge 2001 runs 13:00-13:45, idle (no badge) around both; no other
machine has data in the period. The tariff bills RUNNING time at 120,000 rupiah per hour in 1-minute increments,
no minimum, no energy, no parts, 11 % tax, and there are no cost pools, so (rounding half up):

    acme:  120 min x 120,000 / 60 = 240,000; tax 240,000 x 1100 / 10,000 = 26,400; total 266,400
    batik:  45 min x 120,000 / 60 =  90,000; tax  90,000 x 1100 / 10,000 =  9,900; total  99,900

The watermark grace is 45 minutes: a period closes once every machine has a sample at or after 1 December 00:45
local (2026-11-30T17:45Z). `caught_up` writes one such sample for every machine; without it every machine lags.
The clock is frozen at 2026-12-02 09:00 local. The tenant key under test is acme's: "own" is acme's invoice,
"foreign" batik's, "missing" an id no row has.
"""

from __future__ import annotations

import csv as csvlib
import io
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.db import repo
from api.db.billingfile import load_billing, parse_billing
from api.db.engine import open_engine, sessions
from shopfloor.config import SiteConfig, default_site_path
from shopfloor.contracts import SignalValue
from shopfloor.memstore import MemoryStore
from shopfloor.store import Point

pytestmark = pytest.mark.integration

JKT = ZoneInfo("Asia/Jakarta")
NOW = datetime(2026, 12, 2, 9, 0, tzinfo=JKT)
PERIOD = "2026-11"
GRACE_MIN = 45
MARK = datetime(2026, 12, 1, 0, 45, tzinfo=JKT)  # period end + grace
STEP = timedelta(seconds=30)  # well inside the example site's silence allowance (60 s heartbeat + 3 polls + 1 s)
RATE = 120_000
MISSING = 987_654
ROLES = ("admin", "operator", "auditor", "acme")
WANT = {"acme": (240_000, 26_400, 266_400), "batik": (90_000, 9_900, 99_900)}
BILLING: dict[str, Any] = {
    "facility_name": "Sentra Berbagi Pabrik",
    "policy": "capacity",
    "watermark_grace_min": GRACE_MIN,
    "tariffs": [
        {
            "code": "cnc",
            "version": 1,
            "machine_class": "cnc-mill-v1",
            "valid_from": "2026-01-01",
            "rate_per_hour": RATE,
            "billable": ["running"],
            "tax_rate_bp": 1100,
        }
    ],
}


def ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def day(hhmm: str) -> datetime:
    """Tuesday 2026-11-03 at hh:mm, local time."""
    h, m = hhmm.split(":")
    return datetime(2026, 11, 3, int(h), int(m), tzinfo=JKT)


def telemetry(machine: str, when: datetime, values: dict[str, SignalValue]) -> Point:
    return Point("telemetry", {"site": "bdg", "machine": machine}, values, ms(when))


# (start, state, badge, parts made in the stretch); each stretch holds until the next one starts.
CNC01 = [
    ("07:30", "IDLE", 0, 0),
    ("08:00", "RUNNING", 1001, 96),
    ("10:00", "IDLE", 0, 0),
    ("13:00", "RUNNING", 2001, 47),
    ("13:45", "IDLE", 0, 0),
]
CNC01_END = "14:30"


def november() -> list[Point]:
    """cnc-01's Tuesday: full samples every STEP; a stretch's parts rise evenly over its samples, the last of them
    seen at the next stretch's first sample (so every part is made while its stretch holds)."""
    out: list[Point] = []
    base = 5_000
    ends = [day(s[0]) for s in CNC01[1:]] + [day(CNC01_END)]
    for (start, state, badge, parts), end in zip(CNC01, ends, strict=True):
        steps = int((end - day(start)) / STEP)
        for k in range(steps):
            values: dict[str, SignalValue] = {
                "state": state,
                "badge": badge,
                "job": "",
                "good_count": base + k * parts // steps,
            }
            out.append(telemetry("cnc-01", day(start) + k * STEP, values))
        base += parts
    out.append(telemetry("cnc-01", day(CNC01_END), {"state": "IDLE", "badge": 0, "job": "", "good_count": base}))
    return out


def caught_up(site: SiteConfig, skip: tuple[str, ...] = ()) -> list[Point]:
    """One sample at the watermark for every machine but skip: their data reaches the period end plus grace."""
    return [telemetry(m.id, MARK, {"state": "OFF", "badge": 0}) for m in site.machines if m.id not in skip]


@dataclass
class World:
    """The app over a fresh business DB and an in-memory store holding November."""

    client: TestClient
    db: sessionmaker[Session]
    store: MemoryStore
    site: SiteConfig
    keys: dict[str, str] = field(default_factory=dict)

    def call(self, who: str, method: str, path: str, **kwargs: Any) -> Response:
        headers = {"Authorization": f"Bearer {self.keys[who]}", **kwargs.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kwargs)

    def draft(self) -> dict[str, Any]:
        resp = self.call("admin", "POST", f"/v1/invoices/{PERIOD}/draft")
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    def drafts(self) -> dict[str, int]:
        """Draft the period; the draft ids by tenant."""
        return {d["tenant"]: d["id"] for d in self.draft()["drafts"]}


@pytest.fixture
def world(migrated_db_url: str, example_site: SiteConfig) -> Iterator[World]:
    engine = open_engine(migrated_db_url)
    factory = sessions(engine)
    store = MemoryStore()
    store.write(november())
    app = create_app(example_site, store, db=factory, clock=lambda: NOW)
    w = World(TestClient(app), factory, store, example_site)
    with factory() as s:
        repo.import_billing(s, load_billing(default_site_path()), now_ms=0, zone=JKT)
        repo.import_billing(s, parse_billing(BILLING), now_ms=0, zone=JKT)
        for who, role, tenant in (
            ("admin", "admin", None),
            ("operator", "operator", None),
            ("auditor", "auditor", None),
            ("acme", "tenant", "acme"),
            ("batik", "tenant", "batik"),
        ):
            w.keys[who] = repo.create_key(s, name=f"{who}-key", role=role, tenant=tenant, now_ms=0)[1]
        s.commit()
    yield w
    w.client.close()
    engine.dispose()


def ledger_of(w: World) -> dict[str, int]:
    """Draft the period and finalize acme's (with an override); batik's stays a draft. Ids by relation to acme."""
    ids = w.drafts()
    done = w.call("admin", "POST", f"/v1/invoices/{ids['acme']}/finalize", json={"override": "test: close early"})
    assert done.status_code == 200, done.text
    return {"own": ids["acme"], "foreign": ids["batik"], "missing": MISSING}


def admin_list(w: World, **params: str) -> list[dict[str, Any]]:
    resp = w.call("admin", "GET", "/v1/invoices", params=params)
    assert resp.status_code == 200, resp.text
    listed: list[dict[str, Any]] = resp.json()["invoices"]
    return listed


def not_found(invoice_id: int | str) -> dict[str, str]:
    return {"detail": f"invoice {invoice_id} not found"}


NO_MONEY = {"detail": "this key may not see invoices (no money for this role)"}
ADMIN_ONLY = {"detail": "this key may not change invoices (admin only)"}


def pdf_text(content: bytes) -> str:
    done = subprocess.run(
        ["pdftotext", "-layout", "-", "-"], input=content, capture_output=True, check=True, timeout=60
    )
    return " ".join(done.stdout.decode().split())


# ---- role x route x (own / foreign / missing) --------------------------------------------------------------------

# Expected status for (admin, operator, auditor, acme) by the id's relation to acme. Reads: admin and auditor read
# all; operators see no money (403 whatever the id); a tenant reads its own, and another's is as nonexistent (404).
READ_ROUTES = ("/v1/invoices/{id}", "/v1/invoices/{id}.pdf", "/v1/invoices/{id}.csv")
READ_TABLE = {"own": (200, 403, 200, 200), "foreign": (200, 403, 200, 404), "missing": (404, 403, 404, 404)}
CONTENT_TYPES = {"": "application/json", ".pdf": "application/pdf", ".csv": "text/csv; charset=utf-8"}


def test_reads_by_role_and_id(world: World) -> None:
    ids = ledger_of(world)
    wrong: list[str] = []
    for route in READ_ROUTES:
        suffix = route.removeprefix("/v1/invoices/{id}")
        for relation, codes in READ_TABLE.items():
            for who, want in zip(ROLES, codes, strict=True):
                invoice_id = ids[relation]
                resp = world.call(who, "GET", route.format(id=invoice_id))
                where = f"{who} GET {route} {relation}"
                if resp.status_code != want:
                    wrong.append(f"{where}: {resp.status_code}, want {want}: {resp.text[:200]}")
                elif want == 404 and resp.json() != not_found(invoice_id):
                    wrong.append(f"{where}: 404 body {resp.text[:200]}")
                elif want == 403 and resp.json() != NO_MONEY:
                    wrong.append(f"{where}: 403 body {resp.text[:200]}")
                elif want == 200:
                    if resp.headers["content-type"] != CONTENT_TYPES[suffix]:
                        wrong.append(f"{where}: content type {resp.headers['content-type']}")
                    tenant = "acme" if relation == "own" else "batik"
                    if suffix == "" and resp.json()["tenant"]["id"] != tenant:
                        wrong.append(f"{where}: the document of {resp.json()['tenant']}")
                    if suffix == ".csv" and tenant not in resp.text:
                        wrong.append(f"{where}: the csv has no {tenant}")
    assert wrong == []


def test_the_list_by_role(world: World) -> None:
    ids = ledger_of(world)
    want = {"admin": {ids["own"], ids["foreign"]}, "auditor": {ids["own"], ids["foreign"]}, "acme": {ids["own"]}}
    for who, seen in want.items():
        resp = world.call(who, "GET", "/v1/invoices")
        assert resp.status_code == 200, (who, resp.text)
        assert {i["id"] for i in resp.json()["invoices"]} == seen, who
    batik = world.call("batik", "GET", "/v1/invoices").json()["invoices"]
    assert [i["id"] for i in batik] == [ids["foreign"]]
    # Operators: 403 for the list, whatever the query (the role is checked before the query is validated).
    for params in ({}, {"tenant": "acme"}, {"period": "not a period"}, {"status": "bogus"}):
        resp = world.call("operator", "GET", "/v1/invoices", params=params)
        assert (resp.status_code, resp.json()) == (403, NO_MONEY), params


def _writes(ids: dict[str, int]) -> list[tuple[str, str, Any]]:
    out: list[tuple[str, str, Any]] = [("POST", f"/v1/invoices/{PERIOD}/draft", None)]
    for relation in ("own", "foreign", "missing"):
        out += [
            ("POST", f"/v1/invoices/{ids[relation]}/finalize", {}),
            ("POST", f"/v1/invoices/{ids[relation]}/finalize", {"override": "let me"}),
            ("POST", f"/v1/invoices/{ids[relation]}/void", {"reason": "let me"}),
            # Bodies that would be 422: the role is refused first, so they learn nothing of the body's rules.
            ("POST", f"/v1/invoices/{ids[relation]}/void", None),
            ("POST", f"/v1/invoices/{ids[relation]}/finalize", {"override": "", "junk": 1}),
        ]
    return out


@pytest.mark.parametrize("who", ["operator", "auditor", "acme", "batik"])
def test_only_admins_write(world: World, who: str) -> None:
    ids = ledger_of(world)
    before = admin_list(world)
    for method, path, body in [*_writes(ids), ("POST", "/v1/invoices/2100-99/draft", None)]:
        resp = world.call(who, method, path, **({} if body is None else {"json": body}))
        assert (resp.status_code, resp.json()) == (403, ADMIN_ONLY), (who, path, body, resp.text)
    assert admin_list(world) == before


def test_admin_writes_on_a_missing_id_are_404(world: World) -> None:
    ledger_of(world)
    for path, body in (
        (f"/v1/invoices/{MISSING}/finalize", {"override": "x"}),
        (f"/v1/invoices/{MISSING}/finalize", None),
        (f"/v1/invoices/{MISSING}/void", {"reason": "x"}),
    ):
        resp = world.call("admin", "POST", path, **({} if body is None else {"json": body}))
        assert (resp.status_code, resp.json()) == (404, not_found(MISSING)), path


# ---- the list: filters and hostile query strings -----------------------------------------------------------------


def test_list_filters(world: World) -> None:
    ids = ledger_of(world)
    assert [i["id"] for i in admin_list(world, period=PERIOD)] == [ids["own"], ids["foreign"]]
    assert admin_list(world, period="2026-10") == []
    assert [i["id"] for i in admin_list(world, tenant="batik")] == [ids["foreign"]]
    assert [i["id"] for i in admin_list(world, status="finalized")] == [ids["own"]]
    assert [i["id"] for i in admin_list(world, status="draft")] == [ids["foreign"]]
    assert admin_list(world, status="void") == []
    assert [i["id"] for i in admin_list(world, kind="invoice")] == [ids["own"], ids["foreign"]]
    assert admin_list(world, kind="credit_note") == []
    assert admin_list(world, tenant="cipta") == []  # a tenant with nothing billed
    # A tenant's own filter works; another tenant's, or one that does not exist, is the same 404.
    own = world.call("acme", "GET", "/v1/invoices", params={"tenant": "acme", "status": "finalized"})
    assert [i["id"] for i in own.json()["invoices"]] == [ids["own"]]
    for tenant in ("batik", "nobody", "cipta"):
        resp = world.call("acme", "GET", "/v1/invoices", params={"tenant": tenant})
        assert (resp.status_code, resp.json()) == (404, {"detail": "tenant not found"}), tenant
    assert world.call("admin", "GET", "/v1/invoices", params={"tenant": "nobody"}).json() == {
        "detail": "tenant not found"
    }


@pytest.mark.parametrize(
    ("params", "status", "param"),
    [
        ([("period", PERIOD), ("period", PERIOD)], 422, "period"),
        ([("tenant", "acme"), ("tenant", "batik")], 422, "tenant"),
        ([("status", "draft"), ("status", "draft")], 422, "status"),
        ([("kind", "invoice"), ("kind", "credit_note")], 422, "kind"),
        ({"period": "2026-13"}, 422, "period"),
        ({"period": "0000-01"}, 422, "period"),
        ({"period": "2026-1"}, 422, "period"),
        ({"period": "../.."}, 422, "period"),
        ({"period": "2026-11\x00"}, 422, "period"),
        ({"period": "２０２６-11"}, 422, "period"),  # full-width digits are not ASCII digits
        ({"period": "2026-11" * 2000}, 422, "period"),  # 14 kB
        ({"tenant": "a" * 10_000}, 422, "tenant"),
        ({"status": "Finalized"}, 422, "status"),
        ({"status": "void' OR '1'='1"}, 422, "status"),
        ({"kind": "credit"}, 422, "kind"),
        ({"kind": "🧾"}, 422, "kind"),
        ({"tenant": "acme\x00"}, 404, None),
        ({"tenant": "../batik"}, 404, None),
        ({"tenant": "ａｃｍｅ"}, 404, None),
        ({"tenant": "ACME"}, 404, None),
    ],
)
@pytest.mark.parametrize("who", ["admin", "acme"])
def test_hostile_list_queries(world: World, params: Any, status: int, param: str | None, who: str) -> None:
    ledger_of(world)
    resp = world.call(who, "GET", "/v1/invoices", params=params)
    assert resp.status_code == status, resp.text
    body = resp.json()
    if param is None:
        assert body == {"detail": "tenant not found"}
    else:
        assert [e["loc"] for e in body["detail"]] == [["query", param]]
    assert len(resp.content) < 2_000  # huge inputs are not echoed whole


@pytest.mark.parametrize("suffix", ["", ".pdf", ".csv"])
@pytest.mark.parametrize("who", ["admin", "acme"])
def test_hostile_ids(world: World, suffix: str, who: str) -> None:
    ledger_of(world)
    # Ids no row can have answer exactly like a nonexistent one; text that is not an int is 422 naming the id.
    for text in ("0", "-1", "-9223372036854775809", "2147483648", "9223372036854775808", "99999999999999999999"):
        resp = world.call(who, "GET", f"/v1/invoices/{text}{suffix}")
        assert (resp.status_code, resp.json()) == (404, not_found(text)), text
    for text in ("1.5", "1e3", "0x1", "abc", "%00", "1;2", "9" * 5000):
        resp = world.call(who, "GET", f"/v1/invoices/{text}{suffix}")
        assert resp.status_code == 422, (text, resp.text)
        assert [e["loc"] for e in resp.json()["detail"]] == [["path", "invoice_id"]]
        assert len(resp.content) < 2_000


def test_an_unknown_lang_is_422(world: World) -> None:
    ids = ledger_of(world)
    for suffix in (".pdf", ".csv"):
        for lang in ("fr", "", "EN", "id\x00"):
            resp = world.call("acme", "GET", f"/v1/invoices/{ids['own']}{suffix}", params={"lang": lang})
            assert resp.status_code == 422, (suffix, lang)
            assert [e["loc"] for e in resp.json()["detail"]] == [["query", "lang"]]


# ---- draft ---------------------------------------------------------------------------------------------------------


def test_drafts_bill_each_tenants_session(world: World) -> None:
    body = world.draft()
    assert body["period"] == PERIOD and body["skipped"] == [] and body["unallocated"] == 0
    got = {d["tenant"]: (d["subtotal"], d["tax"], d["total"]) for d in body["drafts"]}
    assert got == WANT
    assert all(d["status"] == "draft" and d["number"] is None and d["kind"] == "invoice" for d in body["drafts"])
    # Only cnc-01 has data, and it ends on 3 November: every machine lags the watermark.
    assert [lag["machine"] for lag in body["lagging"]] == [m.id for m in world.site.machines]
    assert {lag["machine"]: lag["newest"] for lag in body["lagging"]}["cnc-01"] == "2026-11-03T07:30:00+00:00"
    doc = world.call("admin", "GET", f"/v1/invoices/{body['drafts'][0]['id']}").json()
    [line] = doc["lines"]
    # 08:00-10:00 RUNNING = 120 billable minutes at 120,000 / h.
    assert (line["kind"], line["quantity"], line["unit_price"], line["amount"]) == ("machine_time", 120, RATE, 240_000)
    assert doc["status"] == "draft" and doc["hash"] is None


@pytest.mark.parametrize(
    "period",
    ["2026-13", "2026-1", "26-11", "2026-11-01", "2100-01", "1999-12", "2026-00", "２０２６-11", "%00", "2026-11;"],
)
def test_draft_refuses_a_bad_period(world: World, period: str) -> None:
    resp = world.call("admin", "POST", f"/v1/invoices/{period}/draft")
    assert resp.status_code == 422, resp.text
    [error] = resp.json()["detail"]
    assert error["loc"] == ["path", "period"] and "YYYY-MM" in error["msg"]
    assert admin_list(world) == []


@pytest.mark.parametrize("period", ["", "..%2F..", "..", "../.."])
def test_a_period_that_is_no_path_segment_matches_no_route(world: World, period: str) -> None:
    # "" and an encoded slash cannot be one path segment, and the client resolves dot segments away (".." leaves
    # /v1/invoices): no route matches (Starlette's plain 404), nothing is drafted.
    resp = world.call("admin", "POST", f"/v1/invoices/{period}/draft")
    assert (resp.status_code, resp.json()) == (404, {"detail": "Not Found"})
    assert admin_list(world) == []


def test_redrafting_replaces_the_drafts(world: World) -> None:
    first = world.drafts()
    again = world.drafts()
    assert set(first) == set(again) == {"acme", "batik"}
    assert not set(first.values()) & set(again.values())
    for old in first.values():
        assert world.call("admin", "GET", f"/v1/invoices/{old}").json() == not_found(old)
    assert sorted(i["id"] for i in admin_list(world)) == sorted(again.values())


def test_a_tenant_with_a_finalized_invoice_is_skipped(world: World) -> None:
    ids = ledger_of(world)
    frozen = world.call("admin", "GET", f"/v1/invoices/{ids['own']}").json()
    body = world.draft()
    # The response says so: acme in skipped, only batik's draft made again; acme's invoice is untouched.
    assert body["skipped"] == ["acme"]
    assert [d["tenant"] for d in body["drafts"]] == ["batik"]
    assert world.call("admin", "GET", f"/v1/invoices/{ids['own']}").json() == frozen
    assert {(i["tenant"], i["status"]) for i in admin_list(world)} == {("acme", "finalized"), ("batik", "draft")}


# ---- finalize ------------------------------------------------------------------------------------------------------


def test_finalize_waits_for_the_watermark_or_an_override(world: World) -> None:
    ids = world.drafts()
    refused = world.call("admin", "POST", f"/v1/invoices/{ids['acme']}/finalize")
    assert refused.status_code == 409
    detail = refused.json()["detail"]
    assert "5 machine(s)" in detail and f"plus {GRACE_MIN} min" in detail and "override" in detail
    assert all(m.id in detail for m in world.site.machines)
    # Every machine but brake-01 reaches the watermark: only brake-01 is named.
    world.store.write(caught_up(world.site, skip=("brake-01",)))
    refused = world.call("admin", "POST", f"/v1/invoices/{ids['acme']}/finalize", json={})
    assert refused.status_code == 409
    detail = refused.json()["detail"]
    assert "1 machine(s)" in detail and "brake-01 (no data)" in detail and "cnc-01" not in detail
    assert world.call("admin", "GET", f"/v1/invoices/{ids['acme']}").json()["status"] == "draft"
    # A sample one ms before the mark is not past it; one at the mark is.
    late = MARK - timedelta(milliseconds=1)
    world.store.write([telemetry("brake-01", late, {"state": "OFF", "badge": 0})])
    assert world.call("admin", "POST", f"/v1/invoices/{ids['acme']}/finalize").status_code == 409
    world.store.write(caught_up(world.site))
    done = world.call("admin", "POST", f"/v1/invoices/{ids['acme']}/finalize")
    assert done.status_code == 200, done.text
    summary = done.json()
    assert (summary["status"], summary["number"], summary["override"]) == ("finalized", "bdg-2026-00001", None)
    assert (summary["subtotal"], summary["tax"], summary["total"]) == WANT["acme"]
    assert len(summary["hash"]) == 64 and summary["finalized"] == NOW.astimezone(UTC).isoformat()


def test_an_override_closes_early_and_is_recorded(world: World) -> None:
    ids = world.drafts()
    reason = "meter of brake-01 offline; Pak Budi approved — 2 Dec"
    done = world.call("admin", "POST", f"/v1/invoices/{ids['batik']}/finalize", json={"override": reason})
    assert done.status_code == 200, done.text
    assert done.json()["override"] == reason and done.json()["number"] == "bdg-2026-00001"
    doc = world.call("batik", "GET", f"/v1/invoices/{ids['batik']}").json()
    assert doc["override"] == reason and doc["status"] == "finalized" and doc["number"] == "bdg-2026-00001"
    # A reason of exactly MAX_REASON characters is accepted.
    edge = world.call("admin", "POST", f"/v1/invoices/{ids['acme']}/finalize", json={"override": "x" * 500})
    assert edge.status_code == 200 and edge.json()["override"] == "x" * 500


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"override": ""}, ["body", "override"]),
        ({"override": "   "}, ["body", "override"]),
        ({"override": "x" * 501}, ["body", "override"]),
        ({"override": 5}, ["body", "override"]),
        ({"override": ["why"]}, ["body", "override"]),
        ({"override": True}, ["body", "override"]),
        ({"override": "line one\nline two"}, ["body", "override"]),
        ({"override": "nul\x00"}, ["body", "override"]),
        ({"override": "\u202eevil"}, ["body", "override"]),
        ({"override": "ok", "number": "bdg-2026-00042"}, ["body", "number"]),
        ({"reason": "x"}, ["body", "reason"]),
        ([], ["body"]),
        ("override", ["body"]),
    ],
)
def test_finalize_refuses_bad_bodies(world: World, body: Any, loc: list[str]) -> None:
    ids = world.drafts()
    resp = world.call("admin", "POST", f"/v1/invoices/{ids['acme']}/finalize", json=body)
    assert resp.status_code == 422, resp.text
    assert [e["loc"] for e in resp.json()["detail"]] == [loc]
    assert world.call("admin", "GET", f"/v1/invoices/{ids['acme']}").json()["status"] == "draft"


def test_finalize_refuses_malformed_json(world: World) -> None:
    ids = world.drafts()
    for raw in (b"{", b"\xff\xfe", b'{"override": "a"' + b" " * 100_000):
        resp = world.call(
            "admin",
            "POST",
            f"/v1/invoices/{ids['acme']}/finalize",
            content=raw,
            headers={"Content-Type": "application/json"},
        )
        assert resp.status_code == 422, raw[:20]
        assert len(resp.content) < 2_000


def test_finalizing_twice_is_409(world: World) -> None:
    ids = ledger_of(world)
    # Before the watermark still, but the answer is about the state, not the watermark.
    for body in ({}, {"override": "again"}):
        resp = world.call("admin", "POST", f"/v1/invoices/{ids['own']}/finalize", json=body)
        assert resp.status_code == 409, resp.text
        assert resp.json() == {"detail": "invoice bdg-2026-00001 is finalized: only a draft can be finalized"}
    assert [i["number"] for i in admin_list(world, status="finalized")] == ["bdg-2026-00001"]


# ---- void and credit notes -----------------------------------------------------------------------------------------


def test_voiding_a_draft_issues_no_credit_note(world: World) -> None:
    ids = world.drafts()
    resp = world.call("admin", "POST", f"/v1/invoices/{ids['batik']}/void", json={"reason": "wrong badge"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["credit_note"] is None
    assert (body["voided"]["id"], body["voided"]["status"], body["voided"]["number"]) == (ids["batik"], "void", None)
    assert [(i["tenant"], i["status"]) for i in admin_list(world, tenant="batik")] == [("batik", "void")]
    assert admin_list(world, kind="credit_note") == []
    # A void draft is not finalized later, nor voided again.
    again = world.call("admin", "POST", f"/v1/invoices/{ids['batik']}/finalize", json={"override": "x"})
    assert again.status_code == 409
    assert world.call("admin", "POST", f"/v1/invoices/{ids['batik']}/void", json={"reason": "x"}).status_code == 409


def test_voiding_a_finalized_invoice_issues_the_next_numbered_credit_note(world: World) -> None:
    ids = ledger_of(world)
    resp = world.call("admin", "POST", f"/v1/invoices/{ids['own']}/void", json={"reason": "badge 1001 was lent"})
    assert resp.status_code == 200, resp.text
    voided, credit = resp.json()["voided"], resp.json()["credit_note"]
    assert (voided["id"], voided["status"], voided["number"]) == (ids["own"], "void", "bdg-2026-00001")
    assert (credit["kind"], credit["status"], credit["number"]) == ("credit_note", "finalized", "bdg-2026-00002")
    assert (credit["tenant"], credit["credit_for_id"]) == ("acme", ids["own"])
    subtotal, tax, total = WANT["acme"]
    assert (credit["subtotal"], credit["tax"], credit["total"]) == (-subtotal, -tax, -total)
    # Both in the list (number order), the credit note under kind=credit_note; the tenant sees both.
    assert [(i["id"], i["status"]) for i in admin_list(world, tenant="acme")] == [
        (ids["own"], "void"),
        (credit["id"], "finalized"),
    ]
    assert [i["id"] for i in admin_list(world, kind="credit_note")] == [credit["id"]]
    mine = world.call("acme", "GET", "/v1/invoices", params={"kind": "credit_note"}).json()["invoices"]
    assert [i["id"] for i in mine] == [credit["id"]]
    doc = world.call("acme", "GET", f"/v1/invoices/{credit['id']}").json()
    assert doc["kind"] == "credit_note" and doc["credit_for"] == "bdg-2026-00001"
    assert doc["totals"] == {"subtotal": -subtotal, "tax": -tax, "total": -total}
    assert world.call("batik", "GET", f"/v1/invoices/{credit['id']}").json() == not_found(credit["id"])
    # Voiding again, or voiding (or finalizing) the credit note: 409.
    for invoice_id in (ids["own"], credit["id"]):
        again = world.call("admin", "POST", f"/v1/invoices/{invoice_id}/void", json={"reason": "again"})
        assert again.status_code == 409, again.text
    assert (
        "credit note"
        in world.call("admin", "POST", f"/v1/invoices/{credit['id']}/void", json={"reason": "again"}).json()["detail"]
    )
    final = world.call("admin", "POST", f"/v1/invoices/{credit['id']}/finalize", json={"override": "x"})
    assert final.status_code == 409
    # The tenant can be drafted again once its invoice is void.
    assert [d["tenant"] for d in world.draft()["drafts"]] == ["acme", "batik"]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (None, ["body"]),
        ({}, ["body", "reason"]),
        ({"reason": ""}, ["body", "reason"]),
        ({"reason": " \t "}, ["body", "reason"]),
        ({"reason": "x" * 501}, ["body", "reason"]),
        ({"reason": 7}, ["body", "reason"]),
        ({"reason": None}, ["body", "reason"]),
        ({"reason": "two\r\nlines"}, ["body", "reason"]),
        ({"reason": "ok", "credit": False}, ["body", "credit"]),
    ],
)
def test_void_refuses_bad_reasons(world: World, body: Any, loc: list[str]) -> None:
    ids = ledger_of(world)
    resp = world.call("admin", "POST", f"/v1/invoices/{ids['own']}/void", **({} if body is None else {"json": body}))
    assert resp.status_code == 422, resp.text
    assert [e["loc"] for e in resp.json()["detail"]] == [loc]
    assert [i["status"] for i in admin_list(world, tenant="acme")] == ["finalized"]


# ---- PDF and CSV ---------------------------------------------------------------------------------------------------


def test_pdf_and_csv_files(world: World) -> None:
    ids = ledger_of(world)
    credit = world.call("admin", "POST", f"/v1/invoices/{ids['own']}/void", json={"reason": "redo"}).json()
    note = credit["credit_note"]["id"]
    cases = [
        (ids["own"], "bdg-2026-00001", "INVOICE", "FAKTUR"),
        (note, "bdg-2026-00002", "CREDIT NOTE", "NOTA KREDIT"),
        (ids["foreign"], "draft-batik-2026-11", "INVOICE", "FAKTUR"),
    ]
    for invoice_id, name, en, id_word in cases:
        who = "batik" if invoice_id == ids["foreign"] else "acme"
        pdf = world.call(who, "GET", f"/v1/invoices/{invoice_id}.pdf")
        assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
        assert pdf.headers["content-type"] == "application/pdf"
        assert pdf.headers["content-disposition"] == f'inline; filename="{name}.pdf"'
        english = pdf_text(pdf.content)
        assert en in english and id_word not in english
        indonesian = pdf_text(world.call(who, "GET", f"/v1/invoices/{invoice_id}.pdf", params={"lang": "id"}).content)
        assert id_word in indonesian
        csv_en = world.call(who, "GET", f"/v1/invoices/{invoice_id}.csv")
        assert csv_en.headers["content-type"] == "text/csv; charset=utf-8"
        assert csv_en.headers["content-disposition"] == f'attachment; filename="{name}.csv"'
        csv_id = world.call(who, "GET", f"/v1/invoices/{invoice_id}.csv", params={"lang": "id"})
        header_en, header_id = csv_en.text.splitlines()[0], csv_id.text.splitlines()[0]
        assert "Machine" in header_en and "Mesin" in header_id and header_en != header_id
    # The credit note's rows are the invoice's negated.
    rows = list(csvlib.reader(io.StringIO(world.call("acme", "GET", f"/v1/invoices/{note}.csv").text)))
    assert any("-240000" in row for row in rows) and any("-266400" in row for row in rows)


# ---- nothing of another tenant -------------------------------------------------------------------------------------

# batik's: its id and name, its badge and session (record id, start), its amounts.
BATIK_STRINGS = {"batik", "Batik", "2001", f"cnc-01/2001/{ms(day('13:00'))}"}
BATIK_NUMBERS = {2001, ms(day("13:00")), ms(day("13:45")), *WANT["batik"]}


def leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from leaves(v)
    else:
        yield value


def found(bodies: list[Any], csvs: list[str]) -> set[str | int]:
    """Which of batik's strings and numbers occur in the JSON bodies (as leaves) and CSV texts (as cells)."""
    hits: set[str | int] = set()
    for leaf in leaves(bodies):
        if isinstance(leaf, str):
            hits |= {s for s in BATIK_STRINGS if s in leaf}
        elif isinstance(leaf, int) and not isinstance(leaf, bool):
            hits |= {n for n in BATIK_NUMBERS if leaf == n}
    for text in csvs:
        hits |= {s for s in BATIK_STRINGS if s in text}
        cells = {cell for row in csvlib.reader(io.StringIO(text)) for cell in row}
        hits |= {n for n in BATIK_NUMBERS if str(n) in cells or str(-n) in cells}
    return hits


def everything(w: World, who: str, ids: list[int]) -> tuple[list[Any], list[str]]:
    """Every JSON body and CSV text who gets from the invoice routes for these ids (404s included)."""
    bodies: list[Any] = []
    for params in ({}, {"period": PERIOD}, {"status": "finalized"}, {"kind": "credit_note"}, {"tenant": "batik"}):
        bodies.append(w.call(who, "GET", "/v1/invoices", params=params).json())
    csvs: list[str] = []
    for invoice_id in ids:
        bodies.append(w.call(who, "GET", f"/v1/invoices/{invoice_id}").json())
        for lang in ("en", "id"):
            resp = w.call(who, "GET", f"/v1/invoices/{invoice_id}.csv", params={"lang": lang})
            if resp.status_code == 200:
                csvs.append(resp.text)
            else:
                bodies.append(resp.json())
    return bodies, csvs


def test_a_tenant_sees_nothing_of_another_tenant(world: World) -> None:
    ids = ledger_of(world)
    world.call("admin", "POST", f"/v1/invoices/{ids['foreign']}/finalize", json={"override": "early"})
    world.call("admin", "POST", f"/v1/invoices/{ids['own']}/void", json={"reason": "redo"})
    world.call("admin", "POST", f"/v1/invoices/{ids['foreign']}/void", json={"reason": "redo"})
    every = [i["id"] for i in admin_list(world)]
    assert len(every) == 4  # two void invoices, two credit notes
    # The positive control: an all-seeing key finds every one of batik's strings and numbers.
    assert found(*everything(world, "admin", every)) == BATIK_STRINGS | BATIK_NUMBERS
    bodies, csvs = everything(world, "acme", every)
    assert found(bodies, csvs) == set()
    assert len(csvs) == 4 and all("acme" in text for text in csvs)  # its own two documents, in two languages
