"""`shopfloor rollup build|rebuild|delete|status`: build, rebuild, delete and inspect the roll-ups of a site."""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from api.rollups.job import BuildReport
    from api.rollups.store import RollupStore
    from shopfloor.config import SiteConfig

HOUR_MS = 3_600_000
PROG = "shopfloor rollup"


class UsageError(Exception):
    """A bad option value: the message names it."""


def default_db_url() -> str:
    """The roll-up database: Settings' db_url (SHOPFLOOR_DB_URL) once it has one, else <data_dir>/shopfloor.db."""
    from api.rollups.store import default_url
    from shopfloor.settings import settings

    env = settings()
    return env.db_url or default_url(env.data_dir)


def parse_when(text: str, tz: str, option: str) -> int:
    """Epoch ms of an ISO date or date-time; without an offset it is the site's local time."""
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            when = datetime(day.year, day.month, day.day)
        else:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{option} {text!r}: not an ISO date or time (e.g. 2026-11-01 or 2026-11-01T08:00+07:00)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=ZoneInfo(tz))
    return (when - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%MZ")


def _window(args: argparse.Namespace, site: SiteConfig, *, required: bool = False) -> tuple[int | None, int | None]:
    """--from rounded down and --to rounded up to whole UTC hours; both or neither when required."""
    tz = site.site.timezone
    start = parse_when(args.start, tz, "--from") if args.start else None
    end = parse_when(args.end, tz, "--to") if args.end else None
    if required and (start is None or end is None):
        raise UsageError("give both --from and --to")
    if start is not None:
        start -= start % HOUR_MS
    if end is not None:
        end += -end % HOUR_MS
    if start is not None and end is not None and end <= start:
        raise UsageError(f"--to {args.end!r} is not after --from {args.start!r}")
    return start, end


def _machines(args: argparse.Namespace, site: SiteConfig) -> list[str] | None:
    if not args.machine:
        return None
    known = [m.id for m in site.machines]
    for name in args.machine:
        if name not in known:
            raise UsageError(
                f"--machine {name!r}: no such machine in site {site.site.id!r} (it has: {', '.join(known)})"
            )
    return list(dict.fromkeys(args.machine))


def _open_rollups(args: argparse.Namespace) -> RollupStore:
    from api.rollups.store import RollupStore

    url = args.db_url or default_db_url()
    if not args.db_url:
        from shopfloor.settings import settings

        Path(settings().data_dir).mkdir(parents=True, exist_ok=True)  # our own default place: make it
    return RollupStore(url)


def _progress(step: BuildReport) -> None:
    print(f"{PROG}: {step.summary()}", file=sys.stderr, flush=True)


def _run(args: argparse.Namespace) -> int:
    from api.rollups import job
    from api.rollups.store import RollupError
    from shopfloor.cli import open_store
    from shopfloor.config import load_site
    from shopfloor.store import StoreError

    try:
        site = load_site(args.site)
        machines = _machines(args, site)
        start, end = _window(args, site, required=args.action == "rebuild")
        if not args.grace_s >= 0:
            raise UsageError(f"--grace-s must not be negative, got {args.grace_s}")
        if args.step_hours < 1:
            raise UsageError(f"--step-hours must be at least 1, got {args.step_hours}")
        with _open_rollups(args) as rollups:
            sid = site.site.id
            if args.action == "delete":
                n = rollups.delete(sid, machines, start, end)
                print(f"deleted {n} machine-hour(s) of site {sid!r}; the job builds them again from raw")
                return 0
            with open_store(args) as store:
                if args.action == "status":
                    return _status(store, rollups, site, machines, args.json)
                if args.action == "rebuild":
                    n = rollups.delete(sid, machines, start, end)
                    print(f"deleted {n} machine-hour(s) of site {sid!r}", file=sys.stderr)
                total = job.run_until_done(
                    store,
                    rollups,
                    site,
                    machines=machines,
                    start_ms=start,
                    end_ms=end,
                    grace_ms=int(args.grace_s * 1000),
                    max_hours=args.step_hours,
                    progress=_progress,
                )
                print(f"{PROG} {args.action}: {total.summary()}")
                return 0 if total.done else 1
    except UsageError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 2
    except (RollupError, StoreError, ValueError) as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return 1


def _status(store: Any, rollups: RollupStore, site: SiteConfig, machines: list[str] | None, as_json: bool) -> int:
    from api.reader import max_gap_ms
    from api.rollups import job, plan

    sid = site.site.id
    now = int(time.time() * 1000)
    coverage = rollups.coverage(sid, machines)
    checked = rollups.get_state(sid, job.STATE_LATE)
    rows: list[dict[str, Any]] = []
    for m in site.machines:
        if machines is not None and m.id not in machines:
            continue
        cov = coverage.get(m.id)
        closed = plan.closed_end(now, max_gap_ms(site, m, store.heartbeat_ms(sid, m.id, now)), job.DEFAULT_GRACE_MS)
        start = rollups.get_state(sid, job.STATE_START + m.id)
        missing = None
        if start is not None:
            built = set(rollups.built_hours(sid, [m.id], int(start), closed).get(m.id, []))
            missing = len(plan.missing_hours(int(start), closed, built))
        rows.append(
            {
                "machine": m.id,
                "built_hours": cov.hours if cov else 0,
                "first": _iso(cov.first_ms) if cov else None,
                "last": _iso(cov.last_ms) if cov else None,
                "starts": _iso(int(start)) if start is not None else None,
                "closed_until": _iso(closed),
                "missing_hours": missing,
            }
        )
    if as_json:
        print(json.dumps({"site": sid, "late_checked": _iso(int(checked)) if checked else None, "machines": rows}))
        return 0
    print(
        f"site {sid!r}: roll-ups in {rollups.url}; late marks last checked {_iso(int(checked)) if checked else 'never'}"
    )
    print(f"{'machine':<16} {'built':>7} {'missing':>8}  {'first':<17} {'last':<17} closed until")
    for r in rows:
        missing_text = "?" if r["missing_hours"] is None else str(r["missing_hours"])
        print(
            f"{r['machine']:<16} {r['built_hours']:>7} {missing_text:>8}  {r['first'] or '-':<17}"
            f" {r['last'] or '-':<17} {r['closed_until']}"
        )
    return 0


def add_parser(sub: Any) -> None:
    """Register `shopfloor rollup`."""
    from shopfloor.cli import add_common, add_store

    p = sub.add_parser(
        "rollup",
        help="build, rebuild, delete or show the roll-ups (closed machine-hours kept in the business DB)",
        description="Roll-ups are closed machine-hours computed from raw telemetry and kept in a SQL database, so "
        "a month answers in well under a second. They are a cache: `build` fills in every closed hour not yet "
        "built (the API does this in the background too), `rebuild` deletes an hour range and builds it again, "
        "`delete` drops them (queries then read raw until they are built again), `status` shows what is built. "
        "--from/--to: ISO dates or times, the site's local time unless an offset is given; whole UTC hours.",
    )
    p.add_argument("action", choices=["build", "rebuild", "delete", "status"])
    add_common(p)
    add_store(p)
    p.add_argument(
        "--db-url",
        default=None,
        help="SQLAlchemy URL of the roll-up database: sqlite:///path.db or postgresql://user@host/db "
        "(default: SHOPFLOOR_DB_URL, else sqlite:///<data dir>/shopfloor.db)",
    )
    p.add_argument("--machine", action="append", default=[], help="only this machine (repeatable)")
    p.add_argument("--from", dest="start", default=None, help="first hour (build: default the oldest data)")
    p.add_argument("--to", dest="end", default=None, help="end, exclusive (build: default the last closed hour)")
    p.add_argument(
        "--grace-s",
        type=float,
        default=600.0,
        help="build an hour this long after its context ends (default: %(default)s)",
    )
    p.add_argument("--step-hours", type=int, default=240, help="machine-hours per step (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="status: print JSON")
    p.set_defaults(func=_run)
