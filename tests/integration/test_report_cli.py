"""`shopfloor report`: offline figures from a file of wire messages, equal to the API's over a real InfluxDB.

The packaged faults scenario is replayed to a JSON lines file (as `shopfloor simulate --replay --out` writes it); the
report runs as a real command on that file, and the same messages go into a real InfluxDB that the API reads. Both
must give the very same rows. Then the report's own input paths: malformed, oversize and hostile lines are refused
with their line numbers and counted, bad options are one-line errors with exit code 2.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from launcher.wirefile import read_wire_file
from shopfloor.config import ApiKey, Role, SiteConfig, default_site_path, load_site
from shopfloor.influx import InfluxStore
from shopfloor.keys import hash_key

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FROM = "2026-11-02T08:00:00+07:00"
TO = "2026-11-02T08:04:00+07:00"
KEY = "sfk_report_admin"


def shopfloor(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shopfloor.cli", *map(str, args)], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "faults.jsonl"
    done = shopfloor(
        "simulate", "--replay", ROOT / "simulators/scenarios/faults.yaml", "--from", FROM, "--to", TO, "--out", out
    )
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def site() -> SiteConfig:
    site = load_site(default_site_path())
    return site.model_copy(update={"api_keys": [ApiKey(name="admin", sha256=hash_key(KEY), role=Role.ADMIN)]})


def report(samples: Path, what: str, *extra: str) -> list[dict[str, Any]]:
    done = shopfloor("report", what, "--samples", samples, "--from", FROM, "--to", TO, "--format", "json", *extra)
    assert done.returncode == 0, done.stderr
    assert " 0 refused" in done.stderr, done.stderr
    rows: list[dict[str, Any]] = json.loads(done.stdout)
    return rows


def api(site: SiteConfig, store: InfluxStore, path: str, **params: str) -> dict[str, Any]:
    client = TestClient(create_app(site, store, clock=lambda: datetime(2026, 11, 3, tzinfo=UTC)))
    resp = client.get(path, params={"from": FROM, "to": TO, **params}, headers={"Authorization": f"Bearer {KEY}"})
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


@pytest.mark.parametrize("group_by", ["machine", "tenant", "machine,tenant,job", "shift,day", "day"])
def test_report_oee_equals_the_api_on_the_same_data(
    samples: Path, site: SiteConfig, influx_store: InfluxStore, group_by: str
) -> None:
    influx_store.write(read_wire_file(samples, site, now_ms=1_900_000_000_000).points)
    offline = report(samples, "oee", "--group-by", group_by)
    online = api(site, influx_store, "/v1/oee", group_by=group_by)["rows"]
    assert offline == online
    # Not empty and not trivial: every machine produced parts in the faults scenario.
    assert offline and sum(r["produced"] for r in offline) > 100


def test_report_usage_equals_the_api_on_the_same_data(
    samples: Path, site: SiteConfig, influx_store: InfluxStore
) -> None:
    influx_store.write(read_wire_file(samples, site, now_ms=1_900_000_000_000).points)
    offline = report(samples, "usage")
    online = api(site, influx_store, "/v1/usage")["rows"]
    assert offline == online
    assert {r["tenant"] for r in offline} == {"acme", "batik", "cipta"}


def test_machine_and_tenant_filters(samples: Path) -> None:
    rows = report(samples, "oee", "--machine", "cnc-01")
    assert [r["machine"] for r in rows] == ["cnc-01"]
    rows = report(samples, "oee", "--tenant", "acme", "--group-by", "tenant,machine")
    assert {(r["tenant"], r["machine"]) for r in rows} == {("acme", "cnc-01"), ("acme", "cnc-02")}
    assert {r["basis"] for r in rows} == {"session"}


def test_csv_and_table_formats(samples: Path) -> None:
    done = shopfloor("report", "oee", "--samples", samples, "--from", FROM, "--to", TO, "--format", "csv")
    assert done.returncode == 0, done.stderr
    header, *lines = done.stdout.splitlines()
    assert header.startswith("machine,basis,pbt_s,apt_s") and "losses.setup" in header
    assert len(lines) == 5
    done = shopfloor("report", "usage", "--samples", samples, "--from", FROM, "--to", TO)
    assert done.returncode == 0 and done.stdout.splitlines()[0].split()[:3] == ["tenant", "unowned", "machine"]


def test_hostile_lines_are_refused_with_their_line_numbers(samples: Path, tmp_path: Path) -> None:
    good = samples.read_text().splitlines()
    telemetry = json.loads(next(line for line in good if "/telemetry" in line))
    forged = json.loads(json.dumps(telemetry))
    forged["payload"]["samples"][0]["values"]["good_count"] = "a lot"  # a string for a counter
    foreign = json.loads(json.dumps(telemetry))
    foreign["topic"] = foreign["topic"].replace("/cnc", "/xx")  # a machine the site does not have
    lines = [
        *good,
        "not json at all",
        json.dumps([1, 2, 3]),
        json.dumps({"topic": "shopfloor/v1/bdg/cnc-01/telemetry"}),  # no payload
        json.dumps({"topic": "elsewhere/x", "retain": False, "payload": {}}),
        json.dumps(forged),
        json.dumps(foreign),
        json.dumps({"topic": "shopfloor/v1/bdg/agents/edge-1/commits", "retain": False, "payload": {"v": 1}}),
        "{" + " " * (5 * 1024 * 1024) + "}",  # oversize
        "",
    ]
    path = tmp_path / "hostile.jsonl"
    path.write_text("\n".join(lines) + "\n")
    done = shopfloor("report", "oee", "--samples", path, "--from", FROM, "--to", TO, "--format", "json")
    assert done.returncode == 0, done.stderr
    n = len(good)
    assert f"{len(good) + 8} messages, 8 refused" in done.stderr, done.stderr
    for number, kind in [
        (n + 1, "invalid-json"),
        (n + 2, "invalid-line"),
        (n + 3, "invalid-line"),
        (n + 4, "invalid-topic"),
        (n + 5, "wrong-type"),
        (n + 6, "unknown-machine"),
        (n + 7, "unexpected-topic"),
        (n + 8, "oversize"),
    ]:
        assert f"{path}:{number}: {kind}" in done.stderr, (kind, done.stderr)
    # What was refused changed nothing: the figures equal the clean file's.
    assert json.loads(done.stdout) == report(samples, "oee")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--from", "2026-11-02T08:00:00", "--to", TO], "--from: expected ISO 8601 with an offset"),
        (["--from", TO, "--to", FROM], "--from must be before --to"),
        (["--from", FROM, "--to", "2150-01-01T00:00:00Z"], "between 2000-01-01 and 2100-01-01"),
        (["--from", FROM, "--to", TO, "--machine", "nope"], "--machine 'nope' is not a machine"),
        (["--from", FROM, "--to", TO, "--tenant", "nope"], "--tenant 'nope' is not a tenant"),
        (["--from", FROM, "--to", TO, "--group-by", "machine,machine"], "--group-by"),
        (["--from", FROM, "--to", TO, "--group-by", "badge"], "--group-by"),
    ],
)
def test_bad_options_are_one_line_errors(samples: Path, args: list[str], says: str) -> None:
    done = shopfloor("report", "oee", "--samples", samples, *args)
    assert done.returncode == 2
    assert says in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    done = shopfloor("report", "usage", "--samples", tmp_path / "none.jsonl", "--from", FROM, "--to", TO)
    assert done.returncode == 2
    assert "cannot read" in done.stderr and "Traceback" not in done.stderr
