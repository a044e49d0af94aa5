"""Web sign-in over a real business DB (SQLite and PostgreSQL): the API key becomes a random HttpOnly, SameSite=Strict
session cookie; cookie requests that change something need the session's CSRF token; sign-out, key revocation and
expiry end sessions server-side; the language is remembered per key; hostile forms and cookies are refused; failed
sign-ins are limited per address.

The clock starts at Monday 2026-11-02 08:00 Asia/Jakarta and is moved by the tests (never the wall clock).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.cookies import SimpleCookie
from zoneinfo import ZoneInfo

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from api.app import create_app
from api.db import crud, models
from api.db.engine import open_engine, sessions
from api.policy import Role
from api.web import auth_routes
from api.web.auth import COOKIE_NAME, IDLE_MS, MAX_AGE_MS, TOUCH_EVERY_MS, SignInLimiter
from api.web.auth_routes import preferred_lang
from shopfloor.config import SiteConfig
from shopfloor.memstore import MemoryStore

pytestmark = pytest.mark.integration

JKT = ZoneInfo("Asia/Jakarta")
START = datetime(2026, 11, 2, 8, 0, tzinfo=JKT)
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
CSRF_403 = "missing or wrong CSRF token"


@dataclass
class Clock:
    now: datetime = START

    def advance(self, ms: int) -> None:
        self.now += timedelta(milliseconds=ms)


@dataclass
class World:
    """The app (with the web routes) over a fresh business DB, keys for every role, and a movable clock."""

    app: object
    db: sessionmaker[Session]
    clock: Clock
    keys: dict[str, str] = field(default_factory=dict)
    key_ids: dict[str, int] = field(default_factory=dict)
    clients: list[TestClient] = field(default_factory=list)
    bookings: int = 0

    def client(self, *, https: bool = False, address: str = "10.0.0.1") -> TestClient:
        c = TestClient(
            self.app,  # type: ignore[arg-type]
            base_url="https://testserver" if https else "http://testserver",
            follow_redirects=False,
            client=(address, 50000),
        )
        self.clients.append(c)
        return c

    def sign_in(self, who: str, headers: dict[str, str] | None = None) -> str:
        """Sign who in; return the cookie value (the client's jar is cleared, so requests name it explicitly)."""
        c = self.client()
        r = c.post("/signin", content=f"key={self.keys[who]}", headers={**FORM, **(headers or {})})
        assert r.status_code == 303 and r.headers["location"] == "/", r.text
        value = SimpleCookie(r.headers["set-cookie"])[COOKIE_NAME].value
        c.cookies.clear()
        return value

    def next_booking(self) -> str:
        """A JSON body of a future booking of press-01 for acme, each on its own day."""
        self.bookings += 1
        start = START + timedelta(days=self.bookings)
        end = start + timedelta(hours=1)
        return json.dumps(
            {"machine": "press-01", "tenant_id": "acme", "start": start.isoformat(), "end": end.isoformat()}
        )

    def session_rows(self) -> list[models.WebSession]:
        with self.db() as s:
            return list(s.scalars(sa.select(models.WebSession)))


def cookie(value: str) -> dict[str, str]:
    return {"Cookie": f"{COOKIE_NAME}={value}"}


def me(world: World, value: str) -> httpx.Response:
    return world.client().get("/v1/me", headers=cookie(value))


@pytest.fixture
def world(migrated_db_url: str, example_site: SiteConfig) -> Iterator[World]:
    engine = open_engine(migrated_db_url)
    factory = sessions(engine)
    site = example_site.model_copy(update={"tenants": [], "api_keys": []})
    clock = Clock()
    app = create_app(site, MemoryStore(), db=factory, clock=lambda: clock.now)
    auth_routes.include(app)
    w = World(app, factory, clock)
    with factory() as s:
        for tenant_id in ("acme", "batik"):
            crud.create_tenant(s, tenant_id=tenant_id, name=tenant_id.upper(), now_ms=0)
        for who, role, tenant in (
            ("admin", Role.ADMIN, None),
            ("operator", Role.OPERATOR, None),
            ("acme", Role.TENANT, "acme"),
        ):
            row, key = crud.create_key(s, name=f"{who}-key", role=role, tenant_id=tenant, now_ms=0)
            w.keys[who], w.key_ids[who] = key, row.id
        s.commit()
    yield w
    for c in w.clients:
        c.close()
    engine.dispose()


# ---- sign-in ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("https", [False, True])
def test_sign_in_sets_a_random_strict_httponly_cookie(world: World, https: bool) -> None:
    c = world.client(https=https)
    key = world.keys["operator"]
    r = c.post("/signin", content=f"key={key}", headers=FORM)
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert r.headers["cache-control"] == "no-store"
    set_cookies = r.headers.get_list("set-cookie")
    assert len(set_cookies) == 1
    raw = set_cookies[0]
    morsel = SimpleCookie(raw)[COOKIE_NAME]
    attrs = {a.strip().split("=")[0].lower() for a in raw.split(";")[1:]}
    assert morsel["httponly"] is True and morsel["samesite"] == "strict" and morsel["path"] == "/"
    assert ("secure" in attrs) is https
    assert morsel["max-age"] == str(7 * 24 * 3600)  # 604800 s: the longest a session lives
    value = morsel.value
    assert key not in raw and value != key and len(value) == 43
    # The key never comes back in anything we send.
    assert key not in r.text and all(key not in v for v in r.headers.values())
    # Stored: only the cookie's hash, never the cookie or the key.
    (row,) = world.session_rows()
    assert row.id == hashlib.sha256(value.encode()).hexdigest()
    assert row.key_id == world.key_ids["operator"]
    assert key not in {row.id, row.csrf} and value not in {row.id, row.csrf}
    assert (row.created_ms, row.last_seen_ms) == (int(START.timestamp() * 1000),) * 2
    # The browser (the client's jar) sends it back by itself: over https only when Secure.
    assert c.get("/v1/me").status_code == 200


def test_each_sign_in_gets_its_own_cookie_and_csrf_and_replaces_the_browsers_old_session(world: World) -> None:
    first, second = world.sign_in("acme"), world.sign_in("acme")
    assert first != second
    csrf = {me(world, v).json()["csrf"] for v in (first, second)}
    assert len(csrf) == 2
    # Signing in again from a browser that holds a session ends that session (no id survives a sign-in).
    c = world.client()
    r = c.post("/signin", content=f"key={world.keys['admin']}", headers={**FORM, **cookie(first)})
    assert r.status_code == 303
    assert me(world, first).status_code == 401
    assert me(world, second).status_code == 200
    assert len(world.session_rows()) == 2


@pytest.mark.parametrize(
    "body",
    [
        "key=sfk_wrong",
        "key=",
        "key=%20%20",
        "key=" + "a" * 600,  # longer than any key: refused without hashing
        "key=sfk_wrong&csrf=whatever",
    ],
)
def test_wrong_key_redirects_with_an_error_and_sets_no_cookie(world: World, body: str) -> None:
    r = world.client().post("/signin", content=body, headers=FORM)
    assert r.status_code == 303 and r.headers["location"] == "/signin?error=1"
    assert "set-cookie" not in r.headers
    assert "wrong" not in r.headers["location"] and r.text == ""
    assert world.session_rows() == []


def test_revoked_key_cannot_sign_in(world: World) -> None:
    with world.db() as s:
        crud.revoke_key(s, world.key_ids["acme"], now_ms=0)
        s.commit()
    r = world.client().post("/signin", content=f"key={world.keys['acme']}", headers=FORM)
    assert r.headers["location"] == "/signin?error=1" and "set-cookie" not in r.headers


def test_key_with_surrounding_whitespace_signs_in(world: World) -> None:
    # A key pasted with a trailing newline: '%0A' is '\n'.
    r = world.client().post("/signin", content=f"key=%20{world.keys['acme']}%0A", headers=FORM)
    assert r.status_code == 303 and r.headers["location"] == "/"


def test_cross_site_sign_in_is_refused(world: World) -> None:
    key = world.keys["admin"]
    c = world.client()
    for headers in ({"Origin": "https://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"}):
        r = c.post("/signin", content=f"key={key}", headers={**FORM, **headers})
        assert r.status_code == 403 and "set-cookie" not in r.headers, headers
        assert key not in r.text
    r = c.post("/signin", content=f"key={key}", headers={**FORM, "Origin": "http://testserver"})
    assert r.status_code == 303 and r.headers["location"] == "/"


# ---- using the cookie ------------------------------------------------------------------------------------------------


def test_cookie_authenticates_reads_and_me_tells_who_and_the_csrf(world: World) -> None:
    value = world.sign_in("acme")
    c = world.client()
    r = c.get("/v1/machines", headers=cookie(value))
    assert r.status_code == 200
    r = c.get("/v1/me", headers=cookie(value))
    assert r.status_code == 200 and r.headers["cache-control"] == "no-store"
    (row,) = world.session_rows()
    site = r.json()["site"]
    assert r.json() == {
        "name": "acme-key",
        "role": "tenant",
        "tenant": "acme",
        "lang": "en",
        "csrf": row.csrf,
        "site": {"id": site["id"], "name": site["name"], "timezone": "Asia/Jakarta"},
    }
    # A bearer key: the same view, with no CSRF token (bearer requests need none).
    r = c.get("/v1/me", headers={"Authorization": f"Bearer {world.keys['admin']}"})
    assert r.json()["role"] == "admin" and r.json()["tenant"] is None and r.json()["csrf"] is None
    # Neither: 401 saying how to authenticate.
    r = c.get("/v1/me")
    assert r.status_code == 401 and "sign in" in r.json()["detail"]


def test_state_changing_cookie_requests_need_the_csrf_token(world: World) -> None:
    value = world.sign_in("admin")
    token = me(world, value).json()["csrf"]
    c = world.client()
    json_cookie = {**cookie(value), "Content-Type": "application/json"}
    r = c.post("/v1/bookings", content=world.next_booking(), headers=json_cookie)
    assert r.status_code == 403 and CSRF_403 in r.json()["detail"]
    for wrong in ("x", token[:-1], token + "x", token.upper() if token != token.upper() else token.lower(), ""):
        r = c.post("/v1/bookings", content=world.next_booking(), headers={**json_cookie, "X-CSRF-Token": wrong})
        assert r.status_code == 403, wrong
    # Another session's token is wrong for this one.
    other = me(world, world.sign_in("admin")).json()["csrf"]
    r = c.post("/v1/bookings", content=world.next_booking(), headers={**json_cookie, "X-CSRF-Token": other})
    assert r.status_code == 403
    with world.db() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(models.Booking)) == 0
    r = c.post("/v1/bookings", content=world.next_booking(), headers={**json_cookie, "X-CSRF-Token": token})
    assert r.status_code == 201, r.text
    # Reads need no token; neither do bearer requests, even with a cookie beside them (the key wins).
    assert c.get("/v1/bookings", headers=cookie(value)).status_code == 200
    bearer = {"Authorization": f"Bearer {world.keys['admin']}", "Content-Type": "application/json"}
    assert c.post("/v1/bookings", content=world.next_booking(), headers=bearer).status_code == 201
    r = c.post("/v1/bookings", content=world.next_booking(), headers={**bearer, **cookie(value)})
    assert r.status_code == 201
    # A wrong bearer key is not rescued by a good cookie.
    r = c.get("/v1/machines", headers={"Authorization": "Bearer sfk_nope", **cookie(value)})
    assert r.status_code == 401
    # DELETE and PATCH are guarded alike.
    booking = r_id = c.get("/v1/bookings", headers=cookie(value)).json()[0]["id"]
    assert c.delete(f"/v1/bookings/{booking}", headers=cookie(value)).status_code == 403
    r = c.delete(f"/v1/bookings/{r_id}", headers={**cookie(value), "X-CSRF-Token": token})
    assert r.status_code == 204


def test_role_of_the_key_applies_to_its_cookie(world: World) -> None:
    value = world.sign_in("operator")
    token = me(world, value).json()["csrf"]
    headers = {**cookie(value), "X-CSRF-Token": token, "Content-Type": "application/json"}
    r = world.client().post("/v1/bookings", content=world.next_booking(), headers=headers)
    assert r.status_code == 403 and CSRF_403 not in r.json()["detail"]  # an operator may not book


# ---- sign-out, revocation, expiry ------------------------------------------------------------------------------------


def test_sign_out_needs_the_csrf_token_and_ends_the_session_server_side(world: World) -> None:
    value = world.sign_in("acme")
    token = me(world, value).json()["csrf"]
    c = world.client()
    for body in ("", "csrf=wrong"):
        r = c.post("/signout", content=body, headers={**FORM, **cookie(value)})
        assert r.status_code == 403 and CSRF_403 in r.json()["detail"]
    assert me(world, value).status_code == 200
    r = c.post("/signout", content=f"csrf={token}", headers={**FORM, **cookie(value)})
    assert r.status_code == 303 and r.headers["location"] == "/signin"
    cleared = SimpleCookie(r.headers["set-cookie"])[COOKIE_NAME]
    assert cleared.value == "" and cleared["max-age"] == "0" and cleared["path"] == "/"
    assert world.session_rows() == []
    # The old cookie, replayed (say, copied before sign-out), no longer opens anything.
    assert c.get("/v1/machines", headers=cookie(value)).status_code == 401
    assert me(world, value).status_code == 401


def test_sign_out_by_header_and_without_a_session(world: World) -> None:
    value = world.sign_in("acme")
    token = me(world, value).json()["csrf"]
    c = world.client()
    r = c.post("/signout", headers={**cookie(value), "X-CSRF-Token": token})
    assert r.status_code == 303 and world.session_rows() == []
    # No (live) session: nothing to end or protect; the cookie is cleared all the same.
    for headers in ({}, cookie(value), cookie("garbage")):
        r = c.post("/signout", headers=headers)
        assert r.status_code == 303 and r.headers["location"] == "/signin"
        assert SimpleCookie(r.headers["set-cookie"])[COOKIE_NAME].value == ""


def test_revoking_a_key_ends_its_sessions(world: World) -> None:
    acme, admin = world.sign_in("acme"), world.sign_in("admin")
    assert me(world, acme).status_code == 200
    token = me(world, admin).json()["csrf"]
    r = world.client().post(
        f"/v1/keys/{world.key_ids['acme']}/revoke", headers={**cookie(admin), "X-CSRF-Token": token}
    )
    assert r.status_code == 200, r.text
    assert world.client().get("/v1/machines", headers=cookie(acme)).status_code == 401
    # Met once, the dead session is deleted; the admin's lives on.
    assert [row.key_id for row in world.session_rows()] == [world.key_ids["admin"]]
    assert me(world, admin).status_code == 200


def test_idle_sessions_expire_after_12_hours(world: World) -> None:
    value = world.sign_in("acme")
    world.clock.advance(IDLE_MS - 1)  # 11:59:59.999 after sign-in: still alive, and this use slides it
    assert me(world, value).status_code == 200
    world.clock.advance(IDLE_MS - 1)  # 12 h less 1 ms after that use
    assert me(world, value).status_code == 200
    world.clock.advance(IDLE_MS)  # exactly 12 h idle
    assert me(world, value).status_code == 401
    assert world.session_rows() == []


def test_sessions_end_seven_days_after_sign_in_however_busy(world: World) -> None:
    value = world.sign_in("acme")
    step = 6 * 3_600_000
    for _ in range(MAX_AGE_MS // step - 1):  # 27 uses, 6 h apart: up to 162 h = 6 d 18 h after sign-in
        world.clock.advance(step)
        assert me(world, value).status_code == 200
    world.clock.advance(step - 1)  # 168 h less 1 ms
    assert me(world, value).status_code == 200
    world.clock.advance(1)  # 168 h = 7 days
    assert me(world, value).status_code == 401


def test_last_seen_is_written_at_most_once_a_minute(world: World) -> None:
    value = world.sign_in("acme")
    t0 = int(START.timestamp() * 1000)
    seen = []
    for step in (30_000, 29_999, 1, 59_999, 1):  # at +30 s, +59.999 s, +60 s, +119.999 s, +120 s
        world.clock.advance(step)
        assert me(world, value).status_code == 200
        (row,) = world.session_rows()
        seen.append(row.last_seen_ms - t0)
    assert seen == [0, 0, 60_000, 60_000, 120_000]
    (row,) = world.session_rows()
    assert row.expires_ms == t0 + 120_000 + IDLE_MS
    assert TOUCH_EVERY_MS == 60_000
    # The key's last use follows along.
    with world.db() as s:
        assert s.get(models.ApiKey, world.key_ids["acme"]).last_used_ms == t0 + 120_000  # type: ignore[union-attr]


def test_a_clock_running_behind_never_moves_last_seen_back(world: World) -> None:
    value = world.sign_in("acme")
    world.clock.advance(5 * 60_000)
    assert me(world, value).status_code == 200
    world.clock.advance(-3 * 60_000)  # another replica's clock, 3 min behind
    assert me(world, value).status_code == 200
    (row,) = world.session_rows()
    assert row.last_seen_ms == int(START.timestamp() * 1000) + 5 * 60_000


def test_sign_in_purges_expired_sessions(world: World) -> None:
    old = world.sign_in("acme")
    world.clock.advance(IDLE_MS + 1)
    world.sign_in("operator")
    assert [r.key_id for r in world.session_rows()] == [world.key_ids["operator"]]
    assert me(world, old).status_code == 401


# ---- language ----------------------------------------------------------------------------------------------------


def test_language_is_remembered_for_the_key_across_sign_ins(world: World) -> None:
    value = world.sign_in("acme")
    token = me(world, value).json()["csrf"]
    c = world.client()
    body = json.dumps({"lang": "id"})
    r = c.post("/v1/me/lang", content=body, headers=cookie(value))
    assert r.status_code == 403  # a change: needs the token
    r = c.post("/v1/me/lang", content=body, headers={**cookie(value), "X-CSRF-Token": token})
    assert r.status_code == 200 and r.json()["lang"] == "id" and r.json()["csrf"] == token
    assert me(world, value).json()["lang"] == "id"
    c.post("/signout", content=f"csrf={token}", headers={**FORM, **cookie(value)})
    again = world.sign_in("acme")
    assert me(world, again).json()["lang"] == "id"
    # Another key is not affected.
    assert me(world, world.sign_in("operator")).json()["lang"] == "en"
    # Bearer: stored on the key, no token needed.
    bearer = {"Authorization": f"Bearer {world.keys['operator']}"}
    r = c.post("/v1/me/lang", content=body, headers=bearer)
    assert r.status_code == 200 and r.json()["lang"] == "id" and r.json()["csrf"] is None
    assert c.get("/v1/me", headers=bearer).json()["lang"] == "id"


@pytest.mark.parametrize(
    "body",
    [b'{"lang": "fr"}', b'{"lang": "ID"}', b'{"lang": 1}', b"{}", b'{"lang": "id", "x": 1}', b"lang=id", b"\xff"],
)
def test_bad_language_bodies_are_refused_naming_the_field(world: World, body: bytes) -> None:
    r = world.client().post("/v1/me/lang", content=body, headers={"Authorization": f"Bearer {world.keys['acme']}"})
    assert r.status_code == 422, r.text
    with world.db() as s:
        assert s.get(models.ApiKey, world.key_ids["acme"]).lang is None  # type: ignore[union-attr]


def test_first_sign_in_takes_the_browsers_language_until_one_is_chosen(world: World) -> None:
    value = world.sign_in("acme", {"Accept-Language": "id-ID,id;q=0.9,en;q=0.5"})
    assert me(world, value).json()["lang"] == "id"
    with world.db() as s:
        assert s.get(models.ApiKey, world.key_ids["acme"]).lang is None  # type: ignore[union-attr]
    # Once the key has a language, the browser's no longer counts.
    bearer = {"Authorization": f"Bearer {world.keys['acme']}"}
    world.client().post("/v1/me/lang", content=json.dumps({"lang": "en"}), headers=bearer)
    value = world.sign_in("acme", {"Accept-Language": "id"})
    assert me(world, value).json()["lang"] == "en"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("id", "id"),
        ("en-US,en;q=0.9", "en"),
        ("fr-FR,id;q=0.8,en;q=0.7", "id"),  # first language we speak, by q
        ("en;q=0.3,id;q=0.6", "id"),
        ("id;q=0.5,en;q=0.5", "id"),  # equal q: the earlier
        ("fr,de", None),
        ("id;q=0", None),
        ("id;q=abc", None),
        ("id;q=nan,en;q=inf", None),
        ("", None),
        (None, None),
        ("id," * 1000, None),  # longer than any browser sends: ignored
    ],
)
def test_preferred_lang(header: str | None, expected: str | None) -> None:
    assert preferred_lang(header) == expected


# ---- hostile input ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        ("key=" + "a" * 5000, FORM["Content-Type"], 413),  # over the 4 KiB cap
        ("key=a&key=b", FORM["Content-Type"], 400),  # which one was meant?
        ("key=%ff%fe", FORM["Content-Type"], 400),  # percent-encoded bytes that are not UTF-8
        ("key=\u00e9", FORM["Content-Type"], 400),  # raw non-ASCII bytes: not URL-encoded
        ("key=a&admin=1", FORM["Content-Type"], 400),  # unknown field
        ("csrf=x", FORM["Content-Type"], 400),  # no key field at all
        ("keyonly", FORM["Content-Type"], 400),  # a field without '='
        ("key=a&csrf=1&csrf=2", FORM["Content-Type"], 400),
        ('{"key": "KEY"}', "application/json", 415),  # JSON instead of a form
        ("key=KEY", "text/plain", 415),
        ("key=KEY", "", 415),
    ],
)
def test_hostile_sign_in_forms_are_refused_without_echoing(
    world: World, body: str, content_type: str, status: int
) -> None:
    key = world.keys["admin"]
    raw = body.replace("KEY", key).encode("utf-8")
    headers = {"Content-Type": content_type} if content_type else {}
    r = world.client().post("/signin", content=raw, headers=headers)
    assert r.status_code == status, r.text
    assert "set-cookie" not in r.headers and world.session_rows() == []
    assert key not in r.text and "a" * 50 not in r.text and "admin" not in r.text
    assert r.json()["detail"]


def test_oversize_body_is_refused_while_streaming_without_a_length(world: World) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"key="
        for _ in range(100):
            yield b"a" * 100

    r = world.client().post("/signin", content=chunks(), headers=FORM)
    assert r.status_code == 413


@pytest.mark.parametrize(
    "forged",
    [
        "A" * 43,  # well-formed, unknown
        "x" * 10_000,  # a 10 KB cookie
        "sfk_" + "a" * 39,
        "\u00e9" * 43,
        "a" * 42 + "!",
        "",
    ],
)
def test_forged_cookies_get_401(world: World, forged: str) -> None:
    world.sign_in("admin")
    c = world.client()
    header = {b"Cookie": f"{COOKIE_NAME}={forged}".encode()}  # raw UTF-8 bytes, as a hostile client may send
    r = c.get("/v1/machines", headers=header)
    assert r.status_code == 401
    r = c.post("/signout", headers=header)
    assert r.status_code == 303 and len(world.session_rows()) == 1


def test_what_the_database_holds_is_no_cookie(world: World) -> None:
    # Someone who reads web_sessions (a backup, a replica) gets the hash and the CSRF token: neither signs in.
    value = world.sign_in("admin")
    (row,) = world.session_rows()
    for stolen in (row.id, row.id[:43], row.csrf):
        assert me(world, stolen).status_code == 401
    assert me(world, value).status_code == 200
    # The key itself is not a cookie either.
    assert me(world, world.keys["admin"]).status_code == 401


# ---- failed sign-in limiter ------------------------------------------------------------------------------------------


def test_ten_failed_sign_ins_a_minute_lock_the_address_out(world: World) -> None:
    c, other = world.client(address="10.0.0.7"), world.client(address="10.0.0.8")
    for i in range(10):
        world.clock.advance(1_000)  # failures at +1 s ... +10 s
        r = c.post("/signin", content=f"key=sfk_guess{i}", headers=FORM)
        assert r.headers["location"] == "/signin?error=1"
    r = c.post("/signin", content=f"key={world.keys['admin']}", headers=FORM)
    # Refused even with the right key (else guessing would still tell right from wrong); the oldest failure, at
    # +1 s, leaves the window at +61 s: 51 s from now (+10 s).
    assert r.status_code == 429 and r.headers["retry-after"] == "51" and "set-cookie" not in r.headers
    assert world.keys["admin"] not in r.text
    # Another address is not affected.
    assert other.post("/signin", content=f"key={world.keys['admin']}", headers=FORM).headers["location"] == "/"
    world.clock.advance(50_999)  # +60.999 s: still 10 failures within the minute
    assert c.post("/signin", content=f"key={world.keys['admin']}", headers=FORM).status_code == 429
    world.clock.advance(1)  # +61 s: the first failure has left the window, nine remain
    r = c.post("/signin", content=f"key={world.keys['admin']}", headers=FORM)
    assert r.status_code == 303 and r.headers["location"] == "/"
    # A success does not wipe the count (a tenant with a key of its own could otherwise guess others' forever).
    r = c.post("/signin", content="key=sfk_guess10", headers=FORM)
    assert r.headers["location"] == "/signin?error=1"
    assert c.post("/signin", content="key=sfk_guess11", headers=FORM).status_code == 429


def test_limiter_forgets_old_failures_and_stays_bounded() -> None:
    limiter = SignInLimiter(limit=3, window_ms=1_000, max_addresses=2)
    for t in (0, 10, 20):
        limiter.failed("a", t)
    assert limiter.retry_after_ms("a", 20) == 980  # the failure at 0 leaves at 1000
    assert limiter.retry_after_ms("a", 1_000) == 0  # two remain: under the limit
    limiter.failed("b", 30)
    limiter.failed("c", 40)  # a third address: the one that failed longest ago ("a") is forgotten
    for t in (41, 42):
        limiter.failed("c", t)
    assert limiter.retry_after_ms("c", 42) == 998
    assert limiter.retry_after_ms("b", 42) == 0
    with pytest.raises(ValueError, match="at least 1"):
        SignInLimiter(limit=0)
