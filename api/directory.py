"""Who is who, read from the business DB: tenants and badge ownership over time (api.db.repo does the reading).

A site file that still lists `tenants:` and `api_keys:` (set up before the business DB existed) can be served from
a private throwaway database filled from it (memory_db), so create_app(site, store) keeps working in tests and
tools; deployments pass the migrated database (`shopfloor db upgrade`, `shopfloor db import site.yaml`).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import weakref
import zoneinfo
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from api.core.owners import Owners
from api.db import models
from api.db.billingfile import parse_billing
from api.db.engine import open_engine, sessions
from api.db.migrate import upgrade_engine
from api.db.repo import import_billing, owners
from shopfloor.config import SiteConfig


@dataclass(frozen=True, slots=True)
class Directory:
    """Tenants (id -> name) and badge ownership over time."""

    tenants: dict[str, str]
    owners: Owners


def load_directory(session: Session, zone: zoneinfo.ZoneInfo) -> Directory:
    """Read tenants and badge spans (dates are local midnights in zone)."""
    tenants = {t.id: t.name for t in session.scalars(sa.select(models.Tenant))}
    return Directory(tenants, Owners(owners(session, zone)))


def memory_db(site: SiteConfig) -> sessionmaker[Session]:
    """A private, migrated throwaway business DB holding the site file's tenants (badges valid for all time) and
    API keys: a SQLite file in a temporary folder (on tmpfs where there is one), removed with the engine.

    A file, not `sqlite://` in memory: one in-memory database is one connection, which every request thread would
    share (StaticPool) and use at once ("no more rows available", "cannot commit - no transaction is active" under
    100 concurrent streams). A file gives each thread its own connection, as in a deployment.
    """
    shm = Path("/dev/shm")
    folder = Path(tempfile.mkdtemp(prefix="shopfloor-db-", dir=shm if shm.is_dir() else None))
    engine = open_engine(f"sqlite:///{folder / 'business.db'}")
    weakref.finalize(engine, _remove, engine.pool, folder)
    upgrade_engine(engine)
    factory = sessions(engine)
    data = parse_billing(site.model_dump(mode="json", include={"site", "tenants", "api_keys"}), source="site file")
    with factory() as session:
        import_billing(session, data, now_ms=int(time.time() * 1000))
        session.commit()
    return factory


def _remove(pool: sa.pool.Pool, folder: Path) -> None:
    pool.dispose()
    shutil.rmtree(folder, ignore_errors=True)


class OwnersReader:
    """Badge owners as the business DB holds them, read at most every max_age_s (for background jobs and the hub)."""

    def __init__(self, factory: sessionmaker[Session], zone: zoneinfo.ZoneInfo, *, max_age_s: float = 10.0) -> None:
        self._factory = factory
        self._zone = zone
        self._max_age_s = max_age_s
        self._lock = threading.Lock()
        self._owners: Owners | None = None
        self._read_at = 0.0

    def __call__(self) -> Owners:
        """The owners, read again when the last read is older than max_age_s."""
        with self._lock:
            now = time.monotonic()
            if self._owners is None or now - self._read_at >= self._max_age_s:
                with self._factory() as session:
                    self._owners = Owners(owners(session, self._zone))
                self._read_at = now
            return self._owners
