"""The FastAPI application: routes around the pure core, reading from the time-series store."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session, sessionmaker

from api.deps import current_principal
from api.directory import memory_db
from api.figures import RollupReader
from api.live import LiveHub
from api.routes import admin, health, invoices, machines, oee, sessions, stream, usage
from api.web import auth_routes, pages
from shopfloor.config import SiteConfig
from shopfloor.store import StoreRejected, StoreUnavailable, TimeSeriesStore

log = logging.getLogger(__name__)
# Echoed inputs in 422 bodies are cut to this many characters, so a huge hostile input is not sent back whole.
MAX_ECHO_CHARS = 100


def _trim(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_ECHO_CHARS:
        return value[:MAX_ECHO_CHARS] + "..."
    if isinstance(value, list | tuple):
        return [_trim(v) for v in value[:10]]
    return value


def _trimmed(errors: Sequence[Any]) -> list[Any]:
    return [{**e, "input": _trim(e.get("input"))} if isinstance(e, dict) else e for e in errors]


def _now() -> datetime:
    return datetime.now(UTC)


def create_app(
    site: SiteConfig,
    store: TimeSeriesStore,
    *,
    clock: Callable[[], datetime] = _now,
    rollups: RollupReader | None = None,
    db: sessionmaker[Session] | None = None,
    live: LiveHub | None = None,
) -> FastAPI:
    """Build the API for one site reading from store; clock gives the current time (aware).

    rollups: where closed hours are materialised (api.rollups); None computes every figure from raw data.
    db: the (migrated) business database; None serves the site file's tenants and API keys from a private
    in-memory one (api.directory.memory_db).
    live: the hub feeding GET /v1/stream and the board (api.live); the caller starts and stops it. None: the stream
    answers 503.
    """
    app = FastAPI(
        title="Shopfloor API",
        version="1",
        description="Live machine state, state timelines, per-tenant usage and OEE of a shared-machine facility.",
    )
    app.state.site = site
    app.state.store = store
    app.state.clock = clock
    app.state.rollups = rollups
    app.state.db = db if db is not None else memory_db(site)
    app.state.live = live

    @app.exception_handler(RequestValidationError)
    def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default body (detail: [{type, loc, msg, input}]), with long inputs cut short.
        return JSONResponse({"detail": jsonable_encoder(_trimmed(exc.errors()))}, status_code=422)

    @app.exception_handler(StoreUnavailable)
    def _unavailable(_request: Request, exc: StoreUnavailable) -> JSONResponse:
        log.warning("%s; answering 503, the client may retry", exc)
        return JSONResponse({"detail": "time-series store unavailable; retry later"}, status_code=503)

    @app.exception_handler(StoreRejected)
    def _rejected(_request: Request, exc: StoreRejected) -> JSONResponse:
        log.error("%s; answering 502", exc)
        return JSONResponse({"detail": "time-series store refused the query"}, status_code=502)

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(current_principal)])
    v1.include_router(machines.router)
    v1.include_router(usage.router)
    v1.include_router(oee.router)
    v1.include_router(sessions.router)
    v1.include_router(invoices.router)
    admin.include(v1)
    app.include_router(health.router)
    app.include_router(v1)
    auth_routes.include(app)
    stream.include(app)
    pages.include(app)  # the screens (/, /signin, /board, /machines/{id}, /reports, /portal) and /static
    return app
