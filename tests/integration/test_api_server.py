"""Serving the API for real: the background-thread server and the `shopfloor api` command."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from api.app import create_app
from api.server import ServerError, serve, stop
from launcher.services import InfluxDB, free_port
from shopfloor.cli import build_parser
from shopfloor.config import ApiKey, Role, SiteConfig, default_site_path
from shopfloor.influx import InfluxStore, Point
from shopfloor.keys import hash_key

pytestmark = pytest.mark.integration
KEY = "sfk_server_test_operator"
TENANT_KEY = "sfk_server_test_acme"


def test_serve_in_a_thread_and_stop(example_site: SiteConfig, influx_store: InfluxStore) -> None:
    keys = [
        ApiKey(name="op", sha256=hash_key(KEY), role=Role.OPERATOR),
        ApiKey(name="acme", sha256=hash_key(TENANT_KEY), role=Role.TENANT, tenant="acme"),
    ]
    site = example_site.model_copy(update={"api_keys": keys})
    # batik's badge at cnc-01: the served API masks it for acme's key just as the in-process one does.
    fields = {"state": "RUNNING", "badge": 2001, "job": "J-BATIK", "good_count": 917, "power_kw": 2.5}
    influx_store.write([Point("telemetry", {"site": site.site.id, "machine": "cnc-01"}, fields, 1_700_000_000_000)])
    port = free_port()
    server, thread = serve(create_app(site, influx_store), "127.0.0.1", port)
    try:
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/healthz", timeout=5).json() == {"status": "ok", "store": True}
        resp = httpx.get(f"{base}/v1/machines", headers={"Authorization": f"Bearer {KEY}"}, timeout=5)
        assert resp.status_code == 200
        assert len(resp.json()["machines"]) == len(site.machines)
        assert resp.json()["machines"][0]["counters"]["good_count"] == 917
        resp = httpx.get(f"{base}/v1/machines", headers={"Authorization": f"Bearer {TENANT_KEY}"}, timeout=5)
        cnc = resp.json()["machines"][0]
        assert (cnc["id"], cnc["occupied"], cnc["tenant"], cnc["badge"], cnc["job"], cnc["power_kw"]) == (
            "cnc-01",
            True,
            None,
            None,
            None,
            None,
        )
        # Searched in the machines only: the response's "at" (now, to the microsecond) could hold any digits.
        shown = json.dumps(resp.json()["machines"])
        assert "917" not in shown and "batik" not in shown.lower() and "2001" not in shown
        assert httpx.get(f"{base}/v1/machines", timeout=5).status_code == 401
    finally:
        stop(server, thread)
    assert not thread.is_alive()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)


def test_serve_on_a_taken_port_fails_clearly(example_site: SiteConfig, influx_store: InfluxStore) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServerError, match=f"127.0.0.1:{port} did not start"):
            serve(create_app(example_site, influx_store), "127.0.0.1", port, log_level="critical")


def test_cli_parses_the_api_command(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        ["api", "--site", "examples/site.yaml", "--influx-url", "http://h:1", "--influx-db", "d", "--port", "9"]
    )
    assert (args.command, args.site, args.influx_url, args.influx_db, args.host, args.port) == (
        "api",
        "examples/site.yaml",
        "http://h:1",
        "d",
        "127.0.0.1",
        9,
    )
    assert callable(args.func)


def test_shopfloor_api_command_serves(influxdb: InfluxDB, influx_store: InfluxStore, tmp_path: Path) -> None:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "shopfloor.cli",
        "api",
        "--influx-url",
        influxdb.url,
        "--influx-db",
        influx_store.database,
        "--port",
        str(port),
        "--log-level",
        "WARNING",
    ]
    # The business DB's default is a SQLite file in the data dir, which the command creates if missing; it must be
    # migrated before the API serves from it.
    env = {**os.environ, "SHOPFLOOR_DATA_DIR": str(tmp_path / "data")}
    refused = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert refused.returncode == 2
    assert "is not migrated" in refused.stderr and "shopfloor db upgrade" in refused.stderr, refused.stderr

    def shopfloor(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "shopfloor.cli", *args], capture_output=True, text=True, env=env, timeout=60
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    shopfloor("db", "upgrade")
    shopfloor("db", "import", str(default_site_path()))
    key = shopfloor("db", "key", "create", "--name", "ops", "--role", "operator").strip().splitlines()[-1]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                resp = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.HTTPError:
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                assert time.monotonic() < deadline, "shopfloor api did not start listening"
                time.sleep(0.1)
        assert resp.json() == {"status": "ok", "store": True}
        assert httpx.get(f"http://127.0.0.1:{port}/v1/usage", timeout=5).status_code == 401
        auth = {"Authorization": f"Bearer {key}"}
        assert httpx.get(f"http://127.0.0.1:{port}/v1/machines", headers=auth, timeout=10).status_code == 200
        assert (tmp_path / "data" / "shopfloor.db").is_file()
    finally:
        proc.terminate()
        proc.wait(10)


def test_shopfloor_api_with_a_bad_site_file_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "site.yaml"
    bad.write_text("site: {id: BAD}\n")
    result = subprocess.run(
        [sys.executable, "-m", "shopfloor.cli", "api", "--site", str(bad), "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "configuration error" in result.stderr
