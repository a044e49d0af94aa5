"""Who is who, read from the business DB: tenants, badge ownership over time and API keys.

The API resolves every request's key and every figure's badge owners here. A site file that still lists
`tenants:` and `api_keys:` (set up before the business DB existed) is served from a private in-memory database
filled from it (memory_db), so create_app(site, store) keeps working; deployments pass the migrated database.
"""

from __future__ import annotations

import time
import zoneinfo
from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from api.core.owners import BadgeSpan, Owners
from api.db import models
from shopfloor.config import SiteConfig
from shopfloor.keys import hash_key

EPOCH_DATE = "1970-01-01"
LAST_USED_EVERY_MS = 60_000  # a key's last-used time is written at most once a minute


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """The key a request presented: its name, role and (tenant keys) tenant."""

    name: str
    role: str
    tenant: str | None


@dataclass(frozen=True, slots=True)
class Directory:
    """Tenants (id -> name) and badge ownership over time."""

    tenants: dict[str, str]
    owners: Owners


def day_start_ms(day: str, zone: zoneinfo.ZoneInfo) -> int:
    """Epoch ms of local midnight starting an ISO date in zone."""
    d = date.fromisoformat(day)
    return int(datetime(d.year, d.month, d.day, tzinfo=zone).timestamp() * 1000)


def load_directory(session: Session, zone: zoneinfo.ZoneInfo) -> Directory:
    """Read tenants and badge spans (dates are local midnights in zone)."""
    tenants = {t.id: t.name for t in session.scalars(sa.select(models.Tenant))}
    spans = [
        BadgeSpan(
            b.number,
            b.tenant_id,
            day_start_ms(b.valid_from, zone),
            None if b.valid_to is None else day_start_ms(b.valid_to, zone),
        )
        for b in session.scalars(sa.select(models.Badge))
    ]
    return Directory(tenants, Owners(spans))


def lookup_key(session: Session, presented: str, now_ms: int) -> KeyInfo | None:
    """The live (unrevoked) key whose hash matches presented; note its last use (at most once a minute)."""
    row = session.scalars(sa.select(models.ApiKey).where(models.ApiKey.sha256 == hash_key(presented))).first()
    if row is None or row.revoked_ms is not None:
        return None
    if row.last_used_ms is None or now_ms - row.last_used_ms >= LAST_USED_EVERY_MS:
        row.last_used_ms = now_ms
        session.commit()
    return KeyInfo(row.name, row.role, row.tenant_id)


def memory_db(site: SiteConfig) -> sessionmaker[Session]:
    """A private in-memory business DB holding the site file's tenants (badges valid for all time) and API keys."""
    engine = sa.create_engine("sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False})
    models.Base.metadata.create_all(engine)
    factory = sessionmaker(engine, expire_on_commit=False)
    now_ms = int(time.time() * 1000)
    with factory() as session:
        for tenant in site.tenants:
            session.add(models.Tenant(id=tenant.id, name=tenant.name, created_ms=now_ms))
        session.flush()
        for tenant in site.tenants:
            for badge in tenant.badges:
                session.add(models.Badge(number=badge, tenant_id=tenant.id, valid_from=EPOCH_DATE, valid_to=None))
        for key in site.api_keys:
            session.add(
                models.ApiKey(
                    name=key.name, sha256=key.sha256, role=key.role.value, tenant_id=key.tenant, created_ms=now_ms
                )
            )
        session.commit()
    return factory
