"""`shopfloor api`: serve the HTTP API for one site from an InfluxDB, with roll-ups kept in the business DB."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def _run(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app
    from api.rollups.cli import default_db_url
    from api.rollups.job import start_rollup_thread
    from api.rollups.store import RollupError, RollupStore
    from shopfloor.config import load_site
    from shopfloor.influx import InfluxStore
    from shopfloor.settings import Settings

    site = load_site(args.site)
    rollups: RollupStore | None = None
    if not args.no_rollups:
        if args.db_url is None and Settings().db_url is None:
            Settings().data_dir.mkdir(parents=True, exist_ok=True)  # the default: a SQLite file in the data dir
        try:
            rollups = RollupStore(args.db_url or default_db_url())
        except RollupError as exc:
            print(f"shopfloor api: {exc}", file=sys.stderr)
            return 2
    with InfluxStore(
        args.influx_url, args.influx_db, username=args.influx_user, password=args.influx_password
    ) as store:
        stop = start_rollup_thread(store, rollups, site, interval_s=args.rollup_interval) if rollups else None
        try:
            app = create_app(site, store, rollups=rollups)
            uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level.lower())
        finally:
            if stop is not None:
                stop()
            if rollups is not None:
                rollups.close()
    return 0


def add_parser(sub: Any) -> None:
    """Register `shopfloor api`."""
    from shopfloor.cli import add_common, add_influx

    p = sub.add_parser(
        "api",
        help="serve the HTTP API (machines, timelines, usage, OEE) from InfluxDB",
        description="Serve the Shopfloor HTTP API: GET /healthz, /v1/machines, /v1/machines/{id}/timeline, "
        "/v1/usage and /v1/oee. Every /v1 route needs an API key (Authorization: Bearer ...) listed, hashed, in "
        "the site file. Closed hours are rolled up in the business DB in the background (see `shopfloor rollup`).",
    )
    add_common(p)
    add_influx(p)
    p.add_argument("--host", default="127.0.0.1", help="listen address (default: %(default)s)")
    p.add_argument("--port", type=int, default=8000, help="listen port (default: %(default)s)")
    p.add_argument(
        "--db-url",
        default=None,
        help="SQLAlchemy URL of the business DB holding roll-ups (default: SHOPFLOOR_DB_URL, else "
        "sqlite:///<data dir>/shopfloor.db)",
    )
    p.add_argument("--rollup-interval", type=float, default=60.0, help="seconds between roll-up steps (default 60)")
    p.add_argument("--no-rollups", action="store_true", help="compute every figure from raw data")
    p.set_defaults(func=_run)
