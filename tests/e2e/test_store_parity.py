"""One scenario into InfluxDB and into the embedded SQLite store: the API's figures and the invoices are identical.

Chain: the simulator's replay of the two-tenant scenario -> Mosquitto -> two collectors (each its own session, so
each gets every message) -> one InfluxDB database and one SqliteStore file. Each store gets its own API (served over
HTTP, same clock) on its own business DB set up the same way. The raw data read back, /v1/usage, /v1/oee (several
group_by), every machine's /v1/machines/{id}/timeline and the November invoice drafts must be equal field by field
(invoice ids aside).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from replaying import publish_replay

from api.app import create_app
from api.db import migrate, repo
from api.db.billingfile import load_billing
from api.db.engine import open_engine, sessions
from api.server import serve, stop
from collector.registry import Registry
from collector.service import Collector
from launcher.services import InfluxDB, Mosquitto, free_port, temp_workdir
from shopfloor.config import SiteConfig, default_site_path, load_site
from shopfloor.influx import InfluxStore
from shopfloor.mqtt import MqttSettings
from shopfloor.sqlitestore import SqliteStore
from shopfloor.store import LineStore
from simulators.replay import Message, ReplayOptions, replay_messages
from simulators.scenario import load_scenario, scenarios_dir
from simulators.world import World

pytestmark = pytest.mark.e2e

SCENARIO = scenarios_dir() / "e2e-two-tenants.yaml"
JAKARTA = ZoneInfo("Asia/Jakarta")
T0 = int(datetime(2026, 11, 2, 9, 0, tzinfo=JAKARTA).timestamp() * 1000)
SEED = 3
BILLING = """
facility_name: Sentra Berbagi Pabrik Bekasi
policy: capacity
watermark_grace_min: 30
tariffs:
  - {code: std, version: 1, machine_class: cnc-mill-v1, valid_from: 2026-01-01, rate_per_hour: 120000,
     energy_per_kwh: 1500, tax_rate_bp: 1100}
  - {code: std-laser, version: 1, machine_class: fiber-laser-v1, valid_from: 2026-01-01, rate_per_hour: 120000,
     energy_per_kwh: 1500, tax_rate_bp: 1100}
  - {code: std-press, version: 1, machine_class: injection-press-v1, valid_from: 2026-01-01, rate_per_hour: 120000,
     tax_rate_bp: 1100}
  - {code: std-brake, version: 1, machine_class: press-brake-v1, valid_from: 2026-01-01, rate_per_hour: 120000,
     tax_rate_bp: 1100}
cost_pools:
  - {machine: cnc-01, period: 2026-11, category: depreciation, amount: 60000000}
"""
# What differs between two drafts of the same figures: their ids (the hash covers the document, not the id).
VOLATILE = {"id"}


@dataclass
class Api:
    base: str
    key: str

    def get(self, path: str, **params: str) -> Any:
        headers = {"Authorization": f"Bearer {self.key}"}
        resp = httpx.get(f"{self.base}{path}", params=params, headers=headers, timeout=60)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def post(self, path: str) -> Any:
        resp = httpx.post(f"{self.base}{path}", headers={"Authorization": f"Bearer {self.key}"}, timeout=60)
        assert resp.status_code == 200, resp.text
        return resp.json()


@dataclass
class Pair:
    site: SiteConfig
    stores: dict[str, LineStore]
    apis: dict[str, Api]
    start_ms: int
    end_ms: int


def _wait(check: Callable[[], bool], what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _business_db(path: Path) -> tuple[Any, str]:
    """A migrated business DB with the site's tenants and the billing above; (session factory, admin key)."""
    url = f"sqlite:///{path}"
    migrate.upgrade(url)
    engine = open_engine(url)
    factory = sessions(engine)
    billing = path.with_suffix(".yaml")
    billing.write_text(BILLING)
    with factory() as db:
        repo.import_billing(db, load_billing(default_site_path()), now_ms=T0, zone=JAKARTA)
        repo.import_billing(db, load_billing(billing, JAKARTA), now_ms=T0, zone=JAKARTA)
        _row, key = repo.create_key(db, name="manager", role="admin", now_ms=T0)
        db.commit()
    return engine, key


@pytest.fixture(scope="module")
def pair(influxdb: InfluxDB, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    site = load_site(default_site_path())
    tmp = tmp_path_factory.mktemp("parity")
    workdir = temp_workdir("sf-parity-")
    broker = Mosquitto(workdir).start()
    influx = InfluxStore(influxdb.url, f"test_parity_{uuid.uuid4().hex[:10]}")
    sqlite = SqliteStore(tmp / "timeseries.db")
    stores: dict[str, LineStore] = {"influx": influx, "sqlite": sqlite}
    collectors = []
    servers = []
    engines = []
    try:
        for name, store in stores.items():
            store.ensure_database()
            collector = Collector(
                MqttSettings.from_url(broker.url),
                store,
                client_id=f"parity-{name}-{uuid.uuid4().hex[:8]}",
                flush_interval_s=0.05,
                registry=Registry.from_site(site, backfill=True),
            )
            collectors.append(collector)
            collector.start()
            assert collector.wait_connected(10)
        world = World(site, load_scenario(SCENARIO, site), SEED, T0)
        messages: list[Message] = list(replay_messages(world, "edge-1", ReplayOptions()))
        time.sleep(0.5)  # both subscriptions live (a message before it would reach one collector only)
        want = publish_replay(broker.url, messages, "parity-replay")
        statuses = sum(1 for m in messages if m.status is not None)
        end = world.end_ms + 60_000
        sid = site.site.id
        for name, store in stores.items():
            _wait(
                lambda s=store: all(len(s.samples(sid, m, T0, end)) == n for m, n in want.items()),
                f"the replay's samples in {name}",
            )
            _wait(
                lambda s=store: sum(len(s.statuses(sid, m.id, T0 - 3_600_000, end)) for m in site.machines) >= statuses,
                f"the replay's statuses in {name}",
            )
        apis: dict[str, Api] = {}
        for name, store in stores.items():
            engine, key = _business_db(tmp / f"business-{name}.db")
            engines.append(engine)
            app = create_app(site, store, clock=lambda: datetime(2026, 12, 1, tzinfo=UTC), db=sessions(engine))
            port = free_port()
            servers.append(serve(app, "127.0.0.1", port))
            apis[name] = Api(f"http://127.0.0.1:{port}", key)
        yield Pair(site, stores, apis, T0, end)
    finally:
        for server, thread in servers:
            stop(server, thread)
        for collector in collectors:
            collector.stop(timeout_s=2)
        broker.stop()
        for store in stores.values():
            store.close()
        for engine in engines:
            engine.dispose()


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def _strip(doc: Any) -> Any:
    """doc without the keys that differ between two drafts of the same figures."""
    if isinstance(doc, dict):
        return {k: _strip(v) for k, v in doc.items() if k not in VOLATILE}
    if isinstance(doc, list):
        return [_strip(v) for v in doc]
    return doc


def test_both_stores_hold_the_same_raw_data(pair: Pair) -> None:
    sid = pair.site.site.id
    influx, sqlite = pair.stores["influx"], pair.stores["sqlite"]
    lo, hi = pair.start_ms - 3_600_000, pair.end_ms
    for m in pair.site.machines:
        samples = influx.samples(sid, m.id, lo, hi)
        assert sqlite.samples(sid, m.id, lo, hi) == samples
        assert sqlite.statuses(sid, m.id, lo, hi) == influx.statuses(sid, m.id, lo, hi)
    assert sum(len(influx.samples(sid, m.id, lo, hi)) for m in pair.site.machines) > 20  # 62 in this scenario
    assert sqlite.latest(sid) == influx.latest(sid)
    assert sqlite.latest_statuses(sid) == influx.latest_statuses(sid)
    assert sqlite.newest_ts(sid) == influx.newest_ts(sid)


@pytest.mark.parametrize("group_by", [None, "machine,tenant", "tenant", "job", "shift", "day", "machine,job"])
def test_oee_is_identical(pair: Pair, group_by: str | None) -> None:
    params = {"from": _iso(pair.start_ms), "to": _iso(pair.end_ms)}
    if group_by is not None:
        params["group_by"] = group_by
    influx = pair.apis["influx"].get("/v1/oee", **params)
    assert influx["rows"], "the scenario gives OEE rows"
    assert pair.apis["sqlite"].get("/v1/oee", **params) == influx


def test_usage_is_identical(pair: Pair) -> None:
    params = {"from": _iso(pair.start_ms), "to": _iso(pair.end_ms)}
    influx = pair.apis["influx"].get("/v1/usage", **params)
    assert influx["rows"], "the scenario has tenant sessions"
    assert pair.apis["sqlite"].get("/v1/usage", **params) == influx


def test_timelines_are_identical(pair: Pair) -> None:
    # From an hour before the data (UNKNOWN, then the first status) to past its end.
    params = {"from": _iso(pair.start_ms - 3_600_000), "to": _iso(pair.end_ms)}
    for m in pair.site.machines:
        influx = pair.apis["influx"].get(f"/v1/machines/{m.id}/timeline", **params)
        assert pair.apis["sqlite"].get(f"/v1/machines/{m.id}/timeline", **params) == influx, m.id


def test_invoice_drafts_are_identical(pair: Pair) -> None:
    drafts = {name: api.post("/v1/invoices/2026-11/draft") for name, api in pair.apis.items()}
    assert drafts["influx"]["drafts"], "November has invoices to draft"
    docs = {
        name: sorted(
            (_strip(pair.apis[name].get(f"/v1/invoices/{d['id']}")) for d in draft["drafts"]),
            key=lambda doc: str(doc.get("tenant")),
        )
        for name, draft in drafts.items()
    }
    assert docs["sqlite"] == docs["influx"]
    assert any(line.get("amount") for doc in docs["influx"] for line in doc.get("lines", [])), docs["influx"]
