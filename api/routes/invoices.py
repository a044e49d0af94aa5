"""Invoices: draft a period from telemetry and the business data, finalize (numbered, hash-chained), void (a credit
note), and read them as JSON, CSV or PDF. Tenants see only their own; operators see no money; auditors read all and
change nothing; admins do all (api.policy)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from api import invoicing
from api.core.billing.charging import BillingError
from api.db import ledger
from api.db.models import Invoice
from api.deps import DbDep, DirectoryDep, NowDep, PrincipalDep, SiteDep, StoreDep
from api.models import utc
from api.params import MAX_PARAM_CHARS
from api.policy import NotVisible, Principal, can_manage_invoices, can_read_invoice, figures_tenant, sees_money
from api.routes.oee import single

router = APIRouter(prefix="/invoices", tags=["invoices"])

Lang = Literal["en", "id"]
Kind = Literal["invoice", "credit_note"]
MAX_REASON = ledger.MAX_REASON
# Invoice ids are the Integer column's: anything outside 1..2**31-1 cannot exist (and PostgreSQL refuses to compare
# it, SQLite to bind it), so it is answered like any other id nobody has.
MAX_INVOICE_ID = 2**31 - 1
# A billing month as drafts take it (api.billing.PERIOD); ASCII digits only (\d would take other scripts' digits).
PERIOD_PATTERN = r"^20[0-9]{2}-(0[1-9]|1[0-2])$"


class InvoiceSummary(BaseModel):
    """An invoice or credit note without its lines."""

    id: int
    number: str | None
    kind: str
    status: str
    tenant: str
    period: str
    subtotal: int
    tax: int
    total: int
    hash: str | None
    credit_for_id: int | None
    override: str | None
    created: str
    finalized: str | None

    @classmethod
    def of(cls, invoice: Invoice) -> InvoiceSummary:
        """The summary of a stored invoice."""
        return cls(
            id=invoice.id,
            number=invoice.number,
            kind=invoice.kind,
            status=invoice.status,
            tenant=invoice.tenant_id,
            period=invoice.period,
            subtotal=invoice.subtotal,
            tax=invoice.tax,
            total=invoice.total,
            hash=invoice.hash,
            credit_for_id=invoice.credit_for_id,
            override=invoice.override,
            created=utc(invoice.created_ms).isoformat(),
            finalized=None if invoice.finalized_ms is None else utc(invoice.finalized_ms).isoformat(),
        )


class InvoiceList(BaseModel):
    """Invoices the caller may see."""

    invoices: list[InvoiceSummary]


class Drafted(BaseModel):
    """The drafts a period gave, the tenants skipped (they have a finalized invoice for it: void that first) and the
    machines whose data does not yet reach the watermark."""

    period: str
    drafts: list[InvoiceSummary]
    skipped: list[str]
    lagging: list[dict[str, Any]]
    unallocated: int


class Voided(BaseModel):
    """The invoice voided and, for a finalized one, the credit note that corrects it."""

    voided: InvoiceSummary
    credit_note: InvoiceSummary | None


def _reason(value: str) -> str:
    # The ledger's rule (not blank, no control or bidirectional characters), checked here so it answers 422.
    try:
        return ledger.check_reason("text", value)
    except ledger.LedgerError as exc:
        raise ValueError(str(exc).removeprefix("text ")) from None


Reason = Annotated[str, Field(min_length=1, max_length=MAX_REASON), AfterValidator(_reason)]


class FinalizeBody(BaseModel):
    """Finalize a draft; override (a reason, recorded on the invoice) closes a period before the watermark."""

    model_config = ConfigDict(extra="forbid")

    override: Reason | None = None


class VoidBody(BaseModel):
    """Void an invoice; a finalized one is corrected by the credit note this issues."""

    model_config = ConfigDict(extra="forbid")

    reason: Reason


def _forbidden(what: str) -> HTTPException:
    return HTTPException(status.HTTP_403_FORBIDDEN, detail=f"this key may not {what}")


def money_reader(principal: PrincipalDep) -> Principal:
    """The caller, if its role may see invoices (money); 403 before anything of the request is looked at."""
    if not sees_money(principal):
        raise _forbidden("see invoices (no money for this role)")
    return principal


def invoice_manager(principal: PrincipalDep) -> Principal:
    """The caller, if it may draft, finalize and void invoices (admin); 403 before the request is looked at."""
    if not can_manage_invoices(principal):
        raise _forbidden("change invoices (admin only)")
    return principal


# Dependencies, so the role is checked before query, path and body are validated: a role that may not use a route
# learns nothing from it, not even which inputs it would accept.
ReaderDep = Annotated[Principal, Depends(money_reader)]
ManagerDep = Annotated[Principal, Depends(invoice_manager)]


def _found(db: DbDep, principal: Principal, invoice_id: int) -> Invoice:
    """The invoice, if the caller may see it; the same 404 for a foreign and a nonexistent one."""
    invoice = ledger.get(db, invoice_id) if 1 <= invoice_id <= MAX_INVOICE_ID else None
    if invoice is None or not can_read_invoice(principal, invoice.tenant_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"invoice {invoice_id} not found")
    return invoice


def _conflict(exc: Exception) -> HTTPException:
    return HTTPException(status.HTTP_409_CONFLICT, detail=str(exc))


@router.get("")
def list_invoices(
    request: Request,
    site: SiteDep,
    db: DbDep,
    principal: ReaderDep,
    directory: DirectoryDep,
    period: Annotated[
        str | None, Query(max_length=MAX_PARAM_CHARS, pattern=PERIOD_PATTERN, description="YYYY-MM")
    ] = None,
    tenant: Annotated[str | None, Query(max_length=MAX_PARAM_CHARS)] = None,
    status_: Annotated[
        Literal["draft", "finalized", "void"] | None, Query(alias="status", description="draft, finalized or void")
    ] = None,
    kind: Annotated[Kind | None, Query(description="invoice or credit_note")] = None,
) -> InvoiceList:
    """List the invoices and credit notes the caller may see (a tenant: its own), oldest number first."""
    for name in ("period", "tenant", "status", "kind"):
        single(request, name)
    try:
        scope = figures_tenant(principal, tenant, directory.tenants)
    except NotVisible:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="tenant not found") from None
    found = ledger.list_invoices(db, site=site.site.id, tenant=scope, period=period, status=status_)
    # ledger.list_invoices has no kind filter (yet): cut here.
    return InvoiceList(
        invoices=[
            InvoiceSummary.of(i)
            for i in found
            if can_read_invoice(principal, i.tenant_id) and (kind is None or i.kind == kind)
        ]
    )


@router.post("/{period}/draft", responses={409: {"description": "a finalized invoice exists"}})
def draft(period: str, site: SiteDep, store: StoreDep, db: DbDep, _admin: ManagerDep, now: NowDep) -> Drafted:
    """Compute the period's charges from telemetry and store one draft per tenant (replacing earlier drafts);
    tenants with a finalized invoice for the period are listed in skipped, their invoice untouched."""
    try:
        result = invoicing.draft_period(db, store, site, period, now_ms=int(now.timestamp() * 1000))
    except invoicing.PeriodError as exc:
        # The same 422 shape as every other validation error, naming the path parameter.
        shown = period[:MAX_PARAM_CHARS]
        error = {"type": "value_error", "loc": ("path", "period"), "msg": str(exc), "input": shown}
        raise RequestValidationError([error]) from None
    except BillingError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(exc)) from None
    except ledger.Conflict as exc:
        db.rollback()
        raise _conflict(exc) from None
    db.commit()
    return Drafted(
        period=period,
        drafts=[InvoiceSummary.of(i) for i in result.drafts],
        skipped=result.skipped,
        lagging=[{"machine": lag.machine, "newest": _iso(lag.newest_ms)} for lag in result.lagging],
        unallocated=result.unallocated,
    )


def _iso(ms: int | None) -> str | None:
    return None if ms is None else utc(ms).isoformat()


@router.post("/{invoice_id}/finalize", responses={409: {"description": "not a draft, or before the watermark"}})
def finalize(
    invoice_id: int,
    site: SiteDep,
    store: StoreDep,
    db: DbDep,
    principal: ManagerDep,
    now: NowDep,
    body: FinalizeBody | None = None,
) -> InvoiceSummary:
    """Number and freeze a draft. Refused while a machine's data is not past the period end plus grace, unless an
    override reason is given (it is recorded on the invoice)."""
    invoice = _found(db, principal, invoice_id)
    override = body.override if body is not None else None
    try:
        done = invoicing.finalize(db, store, site, invoice, now_ms=int(now.timestamp() * 1000), override=override)
    except invoicing.BeforeWatermark as exc:
        raise _conflict(exc) from None
    except ledger.Conflict as exc:
        db.rollback()
        raise _conflict(exc) from None
    db.commit()
    return InvoiceSummary.of(done)


@router.post("/{invoice_id}/void", responses={409: {"description": "void already, or a credit note"}})
def void(invoice_id: int, body: VoidBody, db: DbDep, principal: ManagerDep, now: NowDep) -> Voided:
    """Void an invoice: a draft is dropped; a finalized one is corrected by a credit note, returned here."""
    invoice = _found(db, principal, invoice_id)
    try:
        credit = ledger.void(db, invoice.id, now_ms=int(now.timestamp() * 1000), reason=body.reason)
    except ledger.Conflict as exc:
        db.rollback()
        raise _conflict(exc) from None
    db.commit()
    return Voided(voided=InvoiceSummary.of(invoice), credit_note=None if credit is None else InvoiceSummary.of(credit))


LangQuery = Annotated[Lang, Query(description="en or id (Bahasa Indonesia)")]


@router.get("/{invoice_id}.pdf", response_class=Response, responses={200: {"content": {"application/pdf": {}}}})
def invoice_pdf(invoice_id: int, db: DbDep, principal: ReaderDep, lang: LangQuery = "en") -> Response:
    """The invoice as the PDF a tenant reads."""
    document = ledger.document_of(_found(db, principal, invoice_id))
    return Response(
        invoicing.pdf(document, lang),
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{invoicing.file_name(document)}.pdf"'},
    )


@router.get("/{invoice_id}.csv", response_class=Response, responses={200: {"content": {"text/csv": {}}}})
def invoice_csv(invoice_id: int, db: DbDep, principal: ReaderDep, lang: LangQuery = "en") -> Response:
    """The invoice's lines and totals as CSV."""
    document = ledger.document_of(_found(db, principal, invoice_id))
    return Response(
        invoicing.csv(document, lang),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{invoicing.file_name(document)}.csv"'},
    )


@router.get("/{invoice_id}")
def invoice_json(invoice_id: int, db: DbDep, principal: ReaderDep) -> dict[str, Any]:
    """The invoice document: lines, sessions, tariffs, pool basis, totals, number, status and hash."""
    return ledger.document_of(_found(db, principal, invoice_id))
