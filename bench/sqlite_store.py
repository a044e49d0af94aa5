"""The embedded SQLite time-series store against InfluxDB, in one run: write rate, read times, file size.

Data: --machines machines x --days days of samples every --interval s (default 1, the worst case: a poll every
second, every sample written), shaped like the agent's report by exception: power_kw in every sample, good_count
every 30 s, energy_kwh every minute, state, badge and job every 10 minutes (about 1.6 fields a sample at 1 s).
Lines are rendered as the collector renders them (shopfloor.influx.render_line) and written in batches of --batch
lines through write_lines, the collector's call, into a fresh SqliteStore file and a fresh database of a local
InfluxDB 1.x (launcher.services.InfluxDB) started by this script.

Prints, for each store and as the ratio SQLite / InfluxDB:
- write rate (lines/s over the whole load, one writer as one collector is);
- read time of one machine-day (samples() of a middle day, each machine, median and worst);
- read time of the whole window of --month-machines machines (samples() over --days days);
- the newest value of each baseline signal before a time (last_before, the API's baseline), median;
- SQLite file size per machine-month (file + WAL after a checkpoint, scaled to 30 days).
About 8 minutes on a 2-core VM at the defaults (13 M lines, written to both stores).
Asserts nothing.

    .venv/bin/python bench/sqlite_store.py [--machines 5] [--days 30] [--interval 1] [--month-machines 2] \
        [--batch 5000]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from launcher.services import InfluxDB, temp_workdir  # noqa: E402
from shopfloor.influx import InfluxStore, line_prefix, render_line  # noqa: E402
from shopfloor.sqlitestore import SqliteStore  # noqa: E402
from shopfloor.store import TELEMETRY, LineStore  # noqa: E402

SITE = "bdg"
T0 = 1_793_466_000_000  # 2026-11-01T00:00:00+07:00
DAY_MS = 86_400_000
BASELINE = ["state", "badge", "job", "good_count", "energy_kwh"]


def machine_ids(n: int) -> list[str]:
    return [f"m-{i:03d}" for i in range(n)]


def lines_of(machine: str, days: int, batch: int, interval_s: int = 1) -> Iterator[list[str]]:
    """The machine's lines, one sample every interval_s, batch by batch, oldest first."""
    prefix = line_prefix(TELEMETRY, {"site": SITE, "machine": machine})
    out: list[str] = []
    good, energy = 0, 0.0
    for k in range(0, days * 86_400, interval_s):  # k: seconds since T0
        fields: dict[str, str | int | float | bool] = {"power_kw": 3.0 + (k * 7919 % 1000) / 1000}
        if k % 30 < interval_s:
            good += 1
            fields["good_count"] = good
        if k % 60 < interval_s:
            energy += 0.05
            fields["energy_kwh"] = round(energy, 3)
        if k % 600 < interval_s:
            fields["state"] = "RUNNING" if k % 1800 >= interval_s else "IDLE"
            fields["badge"] = 1001 + (k // 28_800) % 3
            fields["job"] = f"J-{k // 7200}"
        out.append(render_line(prefix, fields, T0 + k * 1000))
        if len(out) >= batch:
            yield out
            out = []
    if out:
        yield out


def timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def load(store: LineStore, machines: list[str], days: int, batch: int, interval_s: int) -> tuple[int, float]:
    """Write every machine's lines; return (lines, seconds spent in write_lines)."""
    total, spent = 0, 0.0
    for machine in machines:
        for lines in lines_of(machine, days, batch, interval_s):
            start = time.perf_counter()
            rejected = store.write_lines(lines)
            spent += time.perf_counter() - start
            if rejected:
                raise SystemExit(f"{store.url}: refused {len(rejected)} line(s), first: {rejected[0].reason}")
            total += len(lines)
    return total, spent


def measure(store: LineStore, args: argparse.Namespace) -> dict[str, float]:
    machines = machine_ids(args.machines)
    n, spent = load(store, machines, args.days, args.batch, args.interval)
    figures = {"lines": float(n), "write_rate": n / spent}
    mid = T0 + (args.days // 2) * DAY_MS
    day = [timed(lambda m=m: store.samples(SITE, m, mid, mid + DAY_MS)) for m in machines]
    figures["day_median_s"] = statistics.median(day)
    figures["day_worst_s"] = max(day)
    figures["day_rows"] = float(len(store.samples(SITE, machines[0], mid, mid + DAY_MS)))
    end = T0 + args.days * DAY_MS
    whole = [timed(lambda m=m: store.samples(SITE, m, T0, end)) for m in machines[: args.month_machines]]
    figures["window_median_s"] = statistics.median(whole)
    figures["window_worst_s"] = max(whole)
    baseline = [timed(lambda m=m: store.last_before(SITE, m, mid + 12_345, BASELINE)) for m in machines]
    figures["baseline_median_s"] = statistics.median(baseline)
    return figures


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--machines", type=int, default=5)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--month-machines", type=int, default=2, help="machines whose whole window is read")
    p.add_argument("--batch", type=int, default=5000, help="lines per write_lines call (the collector's default)")
    p.add_argument("--interval", type=int, default=1, help="seconds between samples (default 1: the worst case)")
    args = p.parse_args()
    args.month_machines = max(1, min(args.month_machines, args.machines))
    tmp = Path(tempfile.mkdtemp(prefix="sf-bench-sqlite-"))
    workdir = temp_workdir("sf-bench-influx-")
    influxd = InfluxDB(workdir).start()
    results: dict[str, dict[str, float]] = {}
    try:
        path = tmp / "timeseries.db"
        with SqliteStore(path) as sqlite:
            sqlite.ensure_database()
            print(f"SQLite {path}: {args.machines} x {args.days} days of {args.interval} s samples ...", flush=True)
            results["sqlite"] = measure(sqlite, args)
        import sqlite3  # only to fold the WAL into the file before measuring its size

        conn = sqlite3.connect(path)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        size = sum(f.stat().st_size for f in tmp.iterdir() if f.name.startswith("timeseries.db"))
        results["sqlite"]["mb_per_machine_month"] = size / 1e6 / args.machines * 30 / args.days
        with InfluxStore(influxd.url, f"bench_{uuid.uuid4().hex[:8]}") as influx:
            influx.ensure_database()
            print(f"InfluxDB {influxd.url}: the same load ...", flush=True)
            results["influx"] = measure(influx, args)
    finally:
        influxd.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    s, i = results["sqlite"], results["influx"]
    print(f"\n{args.machines} machines x {args.days} days every {args.interval} s, {int(s['lines']):,} lines", end="")
    print(f"; {int(s['day_rows']):,} rows a machine-day")
    print(f"{'':34} {'SQLite':>12} {'InfluxDB':>12} {'SQLite/InfluxDB':>16}")
    rows = [
        ("write rate (lines/s)", "write_rate", "{:,.0f}"),
        ("read a machine-day, median (s)", "day_median_s", "{:.3f}"),
        ("read a machine-day, worst (s)", "day_worst_s", "{:.3f}"),
        (f"read {args.days} days, median (s)", "window_median_s", "{:.2f}"),
        (f"read {args.days} days, worst (s)", "window_worst_s", "{:.2f}"),
        ("baseline (last_before), median (s)", "baseline_median_s", "{:.4f}"),
    ]
    for label, key, fmt in rows:
        print(f"{label:34} {fmt.format(s[key]):>12} {fmt.format(i[key]):>12} {s[key] / i[key]:>15.2f}x")
    print(f"{'SQLite file per machine-month (MB)':34} {s['mb_per_machine_month']:>12.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
