"""The roll-up job: build every closed machine-hour not yet built, unbuild what late data made stale.

One call of build() is one bounded step (at most max_hours machine-hours read from raw), so a first build of a
month is resumable: the hours table is the state, and whatever a step saved stays saved. Each step
1. reads the late marks the collector wrote since the last step started and deletes the hours they make stale
   (api.rollups.plan: the hour, its neighbours, the silence after it). Marks are read from LATE_WINDOW_MS before
   that start, so a builder (another process) that read raw before late data was written and saved its hour after
   the mark was acted on is caught by a later step; a mark read again unbuilds only what was built before the job
   first saw it (rollup_late_marks), so what it rebuilt stays;
2. deletes the hours built with another fingerprint (the site file's classification settings or the core's code
   changed);
3. builds the oldest missing closed hours, day by day across machines, one raw read per run of hours, each run
   saved in one transaction.
Deleted hours are answered from raw until rebuilt, so a figure is never computed from a stale roll-up for longer
than the job's interval. Closed: an hour H can be built at H + 1 h + context + grace (api.rollups.plan).

Defaults. grace DEFAULT_GRACE_MS (10 min): the collector marks any sample written more than 5 min after its
timestamp (collector.service.LATE_AFTER_MS; tests/unit/test_rollup_plan.py keeps the two in step), plus 5 min for
the clocks of the collector and API hosts to disagree. (The registry's skew window, 7 days back, would hold every
hour open for a week: a late mark is the cheaper way to cover data that old.) Where building starts, per
machine: the configured start, else the hour of the machine's oldest stored sample (found once, then remembered;
late marks of older hours move it back).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from api.core.counters import COUNTERS
from api.core.pieces import HOUR_MS, HourSummary, hour_of, hour_summaries
from api.reader import agents_of, counter_limits, max_gap_ms, raw_timeline
from api.rollups import plan
from api.rollups.store import RollupError, RollupStore
from shopfloor.config import Machine, SiteConfig
from shopfloor.contracts import MAX_TS_MS, MIN_TS_MS
from shopfloor.gcpause import GC_PAUSE
from shopfloor.store import StoreError, TimeSeriesStore

log = logging.getLogger(__name__)
# Called with a machine and its freshly built hours before they are saved (api.rollups.derived.Deriver).
Derive = Callable[[Machine, Sequence[HourSummary]], object]

DEFAULT_GRACE_MS = plan.DEFAULT_GRACE_MS
DEFAULT_STEP_HOURS = 240  # machine-hours read from raw per step: 10 machine-days, seconds of store reads
DEFAULT_RUN_HOURS = 24  # hours of one machine per raw read
DEFAULT_INTERVAL_S = 60.0
BUILD_THREADS = 4  # runs of hours read and classified at once
LATE_WINDOW_MS = 3_600_000  # marks are read back this far before the last step's start (module docstring)
CLOCK_TOLERANCE_MS = 60_000  # how far the collector's clock may run behind the job's (plan.stale_before)
# Signals whose oldest reading tells where a machine's data begins (every heartbeat carries them).
_PROBE_SIGNALS = ("state", *COUNTERS)

STATE_LATE = "late-checked-ms"  # rollup_state key: when the last complete step began reading late marks
STATE_START = "start-ms:"  # + machine: the hour building starts at
STATE_NO_DATA = "no-data-before-ms:"  # + machine: no sample before this (nothing to build yet)

# The classification code an hour is computed with: a change to any of these modules changes every fingerprint.
_CORE_MODULES = ("api/core/pieces.py", "api/core/timeline.py", "api/core/counters.py", "shopfloor/counters.py")


def _core_digest() -> str:
    root = Path(__file__).resolve().parent.parent.parent
    digest = hashlib.sha256()
    for name in _CORE_MODULES:
        path = root / name
        digest.update(name.encode())
        digest.update(path.read_bytes() if path.is_file() else b"missing")
    return digest.hexdigest()


CORE_DIGEST = _core_digest()


def fingerprint(site: SiteConfig, machine: Machine) -> str:
    """What besides raw data an hour of machine is computed from: the site file's settings for it and the code."""
    basis = {
        "core": CORE_DIGEST,
        "gap_ms": site.max_gap_ms(machine),
        "poll_s": machine.poll_interval_s,
        "gap_factor": site.site.max_gap_factor,
        "limits": dict(sorted(counter_limits(site, machine).per_h.items())),
        "agents": agents_of(site, machine) if site.agents else None,  # None: open registry, agents from the data
    }
    return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()[:32]


@dataclass
class BuildReport:
    """What one step did, and what is left."""

    built: int = 0  # machine-hours saved
    unbuilt_late: int = 0  # hours deleted because late data arrived for them
    unbuilt_stale: int = 0  # hours deleted because they were computed with another fingerprint
    late_marks: int = 0
    remaining: int = 0  # closed machine-hours still not built after this step
    samples: int = 0  # raw samples read
    machines: dict[str, int] = field(default_factory=dict)  # machine -> hours built

    @property
    def done(self) -> bool:
        """Whether every closed hour in scope is built."""
        return self.remaining == 0

    def summary(self) -> str:
        """One line for the log and the CLI."""
        return (
            f"built {self.built} machine-hour(s) from {self.samples} sample(s), unbuilt {self.unbuilt_late} for late "
            f"data ({self.late_marks} mark(s)) and {self.unbuilt_stale} stale, {self.remaining} left"
        )


def _machines(site: SiteConfig, names: Sequence[str] | None) -> list[Machine]:
    if names is None:
        return list(site.machines)
    known = {m.id: m for m in site.machines}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(
            f"unknown machine {unknown[0]!r} for site {site.site.id!r} (it has: {', '.join(known) or 'none'})"
        )
    return [known[n] for n in dict.fromkeys(names)]


def _check_ms(what: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not MIN_TS_MS <= value <= MAX_TS_MS:
        raise ValueError(f"{what} must be epoch ms in {MIN_TS_MS}..{MAX_TS_MS}, got {value!r}")
    return value


def first_data_hour(store: TimeSeriesStore, site: str, machine: str, until_ms: int) -> int | None:
    """The hour of machine's oldest sample before until_ms (None: none), by bisection over hours (~18 reads)."""
    if not store.last_before(site, machine, until_ms, _PROBE_SIGNALS):
        return None
    lo, hi = hour_of(MIN_TS_MS), hour_of(until_ms)  # invariant: no sample before lo; some sample before hi + 1 h
    if store.last_before(site, machine, lo + HOUR_MS, _PROBE_SIGNALS):
        return lo
    while hi - lo > HOUR_MS:
        mid = hour_of(lo + (hi - lo) // 2)
        if store.last_before(site, machine, mid + HOUR_MS, _PROBE_SIGNALS):
            hi = mid
        else:
            lo = mid
    return hi


def _now_ms() -> int:
    return int(time.time() * 1000)


def unbuild_late(
    store: TimeSeriesStore,
    rollups: RollupStore,
    site: SiteConfig,
    machines: Sequence[Machine],
    since_ms: int,
    now_ms: int,
    *,
    tolerance_ms: int = CLOCK_TOLERANCE_MS,
) -> tuple[int, int, dict[str, int]]:
    """Delete the hours that late marks received after since_ms make stale; return (marks read, hours deleted, the
    oldest hour marked per machine)."""
    sid = site.site.id
    marks = store.late_hours(sid, max(0, since_ms))
    seen = rollups.seen_marks(sid, marks, now_ms, prune_before_ms=since_ms)
    marked = {m for m, _, _ in marks}
    # How far an hour's context reaches, from the heartbeat the agent reports now (else the site file's).
    reach = {
        m.id: plan.neighbours(max_gap_ms(site, m, store.heartbeat_ms(sid, m.id, now_ms)))
        for m in machines
        if m.id in marked
    }
    dated = [(m, h, plan.stale_before(r, seen.get((m, h, r), now_ms), tolerance_ms)) for m, h, r in marks]
    merged = plan.merge_marks(dated, reach)
    coverage = rollups.coverage(sid, list(merged)) if merged else {}
    spans: list[plan.Span] = []
    for machine, parts in merged.items():
        last_built = coverage[machine].last_ms if machine in coverage else None
        for lo, hi, before in parts:
            busy = rollups.next_busy_hour(sid, machine, hi) if last_built is not None and last_built > hi else None
            spans.append(plan.late_span(machine, lo, hi, before, busy, last_built))
    deleted = rollups.invalidate_built_before(sid, [(s.machine, s.first_ms, s.last_ms, s.before_ms) for s in spans])
    oldest = {machine: min(hour for m, hour, _ in marks if m == machine) for machine in merged}
    return len(marks), deleted, oldest


def build(
    store: TimeSeriesStore,
    rollups: RollupStore,
    site: SiteConfig,
    now_ms: int,
    *,
    machines: Sequence[str] | None = None,
    start_ms: int | None = None,
    end_ms: int | None = None,
    grace_ms: int = DEFAULT_GRACE_MS,
    max_hours: int = DEFAULT_STEP_HOURS,
    run_hours: int = DEFAULT_RUN_HOURS,
    clock: Callable[[], int] = _now_ms,
    derive: Derive | None = None,
) -> BuildReport:
    """Run one bounded step of the roll-up job for site at now_ms (module docstring); return what it did.

    machines: only these (default: every machine of the site; late marks are then checked too, and only then is
    progress on them recorded). start_ms / end_ms: only hours starting in [start_ms, end_ms) (default: from each
    machine's oldest data to the last closed hour). clock: wall time in epoch ms, stamped on what is built.
    derive: called with each machine's built hours before they are saved (api.rollups.derived writes the derived
    measurement the dashboards read); if it fails, the hours stay unbuilt and are retried.
    Raise ValueError for bad arguments (naming them), RollupError / StoreError when a database fails.
    """
    chosen = _machines(site, machines)
    start = _check_ms("start_ms", start_ms)
    end = _check_ms("end_ms", end_ms)
    if start is not None and end is not None and end < start:
        raise ValueError(f"end {end} is before start {start}")
    if grace_ms < 0:
        raise ValueError(f"grace_ms must not be negative, got {grace_ms}")
    if max_hours < 1:
        raise ValueError(f"max_hours must be at least 1, got {max_hours}")
    sid = site.site.id
    report = BuildReport()
    everything = machines is None

    # 1. Late data.
    if everything:
        step_start = clock()
        checked = rollups.get_state(sid, STATE_LATE)
        since = int(checked) - LATE_WINDOW_MS if checked is not None else _first_since(rollups, sid, step_start)
        report.late_marks, report.unbuilt_late, oldest = unbuild_late(store, rollups, site, chosen, since, step_start)
        for machine, hour in oldest.items():
            remembered = rollups.get_state(sid, STATE_START + machine)
            if remembered is None:
                rollups.set_state(sid, STATE_NO_DATA + machine, "0")  # data arrived: look for it again
            elif hour < int(remembered):
                rollups.set_state(sid, STATE_START + machine, str(hour))  # a backfill older than what is built
        rollups.set_state(sid, STATE_LATE, str(step_start))

    # 2. Stale fingerprints.
    prints = {m.id: fingerprint(site, m) for m in chosen}
    report.unbuilt_stale = rollups.drop_stale(sid, prints)

    # 3. Missing closed hours.
    missing: dict[str, list[int]] = {}
    coverage = rollups.coverage(sid, [m.id for m in chosen])
    for m in chosen:
        stop = plan.closed_end(now_ms, max_gap_ms(site, m, store.heartbeat_ms(sid, m.id, now_ms)), grace_ms)
        if end is not None:
            stop = min(stop, end)
        begin = start if start is not None else _start_of(store, rollups, sid, m.id, stop)
        if begin is None or begin >= stop:
            continue
        cov = coverage.get(m.id)
        if cov is None:
            hours = plan.missing_hours(begin, stop, ())
        elif cov.contiguous:
            hours = plan.missing_around(begin, stop, cov.first_ms, cov.last_ms)
        else:
            built = rollups.built_hours(sid, [m.id], hour_of(begin), stop).get(m.id, [])
            hours = plan.missing_hours(begin, stop, set(built))
        if hours:
            missing[m.id] = hours
    total = sum(len(h) for h in missing.values())
    by_id = {m.id: m for m in chosen}

    def build_run(run: plan.Run) -> tuple[str, int, int]:
        target = by_id[run.machine]
        first = store.heartbeat_ms(sid, target.id, run.start_ms + HOUR_MS)
        changes = [
            (row.ts_ms, value)
            for row in store.statuses(sid, target.id, run.start_ms + HOUR_MS + 1, run.end_ms + 1)
            if type(value := row.fields.get("heartbeat_ms")) is int
        ]
        built = samples = 0
        for part, _heartbeat in plan.heartbeat_runs(run, first, changes):
            built_at = clock()  # before the read: data written after this may be missing from what is built
            with GC_PAUSE.paused():  # classification makes many objects and no cycles (shopfloor.gcpause)
                summaries, n = build_hours(store, site, target, part.start_ms, part.end_ms)
            if derive is not None:
                derive(target, summaries)  # before saving: a failed write leaves the hours unbuilt, so retried
            rollups.save(sid, summaries, built_at, {target.id: prints[target.id]})
            built += len(summaries)
            samples += n
        return target.id, built, samples

    runs = plan.plan_runs(missing, max_hours, run_hours)
    # Several runs at once: one waits on the store while another is classified (the reads release the GIL).
    with ThreadPoolExecutor(max_workers=max(1, min(len(runs), BUILD_THREADS))) as pool:
        for machine_id, n_built, n_samples in pool.map(build_run, runs):
            report.built += n_built
            report.samples += n_samples
            report.machines[machine_id] = report.machines.get(machine_id, 0) + n_built
    report.remaining = total - report.built
    return report


def build_hours(
    store: TimeSeriesStore, site: SiteConfig, machine: Machine, start_ms: int, end_ms: int
) -> tuple[list[HourSummary], int]:
    """Compute machine's hours in [start_ms, end_ms) from raw as a raw query would; return them and samples read."""
    raw = raw_timeline(store, site, machine, start_ms, end_ms)
    return hour_summaries(raw.timeline, machine.id), raw.samples


def _first_since(rollups: RollupStore, site: str, now_ms: int) -> int:
    # Never checked: marks matter only for hours already built, none of which can predate the oldest build.
    oldest = rollups.oldest_build(site)
    return (oldest if oldest is not None else now_ms) - LATE_WINDOW_MS


def _start_of(store: TimeSeriesStore, rollups: RollupStore, site: str, machine: str, stop_ms: int) -> int | None:
    """Where building machine starts: remembered, else its oldest data's hour (None: no data before stop_ms)."""
    remembered = rollups.get_state(site, STATE_START + machine)
    if remembered is not None:
        return int(remembered)
    no_data = rollups.get_state(site, STATE_NO_DATA + machine)
    if no_data is not None and int(no_data) >= stop_ms:
        return None  # looked already: nothing stored before then
    first = first_data_hour(store, site, machine, stop_ms)
    if first is None:
        rollups.set_state(site, STATE_NO_DATA + machine, str(stop_ms))
        return None
    rollups.set_state(site, STATE_START + machine, str(first))
    return first


# ---- the background thread ---------------------------------------------------------------------------------------


def run_until_done(
    store: TimeSeriesStore,
    rollups: RollupStore,
    site: SiteConfig,
    *,
    machines: Sequence[str] | None = None,
    start_ms: int | None = None,
    end_ms: int | None = None,
    grace_ms: int = DEFAULT_GRACE_MS,
    max_hours: int = DEFAULT_STEP_HOURS,
    should_stop: Callable[[], bool] = lambda: False,
    clock: Callable[[], int] = _now_ms,
    progress: Callable[[BuildReport], None] | None = None,
    derive: Derive | None = None,
) -> BuildReport:
    """Run build steps until nothing closed is left to build (or should_stop); return the totals."""
    total = BuildReport()
    while True:
        step = build(
            store,
            rollups,
            site,
            clock(),
            machines=machines,
            start_ms=start_ms,
            end_ms=end_ms,
            grace_ms=grace_ms,
            max_hours=max_hours,
            clock=clock,
            derive=derive,
        )
        total.built += step.built
        total.unbuilt_late += step.unbuilt_late
        total.unbuilt_stale += step.unbuilt_stale
        total.late_marks += step.late_marks
        total.samples += step.samples
        for machine, n in step.machines.items():
            total.machines[machine] = total.machines.get(machine, 0) + n
        total.remaining = step.remaining
        if progress is not None:
            progress(step)
        # A step that built nothing yet left hours would do the same again: stop rather than spin.
        if step.done or step.built == 0 or should_stop():
            return total


# ---- the background thread ---------------------------------------------------------------------------------------


def start_rollup_thread(
    store: TimeSeriesStore,
    rollups: RollupStore,
    site: SiteConfig | Callable[[], SiteConfig],
    *,
    interval_s: float = DEFAULT_INTERVAL_S,
    grace_ms: int = DEFAULT_GRACE_MS,
    max_hours: int = DEFAULT_STEP_HOURS,
    clock: Callable[[], int] = _now_ms,
    derive: Derive | None = None,
) -> Callable[[], None]:
    """Run the roll-up job every interval_s in a daemon thread; return a function that stops it (and waits).

    site: the site, or a function returning the current one (a reloaded site file is used from the next step).
    A failing store or database is logged once when it starts failing and once when it recovers.
    """
    if not interval_s > 0:
        raise ValueError(f"interval_s must be positive, got {interval_s}")
    stop = threading.Event()

    def current() -> SiteConfig:
        return site if isinstance(site, SiteConfig) else site()

    def loop() -> None:
        failing_since: float | None = None
        while not stop.is_set():
            try:
                done = run_until_done(
                    store,
                    rollups,
                    current(),
                    grace_ms=grace_ms,
                    max_hours=max_hours,
                    should_stop=stop.is_set,
                    clock=clock,
                    derive=derive,
                )
            except (RollupError, StoreError) as error:
                if failing_since is None:
                    failing_since = time.monotonic()
                    log.warning(
                        "roll-ups: %s; retrying every %.0f s (queries answer from raw meanwhile)", error, interval_s
                    )
            except Exception:
                log.exception("roll-ups: the build step failed unexpectedly; retrying in %.0f s", interval_s)
            else:
                if failing_since is not None:
                    log.info("roll-ups: building again after %.0f s of failures", time.monotonic() - failing_since)
                    failing_since = None
                if done.built or done.unbuilt_late or done.unbuilt_stale:
                    log.info("roll-ups: %s", done.summary())
            stop.wait(interval_s)

    thread = threading.Thread(target=loop, name="rollup-builder", daemon=True)
    thread.start()

    def stopper() -> None:
        stop.set()
        thread.join(timeout=60.0)

    return stopper
