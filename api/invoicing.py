"""Invoice service: the steps between the routes, the billing shell (api.billing), the core and the ledger.

Drafting reads the period's telemetry and the business data, charges them (api.core.billing.charging) and stores
one draft per tenant with the inputs it came from. Finalizing checks the watermark: every machine's data must be
past the period's end plus the grace minutes, or an override reason is recorded on the invoice.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from api.billing import BillingSetup, Lag, PeriodError, billing_inputs, lagging, period_of, zone
from api.core.billing import document as billing_document
from api.core.billing import export
from api.core.billing.charging import Inputs, charge
from api.core.billing.model import Charges
from api.db import ledger
from api.db.models import Invoice
from api.db.repo import billing_data
from shopfloor.config import SiteConfig
from shopfloor.store import TimeSeriesStore

__all__ = ["BeforeWatermark", "Drafts", "PeriodError", "compute", "draft_period", "finalize"]

DEFAULT_GRACE_MIN = 60


class BeforeWatermark(Exception):
    """A period cannot be closed yet: some machine's data does not reach its end plus grace."""


@dataclass(frozen=True, slots=True)
class Drafts:
    """What drafting a period stored."""

    drafts: list[Invoice]
    lagging: list[Lag]
    unallocated: int
    skipped: list[str]  # tenants with a finalized invoice for the period already


@dataclass(frozen=True, slots=True)
class Computed:
    """A period's inputs and charges, and each tenant's invoice document."""

    inputs: Inputs
    charges: Charges
    documents: dict[str, dict[str, Any]]  # tenant -> invoice document


def tenant_documents(
    site: SiteConfig, inputs: Inputs, charges: Charges, tenants: Mapping[str, str], facility_name: str
) -> dict[str, dict[str, Any]]:
    """One invoice document per tenant that has a line in the period."""
    billed = sorted({line.tenant for line in charges.lines})
    return {
        tenant: billing_document.invoice_document(
            inputs,
            charges,
            tenant=tenant,
            tenant_name=tenants.get(tenant, ""),
            site_id=site.site.id,
            site_name=site.site.name,
            facility_name=facility_name or site.site.name,
            time_zone=site.site.timezone,
        )
        for tenant in billed
    }


def compute(
    store: TimeSeriesStore,
    site: SiteConfig,
    setup: BillingSetup,
    period: str,
    *,
    tenants: Mapping[str, str],
    facility_name: str,
) -> Computed:
    """Charge one period: the same steps for the API and for `shopfloor report invoice`."""
    inputs = billing_inputs(store, site, setup, period_of(period, site.site.timezone))
    charges = charge(inputs)
    return Computed(inputs, charges, tenant_documents(site, inputs, charges, tenants, facility_name))


def draft_period(db: Session, store: TimeSeriesStore, site: SiteConfig, period: str, *, now_ms: int) -> Drafts:
    """Store a draft for every tenant billed in the period (tenants already finalized for it are skipped)."""
    the_period = period_of(period, site.site.timezone)
    data = billing_data(db, zone(site))
    # Reading a month of telemetry takes a while: hold no database lock meanwhile (SQLite's is the whole file).
    db.rollback()
    result = compute(store, site, data, period, tenants=data.tenants, facility_name=data.facility_name)
    inputs_json = billing_document.inputs_to_json(result.inputs)
    lags = lagging(store, site, the_period, data.watermark_grace_min)
    final = {
        i.tenant_id
        for i in ledger.list_invoices(db, site=site.site.id, period=period, status="finalized")
        if i.kind == "invoice"
    }
    drafts, skipped = [], []
    for tenant, doc in result.documents.items():
        if tenant in final:
            skipped.append(tenant)
            continue
        drafts.append(
            ledger.save_draft(
                db, site=site.site.id, tenant=tenant, period=period, document=doc, inputs=inputs_json, now_ms=now_ms
            )
        )
    return Drafts(drafts, lags, result.charges.unallocated, skipped)


def finalize(
    db: Session, store: TimeSeriesStore, site: SiteConfig, invoice: Invoice, *, now_ms: int, override: str | None
) -> Invoice:
    """Finalize a draft once every machine's data is past the period end plus grace (or override says why not)."""
    if invoice.status != ledger.DRAFT or invoice.kind != ledger.INVOICE:
        # What the ledger would refuse is refused first: a finalized invoice is not "before the watermark".
        return ledger.finalize(db, invoice.id, now_ms=now_ms, override=override)
    data = billing_data(db, zone(site))
    db.rollback()  # no lock while the store answers
    lags = lagging(store, site, period_of(invoice.period, site.site.timezone), data.watermark_grace_min)
    if lags and override is None:
        behind = ", ".join(f"{lag.machine} ({_when(lag.newest_ms)})" for lag in lags[:10])
        raise BeforeWatermark(
            f"period {invoice.period} cannot be finalized yet: data of {len(lags)} machine(s) does not reach the "
            f"period end plus {data.watermark_grace_min} min: {behind}; wait, or finalize with an override reason"
        )
    return ledger.finalize(db, invoice.id, now_ms=now_ms, override=override)


def _when(ms: int | None) -> str:
    from api.models import utc

    return "no data" if ms is None else f"newest {utc(ms).isoformat()}"


def file_name(document: Mapping[str, Any]) -> str:
    """A safe file name for a document: its number, or draft-<tenant>-<period>."""
    number = document.get("number")
    tenant = document.get("tenant")
    tenant_id = tenant.get("id") if isinstance(tenant, Mapping) else None
    name = str(number) if number else f"draft-{tenant_id}-{document.get('period')}"
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:100]


def csv(document: Mapping[str, Any], lang: str) -> bytes:
    """A document's lines and totals as CSV."""
    return export.to_csv(dict(document), lang)


def pdf(document: Mapping[str, Any], lang: str) -> bytes:
    """A document as PDF."""
    from api.invoice_pdf import render_pdf

    return render_pdf(dict(document), lang)
