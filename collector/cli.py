"""`shopfloor collect`: run one collector until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collector.registry import Registry
    from collector.service import Collector
    from shopfloor.store import LineStore

log = logging.getLogger(__name__)

STORE_RETRY_MAX_S = 10.0
_UNITS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def _wait_for_database(store: LineStore, stop: threading.Event) -> bool:
    """Create the database, retrying while the store is unreachable; return False if told to stop first."""
    from shopfloor.store import StoreUnavailable

    delay = 0.5
    warned = False
    while not stop.is_set():
        try:
            store.ensure_database()
        except StoreUnavailable as exc:
            if not warned:
                log.warning(
                    "%s; cannot create database %r yet, retrying with backoff up to %.0f s",
                    exc,
                    store.database,
                    STORE_RETRY_MAX_S,
                )
                warned = True
            stop.wait(delay)
            delay = min(delay * 2, STORE_RETRY_MAX_S)
            continue
        if warned:
            log.info("time-series store %s reachable, database %r ready", store.url, store.database)
        return True
    return False


def _load_registry(args: argparse.Namespace) -> Registry:
    """Load the site file and build its registry; raise ConfigError naming the file."""
    from collector.registry import Registry
    from shopfloor.config import ConfigError, load_plant

    site = load_plant(args.site)
    try:
        return Registry.from_site(
            site, max_ahead_ms=args.max_ahead, max_behind_ms=args.max_behind, backfill=args.backfill
        )
    except ValueError as exc:
        raise ConfigError(f"{args.site}: {exc}") from exc


def _reload(collector: Collector, args: argparse.Namespace) -> None:
    """Swap in the registry of the site file as it is now; keep the old one if the file is bad."""
    from shopfloor.config import ConfigError

    try:
        registry = _load_registry(args)
    except ConfigError as exc:
        log.error("site registry not reloaded, keeping the previous one: %s", exc)
        return
    try:
        collector.set_registry(registry)
    except ValueError as exc:
        log.error("site registry not reloaded, keeping the previous one: %s", exc)
        return
    if registry.agents is None:
        log.warning(
            "site registry reloaded: %d machines; site has no agents: section, any agent may report any machine",
            len(registry.machines),
        )
    else:
        log.info("site registry reloaded: %d machines, %d agents", len(registry.machines), len(registry.agents))


def run(args: argparse.Namespace) -> int:
    """Run the collector until SIGINT/SIGTERM (SIGHUP reloads the site file); return the exit code."""
    from collector.metrics import start_metrics_server
    from collector.service import Collector
    from shopfloor.cli import mqtt_settings, open_store, read_secret
    from shopfloor.store import StoreRejected

    try:
        mqtt = mqtt_settings(args, session_expiry_s=args.session_expiry)
    except ValueError as exc:
        log.error("%s; fix --mqtt or the broker login options", exc)
        return 2
    try:
        password = args.influx_password
        if args.influx_password_file is not None:
            password = read_secret(args.influx_password_file, "--influx-password-file")
        token = read_secret(args.influx_token_file, "--influx-token-file") if args.influx_token_file else None
        store = open_store(args, password=password, token=token, retention_policy=args.influx_rp)
    except ValueError as exc:
        log.error("%s; fix the --influx-* or --sqlite-store options", exc)
        return 2
    registry = _load_registry(args)
    log.info("site registry: %s", registry.describe())
    if args.backfill:
        log.warning("--backfill: samples of any age are accepted (the future is still refused); restart without it")
    stop = threading.Event()
    reload = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s; flushing and stopping", signal.Signals(signum).name)
        stop.set()

    def _on_hangup(_signum: int, _frame: FrameType | None) -> None:
        reload.set()  # the main loop reloads: no file I/O or logging inside a signal handler

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_signal)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, _on_hangup)

    dead_letter = Path(args.dead_letter) if args.dead_letter else None
    with store:
        try:
            if not _wait_for_database(store, stop):
                return 0
        except StoreRejected as exc:
            log.error("%s; check --influx-db, --influx-rp or --sqlite-store, and the store's permissions", exc)
            return 1
        collector = Collector(
            mqtt,
            store,
            client_id=args.client_id,
            batch_points=args.batch_points,
            flush_interval_s=args.flush_interval,
            dead_letter=dead_letter,
            topic_prefix=args.topic_prefix,
            summary_interval_s=args.summary_interval,
            registry=registry,
            max_queue_points=args.max_queue_points,
        )
        if dead_letter is None:
            log.warning("no --dead-letter file: refused messages are only counted and logged")
        server = None
        if args.metrics_port is not None:
            try:
                server = start_metrics_server(
                    collector, args.metrics_host, args.metrics_port, unhealthy_after_s=args.unhealthy_after
                )
            except OSError as exc:
                log.error(
                    "cannot serve metrics on %s:%d (%s); choose another --metrics-port",
                    args.metrics_host,
                    args.metrics_port,
                    exc,
                )
                return 2
        _tune_gc()
        collector.start()
        try:
            while True:
                stop.wait(0.2)
                if reload.is_set():
                    reload.clear()
                    _reload(collector, args)
                if stop.is_set():
                    break
        finally:
            collector.stop()
            if server is not None:
                server.close()
    return 0


def _tune_gc() -> None:
    """Keep the garbage collector off the message path: every message makes short-lived dicts by the dozen."""
    import gc

    gc.collect()
    gc.freeze()  # modules, the registry and the settings are never garbage: stop re-scanning them
    gc.set_threshold(10_000, 20, 100)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _duration_ms(text: str) -> int:
    """Parse a duration such as 300, 300s, 5m, 12h or 7d (a bare number is seconds) into milliseconds."""
    number, unit = text.strip(), "s"
    for suffix in sorted(_UNITS, key=len, reverse=True):
        if number.endswith(suffix):
            number, unit = number[: -len(suffix)], suffix
            break
    try:
        value = float(number)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 300, 90s, 5m, 12h, 7d)") from None
    if not 0 <= value < 1e6 * 86_400:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 0 (and below a million days)")
    return round(value * _UNITS[unit])


def add_parser(sub: Any) -> None:
    """Register `shopfloor collect`."""
    from shopfloor.cli import add_common, add_metrics, add_mqtt, add_mqtt_login, add_store

    p = sub.add_parser(
        "collect",
        help="subscribe to telemetry, write it to the time-series store, ack MQTT only after the store accepted",
        description="Validate every telemetry and machine status message, write the valid ones to the time-series "
        "store (InfluxDB, or the embedded SQLite store with --sqlite-store) in batches and acknowledge them (MQTT "
        "manual ack, persistent session) only after the store accepted them; "
        "then publish commits so agents can drop what is stored. Invalid messages are counted, logged once per "
        "kind and dead-lettered. Runs until SIGINT/SIGTERM; logs a summary line every --summary-interval s.",
    )
    add_common(p)  # --site: the registry every message is checked against (SIGHUP reloads it); --log-level
    add_mqtt(p)
    add_mqtt_login(p)
    g = p.add_argument_group("broker session")
    g.add_argument(
        "--session-expiry",
        type=_positive_int,
        default=86_400,
        metavar="S",
        help="MQTT v5 session expiry: how long the broker keeps this client id's session, subscription and unacked "
        "messages while the collector is away (default: %(default)s)",
    )
    add_store(p)
    g = p.add_argument_group("InfluxDB writes and auth")
    g.add_argument(
        "--influx-rp", default=None, metavar="NAME", help="retention policy to write to (default: the database's)"
    )
    g.add_argument("--influx-password-file", type=Path, default=None, help="file holding --influx-user's password")
    g.add_argument(
        "--influx-token-file",
        type=Path,
        default=None,
        help="file holding an API token (InfluxDB 2.x/3.x, sent as 'Authorization: Token ...'); not with --influx-user",
    )
    p.add_argument(
        "--client-id",
        default="shopfloor-collector",
        help="fixed MQTT client id: unacked messages are redelivered to a restarted collector with the same id "
        "(default: %(default)s)",
    )
    p.add_argument("--dead-letter", metavar="FILE", help="JSON-lines file for refused messages (rotated to FILE.1)")
    p.add_argument(
        "--batch-points", type=_positive_int, default=5000, help="flush at this many points (default: %(default)s)"
    )
    p.add_argument(
        "--flush-interval",
        type=_positive_float,
        default=0.2,
        metavar="S",
        help="flush at least every S seconds (default: %(default)s)",
    )
    p.add_argument(
        "--topic-prefix",
        default="",
        help="prefix for the subscription filters. '$share/<group>/' (e.g. '$share/collectors/') makes a shared "
        "subscription: run N replicas with the same prefix and each its own --client-id, and the broker splits the "
        "stream between them (each message goes to one replica; what one leaves unacked is redelivered to its "
        "session)",
    )
    p.add_argument(
        "--summary-interval",
        type=_positive_float,
        default=60.0,
        metavar="S",
        help="log a summary every S seconds (default: %(default)s)",
    )
    p.add_argument(
        "--max-ahead",
        type=_duration_ms,
        default="5m",
        metavar="DURATION",
        help="refuse timestamps further ahead of this collector's clock (e.g. 90s, 5m; default: %(default)s)",
    )
    p.add_argument(
        "--max-behind",
        type=_duration_ms,
        default="7d",
        metavar="DURATION",
        help="refuse timestamps older than this (e.g. 12h, 7d; default: %(default)s) unless --backfill",
    )
    p.add_argument(
        "--backfill",
        action="store_true",
        help="accept samples of any age, for a backfill the operator runs (timestamps ahead are still refused)",
    )
    p.add_argument(
        "--max-queue-points",
        type=_positive_int,
        default=None,
        metavar="N",
        help="points held in memory before the collector pauses (stops taking messages until drained; default: "
        "10 x --batch-points)",
    )
    g = add_metrics(p)
    g.add_argument(
        "--unhealthy-after",
        type=_positive_float,
        default=60.0,
        metavar="S",
        help="/healthz answers 503 once the store or the broker has been unreachable this long (default: %(default)s)",
    )
    p.set_defaults(func=run)
