"""Fixtures that start real services (Mosquitto, InfluxDB) as local processes on free ports."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from launcher.services import InfluxDB, Mosquitto, temp_workdir
from shopfloor.config import SiteConfig, default_site_path, load_site
from shopfloor.influx import InfluxStore

REPO = Path(__file__).resolve().parent.parent


def _containers() -> bool:
    """SHOPFLOOR_TEST_SERVICES=containers: the shared broker and server run in Docker (launcher/containers.py)."""
    choice = os.environ.get("SHOPFLOOR_TEST_SERVICES", "local")
    if choice not in ("local", "containers"):
        pytest.exit(f"SHOPFLOOR_TEST_SERVICES must be 'local' or 'containers', not {choice!r}", returncode=4)
    return choice == "containers"


@pytest.fixture(scope="session")
def mosquitto() -> Iterator[Mosquitto]:
    """A Mosquitto broker shared by the session (tests that kill a broker use fresh_mosquitto)."""
    if _containers():
        from launcher.containers import MosquittoContainer

        container = MosquittoContainer().start()
        yield container  # the same .url and .port as a Mosquitto process
        container.stop()
        return
    workdir = temp_workdir("sf-mosquitto-")
    broker = Mosquitto(workdir).start()
    yield broker
    broker.stop()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def fresh_mosquitto() -> Iterator[Mosquitto]:
    """A broker of the test's own, free to be stopped, killed and restarted."""
    workdir = temp_workdir("sf-mosquitto-")
    broker = Mosquitto(workdir).start()
    yield broker
    broker.stop()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def influxdb() -> Iterator[InfluxDB]:
    """An InfluxDB 1.x server shared by the session; each test gets its own database (influx_store)."""
    if _containers():
        from launcher.containers import InfluxDBContainer

        container = InfluxDBContainer().start()
        yield container  # the same .url and .port as an InfluxDB process
        container.stop()
        return
    workdir = temp_workdir("sf-influx-")
    server = InfluxDB(workdir).start()
    yield server
    server.stop()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def influx_store(influxdb: InfluxDB) -> Iterator[InfluxStore]:
    """A fresh, empty database on the shared InfluxDB server."""
    store = InfluxStore(influxdb.url, f"test_{uuid.uuid4().hex[:12]}")
    store.ensure_database()
    yield store
    store.close()


@pytest.fixture(scope="session")
def example_site() -> SiteConfig:
    """The example site shipped in examples/site.yaml."""
    return load_site(default_site_path())


@pytest.fixture
def fresh_influxdb() -> Iterator[InfluxDB]:
    """An InfluxDB server of the test's own, free to be stopped and started again (same port, same data)."""
    workdir = temp_workdir("sf-influx-")
    server = InfluxDB(workdir).start()
    yield server
    server.stop()
    shutil.rmtree(workdir, ignore_errors=True)


PG_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


@pytest.fixture(params=["sqlite", "postgresql"])
def business_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database URL for the business schema: a SQLite file, or a PostgreSQL database of its own."""
    import psycopg

    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'business.db'}"
        return
    name = f"test_{uuid.uuid4().hex[:16]}"
    try:
        with psycopg.connect(PG_DSN, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL {PG_DSN!r} not reachable ({exc}); start it (./dev test does)")
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(PG_DSN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def _migrated_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One business database per backend migrated to head once per session, for migrated_db_url to copy."""
    import psycopg

    from api.db import migrate

    sqlite_file = tmp_path_factory.mktemp("business-template") / "business.db"
    migrate.upgrade(f"sqlite:///{sqlite_file}")
    name = f"test_template_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(PG_DSN, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL {PG_DSN!r} not reachable ({exc}); start it (./dev test does)")
    migrate.upgrade(f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}")  # disposes its engine: no connection left
    yield {"sqlite": str(sqlite_file), "postgresql": name}
    with psycopg.connect(PG_DSN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def migrated_db_url(
    request: pytest.FixtureRequest, tmp_path: Path, _migrated_templates: dict[str, str]
) -> Iterator[str]:
    """A fresh business database already at the newest revision (a copy of a session template: migrating every
    test's database anew cost ~0.5 s each on PostgreSQL); the migrations themselves are tested on business_db_url."""
    import psycopg

    template = _migrated_templates[request.param]
    if request.param == "sqlite":
        target = tmp_path / "business.db"
        shutil.copyfile(template, target)
        yield f"sqlite:///{target}"
        return
    name = f"test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(PG_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(PG_DSN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
