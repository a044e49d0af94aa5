"""`shopfloor invoices verify|list`: check the invoice ledger's hash chain and figures, and list its documents.

verify exits 0 when every site's ledger is intact, 1 when it found a problem (one line per problem) or the database
could not be reached, 2 on bad options or a database that is not migrated.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

PROG = "shopfloor invoices"


class _Refused(Exception):
    """The command cannot run: the message says why; code is the exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def default_db_url() -> str:
    """The business database: Settings' db_url (SHOPFLOOR_DB_URL), else <data_dir>/shopfloor.db."""
    from api.rollups.store import default_url
    from shopfloor.settings import settings

    env = settings()
    return env.db_url or default_url(env.data_dir)


def _engine(url: str | None) -> Engine:
    """Open and check the business database; raise _Refused with the exit code if it cannot be used."""
    from api.db.engine import DbError, NotMigrated, check_current, open_engine

    try:
        engine = open_engine(url or default_db_url())
    except DbError as exc:
        # Reaching the server is the one thing a retry may fix; a bad URL or a missing folder is the caller's.
        raise _Refused(str(exc), 1 if "cannot connect" in str(exc) else 2) from exc
    try:
        check_current(engine)
    except NotMigrated as exc:
        engine.dispose()
        raise _Refused(str(exc), 2) from exc
    except DbError as exc:
        engine.dispose()
        raise _Refused(str(exc), 1) from exc
    return engine


def _verify(args: argparse.Namespace) -> int:
    from api.db import ledger
    from api.db.engine import sessions

    engine = _engine(args.db_url)
    try:
        with sessions(engine, write=False)() as session:
            names = [args.site] if args.site else ledger.sites(session)
            found = 0
            for site in names:
                problems = ledger.verify(session, site, recompute=not args.no_recompute)
                for problem in problems:
                    print(f"site {site}: {problem}")
                found += len(problems)
                if not problems:
                    count = sum(1 for i in ledger.list_invoices(session, site=site) if i.hash is not None)
                    print(f"site {site}: {count} documents verified, chain intact")
            if not names:
                print("0 documents verified, chain intact (no invoices yet)")
    finally:
        engine.dispose()
    return 1 if found else 0


def _list(args: argparse.Namespace) -> int:
    from api.db import ledger
    from api.db.engine import sessions

    engine = _engine(args.db_url)
    try:
        with sessions(engine, write=False)() as session:
            try:
                rows = [
                    invoice
                    for site in ([args.site] if args.site else ledger.sites(session))
                    for invoice in ledger.list_invoices(
                        session, site=site, tenant=args.tenant, period=args.period, status=args.status
                    )
                ]
            except ledger.LedgerError as exc:
                raise _Refused(str(exc), 2) from exc
            if args.json:
                print(json.dumps([_summary(i) for i in rows], indent=2, ensure_ascii=False))
                return 0
            print(f"{'number':<20} {'id':>6}  {'tenant':<20} {'period':<7}  {'kind':<11} {'status':<9} {'total':>15}")
            for i in rows:
                print(
                    f"{i.number or '-':<20} {i.id:>6}  {i.tenant_id:<20} {i.period:<7}  {i.kind:<11} {i.status:<9} "
                    f"{i.total:>15}"
                )
    finally:
        engine.dispose()
    return 0


def _summary(invoice: Any) -> dict[str, Any]:
    return {
        "id": invoice.id,
        "number": invoice.number,
        "site": invoice.site,
        "tenant": invoice.tenant_id,
        "period": invoice.period,
        "kind": invoice.kind,
        "status": invoice.status,
        "subtotal": invoice.subtotal,
        "tax": invoice.tax,
        "total": invoice.total,
        "hash": invoice.hash,
    }


def _run(work: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            code: int = work(args)
        except _Refused as exc:
            print(f"{PROG} {args.invoices_command}: {exc}", file=sys.stderr)
            return exc.code
        return code

    return run


def add_parser(sub: Any) -> None:
    """Register `shopfloor invoices` with its verify and list subcommands."""
    p = sub.add_parser(
        "invoices",
        help="verify the invoice ledger's hash chain, list invoices",
        description="Finalized invoices and credit notes are numbered without gaps and hash-chained per site. "
        "`verify` re-checks every hash, link, number, line and total, and recomputes each document from its stored "
        "inputs; `list` shows the documents.",
    )
    commands = p.add_subparsers(dest="invoices_command", required=True, metavar="COMMAND")

    def common(q: argparse.ArgumentParser) -> None:
        q.add_argument(
            "--db-url",
            default=None,
            help="SQLAlchemy URL of the business DB "
            "(default: SHOPFLOOR_DB_URL, else sqlite:///<data dir>/shopfloor.db)",
        )
        q.add_argument("--site", default=None, metavar="ID", help="only this site (default: every site in the DB)")

    v = commands.add_parser("verify", help="check hashes, chain, numbers, lines and totals; recompute documents")
    common(v)
    v.add_argument("--no-recompute", action="store_true", help="skip recomputing documents from their inputs")
    v.set_defaults(func=_run(_verify))

    ls = commands.add_parser("list", help="list invoices and credit notes")
    common(ls)
    ls.add_argument("--tenant", default=None, help="only this tenant's")
    ls.add_argument("--period", default=None, help="only this period (YYYY-MM)")
    ls.add_argument("--status", default=None, choices=["draft", "finalized", "void"], help="only this status")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ls.set_defaults(func=_run(_list))
