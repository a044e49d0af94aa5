"""From a simulator scenario to a finalized invoice, on real components, checked against the ground truth.

Chain: the simulator's replay of the two-tenant scenario (the agent's own code on simulated reads) -> Mosquitto ->
collector -> InfluxDB; the business data in a migrated SQLite database (the site file's tenants and keys imported,
then tariffs and cost pools); the API served over HTTP drafts November 2026, refuses to finalize before the
watermark, finalizes with an override, and serves the invoice as JSON, CSV and PDF. `shopfloor invoices verify`
finds the ledger intact, and `shopfloor report invoice` recomputes the same lines offline from the same messages.

The scenario runs at Monday 2026-11-02 09:00 Asia/Jakarta with polls every P = 1 s; every session boundary and state
change is seen by the first poll at or after it, so each billable time is the truth's to within 2 P per edge pair.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
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
from shopfloor.config import SiteConfig, default_site_path
from shopfloor.influx import InfluxStore
from shopfloor.mqtt import MqttSettings
from simulators.replay import JsonlSink, Message, ReplayOptions, replay_messages
from simulators.scenario import load_scenario, scenarios_dir
from simulators.truth import GroundTruth
from simulators.world import World

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = scenarios_dir() / "e2e-two-tenants.yaml"
JAKARTA = ZoneInfo("Asia/Jakarta")
T0 = int(datetime(2026, 11, 2, 9, 0, tzinfo=JAKARTA).timestamp() * 1000)
SEED = 3
P = 1000  # ms: the example site's poll interval
RATE = 120_000  # rupiah per billable hour, every machine
ENERGY = 1_500  # rupiah per kWh
POOL = 72_000_000  # cnc-01's November cost pool (depreciation + maintenance)
NOVEMBER_MS = 30 * 24 * 3_600_000  # the example site plans three shifts every day: capacity is the whole month
BILLING = f"""
facility_name: Sentra Berbagi Pabrik Bekasi
policy: capacity
watermark_grace_min: 30
tariffs:
  - {{code: std, version: 1, machine_class: cnc-mill-v1, valid_from: 2026-01-01, rate_per_hour: {RATE},
     energy_per_kwh: {ENERGY}, tax_rate_bp: 1100}}
  - {{code: std-laser, version: 1, machine_class: fiber-laser-v1, valid_from: 2026-01-01, rate_per_hour: {RATE},
     energy_per_kwh: {ENERGY}, tax_rate_bp: 1100}}
  - {{code: std-press, version: 1, machine_class: injection-press-v1, valid_from: 2026-01-01, rate_per_hour: {RATE},
     tax_rate_bp: 1100}}
  - {{code: std-brake, version: 1, machine_class: press-brake-v1, valid_from: 2026-01-01, rate_per_hour: {RATE},
     tax_rate_bp: 1100}}
cost_pools:
  - {{machine: cnc-01, period: 2026-11, category: depreciation, amount: 60000000}}
  - {{machine: cnc-01, period: 2026-11, category: maintenance, amount: 12000000}}
"""


@dataclass
class Chain:
    base: str
    keys: dict[str, str]
    truth: GroundTruth
    site: SiteConfig
    db_url: str
    samples: Path

    def call(self, method: str, path: str, who: str = "admin", **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.keys[who]}"}
        return httpx.request(method, f"{self.base}{path}", headers=headers, timeout=60, **kwargs)


def half_up_div(a: int, b: int) -> int:
    """a / b rounded half up, for a, b >= 0: the rule the invoice states."""
    return (2 * a + b) // (2 * b)


def billable_truth_ms(truth: GroundTruth, machine: str, start_ms: int, end_ms: int) -> int:
    """Truth's billable time of a session: RUNNING, SETUP and IDLE (the example loss map calls every stop a
    breakdown, and a breakdown is never billed)."""
    total = 0
    for iv in truth.machines[machine].intervals:
        if iv.state.value in ("RUNNING", "SETUP", "IDLE"):
            total += max(0, min(iv.end_ms, end_ms) - max(iv.start_ms, start_ms))
    return total


@pytest.fixture(scope="module")
def chain(influxdb: InfluxDB, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    from shopfloor.config import load_site

    site = load_site(default_site_path())
    workdir = temp_workdir("sf-invoice-")
    tmp = tmp_path_factory.mktemp("invoice")
    broker = Mosquitto(workdir).start()
    store = InfluxStore(influxdb.url, f"test_invoice_{uuid.uuid4().hex[:10]}")
    store.ensure_database()
    collector = Collector(
        MqttSettings.from_url(broker.url),
        store,
        client_id=f"invoice-collector-{uuid.uuid4().hex[:8]}",
        flush_interval_s=0.05,
        dead_letter=workdir / "dead.jsonl",
        registry=Registry.from_site(site, backfill=True),
    )
    # The business DB: migrated, the site file's tenants imported, then billing.yaml, and an admin key.
    db_url = f"sqlite:///{tmp / 'business.db'}"
    migrate.upgrade(db_url)
    engine = open_engine(db_url)
    factory = sessions(engine)
    billing = tmp / "billing.yaml"
    billing.write_text(BILLING)
    with factory() as db:
        repo.import_billing(db, load_billing(default_site_path()), now_ms=T0, zone=JAKARTA)
        repo.import_billing(db, load_billing(billing, JAKARTA), now_ms=T0, zone=JAKARTA)
        db.commit()
    keys: dict[str, str] = {}
    with factory() as db:
        _row, keys["acme"] = repo.create_key(db, name="acme-portal", role="tenant", tenant="acme", now_ms=T0)
        _row, keys["operator"] = repo.create_key(db, name="floor", role="operator", now_ms=T0)
        _row, keys["admin"] = repo.create_key(db, name="manager", role="admin", now_ms=T0)
        db.commit()
    server = thread = None
    try:
        collector.start()
        assert collector.wait_connected(10)
        world = World(site, load_scenario(SCENARIO, site), SEED, T0)
        messages: list[Message] = list(replay_messages(world, "edge-1", ReplayOptions()))
        samples = tmp / "samples.jsonl"
        with samples.open("w") as out:
            write = JsonlSink(out)
            for message in messages:
                write(message)
        want = publish_replay(broker.url, messages, "invoice-replay")
        end = world.end_ms + 60_000
        _wait(lambda: all(len(store.samples(site.site.id, m, T0, end)) == n for m, n in want.items()))
        app = create_app(
            site, InfluxStore(store.url, store.database), clock=lambda: datetime(2026, 12, 1, tzinfo=UTC), db=factory
        )
        port = free_port()
        server, thread = serve(app, "127.0.0.1", port)
        yield Chain(f"http://127.0.0.1:{port}", keys, world.ground_truth(), site, db_url, samples)
    finally:
        if server is not None and thread is not None:
            stop(server, thread)
        collector.stop()
        broker.stop()
        store.close()
        engine.dispose()
        shutil.rmtree(workdir, ignore_errors=True)


def _wait(check: Any, timeout_s: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out waiting for the replay to land"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def drafted(chain: Chain) -> dict[str, Any]:
    resp = chain.call("POST", "/v1/invoices/2026-11/draft")
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


@pytest.fixture(scope="module")
def finalized(chain: Chain, drafted: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every draft finalized (with an override: the data ends on 2 November), by tenant."""
    out = {}
    for summary in drafted["drafts"]:
        # Before the watermark, a plain finalize is refused and names the machines.
        refused = chain.call("POST", f"/v1/invoices/{summary['id']}/finalize", json={})
        assert refused.status_code == 409, refused.text
        assert "cnc-01" in refused.json()["detail"]
        done = chain.call(
            "POST", f"/v1/invoices/{summary['id']}/finalize", json={"override": "e2e: the replay ends on 2 Nov"}
        )
        assert done.status_code == 200, done.text
        doc = chain.call("GET", f"/v1/invoices/{summary['id']}")
        assert doc.status_code == 200, doc.text
        out[summary["tenant"]] = doc.json()
    return out


def test_drafts_cover_every_tenant_that_used_a_machine(chain: Chain, drafted: dict[str, Any]) -> None:
    tenants = {s.tenant for s in chain.truth.sessions}
    assert tenants == {"acme", "batik", "cipta"}
    assert {d["tenant"] for d in drafted["drafts"]} == tenants
    assert all(d["status"] == "draft" and d["number"] is None for d in drafted["drafts"])
    # Every machine's data ends on 2 November: none reaches the period end plus 30 minutes.
    assert {lag["machine"] for lag in drafted["lagging"]} == {m.id for m in chain.site.machines}


def test_finalized_invoices_are_numbered_without_gaps_and_record_the_override(
    finalized: dict[str, dict[str, Any]],
) -> None:
    numbers = sorted(doc["number"] for doc in finalized.values())
    assert numbers == [f"bdg-2026-{n:05d}" for n in (1, 2, 3)]
    for doc in finalized.values():
        assert doc["status"] == "finalized" and len(doc["hash"]) == 64
        assert doc["override"] == "e2e: the replay ends on 2 Nov"


def test_each_session_bills_the_truths_hours_and_parts(chain: Chain, finalized: dict[str, dict[str, Any]]) -> None:
    truth_sessions = chain.truth.sessions
    assert len(truth_sessions) == 3
    for want in truth_sessions:
        doc = finalized[want.tenant]
        [record] = [s for s in doc["sessions"] if s["machine"] == want.machine and s["badge"] == want.badge]
        # Session edges: each seen by the first poll at or after it.
        assert abs(record["start_ms"] - want.start_ms) <= P and abs(record["end_ms"] - want.end_ms) <= P
        assert (record["good"], record["reject"]) == (want.good, want.reject)
        truth_ms = billable_truth_ms(chain.truth, want.machine, want.start_ms, want.end_ms)
        # Two edges of the session, and for cipta the breakdown's two edges, each within one poll.
        edges = 4 if want.tenant == "cipta" else 2
        assert abs(record["billable_ms"] - truth_ms) <= edges * P, (record, truth_ms)
        assert record["time_ms"].get("unknown", 0) == 0
        if want.tenant == "cipta":
            # The 4 s breakdown at 25 s is in the record, and not billed.
            assert abs(record["time_ms"]["breakdown"] - 4000) <= 2 * P
        # Machine time: billable minutes rounded up (1-minute increments), at RATE per hour, half up.
        [line] = [li for li in doc["lines"] if li["kind"] == "machine_time" and li["record"] == record["id"]]
        minutes = -(-record["billable_ms"] // 60_000)
        assert line["quantity"] == minutes == record["billable_min"]
        assert line["amount"] == half_up_div(RATE * minutes, 60)
        assert line["tax"] == half_up_div(line["amount"] * 1100, 10_000)
        # Energy passes through per Wh at ENERGY per kWh, from the meter's readings in the session.
        energy = [li for li in doc["lines"] if li["kind"] == "energy" and li["record"] == record["id"]]
        assert record["energy_wh"] == pytest.approx(want.kwh * 1000, abs=50 + 20 * want.kwh)
        if record["energy_wh"]:
            assert energy[0]["quantity"] == record["energy_wh"]
            assert energy[0]["amount"] == half_up_div(ENERGY * record["energy_wh"], 1000)


def test_capacity_cost_is_the_share_of_cnc01s_pool_by_billable_time(
    chain: Chain, finalized: dict[str, dict[str, Any]]
) -> None:
    for tenant in ("acme", "batik"):
        doc = finalized[tenant]
        [line] = [li for li in doc["lines"] if li["kind"] == "capacity" and li["machine"] == "cnc-01"]
        [record] = [s for s in doc["sessions"] if s["machine"] == "cnc-01"]
        exact = POOL * record["billable_ms"] / NOVEMBER_MS
        assert abs(line["amount"] - exact) <= 1  # largest remainder: within one rupiah of the exact share
        assert line["unit_price"] == half_up_div(POOL, NOVEMBER_MS // 3_600_000)  # the printed basis: 100,000 / h
        [pool] = [p for p in doc["pools"] if p["machine"] == "cnc-01"]
        assert (pool["pool"], pool["capacity_ms"]) == (POOL, NOVEMBER_MS)
    # cipta used no machine with a pool: no capacity line.
    assert not [li for li in finalized["cipta"]["lines"] if li["kind"] == "capacity"]


def test_totals_are_the_sums_of_the_lines(finalized: dict[str, dict[str, Any]]) -> None:
    for doc in finalized.values():
        subtotal = sum(li["amount"] for li in doc["lines"])
        tax = sum(li["tax"] for li in doc["lines"])
        assert doc["totals"] == {"subtotal": subtotal, "tax": tax, "total": subtotal + tax}
        assert subtotal > 0


def test_a_tenant_sees_its_own_invoice_only(chain: Chain, finalized: dict[str, dict[str, Any]]) -> None:
    listed = chain.call("GET", "/v1/invoices", "acme").json()["invoices"]
    assert {i["tenant"] for i in listed} == {"acme"}
    mine = chain.call("GET", f"/v1/invoices/{listed[0]['id']}", "acme")
    assert mine.status_code == 200
    text = mine.text
    for other in ("batik", "cipta", "2001", "3001"):
        assert other not in text, other
    others = chain.call("GET", "/v1/invoices", "admin").json()["invoices"]
    foreign = next(i for i in others if i["tenant"] != "acme")["id"]
    missing = max(i["id"] for i in others) + 100
    assert chain.call("GET", f"/v1/invoices/{foreign}", "acme").json() == {"detail": f"invoice {foreign} not found"}
    assert chain.call("GET", f"/v1/invoices/{missing}", "acme").json() == {"detail": f"invoice {missing} not found"}
    assert chain.call("GET", f"/v1/invoices/{foreign}.pdf", "acme").status_code == 404
    # Operators see usage, never money.
    assert chain.call("GET", "/v1/invoices", "operator").status_code == 403


def test_the_pdf_carries_the_json_figures(chain: Chain, finalized: dict[str, dict[str, Any]]) -> None:
    from api.core.i18n import rupiah

    doc = finalized["acme"]
    invoice_id = next(i["id"] for i in chain.call("GET", "/v1/invoices").json()["invoices"] if i["tenant"] == "acme")
    for lang in ("en", "id"):
        pdf = chain.call("GET", f"/v1/invoices/{invoice_id}.pdf", params={"lang": lang})
        assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF")
        text = subprocess.run(
            ["pdftotext", "-layout", "-", "-"], input=pdf.content, capture_output=True, check=True, timeout=60
        ).stdout.decode()
        squashed = " ".join(text.split())
        assert doc["number"] in squashed
        assert rupiah(doc["totals"]["total"], lang) in squashed
        assert rupiah(doc["totals"]["tax"], lang) in squashed
        for line in doc["lines"]:
            assert rupiah(line["amount"], lang) in squashed
        hash_text = "".join(text.split())
        assert doc["hash"] in hash_text


def test_csv_and_json_of_a_finalized_invoice_are_reproducible(chain: Chain, finalized: dict[str, Any]) -> None:
    invoice_id = next(i["id"] for i in chain.call("GET", "/v1/invoices").json()["invoices"] if i["tenant"] == "batik")
    first = chain.call("GET", f"/v1/invoices/{invoice_id}.csv").content
    again = chain.call("GET", f"/v1/invoices/{invoice_id}.csv").content
    assert first == again and b"machine_time" in first
    done = subprocess.run(
        [sys.executable, "-m", "shopfloor.cli", "invoices", "verify", "--db-url", chain.db_url],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_offline_report_gives_the_apis_lines(chain: Chain, finalized: dict[str, dict[str, Any]]) -> None:
    billing = chain.samples.parent / "billing-all.yaml"
    # The offline command reads one billing.yaml: the site file's tenants plus the tariffs and pools.
    site_text = default_site_path().read_text()
    import yaml

    tenants = yaml.safe_load(site_text)["tenants"]
    billing.write_text(BILLING + "tenants: " + json.dumps(tenants) + "\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "shopfloor.cli",
            "report",
            "invoice",
            "--samples",
            str(chain.samples),
            "--billing",
            str(billing),
            "--period",
            "2026-11",
            "--format",
            "json",
        ],
        capture_output=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr.decode()
    offline = json.loads(done.stdout)
    online = [li for doc in finalized.values() for li in doc["lines"]]
    key = lambda li: (li["tenant"], li["machine"], li["start_ms"], li["kind"])  # noqa: E731
    assert sorted(offline["lines"], key=key) == sorted(online, key=key)
    totals = {t["tenant"]: t for t in offline["totals"]["tenants"]}
    for tenant, doc in finalized.items():
        assert totals[tenant]["total"] == doc["totals"]["total"]
    # Capacity of cnc-01 nobody used is the facility's: the pool less what the two tenants were charged.
    charged = sum(li["amount"] for li in online if li["kind"] == "capacity")
    assert offline["totals"]["facility"]["unallocated"] == POOL - charged
