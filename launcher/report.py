"""`shopfloor report oee|usage`: the API's figures, offline, from a file of wire messages (for audits and tests).

The file is what `shopfloor simulate --replay --out` writes (one wire message per line). Its messages go through the
collector's own checks and conversion into an in-memory store, and the figures come from the same shell the API
uses (api.analytics), so the report and the API give the same numbers for the same data.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

EPILOG = """\
examples:
  shopfloor simulate --replay faults.yaml --from 2026-11-02T08:00:00+07:00 --to 2026-11-02T08:05:00+07:00 \\
      --out samples.jsonl
  shopfloor report oee --samples samples.jsonl --site site.yaml \\
      --from 2026-11-02T08:00:00+07:00 --to 2026-11-02T08:05:00+07:00 --group-by machine,shift
  shopfloor report usage --samples samples.jsonl --site site.yaml --from ... --to ... --format csv

Rows go to stdout; what was read and refused goes to stderr. Exit code 0, or 2 for a bad argument or file.
"""


def parse_instant(option: str, text: str) -> int:
    """Parse an ISO 8601 time with an explicit offset into epoch ms; raise ValueError naming the option."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        when = None
    if when is None or when.tzinfo is None:
        raise ValueError(f"{option}: expected ISO 8601 with an offset, e.g. 2026-11-28T08:00:00+07:00, got {text!r}")
    return int(when.timestamp() * 1000)


def _fail(message: str) -> int:
    print(f"shopfloor report: {message}", file=sys.stderr)
    return 2


def _read_samples(path: Path, site: Any, now_ms: int) -> Any:
    """The wire file's points in a MemoryStore; what was refused goes to stderr."""
    from launcher.wirefile import read_wire_file
    from shopfloor.memstore import MemoryStore

    wire = read_wire_file(path, site, now_ms)
    refused = sum(wire.refused.values())
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(wire.refused.items()))
    print(f"{path}: {wire.messages} messages, {refused} refused{f' ({kinds})' if kinds else ''}", file=sys.stderr)
    for line in wire.errors:
        print(f"  {line}", file=sys.stderr)
    store = MemoryStore()
    store.write(wire.points)
    return store


def _invoice(args: argparse.Namespace) -> int:
    """`shopfloor report invoice`: a period's charges recomputed offline from samples and billing.yaml."""
    from api import invoicing
    from api.billing import PeriodError, period_of, zone
    from api.core.billing import document, export
    from api.core.billing.charging import BillingError
    from api.db.billingfile import load_billing, to_core
    from shopfloor.config import load_site

    if args.billing is None or args.period is None:
        return _fail("invoice needs --billing FILE and --period YYYY-MM")
    args.format = args.format or "json"
    site = load_site(args.site)
    try:
        period = period_of(args.period, site.site.timezone)
    except PeriodError as exc:
        return _fail(f"--period: {exc}")
    setup = to_core(load_billing(args.billing, zone(site)), zone(site))
    if args.tenant is not None and args.tenant not in setup.tenants:
        return _fail(f"--tenant {args.tenant!r} is not a tenant in {args.billing}")
    if args.format == "pdf" and args.tenant is None:
        return _fail("--format pdf prints one tenant's invoice: give --tenant")
    if args.format == "table":
        return _fail("invoice: --format is json, csv or pdf")
    try:
        store = _read_samples(args.samples, site, max(int(time.time() * 1000), period.end_ms))
    except OSError as exc:
        return _fail(f"cannot read {args.samples}: {exc.strerror or exc}")
    try:
        computed = invoicing.compute(
            store, site, setup, period.name, tenants=setup.tenants, facility_name=setup.facility_name
        )
    except BillingError as exc:
        return _fail(f"cannot charge {period.name}: {exc}")
    doc: Any
    if args.tenant is None:
        doc = document.report_document(computed.inputs, computed.charges)
    else:
        doc = computed.documents.get(args.tenant)
        if doc is None:
            return _fail(f"tenant {args.tenant!r} has nothing to bill in {period.name}")
    if args.format == "json":
        out = export.to_json(doc)
    elif args.format == "csv":
        out = export.to_csv(doc, args.lang, time_zone=site.site.timezone)
    else:
        out = invoicing.pdf(doc, args.lang)
    sys.stdout.buffer.write(out)
    sys.stdout.flush()
    return 0


def _run(args: argparse.Namespace) -> int:
    if args.what == "invoice":
        return _invoice(args)
    if args.from_ is None or args.to is None:
        return _fail(f"{args.what} needs --from and --to")
    from api import analytics
    from api.core.owners import Owners
    from api.params import GROUP_KEYS
    from launcher.tables import render
    from shopfloor.config import load_site
    from shopfloor.contracts import MAX_TS_MS, MIN_TS_MS

    try:
        start_ms = parse_instant("--from", args.from_)
        end_ms = parse_instant("--to", args.to)
    except ValueError as exc:
        return _fail(str(exc))
    if not MIN_TS_MS <= start_ms < end_ms <= MAX_TS_MS:
        return _fail("--from must be before --to, both between 2000-01-01 and 2100-01-01")
    keys = tuple(k.strip() for k in args.group_by.split(",")) if args.group_by else ("machine",)
    unknown = [k for k in keys if k not in GROUP_KEYS]
    if unknown or len(set(keys)) != len(keys):
        return _fail(f"--group-by: {args.group_by!r}: each of {', '.join(GROUP_KEYS)} at most once")
    site = load_site(args.site)
    machines = list(site.machines)
    if args.machine is not None:
        chosen = site.machine(args.machine)
        if chosen is None:
            return _fail(f"--machine {args.machine!r} is not a machine of site {site.site.id!r}")
        machines = [chosen]
    if args.tenant is not None and args.tenant not in {t.id for t in site.tenants}:
        return _fail(f"--tenant {args.tenant!r} is not a tenant of site {site.site.id!r}")
    now_ms = max(int(time.time() * 1000), end_ms)
    try:
        store = _read_samples(args.samples, site, now_ms)
    except OSError as exc:
        return _fail(f"cannot read {args.samples}: {exc.strerror or exc}")
    owners = Owners.always(site.badge_owner())
    data = analytics.window(store, site, start_ms, end_ms, machines=machines, owners=owners)
    rows: list[dict[str, Any]]
    if args.what == "oee":
        rows = [
            analytics.oee_dict(r)
            for r in analytics.oee_rows(site, data, group_by=keys, owners=owners, tenant=args.tenant)
        ]
    else:
        rows = [
            analytics.usage_dict(r)
            for r in analytics.usage_rows(site, data, owners)
            if args.tenant is None or r.tenant == args.tenant
        ]
    if args.format == "pdf":
        return _fail(f"{args.what}: --format is json, csv or table")
    sys.stdout.write(render(rows, args.format or "table"))
    return 0


def add_parser(sub: Any) -> None:
    """Register `shopfloor report`."""
    from shopfloor.cli import add_common

    p = sub.add_parser(
        "report",
        help="OEE or usage from a file of wire messages, offline (the API's figures, for audits)",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(p)
    p.add_argument("what", choices=["oee", "usage", "invoice"], help="which figures")
    p.add_argument("--samples", type=Path, required=True, help="JSON lines of wire messages (simulate --replay --out)")
    p.add_argument("--from", dest="from_", default=None, help="oee, usage: window start, ISO 8601 with offset")
    p.add_argument("--to", default=None, help="oee, usage: window end, ISO 8601 with offset")
    p.add_argument("--billing", type=Path, default=None, help="invoice: billing.yaml (tenants, tariffs, ...)")
    p.add_argument("--period", default=None, help="invoice: the month, YYYY-MM (site time zone)")
    p.add_argument("--lang", choices=["en", "id"], default="en", help="invoice: language of csv/pdf labels")
    p.add_argument("--machine", default=None, help="only this machine")
    p.add_argument("--tenant", default=None, help="only this tenant's sessions (OEE on the session basis)")
    p.add_argument(
        "--group-by", default=None, help="oee: comma-separated machine,tenant,job,shift,day (default machine)"
    )
    p.add_argument(
        "--format", choices=["json", "csv", "table", "pdf"], default=None, help="output (default: table; invoice: json)"
    )
    p.set_defaults(func=_run)
