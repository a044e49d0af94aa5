"""`shopfloor api`: serve the HTTP API for one site from its time-series store, roll-ups kept in the business DB."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def _run(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app
    from api.db.engine import DbError, check_current, open_engine, sessions
    from api.directory import OwnersReader
    from api.live import LiveHub
    from api.rollups.cli import default_db_url
    from api.rollups.derived import deriver_for
    from api.rollups.job import start_rollup_thread
    from api.rollups.store import RollupError, RollupStore
    from api.server import GRACE_S
    from shopfloor.calendar import zone_of
    from shopfloor.cli import mqtt_settings, open_store
    from shopfloor.config import load_site
    from shopfloor.settings import settings

    site = load_site(args.site)
    try:
        mqtt = None if args.no_live else mqtt_settings(args)
    except ValueError as exc:
        print(f"shopfloor api: {exc}", file=sys.stderr)
        return 2
    url = args.db_url or default_db_url()
    if args.db_url is None and settings().db_url is None:
        settings().data_dir.mkdir(parents=True, exist_ok=True)  # the default: a SQLite file in the data dir
    # The business DB (tenants, badges, keys, tariffs, invoices) must be migrated: refuse to serve otherwise.
    try:
        engine = open_engine(url)
        check_current(engine)
    except DbError as exc:
        print(f"shopfloor api: {exc}", file=sys.stderr)
        return 2
    rollups: RollupStore | None = None
    if not args.no_rollups:
        try:
            rollups = RollupStore(url)
        except RollupError as exc:
            print(f"shopfloor api: {exc}", file=sys.stderr)
            return 2
    try:
        opened = open_store(args)
    except ValueError as exc:
        print(f"shopfloor api: {exc}", file=sys.stderr)
        if rollups is not None:
            rollups.close()
        engine.dispose()
        return 2
    with opened as store:
        owners = OwnersReader(sessions(engine), zone_of(site.site.timezone))
        derive = deriver_for(store, site, owners)  # the measurement the Grafana dashboards read
        stop = (
            start_rollup_thread(store, rollups, site, interval_s=args.rollup_interval, derive=derive)
            if rollups
            else None
        )
        # The board's live stream: one MQTT subscription for every open board (read-only broker credentials).
        live = LiveHub(site, store, mqtt, owners_provider=owners, rollups=rollups) if mqtt is not None else None
        try:
            if live is not None:
                live.start()
            app = create_app(site, store, rollups=rollups, db=sessions(engine), live=live)
            uvicorn.run(
                app,
                host=args.host,
                port=args.port,
                log_level=args.log_level.lower(),
                timeout_graceful_shutdown=GRACE_S,  # open boards' streams must not hold the shutdown
            )
        finally:
            if live is not None:
                live.stop()
            if stop is not None:
                stop()
            if rollups is not None:
                rollups.close()
            engine.dispose()
    return 0


def add_parser(sub: Any) -> None:
    """Register `shopfloor api`."""
    from shopfloor.cli import add_common, add_mqtt, add_mqtt_login, add_store

    p = sub.add_parser(
        "api",
        help="serve the HTTP API (machines, timelines, usage, OEE, invoices) from the time-series store",
        description="Serve the Shopfloor HTTP API: GET /healthz, /v1/machines, /v1/machines/{id}/timeline, "
        "/v1/usage, /v1/oee, /v1/sessions, /v1/invoices and the admin routes. Every /v1 route needs an API key "
        "(Authorization: Bearer ...) from the business DB (`shopfloor db key create`), which must be migrated "
        "(`shopfloor db upgrade`). Closed hours are rolled up in the same DB in the background (`shopfloor rollup`).",
    )
    add_common(p)
    add_store(p)
    add_mqtt(p)
    add_mqtt_login(p)
    p.add_argument(
        "--no-live", action="store_true", help="no live stream (/v1/stream, the board's updates): no broker needed"
    )
    p.add_argument("--host", default="127.0.0.1", help="listen address (default: %(default)s)")
    p.add_argument("--port", type=int, default=8000, help="listen port (default: %(default)s)")
    p.add_argument(
        "--db-url",
        default=None,
        help="SQLAlchemy URL of the business DB (tenants, keys, invoices, roll-ups) (default: SHOPFLOOR_DB_URL, else "
        "sqlite:///<data dir>/shopfloor.db)",
    )
    p.add_argument("--rollup-interval", type=float, default=60.0, help="seconds between roll-up steps (default 60)")
    p.add_argument("--no-rollups", action="store_true", help="compute every figure from raw data")
    p.set_defaults(func=_run)
