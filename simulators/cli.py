"""`shopfloor simulate`: serve simulated machines over Modbus TCP, or replay a scenario straight to MQTT."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import tempfile
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from shopfloor.calendar import Calendar
from shopfloor.cli import add_common
from shopfloor.config import DataType, LossMapSpec, SiteConfig, load_site
from simulators.models import BEHAVIOURS
from simulators.scenario import load_scenario, packaged_scenario
from simulators.truth import GroundTruth, TruthOee

log = logging.getLogger(__name__)

EPILOG = """\
time scaling:
  --speed N runs N simulated seconds per wall second; registers always show simulated time. Set the agent's
  poll_interval_s to (simulated seconds you want between samples) / N, e.g. speed 60 with a 1 s simulated
  resolution needs 1/60 s polls, which is too fast: prefer poll_interval_s 0.5-1 and accept a 30-60 s
  simulated resolution. Timestamps an agent stamps are wall-clock; they match the ground truth only at speed 1.

replay:
  --replay publishes, for every served machine, what an edge agent polling it every poll_interval_s (or
  --poll-interval) would have published: TelemetryBatch messages (QoS 1) and the machine's retained status
  (online at the first poll; unreachable at the first poll inside an unreachable, Modbus-exception or
  too-slow-reply window; online again at the first poll after it), all stamped with scenario time.
  --out writes one JSON object per line instead, in publishing order:
    {"topic": "shopfloor/v1/bdg/cnc-01/telemetry", "retain": false, "payload": {...TelemetryBatch...}}
    {"topic": "shopfloor/v1/bdg/cnc-01/status", "retain": true, "payload": {...StatusMessage...}}

scenarios:
  A scenario with `repeat: true` starts over every `duration` (the packaged demo repeats every 12 h), so a live
  run lasts until Ctrl-C and a replay covers any --from..--to. See simulators/scenarios/demo.yaml for the format.

ground-truth OEE:
  --print-oee prints, at the end of the run, the OEE the machines really achieved (ISO 22400-2, from the true
  state intervals and every part made, weighted by its job's ideal cycle) per machine and shift of the site's
  calendar (calendar: in the site file), with totals per machine, per shift and overall: planned busy time, APT,
  availability, effectiveness (above 100 % when parts come faster than ideal: flagged, not capped), quality,
  OEE and the biggest losses under the site's loss map (oee.loss_map). The same figures are GroundTruth.oee()
  on the --ground-truth file.

examples:
  shopfloor simulate                                   # the packaged demo scenario on the example site
  shopfloor simulate --scenario simulators/scenarios/e2e-two-tenants.yaml --ground-truth truth.json
  shopfloor simulate --replay faults --from 2026-11-01T05:59 --to 2026-11-01T06:02 --out s.jsonl --print-oee
  shopfloor simulate --list-models
  shopfloor simulate --print-registers fiber-laser-v1
  shopfloor simulate --replay demo.yaml --from 2026-11-01 --to 2026-12-01 --mqtt mqtt://127.0.0.1:1883
  shopfloor simulate --replay demo.yaml --from 2026-11-01 --to 2026-11-02 --out samples.jsonl
"""


def add_parser(sub: Any) -> None:
    """Register `shopfloor simulate`."""
    p: argparse.ArgumentParser = sub.add_parser(
        "simulate",
        help="serve simulated machines over Modbus TCP (or replay a scenario to MQTT)",
        description=(
            "Serve the site's machines as Modbus TCP servers that behave like real machines, following a "
            "scenario file (who logs in when, jobs, breakdowns, maintenance, injected faults). Deterministic "
            "for a given scenario and seed. Runs until the scenario ends or Ctrl-C, then writes the ground truth."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(p)
    p.add_argument(
        "--scenario",
        default=None,
        help="serve: scenario YAML (default: the packaged demo.yaml); a bare name like 'faults' picks a packaged one",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=1,
        help="seed of the random parts (jitter, rejects, random stops); same scenario + seed = same run "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="serve: simulated seconds per wall second, see 'time scaling' (default: %(default)s)",
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="serve: address to listen on; ports and unit ids come from the site file (default: %(default)s)",
    )
    p.add_argument(
        "--start",
        default=None,
        help="serve: simulated start time, ISO 8601 with zone (default: now, so agent timestamps match the truth)",
    )
    p.add_argument(
        "--ground-truth",
        type=Path,
        default=None,
        help="serve and replay: write what really happened here, as JSON, at the end (or on Ctrl-C)",
    )
    p.add_argument(
        "--print-oee",
        action="store_true",
        help="serve and replay: print the ground-truth OEE per machine and shift at the end, see 'ground-truth OEE'",
    )
    p.add_argument(
        "--list-models",
        action="store_true",
        help="list the site's device profiles, their machines and whether the simulator has their own behaviour",
    )
    p.add_argument(
        "--print-registers",
        metavar="MODEL",
        help="print a model's register map: address, table, type, words, byte order, scale, offset, signal, unit or "
        "states",
    )
    p.add_argument(
        "--replay",
        metavar="SCENARIO",
        help="instead of serving Modbus, publish the telemetry and machine status an agent would have sent for "
        "--from..--to (a file, or a packaged scenario's name)",
    )
    p.add_argument("--from", dest="from_", metavar="WHEN", help="replay start: date or datetime (site time zone)")
    p.add_argument("--to", metavar="WHEN", help="replay end (exclusive): date or datetime (site time zone)")
    p.add_argument("--mqtt", default=None, help="replay: broker URL, mqtt://[user:pass@]host:port")
    p.add_argument(
        "--out", type=Path, default=None, help="replay: write the messages as JSON lines here instead (see 'replay')"
    )
    p.add_argument(
        "--agent-id",
        default=None,
        help="replay: agent id in telemetry and status payloads (default: each machine's agent in the site file's "
        "agents:, else 'replay')",
    )
    p.add_argument(
        "--batch", type=int, default=1000, help="replay: most samples per message, 1..1000 (default: %(default)s)"
    )
    p.add_argument(
        "--poll-interval",
        type=float,
        default=None,
        metavar="S",
        help="replay: seconds between polls for every machine (default: each machine's poll_interval_s)",
    )
    p.add_argument(
        "--publish-interval",
        type=float,
        default=60.0,
        metavar="S",
        help="replay: publish each machine's samples at least this often, like the agent's option "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--heartbeat",
        type=float,
        default=None,
        metavar="S",
        help="replay: send every signal at least this often (default: each machine's heartbeat_s)",
    )
    p.set_defaults(func=run)


def _scenario_path(value: str | None) -> Path:
    """A scenario file, or a packaged one by bare name ('faults' or 'faults.yaml') if no such file exists."""
    if value is None:
        return packaged_scenario("demo")
    path = Path(value)
    if not path.exists() and "/" not in value:
        return packaged_scenario(value.removesuffix(".yaml"))
    return path


def run(args: argparse.Namespace) -> int:
    """Run the subcommand; return the exit code."""
    site = load_site(args.site)
    if args.list_models:
        print(list_models(site))
        return 0
    if args.print_registers:
        models = {p.model for p in site.profiles}
        if args.print_registers not in models:
            print(f"unknown model {args.print_registers!r} (known: {', '.join(sorted(models))})", file=sys.stderr)
            return 2
        print(register_table(site, args.print_registers))
        return 0
    if args.replay:
        from simulators.replay import run_replay_cli

        args.replay = str(_scenario_path(args.replay))
        args.poll_ms = None if args.poll_interval is None else max(1, round(args.poll_interval * 1000))
        if not args.print_oee:
            return run_replay_cli(site, args)
        return _replay_printing_oee(site, args)
    scenario = load_scenario(_scenario_path(args.scenario), site)
    start_ms = _parse_start(args.start)
    return asyncio.run(_serve(site, scenario, args, start_ms))


def _parse_start(value: str | None) -> int | None:
    if value is None:
        return None
    moment = datetime.fromisoformat(value)
    if moment.tzinfo is None:
        raise SystemExit(f"--start {value!r} has no time zone; write e.g. 2026-11-01T08:00:00+07:00")
    return int(moment.timestamp() * 1000)


async def _serve(site: SiteConfig, scenario: Any, args: argparse.Namespace, start_ms: int | None) -> int:
    from simulators.runtime import Simulator

    sim = Simulator(site, scenario, seed=args.seed, speed=args.speed, start_ms=start_ms, host=args.host)
    try:
        await sim.start()
    except OSError as exc:
        print(f"shopfloor simulate: {exc}", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    finished = asyncio.create_task(sim.wait_finished())
    stopped = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({finished, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        finished.cancel()
        stopped.cancel()
        truth = sim.ground_truth()
        await sim.stop()
        if args.ground_truth is not None:
            args.ground_truth.write_text(truth.to_json())
            log.info("ground truth written to %s", args.ground_truth)
    print(_summary(truth), file=sys.stderr)
    if args.print_oee:
        print(oee_table(truth, site.calendar_model(), site.oee.loss_map))
    return 0


def _replay_printing_oee(site: SiteConfig, args: argparse.Namespace) -> int:
    """Replay, then print the ground-truth OEE, read back from the ground-truth file the replay writes."""
    from simulators.replay import run_replay_cli

    with tempfile.TemporaryDirectory(prefix="shopfloor-truth-") as scratch:
        wanted: Path | None = args.ground_truth
        args.ground_truth = wanted if wanted is not None else Path(scratch) / "truth.json"
        code = run_replay_cli(site, args)
        if code != 0:
            return code
        truth = GroundTruth.from_json(args.ground_truth.read_text())
        args.ground_truth = wanted
    print(oee_table(truth, site.calendar_model(), site.oee.loss_map))
    return 0


def oee_table(truth: GroundTruth, calendar: Calendar, loss_map: LossMapSpec) -> str:
    """The run's ground-truth OEE per machine and shift, with totals per machine, per shift and overall."""
    window = truth.start_ms, truth.end_ms
    first_seen: dict[str, int] = {}
    for piece in calendar.planned(*window, None):
        first_seen.setdefault(piece.shift, len(first_seen))

    def in_time_order(rows: list[TruthOee]) -> list[TruthOee]:
        return sorted(rows, key=lambda r: (first_seen.get(str(r.group["shift"]), len(first_seen)), r.group["shift"]))

    by_shift = truth.oee(calendar, loss_map, *window, ("machine", "shift"))
    rows: list[TruthOee] = []
    for total in truth.oee(calendar, loss_map, *window, ("machine",)):
        shifts = in_time_order([r for r in by_shift if r.group["machine"] == total.group["machine"]])
        rows.extend(shifts)
        if len(shifts) > 1:  # one shift: its row is the machine's total
            rows.append(total)
    if len(truth.machines) > 1:
        site_shifts = in_time_order(truth.oee(calendar, loss_map, *window, ("shift",)))
        rows.extend(site_shifts)
        if len(site_shifts) > 1:
            rows.extend(truth.oee(calendar, loss_map, *window, ()))
    zone = calendar.zone
    head = (
        f"ground-truth OEE of {truth.scenario!r} (seed {truth.seed}), {_local(truth.start_ms, zone)} .. "
        f"{_local(truth.end_ms, zone)} {zone}, loss map {loss_map.version}"
    )
    if not rows:
        return f"{head}\n  no planned busy time in the run (the calendar plans none of it)"
    table = [("MACHINE", "SHIFT", "PBT", "APT", "AVAIL", "EFFECT", "QUALITY", "OEE", "GOOD", "REJECT", "TOP LOSSES")]
    for r in rows:
        biggest = sorted(((s, c) for c, s in r.losses.items() if s > 0), reverse=True)[:3]
        table.append(
            (
                str(r.group.get("machine", "(total)")),
                str(r.group.get("shift", "(total)")),
                _hms(r.pbt_s),
                _hms(r.apt_s),
                _pct(r.availability),
                _pct(r.effectiveness) + ("!" if "effectiveness_over_100" in r.flags else ""),
                _pct(r.quality),
                _pct(r.oee),
                str(r.good),
                str(r.produced - r.good),
                ", ".join(f"{c} {_hms(s)}" for s, c in biggest) or "-",
            )
        )
    note = "  ! effectiveness above 100 %: parts came faster than the ideal cycle (flagged, not capped)"
    flagged = any("effectiveness_over_100" in r.flags for r in rows)
    return "\n".join([head, _table(table), *([note] if flagged else [])])


def _hms(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _local(ms: int, zone: str) -> str:
    return datetime.fromtimestamp(ms / 1000, ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M:%S")


def _summary(truth: Any) -> str:
    lines = [f"ground truth: {len(truth.sessions)} session(s)"]
    for s in truth.sessions:
        lines.append(
            f"  {s.machine:<10} {s.tenant:<8} badge {s.badge:<6} {(s.end_ms - s.start_ms) / 1000:8.1f} s  "
            f"good {s.good:<6} reject {s.reject:<5} {s.kwh:.3f} kWh"
        )
    return "\n".join(lines)


def list_models(site: SiteConfig) -> str:
    """Table of the site's device profiles and which machines use them."""
    rows = [("MODEL", "BEHAVIOUR", "REGISTERS", "MACHINES", "DESCRIPTION")]
    for profile in site.profiles:
        machines = ", ".join(m.id for m in site.machines if m.profile == profile.model) or "-"
        behaviour = "own" if profile.model in BEHAVIOURS else "generic"
        rows.append((profile.model, behaviour, str(len(profile.registers)), machines, profile.description))
    return _table(rows)


def register_table(site: SiteConfig, model: str) -> str:
    """The register map of a model as a table."""
    profile = site.profile(model)
    rows = [("ADDRESS", "TABLE", "TYPE", "WORDS", "ORDER", "SCALE", "OFFSET", "SIGNAL", "UNIT / STATES")]
    for spec in sorted(profile.registers, key=lambda r: (r.table.value, r.address)):
        last = spec.address + spec.count - 1
        extra = spec.unit
        if spec.states:
            extra = ", ".join(f"{code}={state.value}" for code, state in spec.states.items())
        elif spec.enum:
            extra = ", ".join(f"{code}={label}" for code, label in spec.enum.items())
        elif spec.bit is not None:
            extra = f"bit {spec.bit}"
        rows.append(
            (
                str(spec.address) if last == spec.address else f"{spec.address}-{last}",
                spec.table.value,
                spec.type.value,
                str(spec.count),
                spec.byte_order.value if spec.type.is_number and spec.type is not DataType.BOOL else "-",
                f"{spec.scale:g}",
                f"{spec.offset:g}",
                spec.signal,
                extra,
            )
        )
    return f"{profile.model}: {profile.description}\n" + _table(rows)


def _table(rows: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)
