"""Sign-in, sign-out, the caller's own view (GET /v1/me) and its language (POST /v1/me/lang).

POST /signin takes the API key from an HTML form (application/x-www-form-urlencoded, parsed here strictly rather
than through python-multipart), opens a session (api.web.auth) and answers 303 to "/" with the session cookie;
a wrong key answers 303 to /signin?error=1. The key is never put in a URL, a header or a body we send.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal
from urllib.parse import parse_qsl, urlsplit

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response, status
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, ConfigDict

from api.deps import MAX_KEY_CHARS, CallerDep, DbDep, NowDep, SiteDep, optional_session
from api.routes.admin import BodyDep, parse
from api.web.auth import (
    COOKIE_NAME,
    CSRF_FIELD,
    CSRF_HEADER,
    LANGS,
    MAX_AGE_MS,
    SessionInfo,
    SignInLimiter,
    create_session,
    csrf_matches,
    end_session,
    key_for_secret,
    key_lang,
    purge_expired,
    set_lang,
)

MAX_FORM_BYTES = 4096  # a key is ~47 characters; a sign-in form is far below this
FORM_TYPE = "application/x-www-form-urlencoded"
SIGNIN_PAGE = "/signin"
SIGNIN_FAILED = "/signin?error=1"
HOME = "/"

router = APIRouter()


def include(app: FastAPI) -> None:
    """Add the sign-in routes and GET/POST /v1/me to app, with a failed-sign-in limiter of its own."""
    if not hasattr(app.state, "signin_limiter"):
        app.state.signin_limiter = SignInLimiter()
    app.include_router(router)


# ---- models -----------------------------------------------------------------------------------------------------


class SitePublic(BaseModel):
    """The site as a page needs it."""

    id: str
    name: str
    timezone: str


class MePublic(BaseModel):
    """Who the caller is, in which language it reads, and (signed in by cookie) the CSRF token to send back."""

    name: str
    role: Literal["admin", "operator", "auditor", "tenant"]
    tenant: str | None
    lang: Literal["en", "id"]
    csrf: str | None
    site: SitePublic


class LangChange(BaseModel):
    """The body of POST /v1/me/lang."""

    model_config = ConfigDict(extra="forbid")

    lang: Literal["en", "id"]


# ---- request plumbing -------------------------------------------------------------------------------------------


def _bad(detail: str, code: int = status.HTTP_400_BAD_REQUEST) -> HTTPException:
    return HTTPException(code, detail=detail)


async def read_form_body(request: Request) -> bytes:
    """The raw body of a form post: 415 unless URL-encoded, 413 beyond MAX_FORM_BYTES (checked while reading)."""
    body = bytearray()
    too_long = _bad(f"form body longer than {MAX_FORM_BYTES} bytes", status.HTTP_413_CONTENT_TOO_LARGE)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_FORM_BYTES:
        raise too_long
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise too_long
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if body and media != FORM_TYPE:
        raise _bad(f"send an HTML form ({FORM_TYPE}), not {media or 'a body without a content type'}", 415)
    return bytes(body)


FormDep = Annotated[bytes, Depends(read_form_body)]


def parse_form(raw: bytes, allowed: tuple[str, ...]) -> dict[str, str]:
    """The fields of a URL-encoded body; 400 for bytes outside ASCII, bad encoding, a repeated or unknown field.

    Field names and values are never echoed: a key pasted into the wrong place must not come back in an error.
    """
    try:
        text = raw.decode("ascii")
        pairs = parse_qsl(
            text,
            keep_blank_values=True,
            strict_parsing=bool(text),
            encoding="utf-8",
            errors="strict",
            max_num_fields=len(allowed),
        )
    except ValueError:  # UnicodeDecodeError, a field without '=', or more fields than allowed
        raise _bad(
            f"form body: not a URL-encoded form of UTF-8 text with the fields {', '.join(allowed)}; "
            "send it as a browser's HTML form does"
        ) from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name not in allowed:
            raise _bad(f"form body: unexpected field (allowed: {', '.join(allowed)})")
        if name in fields:
            raise _bad(f"form field {name!r}: given more than once")
        fields[name] = value
    return fields


def _now_ms(now: NowDep) -> int:
    return int(now.timestamp() * 1000)


NowMs = Annotated[int, Depends(_now_ms)]


def _set_cookie(response: Response, request: Request, value: str | None) -> None:
    """Set the session cookie to value, or clear it (None)."""
    # Secure whenever the request came over https, so the cookie never leaves on a plain-http connection.
    secure = request.url.scheme == "https"
    if value is None:
        response.delete_cookie(COOKIE_NAME, path="/", secure=secure, httponly=True, samesite="strict")
    else:
        response.set_cookie(
            COOKIE_NAME, value, max_age=MAX_AGE_MS // 1000, path="/", secure=secure, httponly=True, samesite="strict"
        )


def _redirect(location: str) -> RedirectResponse:
    response = RedirectResponse(location, status_code=status.HTTP_303_SEE_OTHER)
    response.headers["Cache-Control"] = "no-store"
    return response


def _same_origin(request: Request) -> bool:
    """Whether the browser says the post comes from our own pages (no Origin header: not a browser, or an old one).

    Sign-in is the one state-changing request without a session, so the CSRF token cannot guard it; without this,
    another site could sign a visitor in under the attacker's key (login CSRF).
    """
    origin = request.headers.get("origin")
    if origin is None:
        return request.headers.get("sec-fetch-site", "same-origin") in ("same-origin", "none")
    host = request.headers.get("host", "")
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:
        return False
    return bool(host) and netloc.lower() == host.lower()


def preferred_lang(accept_language: str | None) -> str | None:
    """The first of LANGS an Accept-Language header asks for, by its q values (None: neither)."""
    if not accept_language or len(accept_language) > 1000:
        return None
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept_language.split(",")[:32]):
        tag, _, params = part.strip().partition(";")
        primary = tag.strip().lower().split("-", 1)[0]
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                continue
        if primary in LANGS and math.isfinite(q) and q > 0:
            ranked.append((q, -position, primary))  # equal q: the earlier one wins
    return max(ranked)[2] if ranked else None


# ---- routes -----------------------------------------------------------------------------------------------------


@router.post("/signin", tags=["web"], status_code=303, response_class=RedirectResponse)
def sign_in(request: Request, db: DbDep, now: NowMs, body: FormDep) -> Response:
    """Exchange an API key (form field `key`) for a session cookie; 303 to / (or to /signin?error=1)."""
    if not _same_origin(request):
        raise _bad("sign-in refused: the form was not sent from this site's own sign-in page", 403)
    limiter: SignInLimiter = request.app.state.signin_limiter
    address = request.client.host if request.client is not None else "unknown"
    wait_ms = limiter.retry_after_ms(address, now)
    if wait_ms:
        seconds = math.ceil(wait_ms / 1000)
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            detail=f"too many failed sign-ins from this address; try again in {seconds} s",
            headers={"Retry-After": str(seconds)},
        )
    fields = parse_form(body, ("key", CSRF_FIELD))
    if "key" not in fields:
        raise _bad("form field 'key' is missing: send the API key as the form field 'key'")
    presented = fields["key"].strip()
    key_row = key_for_secret(db, presented) if 0 < len(presented) <= MAX_KEY_CHARS else None
    if key_row is None:
        limiter.failed(address, now)
        return _redirect(SIGNIN_FAILED)
    # A new sign-in replaces the browser's old session (never reuse an id from before the sign-in).
    end_session(db, request.cookies.get(COOKIE_NAME))
    purge_expired(db, now)
    lang = None if key_row.lang is not None else preferred_lang(request.headers.get("accept-language"))
    cookie, _csrf = create_session(db, key_row, now, lang)
    db.commit()
    response = _redirect(HOME)
    _set_cookie(response, request, cookie)
    return response


@router.post("/signout", tags=["web"], status_code=303, response_class=RedirectResponse)
def sign_out(request: Request, db: DbDep, now: NowDep, body: FormDep) -> Response:
    """End the cookie's session (CSRF token as form field `csrf` or X-CSRF-Token header); 303 to /signin.

    Without a live session there is nothing to end or protect: the cookie is cleared all the same."""
    cookie = request.cookies.get(COOKIE_NAME)
    info: SessionInfo | None = optional_session(request, db, now)
    if info is not None:
        fields = parse_form(body, (CSRF_FIELD,))
        presented = fields.get(CSRF_FIELD, request.headers.get(CSRF_HEADER))
        if not csrf_matches(info, presented):
            raise _bad(
                f"missing or wrong CSRF token: send the form field {CSRF_FIELD!r} or the {CSRF_HEADER} header", 403
            )
        end_session(db, cookie)
        db.commit()
    response = _redirect(SIGNIN_PAGE)
    _set_cookie(response, request, None)
    return response


def _me(caller_name: str, role: str, tenant: str | None, lang: str, csrf: str | None, site: SiteDep) -> MePublic:
    info = site.site
    return MePublic.model_validate(
        {
            "name": caller_name,
            "role": role,
            "tenant": tenant,
            "lang": lang,
            "csrf": csrf,
            "site": {"id": info.id, "name": info.name, "timezone": info.timezone},
        }
    )


@router.get("/v1/me", tags=["web"])
def me(caller: CallerDep, db: DbDep, site: SiteDep, response: Response) -> MePublic:
    """Return who the caller is, its language and (signed in by cookie) its CSRF token."""
    response.headers["Cache-Control"] = "no-store"  # it holds the CSRF token
    p, session = caller.principal, caller.session
    lang = session.lang if session is not None else key_lang(db, p.name)
    return _me(p.name, p.role.value, p.tenant, lang, None if session is None else session.csrf, site)


@router.post("/v1/me/lang", tags=["web"])
def change_lang(caller: CallerDep, db: DbDep, site: SiteDep, body: BodyDep, response: Response) -> MePublic:
    """Remember the caller's language ({"lang": "en" | "id"}) for its key and its session."""
    spec = parse(LangChange, body)
    set_lang(db, caller.session, caller.principal.name, spec.lang)
    db.commit()
    response.headers["Cache-Control"] = "no-store"
    p, session = caller.principal, caller.session
    return _me(p.name, p.role.value, p.tenant, spec.lang, None if session is None else session.csrf, site)
