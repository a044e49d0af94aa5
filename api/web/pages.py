"""The HTML pages: small server-rendered shells (sign-in, fleet board, machine view, reports, tenant portal) that
load one ES module each, their static files, and GET /v1/machines/{id}/profile (stop reason names for the pages).

Every page carries its data as JSON in <script type="application/json" id="boot"> (read by the module through
textContent, so the Content-Security-Policy allows no inline script at all), written in the viewer's language with
the labels of both languages (the language switch re-renders without a reload). Everything from the site file or
the database is escaped. Who may open which page is ROLES; signed out -> 303 /signin, a wrong role -> 403 page.

Static files are read once when the app is built and served only from that table (no path from a request ever
touches the file system), under /static/<version>/ where version is a hash of all of them: a new build is a new
URL, so they are cached for a year.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request, Response, status
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel

from api.core.i18n import LANGS, label
from api.deps import DirectoryDep, MachineDep, NowDep, SessionDep, SiteDep, current_principal
from api.directory import Directory
from api.policy import Principal, Role, sees_everything
from api.web.auth import CSRF_FIELD, DEFAULT_LANG, SessionInfo
from api.web.auth_routes import preferred_lang
from shopfloor.config import Machine, SiteConfig
from shopfloor.contracts import is_valid_id

STATIC_DIR = Path(__file__).resolve().with_name("static")
CONTENT_TYPES: Mapping[str, str] = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
    ".json": "application/json",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
}
MAX_STATIC_BYTES = 4 * 1024 * 1024  # per file: anything larger does not belong in a page's assets
YEAR_S = 365 * 24 * 3600
CSP = (
    "default-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'; "
    "img-src 'self' data:"
)
SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    # Not "no-referrer": with it Chromium sends "Origin: null" on the sign-in form's POST, which the login-CSRF
    # check (api.web.auth_routes) must refuse. same-origin sends nothing to any other site either.
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}
SIGNIN = "/signin"
MAX_REASON_NAME = 64
# A stop_reason register's description as the profiles write it: "0 none, 1 tool break, 2 material, ...".
_REASON_ITEM = re.compile(r"\s*(\d{1,9})\s+([^,]{1,64}?)\s*")


# ---- static files -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Asset:
    """One static file: its bytes and content type."""

    body: bytes
    content_type: str


@dataclass(frozen=True, slots=True)
class Assets:
    """Every static file by its path under static/ ("js/board.js"), and a version hash over all of them."""

    files: Mapping[str, Asset]
    version: str


def load_assets(root: Path = STATIC_DIR) -> Assets:
    """Read the static files under root (known types only) into memory and hash them into a version."""
    files: dict[str, Asset] = {}
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        content_type = CONTENT_TYPES.get(path.suffix.lower())
        if content_type is None or path.name.startswith("."):
            continue
        body = path.read_bytes()
        if len(body) > MAX_STATIC_BYTES:
            raise ValueError(f"static file {path} is {len(body)} bytes (at most {MAX_STATIC_BYTES}): too large")
        rel = path.relative_to(root).as_posix()
        files[rel] = Asset(body, content_type)
        digest.update(rel.encode() + b"\0" + hashlib.sha256(body).digest())
    return Assets(files, digest.hexdigest()[:12])


def _assets(request: Request) -> Assets:
    assets: Assets = request.app.state.web_assets
    return assets


# ---- who may open which page --------------------------------------------------------------------------------------

_ADMIN, _OPERATOR, _AUDITOR, _TENANT = Role.ADMIN, Role.OPERATOR, Role.AUDITOR, Role.TENANT
ROLES: Mapping[str, frozenset[Role]] = {
    "board": frozenset({_ADMIN, _OPERATOR}),
    "machine": frozenset({_ADMIN, _OPERATOR, _AUDITOR}),
    "reports": frozenset({_ADMIN, _AUDITOR}),
    "portal": frozenset({_TENANT}),
}
# Where GET / sends each role (its first page).
HOME: Mapping[Role, str] = {_ADMIN: "/board", _OPERATOR: "/board", _AUDITOR: "/reports", _TENANT: "/portal"}
# The navigation of each role: (page, path, label).
NAV: Sequence[tuple[str, str, str]] = (
    ("board", "/board", "web_board"),
    ("reports", "/reports", "web_reports"),
    ("portal", "/portal", "web_portal"),
)

# ---- labels each page embeds (both languages) -------------------------------------------------------------------

STATES = ("running", "setup", "idle", "stopped", "off", "maintenance", "unknown")
LOSSES = (
    "breakdown",
    "setup",
    "no_operator",
    "no_material",
    "off",
    "maintenance",
    "other",
    "unknown",
    "microstops",
    "speed_loss",
    "rejects",
)
COMMON_LABELS = (
    "web_lang_name",
    "web_language",
    "web_skip",
    "web_signout",
    "web_signed_in_as",
    "web_board",
    "web_reports",
    "web_portal",
    "web_kiosk",
    "web_home",
    "web_loading",
    "web_load_error",
    "web_none",
    "not_available",
    "site",
    "time_zone",
)
LIVE_LABELS = (
    "web_connecting",
    "web_live",
    "web_reconnecting",
    "web_no_data_since",
    "web_no_data_ever",
    "web_reason_unreachable",
    "web_reason_agent_offline",
    "web_reason_silence",
    "web_reason_no_data",
    "web_reason_outbox_loss",
    "web_free",
    "web_occupied",
    "web_unowned_badge",
    "web_job",
    "web_shift_parts",
    "web_shift_oee",
    "web_shift",
    "web_power",
    "web_last_data",
    "web_ago_s",
    "web_ago_min",
    "web_ago_h",
    "web_stop_reason_code",
    "tenant",
    "good",
    "reject",
    *(f"state_{s}" for s in STATES),
)
FIGURE_LABELS = (
    "web_from",
    "web_to",
    "web_show",
    "web_sessions",
    "web_hours",
    "web_session_hours",
    "web_running_hours",
    "web_availability",
    "web_effectiveness",
    "web_quality",
    "web_coverage",
    "web_losses",
    "web_chart_label",
    "web_flag",
    "web_oee_by_machine",
    "web_no_tenant",
    "web_invoices",
    "web_pdf",
    "web_open_pdf",
    "machine",
    "tenant",
    "badge",
    "session_start",
    "session_end",
    "energy",
    "parts",
    "good",
    "reject",
    "oee",
    "period",
    "number",
    "status",
    "status_draft",
    "status_finalized",
    "status_void",
    "kind",
    "invoice",
    "credit_note",
    "total",
    *(f"web_loss_{loss}" for loss in LOSSES),
)
PAGE_LABELS: Mapping[str, tuple[str, ...]] = {
    "signin": ("web_signin_title", "web_key", "web_signin", "web_signin_hint", "web_signin_error"),
    "error": ("web_forbidden_title", "web_forbidden", "web_not_found_title", "web_not_found"),
    "board": LIVE_LABELS,
    "machine": (
        *LIVE_LABELS,
        *FIGURE_LABELS,
        "web_timeline_today",
        "web_counters",
        "web_good_count",
        "web_reject_count",
        "web_energy_count",
        "web_stop_reason",
        "web_stop_reasons",
        "web_stop_reason_code",
        "web_code",
        "web_booked_as",
        "web_oee_by_shift",
    ),
    # figures.js names stop reasons and tenants through tiles.js, so the reports carry the live labels too
    "reports": (*LIVE_LABELS, *FIGURE_LABELS, "web_oee_by_shift", "web_oee_by_day", "web_day", "web_usage_by_tenant"),
    "portal": (*LIVE_LABELS, *FIGURE_LABELS, "web_my_sessions", "web_machines"),
}


def page_labels(page: str) -> dict[str, dict[str, str]]:
    """The labels a page embeds, in every language: {"en": {key: text}, "id": {...}}."""
    keys = dict.fromkeys((*COMMON_LABELS, *PAGE_LABELS[page]))  # ordered, without repeats
    return {lang: {key: label(key, lang) for key in keys} for lang in LANGS}


# ---- HTML ---------------------------------------------------------------------------------------------------------


def esc(value: object) -> str:
    """Escape value for HTML text and attribute values (quotes included)."""
    return html.escape(str(value), quote=True)


def boot_json(data: Mapping[str, Any]) -> str:
    """Serialise the boot data so that nothing in it can end the <script> element or start markup."""
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"), sort_keys=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def lbl(key: str, lang: str, tag: str = "span", attrs: str = "") -> str:
    """An element showing label key in lang, marked (data-label) so the language switch can re-render it."""
    return f'<{tag} data-label="{esc(key)}"{attrs}>{esc(label(key, lang))}</{tag}>'


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who a page is rendered for (None fields: nobody is signed in)."""

    lang: str
    principal: Principal | None = None
    csrf: str | None = None

    @classmethod
    def of(cls, session: SessionInfo) -> Viewer:
        """The viewer of a signed-in web session."""
        return cls(session.lang, session.principal, session.csrf)


def _nav(viewer: Viewer, current: str) -> str:
    if viewer.principal is None:
        return ""
    items = []
    for page, path, key in NAV:
        if viewer.principal.role not in ROLES[page]:
            continue
        here = ' aria-current="page"' if page == current else ""
        items.append(f'<li><a href="{path}"{here} data-testid="nav-{page}">{lbl(key, viewer.lang)}</a></li>')
    aria = esc(label("web_home", viewer.lang))
    return f'<nav class="nav" data-label-aria="web_home" aria-label="{aria}"><ul>{"".join(items)}</ul></nav>'


def _tools(viewer: Viewer, live: bool) -> str:
    lang = viewer.lang
    other = "id" if lang == "en" else "en"
    parts = []
    if live:
        parts.append(
            f'<span id="conn-status" class="conn" role="status" data-testid="conn-status" data-state="connecting">'
            f"{esc(label('web_connecting', lang))}</span>"
        )
    parts.append(
        f'<button type="button" id="kiosk-toggle" class="tool" data-testid="kiosk-toggle" aria-pressed="false">'
        f"{lbl('web_kiosk', lang)}</button>"
    )
    if viewer.principal is not None:
        name = viewer.principal.name
        parts.append(
            f'<button type="button" id="lang-switch" class="tool" data-testid="lang-switch" lang="{other}" '
            f'data-to="{other}">{esc(label("web_lang_name", other))}</button>'
        )
        parts.append(
            f'<span class="who" data-testid="who" data-label="web_signed_in_as" data-name="{esc(name)}">'
            f"{esc(label('web_signed_in_as', lang).format(name=name))}</span>"
            f'<form method="post" action="/signout" class="signout">'
            f'<input type="hidden" name="{CSRF_FIELD}" value="{esc(viewer.csrf or "")}">'
            f'<button type="submit" class="tool" data-testid="signout">{lbl("web_signout", lang)}</button></form>'
        )
    else:
        parts.append(
            f'<a class="tool" id="lang-switch" data-testid="lang-switch" lang="{other}" href="{SIGNIN}?lang={other}">'
            f"{esc(label('web_lang_name', other))}</a>"
        )
    return f'<div class="tools">{"".join(parts)}</div>'


def render(
    request: Request,
    site: SiteConfig,
    viewer: Viewer,
    *,
    page: str,
    title_key: str,
    body: str,
    boot: Mapping[str, Any] | None = None,
    script: str | None = None,
    live: bool = False,
    status_code: int = 200,
    labels_of: str | None = None,
) -> HTMLResponse:
    """An HTML page: the shell (header, navigation, language switch) around body, with its boot JSON and module."""
    assets = _assets(request)
    lang = viewer.lang
    prefix = f"/static/{assets.version}"
    principal = viewer.principal
    data: dict[str, Any] = {
        "page": page,
        "lang": lang,
        "labels": page_labels(labels_of or page),
        "site": {"id": site.site.id, "name": site.site.name, "timezone": site.site.timezone},
        "csrf": viewer.csrf,
        "me": None
        if principal is None
        else {"name": principal.name, "role": principal.role.value, "tenant": principal.tenant, "lang": lang},
        **(boot or {}),
    }
    module = f'<script type="module" src="{prefix}/js/{esc(script)}"></script>' if script else ""
    title = label(title_key, lang)
    document = f"""<!doctype html>
<html lang="{esc(lang)}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light">
<title>{esc(title)} - {esc(site.site.name or site.site.id)}</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{prefix}/css/app.css">
<script type="application/json" id="boot">{boot_json(data)}</script>
{module}
</head>
<body class="page-{esc(page)}">
<a class="skip" href="#main">{lbl("web_skip", lang)}</a>
<header class="top">
<p class="site-name" data-testid="site-name">{esc(site.site.name or site.site.id)}</p>
{_nav(viewer, page)}
{_tools(viewer, live)}
</header>
<main id="main" tabindex="-1">
<h1 data-testid="page-title">{lbl(title_key, lang)}</h1>
<p id="page-error" class="error" role="alert" data-testid="page-error" hidden></p>
{body}
</main>
</body>
</html>
"""
    response = HTMLResponse(document, status_code=status_code)
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    response.headers["Cache-Control"] = "no-store"  # it holds the CSRF token
    return response


def _tile(machine_id: str, name: str, lang: str, *, link: bool) -> str:
    """A machine's tile as the page first shows it (board.js and portal.js fill it from the stream)."""
    mid = esc(machine_id)
    title = esc(name or machine_id)
    heading = (
        f'<a data-field="name" href="/machines/{mid}">{title}</a>'
        if link
        else f'<span data-field="name">{title}</span>'
    )

    def fact(key: str, field: str) -> str:
        return f'<div><dt>{lbl(key, lang)}</dt><dd data-field="{field}" data-testid="tile-{field}"></dd></div>'

    return (
        f'<li class="tile state-pending" data-testid="tile-{mid}" data-machine="{mid}" data-state="">'
        f'<h2 class="tile-name">{heading}</h2>'
        f'<p class="tile-id">{mid}</p>'
        f'<p class="tile-state" data-field="state" data-testid="tile-state">{esc(label("web_connecting", lang))}</p>'
        f'<p class="tile-nodata" data-field="nodata" data-testid="tile-nodata" hidden></p>'
        f'<dl class="facts">{fact("tenant", "tenant")}{fact("web_job", "job")}{fact("web_shift", "shift")}'
        f"{fact('web_shift_parts', 'parts')}{fact('web_shift_oee', 'oee')}{fact('web_power', 'power')}"
        f"{fact('web_last_data', 'age')}</dl></li>"
    )


def _tiles(machines: Iterable[Machine], lang: str, *, link: bool) -> str:
    tiles = "".join(_tile(m.id, m.name, lang, link=link) for m in machines)
    template = _tile("", "", lang, link=link)
    return (
        f'<ul id="board" class="board" data-testid="board">{tiles}</ul>'
        f'<template id="tile-template">{template}</template>'
    )


def _section(key: str, target: str, lang: str) -> str:
    loading = lbl("web_loading", lang, "p", ' class="muted"')
    heading = lbl(key, lang, "h2", f' id="{target}-h"')
    return (
        f'<section class="panel" aria-labelledby="{target}-h">{heading}'
        f'<div id="{target}" data-testid="{target}" class="figures" aria-live="polite">'
        f"{loading}</div></section>"
    )


def _range_form(lang: str) -> str:
    return (
        '<form id="range" class="range" data-testid="range">'
        f'<label for="range-from">{lbl("web_from", lang)}</label>'
        '<input type="date" id="range-from" name="from" required>'
        f'<label for="range-to">{lbl("web_to", lang)}</label>'
        '<input type="date" id="range-to" name="to" required>'
        f'<button type="submit" data-testid="range-show">{lbl("web_show", lang)}</button></form>'
    )


def _tenant_names(principal: Principal, directory: Directory) -> dict[str, str]:
    """The tenant names a page may show the viewer: every tenant's to all-seeing roles, else only its own."""
    if sees_everything(principal):
        return dict(directory.tenants)
    own = principal.tenant
    return {own: directory.tenants.get(own, own)} if own is not None else {}


def _machines(site: SiteConfig) -> list[dict[str, str]]:
    return [{"id": m.id, "name": m.name, "profile": m.profile} for m in site.machines]


def _now_ms(now: datetime) -> int:
    return int(now.timestamp() * 1000)


# ---- routes -------------------------------------------------------------------------------------------------------

router = APIRouter(tags=["web"], include_in_schema=False)


def _redirect(location: str) -> RedirectResponse:
    response = RedirectResponse(location, status_code=status.HTTP_303_SEE_OTHER)
    response.headers["Cache-Control"] = "no-store"
    return response


def _refused(request: Request, site: SiteConfig, viewer: Viewer) -> HTMLResponse:
    body = f'<p data-testid="forbidden">{lbl("web_forbidden", viewer.lang)}</p>'
    return render(request, site, viewer, page="error", title_key="web_forbidden_title", body=body, status_code=403)


def _not_found(request: Request, site: SiteConfig, viewer: Viewer) -> HTMLResponse:
    body = f'<p data-testid="not-found">{lbl("web_not_found", viewer.lang)}</p>'
    return render(request, site, viewer, page="error", title_key="web_not_found_title", body=body, status_code=404)


def _guard(session: SessionInfo | None, page: str) -> Viewer | RedirectResponse | None:
    """The viewer of a page; a redirect to /signin when nobody is signed in; None for a role the page refuses."""
    if session is None:
        return _redirect(SIGNIN)
    if session.principal.role not in ROLES[page]:
        return None
    return Viewer.of(session)


@router.get("/", response_class=HTMLResponse)
def home(session: SessionDep) -> Response:
    """Send the viewer to its role's first page, or to /signin."""
    if session is None:
        return _redirect(SIGNIN)
    return _redirect(HOME[session.principal.role])


@router.get("/signin", response_class=HTMLResponse)
def signin_page(request: Request, site: SiteDep, session: SessionDep) -> Response:
    """The sign-in form (POST /signin, field `key`); ?error=1 shows why the last try failed."""
    if session is not None:
        return _redirect(HOME[session.principal.role])
    asked = request.query_params.get("lang")
    lang = asked if asked in LANGS else preferred_lang(request.headers.get("accept-language")) or DEFAULT_LANG
    failed = request.query_params.get("error") == "1"
    error = (
        f'<p class="error" role="alert" data-testid="signin-error">{lbl("web_signin_error", lang)}</p>'
        if failed
        else ""
    )
    invalid = ' aria-invalid="true"' if failed else ""
    hint = lbl("web_signin_hint", lang, "p", ' id="key-hint" class="muted"')
    body = (
        f"{error}"
        '<form method="post" action="/signin" class="signin" data-testid="signin-form" autocomplete="off">'
        f'<label for="key">{lbl("web_key", lang)}</label>'
        '<input id="key" name="key" type="password" autocomplete="off" autocapitalize="off" spellcheck="false" '
        f'required maxlength="512" aria-describedby="key-hint"{invalid}>'
        f"{hint}"
        f'<button type="submit" data-testid="signin-submit">{lbl("web_signin", lang)}</button></form>'
    )
    viewer = Viewer(lang)
    return render(request, site, viewer, page="signin", title_key="web_signin_title", body=body, script="signin.js")


@router.get("/board", response_class=HTMLResponse)
def board_page(request: Request, site: SiteDep, session: SessionDep, now: NowDep, directory: DirectoryDep) -> Response:
    """The fleet board: a tile per machine, live from the stream (admin, operator)."""
    viewer = _guard(session, "board")
    if isinstance(viewer, RedirectResponse):
        return viewer
    if viewer is None or viewer.principal is None:
        return _refused(request, site, _viewer_of(session))
    boot = {
        "now_ms": _now_ms(now),
        "tenants": _tenant_names(viewer.principal, directory),
        "machines": _machines(site),
    }
    body = _tiles(site.machines, viewer.lang, link=True)
    return render(
        request, site, viewer, page="board", title_key="web_board", body=body, boot=boot, script="board.js", live=True
    )


def _viewer_of(session: SessionInfo | None) -> Viewer:
    return Viewer.of(session) if session is not None else Viewer(DEFAULT_LANG)


@router.get("/machines/{machine_id:path}", response_class=HTMLResponse)
def machine_page(
    request: Request,
    machine_id: str,
    site: SiteDep,
    session: SessionDep,
    now: NowDep,
    directory: DirectoryDep,
) -> Response:
    """One machine: live state, today's timeline, counters, stop reasons, sessions, OEE by shift."""
    viewer = _guard(session, "machine")
    if isinstance(viewer, RedirectResponse):
        return viewer
    if viewer is None or viewer.principal is None:
        return _refused(request, site, _viewer_of(session))
    machine = site.machine(machine_id) if is_valid_id(machine_id) else None
    if machine is None:
        return _not_found(request, site, viewer)
    lang = viewer.lang
    boot = {
        "now_ms": _now_ms(now),
        "tenants": _tenant_names(viewer.principal, directory),
        "machine": {"id": machine.id, "name": machine.name, "profile": machine.profile},
    }

    def fact(key: str, field: str) -> str:
        return f'<div><dt>{lbl(key, lang)}</dt><dd data-field="{field}" data-testid="machine-{field}"></dd></div>'

    live = (
        '<section class="panel" aria-labelledby="live-h">'
        f'<h2 id="live-h" data-testid="machine-name">{esc(machine.name or machine.id)} <span class="muted">'
        f"({esc(machine.id)})</span></h2>"
        '<div id="machine-live" class="tile state-pending" data-testid="machine-live">'
        f'<p class="tile-state" data-field="state" data-testid="machine-state">{esc(label("web_connecting", lang))}</p>'
        '<p class="tile-nodata" data-field="nodata" data-testid="machine-nodata" hidden></p>'
        f'<dl class="facts">{fact("tenant", "tenant")}{fact("web_job", "job")}{fact("web_stop_reason", "stop")}'
        f"{fact('web_power', 'power')}{fact('web_good_count', 'good')}{fact('web_reject_count', 'reject')}"
        f"{fact('web_energy_count', 'energy')}{fact('web_shift_parts', 'parts')}{fact('web_shift_oee', 'oee')}"
        f"{fact('web_last_data', 'age')}</dl></div></section>"
    )
    body = (
        live
        + _section("web_timeline_today", "timeline", lang)
        + _section("web_stop_reasons", "stop-reasons", lang)
        + _section("web_sessions", "sessions", lang)
        + _section("web_oee_by_shift", "oee-shift", lang)
    )
    return render(
        request, site, viewer, page="machine", title_key="machine", body=body, boot=boot, script="machine.js", live=True
    )


@router.get("/reports", response_class=HTMLResponse)
def reports_page(
    request: Request, site: SiteDep, session: SessionDep, now: NowDep, directory: DirectoryDep
) -> Response:
    """OEE by machine, shift and day as charts, usage by tenant, invoices with their PDF (admin, auditor)."""
    viewer = _guard(session, "reports")
    if isinstance(viewer, RedirectResponse):
        return viewer
    if viewer is None or viewer.principal is None:
        return _refused(request, site, _viewer_of(session))
    lang = viewer.lang
    boot = {
        "now_ms": _now_ms(now),
        "tenants": _tenant_names(viewer.principal, directory),
        "machines": _machines(site),
    }
    body = (
        _range_form(lang)
        + _section("web_oee_by_machine", "oee-machine", lang)
        + _section("web_oee_by_shift", "oee-shift", lang)
        + _section("web_oee_by_day", "oee-day", lang)
        + _section("web_usage_by_tenant", "usage", lang)
        + _section("web_invoices", "invoices", lang)
    )
    return render(
        request, site, viewer, page="reports", title_key="web_reports", body=body, boot=boot, script="reports.js"
    )


@router.get("/portal", response_class=HTMLResponse)
def portal_page(request: Request, site: SiteDep, session: SessionDep, now: NowDep, directory: DirectoryDep) -> Response:
    """A tenant's own sessions, hours, parts, energy, OEE and invoices; machines live (others' only "occupied")."""
    viewer = _guard(session, "portal")
    if isinstance(viewer, RedirectResponse):
        return viewer
    if viewer is None or viewer.principal is None:
        return _refused(request, site, _viewer_of(session))
    lang = viewer.lang
    boot = {
        "now_ms": _now_ms(now),
        "tenants": _tenant_names(viewer.principal, directory),
        "machines": _machines(site),
    }
    machines = (
        '<section class="panel" aria-labelledby="machines-h">'
        f'<h2 id="machines-h" data-label="web_machines">{esc(label("web_machines", lang))}</h2>'
        f"{_tiles(site.machines, lang, link=False)}</section>"
    )
    body = (
        machines
        + _range_form(lang)
        + _section("web_my_sessions", "sessions", lang)
        + _section("web_oee_by_machine", "oee-machine", lang)
        + _section("web_invoices", "invoices", lang)
    )
    return render(
        request,
        site,
        viewer,
        page="portal",
        title_key="web_portal",
        body=body,
        boot=boot,
        script="portal.js",
        live=True,
    )


@router.get("/static/{version}/{path:path}")
def static_file(request: Request, version: str, path: str) -> Response:
    """A static file of the pages; cached for a year under the current version (a new build: a new URL)."""
    assets = _assets(request)
    asset = assets.files.get(path)
    if asset is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such static file")
    current = version == assets.version
    headers = {
        "Cache-Control": f"public, max-age={YEAR_S}, immutable" if current else "no-cache",
        "X-Content-Type-Options": "nosniff",
    }
    return Response(asset.body, media_type=asset.content_type, headers=headers)


# ---- JSON the pages need ------------------------------------------------------------------------------------------


class ProfilePublic(BaseModel):
    """What the pages show of a machine's profile: stop reason names and the loss each stop reason is booked as."""

    machine: str
    name: str
    profile: str
    description: str
    stop_reasons: dict[str, str]
    loss_categories: dict[str, str]


def stop_reason_names(description: str) -> dict[int, str]:
    """Parse a stop_reason register's description "0 none, 1 tool break, ..." into {code: name}; {} if it is not
    written that way (the pages then show "Reason N")."""
    items = [item for item in description.split(",") if item.strip()]
    names: dict[int, str] = {}
    for item in items:
        match = _REASON_ITEM.fullmatch(item)
        if match is None:
            return {}
        code, name = int(match.group(1)), match.group(2)
        if code in names or not name.isprintable():
            return {}
        names[code] = name
    return names


json_router = APIRouter(prefix="/v1", tags=["machines"], dependencies=[Depends(current_principal)])


@json_router.get("/machines/{machine_id}/profile", responses={404: {"description": "unknown machine"}})
def machine_profile(site: SiteDep, machine: MachineDep) -> ProfilePublic:
    """Return a machine's stop reason names (from its profile) and the loss each stop reason is booked as."""
    profile = site.profile(machine.profile)
    register = profile.register("stop_reason")
    names = stop_reason_names(register.description) if register is not None else {}
    categories = site.oee.loss_map.stop_reasons
    return ProfilePublic(
        machine=machine.id,
        name=machine.name,
        profile=profile.model,
        description=profile.description,
        stop_reasons={str(code): name for code, name in sorted(names.items())},
        loss_categories={str(code): str(category) for code, category in sorted(categories.items())},
    )


def include(app: FastAPI) -> None:
    """Add the pages, their static files and GET /v1/machines/{id}/profile to app."""
    if not hasattr(app.state, "web_assets"):
        app.state.web_assets = load_assets()
    app.include_router(router)
    app.include_router(json_router)
