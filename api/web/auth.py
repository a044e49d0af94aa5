"""Web sign-in: an API key, presented once, becomes a server-side session named by a random cookie.

The cookie's value is a fresh random token, never the key; the database keeps only its SHA-256 (a stolen database
gives no usable cookie). Each session has its own CSRF token. Sessions slide: one ends after IDLE_MS without a
request and at the latest MAX_AGE_MS after sign-in; a revoked key's sessions end with it. last_seen_ms is written at
most once a TOUCH_EVERY_MS, so a page's many requests cost one write a minute.

Functions never commit, except session_principal, which records the session's use (like repo.principal_for_key).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import TypeGuard

import sqlalchemy as sa
from sqlalchemy.orm import Session

from api.db.models import ApiKey, WebSession
from api.policy import Principal, Role
from shopfloor.keys import hash_key

COOKIE_NAME = "sf_session"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf"
LANGS = ("en", "id")
DEFAULT_LANG = "en"
IDLE_MS = 12 * 3_600_000  # a session nobody used for 12 h has ended
MAX_AGE_MS = 7 * 24 * 3_600_000  # and every session ends a week after sign-in, used or not
TOUCH_EVERY_MS = 60_000
# secrets.token_urlsafe(32) is 43 characters; anything else cannot be one of ours and is not looked up.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A live web session: who it is, its CSRF token, its language, the key it was opened with and its stored id."""

    principal: Principal
    csrf: str
    lang: str
    key_id: int
    id: str


def is_lang(value: object) -> TypeGuard[str]:
    """Return whether value is a language the web pages speak."""
    return isinstance(value, str) and value in LANGS


def session_id(cookie: str) -> str:
    """The stored id of a cookie value (its SHA-256, hex)."""
    return hashlib.sha256(cookie.encode("ascii")).hexdigest()


def well_formed(cookie: str | None) -> bool:
    """Return whether cookie has the shape of a value create_session makes (checked before any lookup)."""
    return cookie is not None and _TOKEN.fullmatch(cookie) is not None


def key_for_secret(db: Session, presented: str) -> ApiKey | None:
    """The unrevoked API key whose hash is that of presented, or None."""
    row = db.scalars(sa.select(ApiKey).where(ApiKey.sha256 == hash_key(presented))).first()
    return row if row is not None and row.revoked_ms is None else None


def _expiry(created_ms: int, last_seen_ms: int) -> int:
    return min(last_seen_ms + IDLE_MS, created_ms + MAX_AGE_MS)


def create_session(db: Session, key_row: ApiKey, now_ms: int, lang: str | None) -> tuple[str, str]:
    """Open a session for key_row; return (cookie value, CSRF token). lang: the session's language (None: the
    key's own). The caller commits."""
    if key_row.revoked_ms is not None:
        raise ValueError(f"API key {key_row.name!r} is revoked: it cannot open a session")
    if lang is not None and not is_lang(lang):
        raise ValueError(f"lang {lang!r}: must be one of {', '.join(LANGS)}")
    cookie, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    db.add(
        WebSession(
            id=session_id(cookie),
            key_id=key_row.id,
            csrf=csrf,
            lang=lang,
            created_ms=now_ms,
            expires_ms=_expiry(now_ms, now_ms),
            last_seen_ms=now_ms,
        )
    )
    if key_row.last_used_ms is None or key_row.last_used_ms < now_ms:
        key_row.last_used_ms = now_ms
    db.flush()
    return cookie, csrf


def session_principal(db: Session, cookie: str | None, now_ms: int) -> SessionInfo | None:
    """The live session named by cookie, or None (malformed, unknown, ended, expired, or its key revoked).

    An expired session, or one of a revoked key, is deleted when met. Its use is recorded at most once a
    TOUCH_EVERY_MS: committed when nothing else is pending in db (call this before other writes), else flushed.
    """
    if cookie is None or not well_formed(cookie):
        return None
    sid = session_id(cookie)
    row = db.execute(
        sa.select(
            WebSession.csrf,
            WebSession.lang,
            WebSession.created_ms,
            WebSession.expires_ms,
            WebSession.last_seen_ms,
            ApiKey.id,
            ApiKey.name,
            ApiKey.role,
            ApiKey.tenant_id,
            ApiKey.revoked_ms,
            ApiKey.lang.label("key_lang"),
        )
        .join(ApiKey, ApiKey.id == WebSession.key_id)
        .where(WebSession.id == sid)
    ).first()
    if row is None:
        return None
    pending = bool(db.new or db.dirty or db.deleted)
    if row.revoked_ms is not None or now_ms >= row.expires_ms:
        db.execute(sa.delete(WebSession).where(WebSession.id == sid).execution_options(synchronize_session=False))
        _settle(db, pending)
        return None
    if now_ms - row.last_seen_ms >= TOUCH_EVERY_MS:
        # Conditional, so two requests at once write once and a clock running behind never moves it back.
        db.execute(
            sa.update(WebSession)
            .where(WebSession.id == sid, WebSession.last_seen_ms <= now_ms - TOUCH_EVERY_MS)
            .values(last_seen_ms=now_ms, expires_ms=_expiry(row.created_ms, now_ms))
            .execution_options(synchronize_session=False)
        )
        db.execute(
            sa.update(ApiKey)
            .where(ApiKey.id == row.id, sa.or_(ApiKey.last_used_ms.is_(None), ApiKey.last_used_ms < now_ms))
            .values(last_used_ms=now_ms)
            .execution_options(synchronize_session=False)
        )
        _settle(db, pending)
    lang = row.lang if is_lang(row.lang) else row.key_lang if is_lang(row.key_lang) else DEFAULT_LANG
    # The DB's role names are the policy's (a unit test checks every one maps).
    principal = Principal(row.name, Role(row.role), row.tenant_id)
    return SessionInfo(principal=principal, csrf=row.csrf, lang=lang, key_id=row.id, id=sid)


def _settle(db: Session, pending: bool) -> None:
    if pending:
        db.flush()
    else:
        db.commit()


def csrf_matches(info: SessionInfo, presented: str | None) -> bool:
    """Return whether presented is the session's CSRF token (compared in constant time)."""
    if presented is None:
        return False
    return hmac.compare_digest(info.csrf.encode("ascii"), presented.encode("utf-8", "surrogateescape"))


def end_session(db: Session, cookie: str | None) -> bool:
    """Delete the session named by cookie; return whether there was one. The caller commits."""
    if cookie is None or not well_formed(cookie):
        return False
    result = db.execute(
        sa.delete(WebSession).where(WebSession.id == session_id(cookie)).execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def end_sessions_of_key(db: Session, key_id: int) -> int:
    """Delete every session opened with key key_id (e.g. when it is revoked); return how many. The caller commits."""
    result = db.execute(
        sa.delete(WebSession).where(WebSession.key_id == key_id).execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def purge_expired(db: Session, now_ms: int) -> int:
    """Delete every session that has expired by now_ms; return how many. The caller commits."""
    result = db.execute(
        sa.delete(WebSession).where(WebSession.expires_ms <= now_ms).execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def set_lang(db: Session, info: SessionInfo | None, key_name: str, lang: str) -> None:
    """Remember lang for the key named key_name and, signed in by cookie, for its session. The caller commits."""
    if not is_lang(lang):
        raise ValueError(f"lang {lang!r}: must be one of {', '.join(LANGS)}")
    db.execute(
        sa.update(ApiKey).where(ApiKey.name == key_name).values(lang=lang).execution_options(synchronize_session=False)
    )
    if info is not None:
        db.execute(
            sa.update(WebSession)
            .where(WebSession.id == info.id)
            .values(lang=lang)
            .execution_options(synchronize_session=False)
        )


def key_lang(db: Session, key_name: str) -> str:
    """The language remembered for the key named key_name (DEFAULT_LANG if none)."""
    found = db.scalar(sa.select(ApiKey.lang).where(ApiKey.name == key_name))
    return found if is_lang(found) else DEFAULT_LANG


class SignInLimiter:
    """Failed sign-ins per client address in a sliding window: after `limit` failures within `window_ms` the
    address is refused until the oldest of them leaves the window. In memory, per process; bounded in size."""

    def __init__(self, limit: int = 10, window_ms: int = 60_000, max_addresses: int = 10_000) -> None:
        if limit < 1 or window_ms < 1 or max_addresses < 1:
            raise ValueError("SignInLimiter: limit, window_ms and max_addresses must be at least 1")
        self.limit, self.window_ms, self.max_addresses = limit, window_ms, max_addresses
        self._failures: OrderedDict[str, deque[int]] = OrderedDict()
        self._lock = threading.Lock()  # sync routes run on a thread pool

    def retry_after_ms(self, address: str, now_ms: int) -> int:
        """How long address must wait before it may try again (0: it may now)."""
        with self._lock:
            times = self._recent(address, now_ms)
            if times is None or len(times) < self.limit:
                return 0
            return max(1, times[0] + self.window_ms - now_ms)

    def failed(self, address: str, now_ms: int) -> None:
        """Record a failed sign-in from address."""
        with self._lock:
            times = self._recent(address, now_ms)
            if times is None:
                times = deque(maxlen=self.limit)
                self._failures[address] = times
                while len(self._failures) > self.max_addresses:
                    # The address that failed longest ago goes first; a flood of fresh addresses forgets old ones.
                    self._failures.popitem(last=False)
            times.append(now_ms)
            self._failures.move_to_end(address)

    def succeeded(self, address: str) -> None:
        """Forget address's failures (it knew a key)."""
        with self._lock:
            self._failures.pop(address, None)

    def _recent(self, address: str, now_ms: int) -> deque[int] | None:
        times = self._failures.get(address)
        if times is None:
            return None
        while times and times[0] <= now_ms - self.window_ms:
            times.popleft()
        if not times:
            del self._failures[address]
            return None
        return times
