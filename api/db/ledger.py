"""The invoice ledger: drafts, gapless numbers, the hash chain, void and credit notes, and verification.

Life of a document: `save_draft` stores an invoice as a draft (replacing the tenant's previous draft of the period);
`finalize` numbers it, freezes it and links it into the site's hash chain; `void` turns a draft into nothing, and a
finalized invoice into a void one plus a finalized credit note that negates it. A finalized document never changes
again: a correction is a credit note, then a new invoice.

Numbers are f"{site}-{year}-{seq:05d}", seq running 1, 2, 3 ... without gaps per site and year (the year of the
invoice's period), invoices and credit notes alike. The site's chain orders every finalized document (chain_seq 1,
2, 3 ...); each stores hash = chain_hash(prev_hash, document bytes, inputs bytes) with prev_hash the hash of the
document before it, so changing, deleting or reordering any stored document breaks the chain from that point on.
The counter rows (InvoiceCounter: (site, year) holds the next seq, (site, 0) the chain's next position and head
hash) are locked while a document is finalized (SELECT ... FOR UPDATE on PostgreSQL; the write transaction's
BEGIN IMMEDIATE on SQLite), so two finalizers queue and never take one number.

Every function works in the caller's Session and transaction; the caller commits (or rolls back: then nothing of it
happened, the number included). On SQLite the session must be a write session (api.db.engine.sessions), whose
transaction takes the write lock when it begins.

`verify` re-derives everything a reader could check: each hash from the stored bytes, the chain links and
positions, the numbers, the stored lines and totals against the document, and (recompute) the document itself from
its stored inputs through the billing core, byte for byte.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, selectinload

from api.core.billing import document as billing_document
from api.core.billing.charging import BillingError, Inputs, charge
from api.core.billing.model import Charges
from api.db import engine as db_engine
from api.db.models import ID_LEN, Invoice, InvoiceCounter, InvoiceLine, Tenant, UsageRecordRow

MAX_ID = 2**31 - 1  # invoice ids are 32-bit integers on PostgreSQL
DRAFT = "draft"
FINALIZED = "finalized"
VOID = "void"
STATUSES = (DRAFT, FINALIZED, VOID)
INVOICE = "invoice"
CREDIT_NOTE = "credit_note"
KINDS = (INVOICE, CREDIT_NOTE)
CHAIN_YEAR = 0  # the InvoiceCounter row holding a site's chain position and head hash
MAX_REASON = 500  # characters of a void reason or a finalize override
MAX_TEXT = 200_000_000  # characters of a stored document or inputs: far beyond any month, short of exhausting memory

_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")  # shopfloor.contracts ids
_PERIOD = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")
# Stored line columns and their limits, in the order of the document's line dicts (api.core.billing.model.Line).
_LINE_INTS = ("start_ms", "end_ms", "quantity", "unit_price", "amount", "tax_rate_bp", "tax")
_LINE_TEXTS = (("machine", ID_LEN, False), ("kind", 32, False), ("unit", 16, False))
_LINE_OPTIONAL = (("tariff", 80), ("record", 200))
_INT64 = (-(2**63), 2**63 - 1)


class LedgerError(db_engine.DbError):
    """A ledger operation was refused: bad input, or a rule of the ledger; the message says which and why."""


class Conflict(LedgerError, db_engine.Conflict):
    """The operation clashes with the ledger's state (already finalized, already void, a credit note)."""


class NotFound(LedgerError, db_engine.NotFound):
    """No such invoice (or tenant)."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing verify found wrong: which document (its number, else "id N") and what."""

    invoice: str
    what: str

    def __str__(self) -> str:
        return f"{self.invoice}: {self.what}"


# ---- input checks ----------------------------------------------------------------------------------------------


def _check_id(what: str, value: object) -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise LedgerError(f"{what} {value!r} is not an id (lower-case letters, digits and '-', at most 63)")
    return value


def _check_period(value: object) -> str:
    if not isinstance(value, str) or not _PERIOD.fullmatch(value) or value[:4] == "0000":
        raise LedgerError(f"period {value!r} is not a month YYYY-MM")
    return value


def _check_ms(what: str, value: object) -> int:
    if type(value) is not int or not 0 <= value <= _INT64[1]:
        raise LedgerError(f"{what} {value!r} is not epoch ms (a non-negative int)")
    return value


def check_reason(what: str, value: object) -> str:
    """Return value if it is a fit reason text (1..500 characters, not blank, no control characters), else raise."""
    if not isinstance(value, str):
        raise LedgerError(f"{what} must be text, got {type(value).__name__}")
    if not value.strip():
        raise LedgerError(f"{what} is empty: say why (1..{MAX_REASON} characters)")
    if len(value) > MAX_REASON:
        raise LedgerError(f"{what} is {len(value)} characters long; at most {MAX_REASON}")
    for i, ch in enumerate(value):
        # Control characters (NUL, newlines: a reason is one line in a log or a CSV cell), lone surrogates (no UTF-8)
        # and bidirectional controls (they make printed text read differently from what is stored) are refused.
        if unicodedata.category(ch) in ("Cc", "Cs") or ch in _BIDI_CONTROLS:
            raise LedgerError(f"{what} holds the control character U+{ord(ch):04X} at position {i}; use plain text")
    return value


def _canonical(what: str, obj: object) -> str:
    try:
        data = billing_document.canonical(obj)
    except (TypeError, ValueError) as error:
        raise LedgerError(f"{what} cannot be stored: {error}") from error
    text = data.decode("utf-8")
    if len(text) > MAX_TEXT:
        raise LedgerError(f"{what} is {len(text)} characters; at most {MAX_TEXT}")
    if "\x00" in text:  # canonical JSON escapes NUL as \u0000, so this never happens; PostgreSQL text could not hold it
        raise LedgerError(f"{what} holds a NUL character")
    return text


def _int_field(what: str, obj: Mapping[str, Any], key: str) -> int:
    value = obj.get(key)
    if type(value) is not int or not _INT64[0] <= value <= _INT64[1]:
        raise LedgerError(f"{what}.{key} must be a 64-bit int, got {value!r}")
    return value


def _text_field(what: str, obj: Mapping[str, Any], key: str, limit: int, *, nullable: bool) -> str | None:
    value = obj.get(key)
    if value is None and nullable:
        return None
    if not isinstance(value, str) or len(value) > limit or "\x00" in value:
        raise LedgerError(f"{what}.{key} must be text of at most {limit} characters, got {value!r:.80}")
    return value


def _mapping(what: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise LedgerError(f"{what} must be an object, got {type(value).__name__}")
    return value


def _lines_of(document: Mapping[str, Any]) -> list[InvoiceLine]:
    """The document's lines as InvoiceLine rows (position = index), each field checked to fit its column."""
    lines = document.get("lines")
    if not isinstance(lines, list):
        raise LedgerError(f"document.lines must be a list, got {type(lines).__name__}")
    rows = []
    for i, raw in enumerate(lines):
        where = f"document.lines[{i}]"
        line = _mapping(where, raw)
        values: dict[str, Any] = {key: _int_field(where, line, key) for key in _LINE_INTS}
        for key, limit, nullable in _LINE_TEXTS:
            values[key] = _text_field(where, line, key, limit, nullable=nullable)
        for key, limit in _LINE_OPTIONAL:
            values[key] = _text_field(where, line, key, limit, nullable=True)
        rows.append(InvoiceLine(position=i, **values))
    return rows


def _totals_of(document: Mapping[str, Any]) -> tuple[int, int, int]:
    totals = _mapping("document.totals", document.get("totals"))
    return tuple(_int_field("document.totals", totals, key) for key in ("subtotal", "tax", "total"))  # type: ignore[return-value]


def _check_document(document: Mapping[str, Any], *, site: str, tenant: str, period: str) -> None:
    """Refuse a document that is not an unnumbered invoice of this site, tenant and period."""
    if document.get("kind") != INVOICE:
        kind = document.get("kind")
        raise LedgerError(f"document.kind is {kind!r}; a draft is an invoice (credit notes come from void)")
    if document.get("number") is not None:
        raise LedgerError("document.number must be None in a draft: the number is given when it is finalized")
    site_id = _mapping("document.site", document.get("site")).get("id")
    tenant_id = _mapping("document.tenant", document.get("tenant")).get("id")
    if site_id != site:
        raise LedgerError(f"document.site.id is {site_id!r}, not the site {site!r} it is saved for")
    if tenant_id != tenant:
        raise LedgerError(f"document.tenant.id is {tenant_id!r}, not the tenant {tenant!r} it is saved for")
    if document.get("period") != period:
        raise LedgerError(f"document.period is {document.get('period')!r}, not the period {period!r} it is saved for")


# ---- locking ---------------------------------------------------------------------------------------------------


def _write_lock(session: Session) -> None:
    """Make sure this transaction holds SQLite's write lock (PostgreSQL locks rows instead)."""
    if session.get_bind().dialect.name != "sqlite":
        return
    if not session.in_transaction():
        # Begins the transaction with BEGIN IMMEDIATE (api.db.engine's begin hook reads this option).
        session.connection(execution_options={"immediate": True})
        return
    if not session.connection().get_execution_options().get("immediate"):
        raise LedgerError(
            "the ledger writes need a write session on SQLite (api.db.engine.sessions(engine)): this transaction "
            "began without the write lock, so two finalizers could read the same number"
        )


def _counter(session: Session, site: str, year: int) -> InvoiceCounter:
    """The (site, year) counter row, created if missing, locked for the rest of the transaction."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # Insert-if-missing first, so that two transactions creating the same row queue on it instead of one failing.
    session.execute(
        insert(InvoiceCounter).values(site=site, year=year, next_seq=1, head_hash=None).on_conflict_do_nothing()
    )
    stmt = (
        sa.select(InvoiceCounter)
        .where(InvoiceCounter.site == site, InvoiceCounter.year == year)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return session.execute(stmt).scalar_one()


def _locked_invoice(session: Session, invoice_id: int) -> Invoice:
    """The invoice, read again under a row lock (after the chain row: one lock order for every writer)."""
    if type(invoice_id) is not int:
        raise LedgerError(f"invoice id {invoice_id!r} is not an int")
    found = session.execute(
        sa.select(Invoice).where(Invoice.id == invoice_id).with_for_update().execution_options(populate_existing=True)
    ).scalar_one_or_none()
    if found is None:
        raise NotFound(f"invoice {invoice_id} does not exist")
    return found


def _site_of(session: Session, invoice_id: int) -> str:
    if type(invoice_id) is not int:
        raise LedgerError(f"invoice id {invoice_id!r} is not an int")
    site = session.execute(sa.select(Invoice.site).where(Invoice.id == invoice_id)).scalar_one_or_none()
    if site is None:
        raise NotFound(f"invoice {invoice_id} does not exist")
    return site


# ---- writes ----------------------------------------------------------------------------------------------------


def save_draft(
    session: Session,
    *,
    site: str,
    tenant: str,
    period: str,
    document: dict[str, Any],
    inputs: dict[str, Any],
    now_ms: int,
) -> Invoice:
    """Store document as the draft invoice of (site, tenant, period), replacing any earlier draft of it."""
    _check_id("site", site)
    _check_id("tenant", tenant)
    _check_period(period)
    _check_ms("now_ms", now_ms)
    doc = _mapping("document", document)
    _check_document(doc, site=site, tenant=tenant, period=period)
    _write_lock(session)
    if session.get(Tenant, tenant) is None:
        raise NotFound(f"tenant {tenant!r} does not exist")
    doc_text = _canonical("document", doc)
    inputs_text = _canonical("inputs", inputs)
    lines = _lines_of(doc)
    subtotal, tax, total = _totals_of(doc)
    try:
        parsed = billing_document.inputs_from_json(inputs)
    except BillingError as error:
        raise LedgerError(f"inputs: {error}") from error
    if parsed.period != period:
        raise LedgerError(f"inputs.period is {parsed.period!r}, not the period {period!r} the draft is saved for")
    # A draft must be what the billing core makes of its inputs, or verify could never reproduce it once finalized.
    try:
        expected = _invoice_document(parsed, charge(parsed), doc, number=None, override=doc.get("override"))
    except BillingError as error:
        raise LedgerError(f"inputs cannot be charged: {error}") from error
    if _canonical("document", expected) != doc_text:
        where = _first_difference(_canonical("document", expected), doc_text)
        raise LedgerError(f"document is not the invoice the billing core computes from these inputs (differs{where})")
    _counter(session, site, CHAIN_YEAR)  # two savers of one site queue here, so one draft survives
    same = (
        sa.select(Invoice)
        .where(Invoice.site == site, Invoice.tenant_id == tenant, Invoice.period == period, Invoice.kind == INVOICE)
        .where(Invoice.status.in_((DRAFT, FINALIZED)))
        .order_by(Invoice.id)
    )
    for old in session.execute(same).scalars().all():
        if old.status == FINALIZED:
            raise Conflict(
                f"tenant {tenant!r} already has the finalized invoice {old.number} for {period} at site {site!r}: "
                "void it (which issues a credit note) before saving a new draft"
            )
        session.delete(old)  # its lines go with it (delete-orphan)
    session.flush()
    invoice = Invoice(
        site=site,
        tenant_id=tenant,
        period=period,
        kind=INVOICE,
        status=DRAFT,
        subtotal=subtotal,
        tax=tax,
        total=total,
        document=doc_text,
        inputs=inputs_text,
        created_ms=now_ms,
        lines=lines,
    )
    session.add(invoice)
    session.flush()
    return invoice


def finalize(session: Session, invoice_id: int, *, now_ms: int, override: str | None) -> Invoice:
    """Number the draft, freeze it and link it into its site's hash chain; override: why before the watermark."""
    _check_ms("now_ms", now_ms)
    if override is not None:
        check_reason("override", override)
    _write_lock(session)
    site = _site_of(session, invoice_id)
    chain = _counter(session, site, CHAIN_YEAR)
    invoice = _locked_invoice(session, invoice_id)
    if invoice.status != DRAFT:
        raise Conflict(f"invoice {invoice.number or invoice.id} is {invoice.status}: only a draft can be finalized")
    if invoice.kind != INVOICE:
        raise Conflict(f"invoice {invoice.id} is a {invoice.kind}: credit notes are finalized by void")
    document = json.loads(invoice.document)
    document["override"] = override
    invoice.override = override
    _freeze_records(session, invoice)  # first: a record clash refuses before any number is taken
    _seal(session, invoice, chain, document, now_ms)
    return invoice


def _seal(session: Session, invoice: Invoice, chain: InvoiceCounter, document: dict[str, Any], now_ms: int) -> None:
    """Give invoice the next number and chain position, store document with it, hash it and move the chain head."""
    year = int(invoice.period[:4])
    counter = _counter(session, invoice.site, year)
    seq = counter.next_seq
    number = f"{invoice.site}-{year}-{seq:05d}"
    document["number"] = number
    doc_text = _canonical("document", document)
    digest = billing_document.chain_hash(chain.head_hash, doc_text.encode("utf-8"), invoice.inputs.encode("utf-8"))
    invoice.status = FINALIZED
    invoice.year = year
    invoice.seq = seq
    invoice.number = number
    invoice.document = doc_text
    invoice.chain_seq = chain.next_seq
    invoice.prev_hash = chain.head_hash
    invoice.hash = digest
    invoice.finalized_ms = now_ms
    counter.next_seq = seq + 1
    chain.next_seq += 1
    chain.head_hash = digest
    session.flush()


def _freeze_records(session: Session, invoice: Invoice) -> None:
    """Store the invoice's tenant's usage records from its inputs; a record already stored is never changed."""
    raw = json.loads(invoice.inputs)
    inputs = billing_document.inputs_from_json(raw)  # checks every record; the rows keep the records' JSON as stored
    for record, data_json in sorted(zip(inputs.records, raw["records"], strict=True), key=lambda pair: pair[0].id):
        if record.tenant != invoice.tenant_id:
            continue
        data = _canonical(f"usage record {record.id!r}", data_json)
        stored = session.get(UsageRecordRow, record.id)
        if stored is None:
            session.add(
                UsageRecordRow(
                    id=record.id,
                    invoice_id=invoice.id,
                    tenant_id=record.tenant,
                    machine=record.machine,
                    start_ms=record.start_ms,
                    end_ms=record.end_ms,
                    data=data,
                )
            )
        elif stored.data != data:
            owner = session.get(Invoice, stored.invoice_id)
            if owner is None or owner.status != VOID:
                raise Conflict(
                    f"usage record {record.id!r} was frozen by invoice {owner.number if owner else stored.invoice_id} "
                    "with other figures; void that invoice before billing the record differently"
                )
            # Frozen by an invoice since voided: the row stays as that invoice billed it (rows are never updated);
            # this invoice's own inputs hold the corrected record.
    session.flush()


def void(session: Session, invoice_id: int, *, now_ms: int, reason: str) -> Invoice | None:
    """Void an invoice: a draft simply; a finalized one by issuing (and returning) a finalized credit note."""
    _check_ms("now_ms", now_ms)
    check_reason("reason", reason)
    _write_lock(session)
    site = _site_of(session, invoice_id)
    chain = _counter(session, site, CHAIN_YEAR)
    invoice = _locked_invoice(session, invoice_id)
    if invoice.kind != INVOICE:
        raise Conflict(f"{invoice.number or invoice.id} is a credit note: a credit note cannot be voided")
    if invoice.status == VOID:
        raise Conflict(f"invoice {invoice.number or invoice.id} is void already")
    invoice.status = VOID
    invoice.void_reason = reason
    invoice.voided_ms = now_ms
    if invoice.number is None:  # a draft: no number was taken, nothing to credit
        session.flush()
        return None
    try:
        note = billing_document.credit_note_document(json.loads(invoice.document), reason=reason)
    except (BillingError, TypeError) as error:
        raise LedgerError(f"invoice {invoice.number}: cannot issue its credit note ({error})") from error
    credit = Invoice(
        site=invoice.site,
        tenant_id=invoice.tenant_id,
        period=invoice.period,
        kind=CREDIT_NOTE,
        status=DRAFT,
        credit_for_id=invoice.id,
        document=_canonical("credit note", note),
        inputs=invoice.inputs,
        created_ms=now_ms,
        lines=_lines_of(note),
    )
    credit.subtotal, credit.tax, credit.total = _totals_of(note)
    session.add(credit)
    session.flush()
    _seal(session, credit, chain, note, now_ms)
    return credit


# ---- reads -----------------------------------------------------------------------------------------------------


def get(session: Session, invoice_id: int) -> Invoice | None:
    """The invoice with this id, None if there is none."""
    if type(invoice_id) is not int or not 1 <= invoice_id <= MAX_ID:
        return None  # beyond the column's range: no such invoice (and no database error)
    return session.get(Invoice, invoice_id)


def list_invoices(
    session: Session, *, site: str, tenant: str | None = None, period: str | None = None, status: str | None = None
) -> list[Invoice]:
    """A site's invoices and credit notes (optionally one tenant's, period's, status's): numbered in number order
    first, then drafts and void drafts by id."""
    stmt = sa.select(Invoice).where(Invoice.site == site)
    if tenant is not None:
        stmt = stmt.where(Invoice.tenant_id == tenant)
    if period is not None:
        stmt = stmt.where(Invoice.period == _check_period(period))
    if status is not None:
        if status not in STATUSES:
            raise LedgerError(f"status {status!r} is not one of {', '.join(STATUSES)}")
        stmt = stmt.where(Invoice.status == status)
    stmt = stmt.order_by(Invoice.year.is_(None), Invoice.year, Invoice.seq, Invoice.id)
    return list(session.execute(stmt).scalars().all())


def document_of(invoice: Invoice) -> dict[str, Any]:
    """The stored document with "status" and "hash" added (they are not part of the hashed bytes)."""
    document: dict[str, Any] = json.loads(invoice.document)
    document["status"] = invoice.status
    document["hash"] = invoice.hash
    return document


# ---- verification ----------------------------------------------------------------------------------------------


def recompute_document(
    session: Session, invoice: Invoice, *, cache: dict[str, tuple[Inputs, Charges]] | None = None
) -> dict[str, Any]:
    """The document of a numbered invoice or credit note computed again from its stored inputs (for comparison).

    The tenant's and site's names, the facility name and the time zone come from the stored document (they are
    what was printed, not figures); everything else is charged again. A credit note is its original recomputed,
    then negated with the original's void reason. cache: charges by inputs text, shared across calls.
    """
    if invoice.kind == CREDIT_NOTE:
        original = session.get(Invoice, invoice.credit_for_id) if invoice.credit_for_id is not None else None
        if original is None:
            raise LedgerError("the invoice it credits does not exist")
        again = recompute_document(session, original, cache=cache)
        note = billing_document.credit_note_document(again, reason=original.void_reason or "")
        note["number"] = invoice.number
        return note
    known = None if cache is None else cache.get(invoice.inputs)
    if known is None:
        inputs = billing_document.inputs_from_json(json.loads(invoice.inputs))
        known = (inputs, charge(inputs))
        if cache is not None:
            cache[invoice.inputs] = known
    inputs, charges = known
    printed = json.loads(invoice.document)
    return _invoice_document(inputs, charges, printed, number=invoice.number, override=invoice.override)


def _invoice_document(
    inputs: Inputs, charges: Charges, printed: Mapping[str, Any], *, number: str | None, override: object
) -> dict[str, Any]:
    """The billing core's invoice for the tenant of printed (a document), with printed's names and time zone."""
    site = _mapping("document.site", printed.get("site"))
    tenant = _mapping("document.tenant", printed.get("tenant"))
    return billing_document.invoice_document(
        inputs,
        charges,
        tenant=_printed("document.tenant.id", tenant.get("id")),
        tenant_name=_printed("document.tenant.name", tenant.get("name")),
        site_id=_printed("document.site.id", site.get("id")),
        site_name=_printed("document.site.name", site.get("name")),
        facility_name=_printed("document.facility_name", printed.get("facility_name")),
        time_zone=_printed("document.time_zone", printed.get("time_zone")),
        number=number,
        kind=INVOICE,
        credit_for=None,
        override=None if override is None else _printed("document.override", override),
    )


def _printed(what: str, value: object) -> str:
    if not isinstance(value, str):
        raise LedgerError(f"{what} is not text")
    return value


def verify(session: Session, site: str, *, recompute: bool = True) -> list[Problem]:
    """Check a site's ledger: hashes, chain links and positions, gapless numbers, lines, totals and frozen usage
    records, and (recompute) each document against its inputs; an empty list means all is well."""
    if session.get_bind().dialect.name == "postgresql" and not session.in_transaction():
        # One snapshot for every query below, so a finalize committing meanwhile is seen whole or not at all.
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    problems: list[Problem] = []
    invoices = list(
        session.execute(
            sa.select(Invoice).where(Invoice.site == site).order_by(Invoice.id).options(selectinload(Invoice.lines))
        ).scalars()
    )
    counters = {
        c.year: c for c in session.execute(sa.select(InvoiceCounter).where(InvoiceCounter.site == site)).scalars()
    }
    numbered = [i for i in invoices if _is_numbered(i)]
    for invoice in invoices:
        if not _is_numbered(invoice):
            problems.extend(_check_unnumbered(invoice))
    problems.extend(_check_chain(site, numbered, counters.get(CHAIN_YEAR)))
    problems.extend(_check_numbers(site, numbered, counters))
    by_id = {i.id: i for i in invoices}
    cache: dict[str, tuple[Inputs, Charges]] = {}
    for invoice in sorted(numbered, key=lambda i: (i.chain_seq or 0, i.id)):
        problems.extend(_check_document_row(invoice, by_id))
        if recompute:
            problems.extend(_check_recompute(session, invoice, cache))
    problems.extend(_check_records(session, numbered, by_id))
    return problems


def _name(invoice: Invoice) -> str:
    return invoice.number or f"id {invoice.id}"


def _is_numbered(invoice: Invoice) -> bool:
    # Anything bearing a trace of finalization is checked as a finalized document: a row whose number or hash was
    # wiped does not thereby escape the chain checks.
    return invoice.status == FINALIZED or any(
        v is not None for v in (invoice.number, invoice.seq, invoice.chain_seq, invoice.hash, invoice.finalized_ms)
    )


def _check_unnumbered(invoice: Invoice) -> Iterable[Problem]:
    if invoice.status not in (DRAFT, VOID):
        yield Problem(_name(invoice), f"status {invoice.status!r} is not a status")
    if invoice.kind != INVOICE:
        yield Problem(_name(invoice), f"an unnumbered {invoice.kind}: credit notes are finalized when issued")


def _check_chain(site: str, numbered: Sequence[Invoice], head: InvoiceCounter | None) -> Iterable[Problem]:
    """Hashes over the stored bytes, links to the previous document, positions 1..n, and the chain's head."""
    chain = sorted(numbered, key=lambda i: (i.chain_seq is None, i.chain_seq or 0, i.id))
    previous: str | None = None
    for position, invoice in enumerate(chain, start=1):
        name = _name(invoice)
        if invoice.chain_seq != position:
            yield Problem(name, f"chain position is {invoice.chain_seq}, expected {position} (a document is missing)")
        if invoice.prev_hash != previous:
            yield Problem(name, "prev_hash does not match the hash of the document before it in the chain")
        digest = billing_document.chain_hash(
            invoice.prev_hash, invoice.document.encode("utf-8"), invoice.inputs.encode("utf-8")
        )
        if invoice.hash != digest:
            yield Problem(name, "stored document or inputs do not match its hash (changed after it was finalized)")
        previous = invoice.hash
    expected_next = len(chain) + 1
    if head is None:
        if chain:
            yield Problem(f"site {site}", "the chain's counter row is missing")
        return
    if head.next_seq != expected_next:
        yield Problem(
            f"site {site}",
            f"the chain counter expects position {head.next_seq} next but {len(chain)} documents are stored "
            "(a finalized document was deleted)",
        )
    if head.head_hash != previous:
        yield Problem(f"site {site}", "the chain's head hash is not the hash of its last document")


def _check_numbers(site: str, numbered: Sequence[Invoice], counters: Mapping[int, InvoiceCounter]) -> Iterable[Problem]:
    """Numbers 1..k without gaps in every year, the number text, and each year's counter."""
    by_year: dict[int, list[Invoice]] = {}
    for invoice in numbered:
        name = _name(invoice)
        expected_year = int(invoice.period[:4]) if _PERIOD.fullmatch(invoice.period) else None
        if invoice.year is None or invoice.seq is None:
            yield Problem(name, "finalized without a year and sequence number")
            continue
        if invoice.year != expected_year:
            yield Problem(name, f"numbered in year {invoice.year}, but its period is {invoice.period}")
        if invoice.number != f"{site}-{invoice.year}-{invoice.seq:05d}":
            yield Problem(name, f"number {invoice.number!r} does not read {site}-{invoice.year}-{invoice.seq:05d}")
        by_year.setdefault(invoice.year, []).append(invoice)
    for year in sorted(set(by_year) | {y for y in counters if y != CHAIN_YEAR}):
        rows = sorted(by_year.get(year, []), key=lambda i: i.seq or 0)
        seqs = [i.seq for i in rows if i.seq is not None]
        if seqs != list(range(1, len(rows) + 1)):
            missing = sorted(set(range(1, max(seqs) + 1)) - set(seqs)) if seqs else []
            twice = sorted({s for s in seqs if seqs.count(s) > 1})
            detail = f"missing {missing}" if missing else f"repeated {twice}"
            yield Problem(f"site {site} year {year}", f"numbers are not gapless 1..{len(rows)}: {detail}")
        counter = counters.get(year)
        if counter is None:
            yield Problem(f"site {site} year {year}", "the year's counter row is missing")
        elif counter.next_seq != len(rows) + 1:
            yield Problem(
                f"site {site} year {year}",
                f"the counter's next number is {counter.next_seq} but {len(rows)} documents are numbered "
                "(a finalized document was deleted)",
            )


def _line_of_row(row: InvoiceLine) -> dict[str, Any]:
    values: dict[str, Any] = {key: getattr(row, key) for key in _LINE_INTS}
    for key, _, _ in _LINE_TEXTS:
        values[key] = getattr(row, key)
    for key, _ in _LINE_OPTIONAL:
        values[key] = getattr(row, key)
    return values


def _check_document_row(invoice: Invoice, by_id: Mapping[int, Invoice]) -> Iterable[Problem]:
    """The document against its row: identity, status, lines, totals, override and the void/credit pairing."""
    name = _name(invoice)
    try:
        document = json.loads(invoice.document)
        _mapping("document", document)
    except (ValueError, LedgerError):
        yield Problem(name, "stored document is not a JSON object")
        return
    try:
        if billing_document.canonical(document).decode("utf-8") != invoice.document:
            yield Problem(name, "stored document is not in canonical form (it was rewritten)")
    except (TypeError, ValueError) as error:
        yield Problem(name, f"stored document cannot be made canonical ({error})")
    expected = {
        "number": invoice.number,
        "kind": invoice.kind,
        "period": invoice.period,
    }
    for key, value in expected.items():
        if document.get(key) != value:
            yield Problem(name, f"document {key} is {document.get(key)!r}, the row says {value!r}")
    if not isinstance(document.get("site"), dict) or document["site"].get("id") != invoice.site:
        yield Problem(name, f"document is not of site {invoice.site!r}")
    if not isinstance(document.get("tenant"), dict) or document["tenant"].get("id") != invoice.tenant_id:
        yield Problem(name, f"document is not of tenant {invoice.tenant_id!r}")
    if invoice.status not in (FINALIZED, VOID):
        yield Problem(name, f"numbered, but its status is {invoice.status!r}")
    if invoice.kind == INVOICE and document.get("override") != invoice.override:
        yield Problem(name, "the override recorded on the row differs from the document's")
    yield from _check_lines(name, invoice, document)
    yield from _check_pairing(name, invoice, document, by_id)


def _check_lines(name: str, invoice: Invoice, document: Mapping[str, Any]) -> Iterable[Problem]:
    lines = document.get("lines")
    if not isinstance(lines, list):
        yield Problem(name, "document has no list of lines")
        return
    stored = [_line_of_row(row) for row in sorted(invoice.lines, key=lambda r: r.position)]
    if len(stored) != len(lines):
        yield Problem(name, f"{len(stored)} stored lines, but the document has {len(lines)}")
    for i, (row, line) in enumerate(zip(stored, lines, strict=False)):
        if not isinstance(line, dict):
            yield Problem(name, f"document line {i} is not an object")
            continue
        for key, value in row.items():
            if line.get(key) != value or type(line.get(key)) is not type(value):
                yield Problem(name, f"stored line {i} {key} is {value!r}, the document says {line.get(key)!r}")
    try:
        amounts = [_int_field(f"line {i}", line, "amount") for i, line in enumerate(lines)]
        taxes = [_int_field(f"line {i}", line, "tax") for i, line in enumerate(lines)]
        subtotal, tax, total = _totals_of(document)
    except LedgerError as error:
        yield Problem(name, f"document figures are not ints ({error})")
        return
    if subtotal != sum(amounts) or tax != sum(taxes) or total != subtotal + tax:
        yield Problem(
            name,
            f"document totals {subtotal}/{tax}/{total} are not the sums of its lines "
            f"{sum(amounts)}/{sum(taxes)}/{sum(amounts) + sum(taxes)}",
        )
    if (invoice.subtotal, invoice.tax, invoice.total) != (subtotal, tax, total):
        yield Problem(
            name,
            f"stored totals {invoice.subtotal}/{invoice.tax}/{invoice.total} differ from the document's "
            f"{subtotal}/{tax}/{total}",
        )


def _check_pairing(
    name: str, invoice: Invoice, document: Mapping[str, Any], by_id: Mapping[int, Invoice]
) -> Iterable[Problem]:
    """A void numbered invoice has exactly one credit note; a credit note credits a void invoice of its tenant."""
    credits = [i for i in by_id.values() if i.kind == CREDIT_NOTE and i.credit_for_id == invoice.id]
    if invoice.kind == INVOICE:
        if invoice.status == VOID and len(credits) != 1:
            yield Problem(name, f"void, but {len(credits)} credit notes credit it (expected 1)")
        if invoice.status == FINALIZED and credits:
            yield Problem(name, "a credit note credits it, but it is not void")
        if invoice.credit_for_id is not None:
            yield Problem(name, "an invoice that claims to credit another")
        return
    if invoice.status != FINALIZED:
        yield Problem(name, f"a credit note whose status is {invoice.status!r}")
    original = by_id.get(invoice.credit_for_id) if invoice.credit_for_id is not None else None
    if original is None:
        yield Problem(name, "the invoice this credit note credits does not exist")
        return
    if original.status != VOID or original.kind != INVOICE:
        yield Problem(name, f"credits {_name(original)}, which is not a void invoice")
    if document.get("credit_for") != original.number:
        yield Problem(name, f"document credits {document.get('credit_for')!r}, the row credits {original.number!r}")
    if (original.tenant_id, original.period) != (invoice.tenant_id, invoice.period):
        yield Problem(name, f"credits {_name(original)} of another tenant or period")


def _check_recompute(session: Session, invoice: Invoice, cache: dict[str, tuple[Inputs, Charges]]) -> Iterable[Problem]:
    name = _name(invoice)
    try:
        again = billing_document.canonical(recompute_document(session, invoice, cache=cache)).decode("utf-8")
    except (BillingError, LedgerError, TypeError, ValueError, KeyError) as error:
        yield Problem(name, f"cannot be recomputed from its stored inputs ({error})")
        return
    if again != invoice.document:
        where = _first_difference(again, invoice.document)
        yield Problem(name, f"recomputed from its stored inputs, the document differs{where}")


def _check_records(session: Session, numbered: Sequence[Invoice], by_id: Mapping[int, Invoice]) -> Iterable[Problem]:
    """Every usage record a finalized invoice billed is stored, and every stored one is as its invoice's inputs say."""
    stored = {
        row.id: row
        for row in session.execute(
            sa.select(UsageRecordRow).where(UsageRecordRow.invoice_id.in_([i.id for i in numbered]))
        ).scalars()
    }
    frozen: dict[str, Any] = {}  # record id -> its JSON in the inputs of the invoice that froze it
    for invoice in numbered:
        if invoice.kind != INVOICE:
            continue
        try:
            records = json.loads(invoice.inputs)["records"]
            mine = {r["id"]: r for r in records if r["tenant"] == invoice.tenant_id}
        except (ValueError, KeyError, TypeError):
            continue  # the hash check reports the broken inputs
        for record_id, record in sorted(mine.items()):
            row = stored.get(record_id)
            if row is None:
                if session.get(UsageRecordRow, record_id) is None:
                    yield Problem(_name(invoice), f"usage record {record_id!r} it billed is not stored")
                continue
            if row.invoice_id == invoice.id:
                frozen[record_id] = record
    for record_id, row in sorted(stored.items()):
        owner = by_id.get(row.invoice_id)
        name = _name(owner) if owner is not None else f"id {row.invoice_id}"
        record = frozen.get(record_id)
        if record is None:
            yield Problem(name, f"stored usage record {record_id!r} is not among the records it billed")
            continue
        try:
            same = billing_document.canonical(record).decode("utf-8") == row.data
        except (TypeError, ValueError):
            same = False
        columns = (row.tenant_id, row.machine, row.start_ms, row.end_ms)
        if not same or columns != (record["tenant"], record["machine"], record["start_ms"], record["end_ms"]):
            yield Problem(name, f"stored usage record {record_id!r} differs from the record in its inputs")


def _first_difference(a: str, b: str) -> str:
    """Where two texts first differ, with a little context, for the problem line."""
    i = next((k for k, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    return f" at character {i} ({b[max(0, i - 20) : i + 20]!r})"


def sites(session: Session) -> list[str]:
    """Every site that has invoices or counter rows, ascending."""
    found = set(session.execute(sa.select(Invoice.site).distinct()).scalars())
    found |= set(session.execute(sa.select(InvoiceCounter.site).distinct()).scalars())
    return sorted(found)


__all__ = [
    "CREDIT_NOTE",
    "DRAFT",
    "FINALIZED",
    "INVOICE",
    "VOID",
    "Conflict",
    "LedgerError",
    "NotFound",
    "Problem",
    "check_reason",
    "document_of",
    "finalize",
    "get",
    "list_invoices",
    "recompute_document",
    "save_draft",
    "sites",
    "verify",
    "void",
]
