"""How long the API takes to answer usage and timeline queries over windows of raw telemetry.

Replays the packaged demo scenario for --hours of the example site (one sample per machine per --poll-interval)
straight into a private InfluxDB, then times GET /v1/usage for growing windows and one machine's timeline, next
to the time InfluxDB alone takes to return the same rows (baseline measured in the same run). Prints figures,
asserts nothing.

    .venv/bin/python bench/api_query.py [--hours 6] [--poll-interval 1]
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import time

import httpx
from fastapi.testclient import TestClient

from api.app import create_app
from collector.convert import batch_to_points
from launcher.services import InfluxDB, temp_workdir
from shopfloor.config import ApiKey, Role, default_site_path, load_site
from shopfloor.influx import InfluxStore, to_line
from shopfloor.keys import hash_key
from simulators.replay import ReplayOptions, replay_messages
from simulators.scenario import load_scenario, scenarios_dir
from simulators.world import World

START_MS = 1_793_552_400_000  # 2026-11-02 00:00 Asia/Jakarta


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat()


def main() -> None:
    """Load data, time the queries, print a table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hours", type=float, default=6.0, help="hours of data to load and query (default 6)")
    parser.add_argument("--poll-interval", type=float, default=1.0, help="seconds between samples (default 1)")
    args = parser.parse_args()

    site = load_site(default_site_path())
    site = site.model_copy(update={"api_keys": [ApiKey(name="bench", sha256=hash_key("bench"), role=Role.ADMIN)]})
    scenario = load_scenario(scenarios_dir() / "demo.yaml", site)
    end_ms = START_MS + int(args.hours * 3_600_000)
    workdir = temp_workdir("sf-bench-api-")
    influx = InfluxDB(workdir).start()
    try:
        store = InfluxStore(influx.url, "bench")
        store.ensure_database()
        world = World(site, scenario, 1, START_MS, end_ms)
        t0 = time.perf_counter()
        lines: list[str] = []
        points = 0
        for msg in replay_messages(world, options=ReplayOptions(poll_ms=int(args.poll_interval * 1000))):
            if msg.batch is not None:
                lines += [to_line(p) for p in batch_to_points(msg.batch)]
            if len(lines) >= 5000:
                store.write_lines(lines)
                points += len(lines)
                lines = []
        store.write_lines(lines)
        points += len(lines)
        took = time.perf_counter() - t0
        print(f"loaded {points} points ({len(site.machines)} machines, {args.hours} h) in {took:.1f} s")

        client = TestClient(create_app(site, store))
        headers = {"Authorization": "Bearer bench"}
        print(f"\n{'query':<34} {'rows':>9} {'InfluxDB only':>14} {'API':>9} {'API/InfluxDB':>13}")
        hours = sorted({min(h, args.hours) for h in (1.0, args.hours / 4, args.hours)})
        for h in hours:
            window_end = START_MS + int(h * 3_600_000)
            t0 = time.perf_counter()
            raw_rows = 0
            for machine in site.machines:
                resp = httpx.get(
                    f"{influx.url}/query",
                    params={
                        "db": "bench",
                        "epoch": "ms",
                        "q": f"SELECT * FROM telemetry WHERE machine = '{machine.id}' "
                        f"AND time >= {START_MS}ms AND time < {window_end}ms",
                    },
                    timeout=600,
                )
                for series in resp.json()["results"][0].get("series", []):
                    raw_rows += len(series["values"])
            raw_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            resp = client.get("/v1/usage", params={"from": _iso(START_MS), "to": _iso(window_end)}, headers=headers)
            api_s = time.perf_counter() - t0
            label = f"/v1/usage {h:g} h, all machines ({resp.status_code})"
            print(f"{label:<34} {raw_rows:>9} {raw_s:>12.2f} s {api_s:>7.2f} s {api_s / raw_s:>12.1f}x")
        t0 = time.perf_counter()
        resp = client.get(
            "/v1/machines/cnc-01/timeline", params={"from": _iso(START_MS), "to": _iso(end_ms)}, headers=headers
        )
        label = f"timeline cnc-01 {args.hours:g} h ({resp.status_code})"
        print(f"{label:<34} {'':>9} {'':>14} {time.perf_counter() - t0:>7.2f} s")
        print("\nThe API classifies every raw sample in Python; figures grow linearly with samples in the window.")
    finally:
        influx.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
