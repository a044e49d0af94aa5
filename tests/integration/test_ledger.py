"""The invoice ledger on real SQLite and real PostgreSQL: drafts, gapless numbers, the hash chain, void and credit
notes, tampering found by verify, reproducibility from stored inputs, and `shopfloor invoices`.

Documents are made the way the shell makes them: inputs -> api.core.billing.charging.charge -> invoice_document.
Hashes are checked against hashlib directly (the chain's definition), not against the code under test.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.core.billing.charging import Inputs, charge
from api.core.billing.document import canonical, inputs_to_json, invoice_document
from api.core.billing.export import to_csv, to_json
from api.core.billing.model import Category, Policy, Tariff, UsageRecord
from api.db import ledger
from api.db.engine import open_engine, sessions
from api.db.ledger import Conflict, LedgerError, NotFound
from api.db.models import Invoice, InvoiceCounter, InvoiceLine, Tenant, UsageRecordRow
from shopfloor import cli

pytestmark = pytest.mark.integration

ZONE = ZoneInfo("Asia/Jakarta")
NOW = 1_796_000_000_000  # 2026-12-01 (UTC): "now" for every write; the ledger never reads the clock
SITE = "bdg"
MIN = 60_000
HOUR = 3_600_000
TARIFF = Tariff(
    code="cnc-std",
    version=1,
    machine=None,
    machine_class="cnc",
    valid_from_ms=0,
    valid_to_ms=None,
    rate_per_hour=120_000,
    increment_min=6,
    energy_per_kwh=1_500,
)
TENANTS = {"t-a": "CV Alpha", "t-b": "PT Beta"}


def month_start(period: str) -> int:
    """Epoch ms of the first instant of the month in the site's zone (Asia/Jakarta, UTC+7, no DST)."""
    year, month = int(period[:4]), int(period[5:])
    return int(datetime(year, month, 1, tzinfo=ZONE).timestamp()) * 1000


def next_period(period: str) -> str:
    year, month = int(period[:4]), int(period[5:])
    return f"{year + month // 12}-{month % 12 + 1:02d}"


def make_inputs(period: str, *, extra_minutes: int = 0, first_tenant: str = "t-a") -> Inputs:
    """Two tenants on cnc-01 in the period: t-a 62 min running + 10 min breakdown, t-b 30 min running.

    first_tenant: who the first session (badge 101) is billed to (a corrected badge mapping moves it to t-b).
    """
    start = month_start(period)
    end = month_start(next_period(period))
    first = start + 2 * 24 * HOUR + 2 * HOUR  # the 3rd, 09:00 local
    records = (
        UsageRecord(
            id=f"cnc-01/101/{first}",
            tenant=first_tenant,
            machine="cnc-01",
            machine_class="cnc",
            badge=101,
            start_ms=first,
            end_ms=first + (72 + extra_minutes) * MIN,
            time_ms=((Category.RUNNING, (62 + extra_minutes) * MIN), (Category.BREAKDOWN, 10 * MIN)),
            good=40,
            energy_wh=3_250,
        ),
        UsageRecord(
            id=f"cnc-01/202/{first + 2 * HOUR}",
            tenant="t-b",
            machine="cnc-01",
            machine_class="cnc",
            badge=202,
            start_ms=first + 2 * HOUR,
            end_ms=first + 2 * HOUR + 30 * MIN,
            time_ms=((Category.RUNNING, 30 * MIN),),
            good=12,
            energy_wh=900,
        ),
    )
    return Inputs(
        period=period,
        period_start_ms=start,
        period_end_ms=end,
        records=records,
        bookings=(),
        tariffs=(TARIFF,),
        pools=(),
        capacity=(),
        policy=Policy.CAPACITY,
        loss_map_version="loss-map@1",
    )


def make_document(inputs: Inputs, tenant: str, site: str = SITE) -> dict[str, Any]:
    return invoice_document(
        inputs,
        charge(inputs),
        tenant=tenant,
        tenant_name=TENANTS[tenant],
        site_id=site,
        site_name=f"Site {site}",
        facility_name="Rumah Produksi Bersama",
        time_zone="Asia/Jakarta",
    )


@dataclass
class Db:
    url: str
    engine: Engine
    sessions: sessionmaker[Session]

    def draft(self, tenant: str, period: str = "2026-11", site: str = SITE, **kw: Any) -> int:
        """Save a draft of tenant's invoice (committed) and return its id."""
        inputs = make_inputs(period, **kw)
        with self.sessions() as s:
            inv = ledger.save_draft(
                s,
                site=site,
                tenant=tenant,
                period=period,
                document=make_document(inputs, tenant, site),
                inputs=inputs_to_json(inputs),
                now_ms=NOW,
            )
            s.commit()
            return inv.id

    def finalize(self, invoice_id: int, override: str | None = None) -> Invoice:
        with self.sessions() as s:
            inv = ledger.finalize(s, invoice_id, now_ms=NOW + 1, override=override)
            s.commit()
            return inv

    def void(self, invoice_id: int, reason: str = "wrong tariff") -> Invoice | None:
        with self.sessions() as s:
            out = ledger.void(s, invoice_id, now_ms=NOW + 2, reason=reason)
            s.commit()
            return out

    def verify(self, site: str = SITE, *, recompute: bool = True) -> list[ledger.Problem]:
        with self.sessions() as s:
            return ledger.verify(s, site, recompute=recompute)

    def sql(self, statement: str, **params: Any) -> None:
        with self.engine.begin() as conn:
            conn.execute(sa.text(statement), params)

    def row(self, invoice_id: int) -> Invoice:
        with self.sessions() as s:
            inv = s.get(Invoice, invoice_id)
            assert inv is not None
            _ = list(inv.lines)
            return inv


@pytest.fixture
def db(migrated_db_url: str) -> Iterator[Db]:
    engine = open_engine(migrated_db_url)
    factory = sessions(engine)
    with factory() as s:
        s.add_all([Tenant(id=t, name=n, created_ms=NOW) for t, n in TENANTS.items()])
        s.commit()
    yield Db(migrated_db_url, engine, factory)
    engine.dispose()


def expected_hash(prev: str | None, document: str, inputs: str) -> str:
    """The chain's definition: sha256 of (prev or "") + "\\n" + document + "\\n" + inputs."""
    return hashlib.sha256(((prev or "") + "\n" + document + "\n" + inputs).encode("utf-8")).hexdigest()


# ---- drafts ----------------------------------------------------------------------------------------------------


def test_a_new_draft_replaces_the_old_one_and_its_lines(db: Db) -> None:
    db.draft("t-a")
    second = db.draft("t-a", extra_minutes=30)
    with db.sessions() as s:
        drafts = ledger.list_invoices(s, site=SITE, tenant="t-a", period="2026-11")
        assert [i.id for i in drafts] == [second]
        assert s.execute(sa.select(sa.func.count()).select_from(Invoice)).scalar() == 1
        # The first draft's lines went with it: only the second's are stored.
        n_lines = len(json.loads(drafts[0].document)["lines"])
        assert s.execute(sa.select(sa.func.count()).select_from(InvoiceLine)).scalar() == n_lines
    # 92 min running -> ceil to 6 min increments = 96 min; 120 000/h x 96/60 = 192 000 rupiah machine time.
    inv = db.row(second)
    doc = json.loads(inv.document)
    machine_time = [line for line in doc["lines"] if line["kind"] == "machine_time"]
    assert [(line["quantity"], line["amount"]) for line in machine_time] == [(96, 192_000)]
    assert (inv.subtotal, inv.tax, inv.total) == (
        doc["totals"]["subtotal"],
        doc["totals"]["tax"],
        doc["totals"]["total"],
    )
    assert [row.amount for row in inv.lines] == [line["amount"] for line in doc["lines"]]


def test_drafts_of_other_tenants_and_periods_are_kept(db: Db) -> None:
    a = db.draft("t-a")
    b = db.draft("t-b")
    c = db.draft("t-a", period="2026-12")
    with db.sessions() as s:
        assert sorted(i.id for i in ledger.list_invoices(s, site=SITE, status="draft")) == sorted([a, b, c])


def test_a_draft_is_refused_while_a_finalized_invoice_exists(db: Db) -> None:
    inv = db.finalize(db.draft("t-a"))
    with pytest.raises(Conflict, match=r"bdg-2026-00001.*void it"):
        db.draft("t-a")
    db.void(inv.id)
    again = db.draft("t-a")  # after the credit note, a new invoice
    assert db.finalize(again).number == "bdg-2026-00003"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(kind="credit_note"), "document.kind"),
        (lambda d: d.update(number="bdg-2026-00009"), "document.number"),
        (lambda d: d["tenant"].update(id="t-b"), "document.tenant.id"),
        (lambda d: d["site"].update(id="sby"), "document.site.id"),
        (lambda d: d.update(period="2026-10"), "document.period"),
        (lambda d: d["totals"].update(total=1.5), "float|totals"),
        (lambda d: d["totals"].update(total=True), "document.totals.total"),
        (lambda d: d["lines"][0].update(amount="100"), r"document.lines\[0\].amount"),
        (lambda d: d["lines"][0].update(machine="m" * 65), r"document.lines\[0\].machine"),
        (lambda d: d["lines"][0].update(amount=2**63), r"document.lines\[0\].amount"),
        (lambda d: d.update(lines="none"), "document.lines"),
        # Well-formed, but not what the billing core makes of the inputs: verify could never reproduce it.
        (lambda d: d["lines"][0].update(amount=1), "not the invoice the billing core computes"),
        (lambda d: d["totals"].update(total=0), "not the invoice the billing core computes"),
        (lambda d: d.update(extra="field"), "not the invoice the billing core computes"),
    ],
)
def test_save_draft_refuses_a_bad_document(db: Db, change: Callable[[dict[str, Any]], Any], message: str) -> None:
    inputs = make_inputs("2026-11")
    doc = make_document(inputs, "t-a")
    change(doc)
    with db.sessions() as s, pytest.raises(LedgerError, match=message):
        ledger.save_draft(
            s, site=SITE, tenant="t-a", period="2026-11", document=doc, inputs=inputs_to_json(inputs), now_ms=NOW
        )


@pytest.mark.parametrize(
    ("kw", "error", "message"),
    [
        ({"site": "BDG"}, LedgerError, "site"),
        ({"site": "bdg; drop"}, LedgerError, "site"),
        ({"tenant": "t-z"}, NotFound, "tenant 't-z' does not exist"),
        ({"period": "2026-13"}, LedgerError, "period"),
        ({"period": "26-11"}, LedgerError, "period"),
        ({"now_ms": -1}, LedgerError, "now_ms"),
    ],
)
def test_save_draft_refuses_bad_arguments(db: Db, kw: dict[str, Any], error: type[Exception], message: str) -> None:
    inputs = make_inputs("2026-11")
    doc = make_document(inputs, "t-a")
    args: dict[str, Any] = {"site": SITE, "tenant": "t-a", "period": "2026-11", "now_ms": NOW}
    args.update(kw)
    if "tenant" in kw:
        doc["tenant"]["id"] = kw["tenant"]
    if "site" in kw:
        doc["site"]["id"] = kw["site"]
    with db.sessions() as s, pytest.raises(error, match=message):
        ledger.save_draft(s, document=doc, inputs=inputs_to_json(inputs), **args)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda i: i.update(period_end_ms="soon"), r"inputs: .*period_end_ms"),
        (lambda i: i.update(period="2026-12"), "inputs.period"),
        (lambda i: i["records"][0].update(start_ms=-5), r"inputs: .*records\[0\]"),
        (lambda i: i["records"][0].update(good=1.0), "float"),
        (lambda i: i.update(tariffs=[]), "inputs"),
    ],
)
def test_save_draft_refuses_malformed_inputs(db: Db, change: Callable[[dict[str, Any]], Any], message: str) -> None:
    inputs = make_inputs("2026-11")
    bad = inputs_to_json(inputs)
    change(bad)
    with db.sessions() as s, pytest.raises(LedgerError, match=message):
        ledger.save_draft(
            s, site=SITE, tenant="t-a", period="2026-11", document=make_document(inputs, "t-a"), inputs=bad, now_ms=NOW
        )


# ---- numbers and the chain -------------------------------------------------------------------------------------


def test_numbers_run_without_gaps_across_invoices_and_credit_notes(db: Db) -> None:
    a = db.finalize(db.draft("t-a"))
    b = db.finalize(db.draft("t-b"))
    credit = db.void(a.id)
    assert credit is not None
    a2 = db.finalize(db.draft("t-a"))
    assert [a.number, b.number, credit.number, a2.number] == [
        "bdg-2026-00001",
        "bdg-2026-00002",
        "bdg-2026-00003",
        "bdg-2026-00004",
    ]
    assert [a.chain_seq, b.chain_seq, credit.chain_seq, a2.chain_seq] == [1, 2, 3, 4]
    assert json.loads(db.row(credit.id).document)["number"] == "bdg-2026-00003"
    assert db.verify() == []


def test_numbers_restart_each_year_and_each_site_has_its_own(db: Db) -> None:
    dec = db.finalize(db.draft("t-a", period="2026-12"))
    jan = db.finalize(db.draft("t-a", period="2027-01"))
    feb = db.finalize(db.draft("t-b", period="2027-02"))
    other = db.finalize(db.draft("t-a", period="2026-12", site="sby"))
    assert [dec.number, jan.number, feb.number, other.number] == [
        "bdg-2026-00001",
        "bdg-2027-00001",
        "bdg-2027-00002",
        "sby-2026-00001",
    ]
    # One chain per site: bdg's three documents, then sby's own chain from the start.
    assert [dec.chain_seq, jan.chain_seq, feb.chain_seq, other.chain_seq] == [1, 2, 3, 1]
    assert other.prev_hash is None
    assert jan.prev_hash == dec.hash
    assert db.verify("bdg") == []
    assert db.verify("sby") == []


def test_each_hash_chains_the_stored_bytes_to_the_previous_document(db: Db) -> None:
    ids = [
        db.finalize(db.draft(t, period=p)).id for t, p in [("t-a", "2026-10"), ("t-b", "2026-10"), ("t-a", "2026-11")]
    ]
    credit = db.void(ids[1])
    assert credit is not None
    rows = [db.row(i) for i in [*ids, credit.id]]
    previous: str | None = None
    for inv in sorted(rows, key=lambda r: r.chain_seq or 0):
        assert inv.prev_hash == previous
        assert inv.hash == expected_hash(previous, inv.document, inv.inputs)
        previous = inv.hash
    with db.sessions() as s:
        head = s.get(InvoiceCounter, (SITE, 0))
        assert head is not None
        assert (head.next_seq, head.head_hash) == (5, previous)


def test_finalize_stores_the_override_in_the_row_and_the_hashed_document(db: Db) -> None:
    reason = "agent edge-2 offline since 28 Nov; figures checked by hand (ticket 4711)"
    inv = db.finalize(db.draft("t-a"), override=reason)
    row = db.row(inv.id)
    assert row.override == reason
    assert json.loads(row.document)["override"] == reason
    assert row.hash == expected_hash(None, row.document, row.inputs)
    plain = db.row(db.finalize(db.draft("t-b")).id)
    assert plain.override is None
    assert json.loads(plain.document)["override"] is None
    assert db.verify() == []


def test_finalize_freezes_only_this_tenants_usage_records_and_never_changes_them(db: Db) -> None:
    inv = db.finalize(db.draft("t-a"))
    with db.sessions() as s:
        rows = s.execute(sa.select(UsageRecordRow)).scalars().all()
        assert [(r.tenant_id, r.invoice_id, r.machine) for r in rows] == [("t-a", inv.id, "cnc-01")]
        frozen = rows[0].data
        assert json.loads(frozen)["time_ms"] == {"running": 62 * MIN, "breakdown": 10 * MIN}
    db.void(inv.id)
    again = db.finalize(db.draft("t-a"))  # the same record billed again after the credit note
    with db.sessions() as s:
        rows = s.execute(sa.select(UsageRecordRow)).scalars().all()
        assert [(r.invoice_id, r.data) for r in rows] == [(inv.id, frozen)]
    assert again.number == "bdg-2026-00003"


def test_a_record_frozen_by_a_live_invoice_cannot_be_billed_to_another_tenant(db: Db) -> None:
    a = db.finalize(db.draft("t-a"))
    moved = db.draft("t-b", first_tenant="t-b")  # the badge turned out to be t-b's that day
    with pytest.raises(Conflict, match=r"frozen by invoice bdg-2026-00001.*void that invoice"):
        db.finalize(moved)
    db.void(a.id, reason="badge 101 was t-b's")
    b = db.finalize(moved)
    assert b.number == "bdg-2026-00003"  # the refused finalize took no number
    with db.sessions() as s:
        rows = s.execute(sa.select(UsageRecordRow).order_by(UsageRecordRow.start_ms)).scalars().all()
        # The row t-a's (now void) invoice froze stays as it was; t-b's own session is frozen by t-b's invoice.
        assert [(r.tenant_id, r.invoice_id) for r in rows] == [("t-a", a.id), ("t-b", b.id)]
    assert db.verify() == []


def test_two_finalizers_at_once_get_distinct_consecutive_numbers(db: Db) -> None:
    drafts = [db.draft(t, period=p) for p in ("2026-09", "2026-10", "2026-11") for t in TENANTS]
    start = threading.Barrier(3)
    got: list[tuple[int, str | None, int | None]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(mine: list[int]) -> None:
        try:
            start.wait(timeout=30)
            for invoice_id in mine:
                with db.sessions() as s:  # its own connection and transaction
                    inv = ledger.finalize(s, invoice_id, now_ms=NOW, override=None)
                    s.commit()
                    with lock:
                        got.append((inv.id, inv.number, inv.chain_seq))
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(drafts[i::3],)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert sorted(n or "" for _, n, _ in got) == [f"bdg-2026-{k:05d}" for k in range(1, 7)]
    assert sorted(c for _, _, c in got if c is not None) == [1, 2, 3, 4, 5, 6]
    assert db.verify() == []


def test_a_second_finalizer_waits_until_the_first_commits(db: Db) -> None:
    first, second = db.draft("t-a"), db.draft("t-b")
    holder = db.sessions()
    ledger.finalize(holder, first, now_ms=NOW, override=None)  # holds the counter locks, not committed
    started, done = threading.Event(), threading.Event()
    result: list[Invoice] = []
    errors: list[BaseException] = []

    def other() -> None:
        try:
            with db.sessions() as s:
                started.set()
                inv = ledger.finalize(s, second, now_ms=NOW, override=None)
                s.commit()
                result.append(inv)
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=other)
    thread.start()
    assert started.wait(timeout=30)
    # With the lock held the other finalizer cannot have finished, however long we look: it would mean both read
    # the same counter.
    assert not done.wait(timeout=0.5)
    holder.commit()
    holder.close()
    thread.join(timeout=60)
    assert errors == []
    assert [inv.number for inv in result] == ["bdg-2026-00002"]
    assert db.row(first).number == "bdg-2026-00001"
    assert db.verify() == []


def test_a_rolled_back_finalize_leaves_no_gap(db: Db) -> None:
    first = db.draft("t-a")
    with db.sessions() as s:
        assert ledger.finalize(s, first, now_ms=NOW, override=None).number == "bdg-2026-00001"
        s.rollback()
    assert db.finalize(db.draft("t-b")).number == "bdg-2026-00001"
    assert db.finalize(first).number == "bdg-2026-00002"
    assert db.verify() == []


@pytest.mark.parametrize("migrated_db_url", ["sqlite"], indirect=True)
def test_sqlite_refuses_a_transaction_begun_without_the_write_lock(db: Db) -> None:
    draft = db.draft("t-a")
    with sessions(db.engine, write=False)() as s:
        s.execute(sa.select(Invoice.id)).all()  # a plain BEGIN: another writer could take the number meanwhile
        with pytest.raises(LedgerError, match="write session"):
            ledger.finalize(s, draft, now_ms=NOW, override=None)
    with sessions(db.engine, write=False)() as s:
        # Not yet begun: the ledger begins it with the write lock itself.
        assert ledger.finalize(s, draft, now_ms=NOW, override=None).number == "bdg-2026-00001"
        s.commit()


# ---- void and credit notes -------------------------------------------------------------------------------------


def test_voiding_a_draft_takes_no_number(db: Db) -> None:
    draft = db.draft("t-a")
    assert db.void(draft, reason="duplicate") is None
    row = db.row(draft)
    assert (row.status, row.number, row.hash, row.void_reason, row.voided_ms) == (
        "void",
        None,
        None,
        "duplicate",
        NOW + 2,
    )
    assert db.finalize(db.draft("t-a")).number == "bdg-2026-00001"
    with pytest.raises(Conflict, match="void already"):
        db.void(draft)
    with pytest.raises(Conflict, match="only a draft"):
        db.finalize(draft)
    assert db.verify() == []


def test_voiding_an_invoice_issues_a_finalized_credit_note_that_negates_it(db: Db) -> None:
    inv = db.finalize(db.draft("t-a"))
    credit = db.void(inv.id, reason="badge 101 belonged to t-b that day")
    assert credit is not None
    original, note = db.row(inv.id), db.row(credit.id)
    assert (original.status, original.void_reason) == ("void", "badge 101 belonged to t-b that day")
    assert (note.kind, note.status, note.credit_for_id, note.tenant_id, note.period) == (
        "credit_note",
        "finalized",
        inv.id,
        "t-a",
        "2026-11",
    )
    assert (note.subtotal, note.tax, note.total) == (-original.subtotal, -original.tax, -original.total)
    assert [r.amount for r in note.lines] == [-r.amount for r in original.lines]
    doc = json.loads(note.document)
    assert doc["credit_for"] == "bdg-2026-00001"
    assert note.prev_hash == original.hash
    with pytest.raises(Conflict, match="void already"):
        db.void(inv.id)
    with pytest.raises(Conflict, match="credit note cannot be voided"):
        db.void(credit.id)
    with pytest.raises(Conflict, match="only a draft"):
        db.finalize(credit.id)
    assert db.verify() == []


def test_finalize_refuses_what_is_not_a_draft(db: Db) -> None:
    inv = db.finalize(db.draft("t-a"))
    with pytest.raises(Conflict, match="finalized: only a draft"):
        db.finalize(inv.id)
    with pytest.raises(NotFound, match="invoice 9999"):
        db.finalize(9999)
    with pytest.raises(NotFound, match="invoice 9999"):
        db.void(9999)


HOSTILE = [
    ("", "empty"),
    ("   ", "empty"),
    ("x" * 501, "501 characters"),
    ("nul\x00byte", "U\\+0000"),
    ("two\nlines", "U\\+000A"),
    ("tab\there", "U\\+0009"),
    ("bell\x07", "U\\+0007"),
    ("invoice \u202ekcab", "U\\+202E"),
    ("lone \ud800 surrogate", "U\\+D800"),
]


@pytest.mark.parametrize(("reason", "message"), HOSTILE)
def test_hostile_reasons_are_refused_and_change_nothing(db: Db, reason: str, message: str) -> None:
    inv = db.finalize(db.draft("t-a"))
    with pytest.raises(LedgerError, match=message):
        db.void(inv.id, reason=reason)
    draft = db.draft("t-b")
    with pytest.raises(LedgerError, match=message):
        db.finalize(draft, override=reason)
    assert (db.row(inv.id).status, db.row(draft).status) == ("finalized", "draft")
    assert db.verify() == []


def test_a_reason_that_is_not_text_is_refused(db: Db) -> None:
    inv = db.finalize(db.draft("t-a"))
    with db.sessions() as s, pytest.raises(LedgerError, match="must be text"):
        ledger.void(s, inv.id, now_ms=NOW, reason=42)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "reason",
    ["x" * 500, "Tarif salah — dikoreksi ✓ 日本語 🧾", "'; DROP TABLE invoices; --", '{"total": 0}', "\\u0000 as text"],
)
def test_unusual_but_fair_reasons_are_stored_exactly(db: Db, reason: str) -> None:
    inv = db.finalize(db.draft("t-a"))
    credit = db.void(inv.id, reason=reason)
    assert credit is not None
    assert db.row(inv.id).void_reason == reason
    assert db.verify() == []


# ---- reproducibility -------------------------------------------------------------------------------------------


def test_a_finalized_document_is_recomputed_byte_for_byte_from_its_stored_inputs(db: Db) -> None:
    inv = db.finalize(db.draft("t-a"), override="grace overridden: edge-2 offline")
    credit = db.void(inv.id)
    assert credit is not None
    with db.sessions() as s:
        for invoice_id in (inv.id, credit.id):
            row = s.get(Invoice, invoice_id)
            assert row is not None
            assert canonical(ledger.recompute_document(s, row)).decode("utf-8") == row.document
    stored = db.row(inv.id)
    with db.sessions() as s:
        row = s.get(Invoice, inv.id)
        assert row is not None
        again_doc = ledger.recompute_document(s, row)
    stored_doc = json.loads(stored.document)
    assert to_json(again_doc) == to_json(stored_doc)
    for lang in ("en", "id"):
        assert to_csv(again_doc, lang) == to_csv(stored_doc, lang)
    # And from the inputs alone, the way an auditor would: the same core over the stored inputs JSON.
    from api.core.billing.document import inputs_from_json

    inputs = inputs_from_json(json.loads(stored.inputs))
    again = make_document(inputs, "t-a")
    again["number"], again["override"] = "bdg-2026-00001", "grace overridden: edge-2 offline"
    assert canonical(again).decode("utf-8") == stored.document


def test_document_of_adds_status_and_hash_outside_the_hashed_bytes(db: Db) -> None:
    inv = db.finalize(db.draft("t-a"))
    db.void(inv.id)
    row = db.row(inv.id)
    doc = ledger.document_of(row)
    assert (doc["status"], doc["hash"]) == ("void", row.hash)
    assert "status" not in json.loads(row.document)
    assert db.verify() == []  # the status changed, the hashed bytes did not


# ---- tampering -------------------------------------------------------------------------------------------------


@pytest.fixture
def ledger_db(db: Db) -> Db:
    """Four finalized documents and a draft: t-a (voided), t-b, the credit note, t-a again; then a draft."""
    a = db.finalize(db.draft("t-a", period="2026-10"), override="edge-2 offline")
    db.finalize(db.draft("t-b", period="2026-10"))
    db.void(a.id)
    db.finalize(db.draft("t-a", period="2026-10", extra_minutes=5))
    db.draft("t-b", period="2026-11")
    assert db.verify() == []
    return db


def _ids(db: Db) -> list[int]:
    with db.sessions() as s:
        return list(
            s.execute(sa.select(Invoice.id).where(Invoice.hash.is_not(None)).order_by(Invoice.chain_seq)).scalars()
        )


def _flip(text: str, i: int) -> str:
    ch = text[i]
    if ch.isdigit():
        other = "7" if ch == "3" else "3"
    elif ch.swapcase() != ch:
        other = ch.swapcase()
    else:
        other = "$" if ch == "#" else "#"
    return text[:i] + other + text[i + 1 :]


@pytest.mark.parametrize("column", ["document", "inputs"])
def test_changing_any_byte_of_a_stored_document_or_inputs_is_found(ledger_db: Db, column: str) -> None:
    db = ledger_db
    target = _ids(db)[1]
    original = getattr(db.row(target), column)
    positions = sorted({0, len(original) - 1, *range(1, len(original), max(1, len(original) // 23))})
    for i in positions:
        db.sql(f"UPDATE invoices SET {column} = :v WHERE id = :id", v=_flip(original, i), id=target)
        problems = db.verify(recompute=False)
        assert any("do not match its hash" in p.what for p in problems), (i, problems)
    db.sql(f"UPDATE invoices SET {column} = :v WHERE id = :id", v=original, id=target)
    assert db.verify() == []


TAMPERING: list[tuple[str, str, str]] = [
    # (what, SQL with :id (the second chain document) and :last, a phrase verify must report)
    ("line amount", "UPDATE invoice_lines SET amount = amount + 1 WHERE invoice_id = :id AND position = 0", "line 0"),
    ("line deleted", "DELETE FROM invoice_lines WHERE invoice_id = :id AND position = 0", "stored lines"),
    ("row total", "UPDATE invoices SET total = total - 1000 WHERE id = :id", "stored totals"),
    ("row subtotal", "UPDATE invoices SET subtotal = 0 WHERE id = :id", "stored totals"),
    ("override", "UPDATE invoices SET override = 'later excuse' WHERE id = :first", "override"),
    ("void reason", "UPDATE invoices SET void_reason = 'other reason' WHERE id = :first", "recomputed"),
    ("number text", "UPDATE invoices SET number = 'bdg-2026-00099' WHERE id = :id", "number"),
    ("seq", "UPDATE invoices SET seq = 9 WHERE id = :id", "gapless"),
    ("hash", "UPDATE invoices SET hash = :fake WHERE id = :id", "hash"),
    ("prev_hash", "UPDATE invoices SET prev_hash = :fake WHERE id = :id", "prev_hash"),
    ("status back to finalized", "UPDATE invoices SET status = 'finalized' WHERE id = :first", "not void"),
    ("status to draft", "UPDATE invoices SET status = 'draft' WHERE id = :id", "status"),
    ("tenant moved", "UPDATE invoices SET tenant_id = 't-a' WHERE id = :id", "tenant"),
    ("last deleted", "DELETE FROM invoices WHERE id = :last", "deleted"),
    ("middle deleted", "DELETE FROM invoices WHERE id = :id", "missing"),
    ("credit note deleted", "DELETE FROM invoices WHERE id = :credit", "credit notes"),
    ("counter moved back", "UPDATE invoice_counters SET next_seq = next_seq - 1 WHERE year = 2026", "counter"),
    ("usage record changed", "UPDATE usage_records SET data = replace(data, '40', '41')", "usage record"),
    ("usage record moved", "UPDATE usage_records SET end_ms = end_ms - 60000", "usage record"),
    ("usage record deleted", "DELETE FROM usage_records", "is not stored"),
    ("chain head moved back", "UPDATE invoice_counters SET head_hash = :fake WHERE year = 0", "head hash"),
]


@pytest.mark.parametrize(("what", "statement", "phrase"), TAMPERING, ids=[t[0] for t in TAMPERING])
def test_tampering_with_the_ledger_is_found(ledger_db: Db, what: str, statement: str, phrase: str) -> None:
    db = ledger_db
    first, second, credit, last = _ids(db)
    with db.engine.begin() as conn:
        # Deleting a finalized row needs its frozen usage records and lines gone first (foreign keys).
        if "DELETE FROM invoices" in statement:
            victim = {":last": last, ":id": second, ":credit": credit}[statement.split("= ")[-1]]
            conn.execute(sa.text("DELETE FROM usage_records WHERE invoice_id = :v"), {"v": victim})
            conn.execute(sa.text("DELETE FROM invoice_lines WHERE invoice_id = :v"), {"v": victim})
        params = {"id": second, "first": first, "last": last, "credit": credit, "fake": "0" * 64}
        conn.execute(sa.text(statement), {k: v for k, v in params.items() if f":{k}" in statement})
    problems = db.verify()
    assert problems, what
    assert any(phrase in str(p) for p in problems), problems


def test_reordering_the_chain_is_found(ledger_db: Db) -> None:
    db = ledger_db
    first, second, _, _ = _ids(db)
    with db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE invoices SET chain_seq = 99 WHERE id = :id"), {"id": first})
        conn.execute(sa.text("UPDATE invoices SET chain_seq = 1 WHERE id = :id"), {"id": second})
        conn.execute(sa.text("UPDATE invoices SET chain_seq = 2 WHERE id = :id"), {"id": first})
    problems = db.verify(recompute=False)
    assert any("prev_hash" in p.what for p in problems), problems


def test_swapping_two_documents_between_rows_is_found(ledger_db: Db) -> None:
    db = ledger_db
    first, second, _, _ = _ids(db)
    a, b = db.row(first), db.row(second)
    db.sql("UPDATE invoices SET document = :d, inputs = :i WHERE id = :id", d=b.document, i=b.inputs, id=first)
    db.sql("UPDATE invoices SET document = :d, inputs = :i WHERE id = :id", d=a.document, i=a.inputs, id=second)
    assert any("do not match its hash" in p.what for p in db.verify(recompute=False))


def test_a_rewritten_and_rehashed_chain_is_still_found_by_recomputing(ledger_db: Db) -> None:
    """Someone with write access changes a document and re-hashes the whole chain and its head: the hashes then all
    agree, and only recomputing the document from its inputs shows the change."""
    db = ledger_db
    ids = _ids(db)
    rows = [db.row(i) for i in ids]
    doc = json.loads(rows[1].document)
    doc["lines"][0]["note"] = "discount agreed by phone"
    rows[1].document = canonical(doc).decode("utf-8")
    previous: str | None = None
    with db.engine.begin() as conn:
        for row in rows:
            digest = expected_hash(previous, row.document, row.inputs)
            conn.execute(
                sa.text("UPDATE invoices SET document = :d, prev_hash = :p, hash = :h WHERE id = :id"),
                {"d": row.document, "p": previous, "h": digest, "id": row.id},
            )
            previous = digest
        conn.execute(sa.text("UPDATE invoice_counters SET head_hash = :h WHERE year = 0"), {"h": previous})
    assert db.verify(recompute=False) == []
    problems = db.verify()
    assert [p.invoice for p in problems] == [rows[1].number]
    assert "recomputed from its stored inputs, the document differs" in problems[0].what


def test_verify_of_an_empty_site_is_clean(db: Db) -> None:
    assert db.verify("nowhere") == []


# ---- the CLI ---------------------------------------------------------------------------------------------------


def run_cli(argv: list[str]) -> int:
    """`shopfloor ...` as the command line runs it."""
    return cli.main(argv)


def test_cli_verify_says_intact_and_exits_0(ledger_db: Db, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["invoices", "verify", "--db-url", ledger_db.url, "--site", SITE]) == 0
    assert capsys.readouterr().out.strip() == "site bdg: 4 documents verified, chain intact"


def test_cli_verify_prints_each_problem_and_exits_1(ledger_db: Db, capsys: pytest.CaptureFixture[str]) -> None:
    ledger_db.sql("UPDATE invoice_lines SET amount = 1 WHERE position = 0")
    assert run_cli(["invoices", "verify", "--db-url", ledger_db.url]) == 1
    out = capsys.readouterr().out
    assert "stored line 0 amount is 1" in out
    assert "chain intact" not in out


def test_cli_verify_refuses_an_unmigrated_database(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    assert run_cli(["invoices", "verify", "--db-url", url]) == 2
    assert "not migrated" in capsys.readouterr().err


def test_cli_verify_says_when_the_database_cannot_be_opened(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}"
    assert run_cli(["invoices", "verify", "--db-url", url]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_cli_verify_exits_1_when_the_server_cannot_be_reached(capsys: pytest.CaptureFixture[str]) -> None:
    url = "postgresql://postgres@127.0.0.1:1/nothing"  # port 1: nothing listens, the connection is refused
    assert run_cli(["invoices", "verify", "--db-url", url]) == 1
    assert "cannot connect" in capsys.readouterr().err


def test_cli_list_shows_numbers_statuses_and_totals(ledger_db: Db, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["invoices", "list", "--db-url", ledger_db.url, "--site", SITE]) == 0
    out = capsys.readouterr().out.splitlines()
    numbered = [line.split()[0] for line in out[1:] if line.startswith("bdg-")]
    assert numbered == ["bdg-2026-00001", "bdg-2026-00002", "bdg-2026-00003", "bdg-2026-00004"]
    assert sum(" draft " in line for line in out) == 1
    assert run_cli(["invoices", "list", "--db-url", ledger_db.url, "--status", "void"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == ["bdg-2026-00001"]
    assert run_cli(["invoices", "list", "--db-url", ledger_db.url, "--json", "--tenant", "t-b"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(i["number"], i["status"]) for i in listed] == [("bdg-2026-00002", "finalized"), (None, "draft")]


def test_cli_list_refuses_a_bad_filter(ledger_db: Db, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["invoices", "list", "--db-url", ledger_db.url, "--period", "2026/11"]) == 2
    assert "period" in capsys.readouterr().err
