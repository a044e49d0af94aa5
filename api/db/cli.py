"""`shopfloor db upgrade|current|import|key`: migrate the business database, import billing.yaml or a site file's
tenants and keys, and create, revoke and list API keys.

Exit codes: 0 done, 2 bad input or configuration (a bad file, a clash, an unmigrated database), 1 the database
cannot be reached or used.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

PROG = "shopfloor db"
DB_URL_HELP = (
    "SQLAlchemy URL of the business database: sqlite:///path.db or postgresql://user@host/db "
    "(default: SHOPFLOOR_DB_URL, else sqlite:///<data dir>/shopfloor.db, the roll-ups' file)"
)


class UsageError(Exception):
    """A bad option or file: the message names it."""


def default_db_url() -> str:
    """The business database: Settings' db_url (SHOPFLOOR_DB_URL), else <data_dir>/shopfloor.db."""
    from api.rollups.store import default_url
    from shopfloor.settings import settings

    env = settings()
    return env.db_url or default_url(env.data_dir)


def _url(args: argparse.Namespace) -> str:
    if args.db_url:
        return str(args.db_url)
    from shopfloor.settings import settings

    Path(settings().data_dir).mkdir(parents=True, exist_ok=True)  # our own default place: make it
    return default_db_url()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _iso(ms: int | None) -> str:
    return "-" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%MZ")


def _open_current(args: argparse.Namespace) -> Engine:
    """The engine of a database at the newest revision (NotMigrated otherwise)."""
    from api.db.engine import check_current, open_engine

    engine = open_engine(_url(args))
    try:
        check_current(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


def _upgrade(args: argparse.Namespace) -> int:
    from api.db import migrate
    from api.db.engine import display_url, normalize_url

    url = _url(args)
    before = migrate.current(url)
    after = migrate.upgrade(url, args.revision)
    shown = display_url(normalize_url(url))
    if before == after:
        print(f"business database {shown} is at revision {after or 'none'}; nothing to do")
    else:
        print(f"business database {shown} migrated from revision {before or 'none'} to {after}")
    return 0


def _current(args: argparse.Namespace) -> int:
    from api.db import migrate

    found, head = migrate.current(_url(args)), migrate.head()
    state = "up to date" if found == head else f"needs `{PROG} upgrade`"
    print(f"revision {found or 'none'} (newest {head}): {state}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from api.db import billingfile, repo
    from api.db.engine import sessions
    from shopfloor.calendar import zone_of
    from shopfloor.config import load_site
    from shopfloor.yamlfile import read_yaml

    path = Path(args.file)
    try:
        data, lines = read_yaml(path)
    except RecursionError as exc:
        raise UsageError(f"{path}: nested too deeply to be a billing or site file") from exc
    bf = billingfile.parse_billing(data, source=str(path), lines=lines)
    kind = "site file" if isinstance(data, dict) and billingfile.is_site_file(data) else "billing file"
    site = load_site(args.site)
    zone = zone_of(site.site.timezone)
    try:
        billingfile.booking_times(bf, zone)
        billingfile.check_machines(bf, {m.id: m.profile for m in site.machines})
    except ValueError as exc:
        raise UsageError(f"{path}: {exc}") from exc
    engine = _open_current(args)
    try:
        with sessions(engine)() as session:
            report = repo.import_billing(session, bf, now_ms=_now_ms(), zone=zone)
            if args.dry_run:
                session.rollback()
            else:
                session.commit()
    finally:
        engine.dispose()
    verb = "would import" if args.dry_run else "imported"
    print(f"{verb} {kind} {path}:\n{report.summary()}")
    return 0


def _key(args: argparse.Namespace) -> int:
    from api.db import repo
    from api.db.engine import sessions

    engine = _open_current(args)
    try:
        with sessions(engine)() as session:
            if args.key_action == "create":
                row, clear = repo.create_key(
                    session, name=args.name, role=args.role, tenant=args.tenant, now_ms=_now_ms()
                )
                session.commit()
                owner = f" of tenant {row.tenant_id!r}" if row.tenant_id else ""
                print(f"API key {row.name!r} ({row.role} key{owner}) created; shown once, give it to its user:")
                print(clear)
            elif args.key_action == "revoke":
                row = repo.revoke_key(session, args.name, _now_ms())
                session.commit()
                print(f"API key {row.name!r} revoked at {_iso(row.revoked_ms)}")
            else:
                _list_keys(repo.list_keys(session))
    finally:
        engine.dispose()
    return 0


def _list_keys(rows: list[Any]) -> None:
    if not rows:
        print("no API keys; make one with `shopfloor db key create --name NAME --role ROLE`")
        return
    print(f"{'name':<24} {'role':<9} {'tenant':<16} {'hash':<10} {'created':<17} {'last used':<17} revoked")
    for r in rows:
        # A prefix tells keys apart; the full hash would let anyone with this output test guesses offline.
        print(
            f"{r.name:<24} {r.role:<9} {r.tenant_id or '-':<16} {r.sha256[:8] + '..':<10} {_iso(r.created_ms):<17} "
            f"{_iso(r.last_used_ms):<17} {_iso(r.revoked_ms)}"
        )


def _run(args: argparse.Namespace) -> int:
    from api.db.engine import BadUrl, Conflict, DbError, NotFound, NotMigrated
    from shopfloor.yamlfile import ConfigError

    actions = {"upgrade": _upgrade, "current": _current, "import": _import, "key": _key}
    try:
        return actions[args.db_action](args)
    except (UsageError, ConfigError, BadUrl, NotMigrated, Conflict, NotFound, ValueError) as error:
        print(f"{PROG} {args.db_action}: {error}", file=sys.stderr)
        return 2
    except DbError as error:
        print(f"{PROG} {args.db_action}: {error}", file=sys.stderr)
        return 1


def add_parser(sub: Any) -> None:
    """Register `shopfloor db`."""
    from shopfloor.cli import add_common
    from shopfloor.config import Role

    p = sub.add_parser(
        "db",
        help="migrate the business database, import billing data, manage API keys",
        description="The business database holds tenants, badges, API keys, bookings, tariffs, cost pools and "
        "invoices. `upgrade` migrates it to the newest schema (the API refuses to start before), `current` shows "
        "its revision, `import FILE` takes a billing.yaml (or a site file's tenants: and api_keys:) over: rows "
        "with the same key are updated, none deleted, so importing twice changes nothing. `key` creates, revokes "
        "and lists API keys.",
    )
    actions = p.add_subparsers(dest="db_action", required=True, metavar="ACTION")

    def action(name: str, help_text: str, db_url: bool = True) -> argparse.ArgumentParser:
        q: argparse.ArgumentParser = actions.add_parser(name, help=help_text)
        if db_url:
            q.add_argument("--db-url", default=None, help=DB_URL_HELP)
        return q

    up = action("upgrade", "migrate the business database to the newest schema")
    up.add_argument("--revision", default="head", help="target revision (default: %(default)s)")
    action("current", "show the business database's schema revision")
    imp = action("import", "import billing.yaml, or the tenants and api_keys of a site file")
    imp.add_argument("file", help="billing.yaml or site.yaml (told apart by their contents)")
    imp.add_argument("--dry-run", action="store_true", help="check and count, change nothing")
    add_common(imp)
    key = action("key", "create, revoke or list API keys", db_url=False)
    keys = key.add_subparsers(dest="key_action", required=True, metavar="KEY_ACTION")
    create = keys.add_parser("create", help="make an API key and print it once")
    create.add_argument("--name", required=True, help="a name for the key, e.g. acme-portal")
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--tenant", default=None, help="tenant id (tenant keys only)")
    revoke = keys.add_parser("revoke", help="revoke an API key: it stops working at once")
    revoke.add_argument("name", help="the key's name")
    listing = keys.add_parser("list", help="list API keys (never their hashes in full)")
    for q in (create, revoke, listing):
        q.add_argument("--db-url", default=None, help=DB_URL_HELP)
    p.set_defaults(func=_run)
