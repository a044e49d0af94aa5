"""Typed dependencies of the routes: the store, the site, the clock, the caller (bearer key or sign-in cookie) and
the query window."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from api.db.repo import principal_for_key
from api.directory import Directory, load_directory
from api.figures import RollupReader
from api.params import MAX_PARAM_CHARS, Window, invalid, parse_window
from api.policy import Principal, Role
from api.web.auth import COOKIE_NAME, CSRF_HEADER, SessionInfo, csrf_matches, session_principal
from shopfloor.calendar import zone_of
from shopfloor.config import Machine, SiteConfig
from shopfloor.contracts import is_valid_id
from shopfloor.store import TimeSeriesStore

# Keys made by `shopfloor keygen` are ~47 characters; anything far longer is not worth hashing.
MAX_KEY_CHARS = 512
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})  # the methods that change nothing, so need no CSRF token

_bearer = HTTPBearer(auto_error=False, description="API key: `Authorization: Bearer sfk_...`")


def get_site(request: Request) -> SiteConfig:
    """The site configuration the app was created with."""
    site: SiteConfig = request.app.state.site
    return site


def get_store(request: Request) -> TimeSeriesStore:
    """The time-series store the app reads from."""
    store: TimeSeriesStore = request.app.state.store
    return store


def get_now(request: Request) -> datetime:
    """The current time (a clock the app was created with, so tests can freeze it)."""
    clock: Callable[[], datetime] = request.app.state.clock
    return clock()


def get_rollups(request: Request) -> RollupReader | None:
    """The roll-up store the app reads closed hours from, None when it has none (everything from raw data)."""
    rollups: RollupReader | None = getattr(request.app.state, "rollups", None)
    return rollups


def get_db(request: Request) -> Iterator[Session]:
    """A business-DB session for one request; anything the route did not commit is rolled back.

    A request that changes nothing (GET, HEAD, OPTIONS) reads in a plain transaction: on SQLite the write sessions
    of api.db.engine.sessions take the database's write lock when they begin, and a report reading for seconds must
    not hold every other request up.
    """
    factory: sessionmaker[Session] = request.app.state.db
    bind = factory.kw.get("bind")
    if request.method in SAFE_METHODS and isinstance(bind, Engine):
        session = factory(bind=bind.execution_options(immediate=False))
    else:
        session = factory()
    with session:
        yield session


DbDep = Annotated[Session, Depends(get_db)]


SiteDep = Annotated[SiteConfig, Depends(get_site)]
RollupsDep = Annotated[RollupReader | None, Depends(get_rollups)]
StoreDep = Annotated[TimeSeriesStore, Depends(get_store)]
NowDep = Annotated[datetime, Depends(get_now)]


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def _ms(now: datetime) -> int:
    return int(now.timestamp() * 1000)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling and how: the principal, and its web session when signed in by cookie (None: a bearer key)."""

    principal: Principal
    session: SessionInfo | None


def current_caller(
    request: Request,
    db: DbDep,
    now: NowDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    """Authenticate by the bearer API key or else the sign-in cookie; 401 if neither is valid.

    A bearer key wins over a cookie and needs no CSRF token (a cross-site page cannot set the header). A request
    that changes something (not GET, HEAD, OPTIONS) on the cookie alone must send the session's CSRF token in the
    X-CSRF-Token header, else 403.
    """
    if credentials is not None:
        presented = credentials.credentials
        found = principal_for_key(db, presented, _ms(now)) if len(presented) <= MAX_KEY_CHARS else None
        if found is None:
            raise _unauthorized("invalid API key")
        _end_transaction(db)
        # The DB's role names are the policy's (a unit test checks every one maps).
        return Caller(Principal(found.name, Role(found.role), found.tenant), None)
    cookie = request.cookies.get(COOKIE_NAME)
    if cookie is None:
        raise _unauthorized("missing API key: send 'Authorization: Bearer <key>', or sign in at /signin")
    info = session_principal(db, cookie, _ms(now))
    if info is None:
        raise _unauthorized("signed out or session expired: sign in again at /signin")
    if request.method not in SAFE_METHODS and not csrf_matches(info, request.headers.get(CSRF_HEADER)):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            detail=f"missing or wrong CSRF token: send the header {CSRF_HEADER} with the 'csrf' of GET /v1/me",
        )
    _end_transaction(db)
    return Caller(info.principal, info)


def _end_transaction(db: Session) -> None:
    """End the key check's transaction, so it holds no lock while the route runs (a stream runs for minutes)."""
    if db.in_transaction() and not (db.new or db.dirty or db.deleted):
        db.commit()


CallerDep = Annotated[Caller, Depends(current_caller)]


def current_principal(caller: CallerDep) -> Principal:
    """The authenticated caller (bearer API key or sign-in cookie, see current_caller)."""
    return caller.principal


def optional_session(request: Request, db: DbDep, now: NowDep) -> SessionInfo | None:
    """The web session of the request's sign-in cookie, or None when there is none or it has ended (never raises
    for that: pages redirect to /signin instead). Checks no CSRF token: use it for pages, not for changes."""
    return session_principal(db, request.cookies.get(COOKIE_NAME), _ms(now))


SessionDep = Annotated[SessionInfo | None, Depends(optional_session)]


PrincipalDep = Annotated[Principal, Depends(current_principal)]


def query_window(
    request: Request,
    now: NowDep,
    from_: Annotated[
        str | None,
        Query(
            alias="from",
            max_length=MAX_PARAM_CHARS,
            description="window start, ISO 8601 with offset (default: to - 24 h)",
        ),
    ] = None,
    to: Annotated[
        str | None,
        Query(max_length=MAX_PARAM_CHARS, description="window end, ISO 8601 with offset (default: now)"),
    ] = None,
) -> Window:
    """The validated [from, to) window of a request."""
    for name in ("from", "to"):
        # A repeated parameter is ambiguous: refuse it rather than guess which one was meant.
        if len(request.query_params.getlist(name)) > 1:
            raise invalid(name, f"{name}: given more than once", request.query_params.getlist(name)[:3])
    return parse_window(from_, to, now)


WindowDep = Annotated[Window, Depends(query_window)]


def get_directory(site: SiteDep, db: DbDep) -> Directory:
    """Tenants and badge ownership over time, as the business DB holds them now."""
    return load_directory(db, zone_of(site.calendar_model().zone))


DirectoryDep = Annotated[Directory, Depends(get_directory)]


def get_machine(site: SiteDep, machine_id: str) -> Machine:
    """The configured machine named in the path; 404 for unknown or malformed ids."""
    machine = site.machine(machine_id) if is_valid_id(machine_id) else None
    if machine is None:
        shown = machine_id if is_valid_id(machine_id) else machine_id[:64].encode("unicode_escape").decode()
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"machine {shown!r} not found")
    return machine


MachineDep = Annotated[Machine, Depends(get_machine)]
