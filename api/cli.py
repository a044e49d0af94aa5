"""`shopfloor api`: serve the HTTP API for one site from an InfluxDB."""

from __future__ import annotations

import argparse
from typing import Any


def _run(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app
    from shopfloor.config import load_site
    from shopfloor.influx import InfluxStore

    site = load_site(args.site)
    with InfluxStore(
        args.influx_url, args.influx_db, username=args.influx_user, password=args.influx_password
    ) as store:
        app = create_app(site, store)
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level.lower())
    return 0


def add_parser(sub: Any) -> None:
    """Register `shopfloor api`."""
    from shopfloor.cli import add_common, add_influx

    p = sub.add_parser(
        "api",
        help="serve the HTTP API (machines, timelines, usage) from InfluxDB",
        description="Serve the Shopfloor HTTP API: GET /healthz, /v1/machines, /v1/machines/{id}/timeline and "
        "/v1/usage. Every /v1 route needs an API key (Authorization: Bearer ...) listed, hashed, in the site file.",
    )
    add_common(p)
    add_influx(p)
    p.add_argument("--host", default="127.0.0.1", help="listen address (default: %(default)s)")
    p.add_argument("--port", type=int, default=8000, help="listen port (default: %(default)s)")
    p.set_defaults(func=_run)
