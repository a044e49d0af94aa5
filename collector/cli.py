"""`shopfloor collect`: run one collector until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

STORE_RETRY_MAX_S = 10.0


def _wait_for_database(store: Any, stop: threading.Event) -> bool:
    """Create the database, retrying while the store is unreachable; return False if told to stop first."""
    from shopfloor.influx import StoreUnavailable

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


def run(args: argparse.Namespace) -> int:
    """Run the collector until SIGINT/SIGTERM; return the exit code."""
    from collector.service import Collector
    from shopfloor.influx import InfluxStore, StoreRejected
    from shopfloor.mqtt import MqttSettings

    try:
        mqtt = MqttSettings.from_url(args.mqtt)
    except ValueError as exc:
        log.error("%s; fix --mqtt", exc)
        return 2
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s; flushing and stopping", signal.Signals(signum).name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_signal)

    dead_letter = Path(args.dead_letter) if args.dead_letter else None
    with InfluxStore(
        args.influx_url, args.influx_db, username=args.influx_user, password=args.influx_password
    ) as store:
        try:
            if not _wait_for_database(store, stop):
                return 0
        except StoreRejected as exc:
            log.error("%s; check --influx-db and the store's permissions", exc)
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
        )
        if dead_letter is None:
            log.warning("no --dead-letter file: refused messages are only counted and logged")
        collector.start()
        try:
            stop.wait()
        finally:
            collector.stop()
    return 0


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


def add_parser(sub: Any) -> None:
    """Register `shopfloor collect`."""
    from shopfloor.cli import add_influx, add_mqtt

    p = sub.add_parser(
        "collect",
        help="subscribe to telemetry, write it to InfluxDB, ack MQTT only after the store accepted",
        description="Validate every telemetry and machine status message, write the valid ones to InfluxDB in "
        "batches and acknowledge them (MQTT manual ack, persistent session) only after InfluxDB accepted them; "
        "then publish commits so agents can drop what is stored. Invalid messages are counted, logged once per "
        "kind and dead-lettered. Runs until SIGINT/SIGTERM; logs a summary line every --summary-interval s.",
    )
    p.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="default: %(default)s"
    )
    add_mqtt(p)
    add_influx(p)
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
        help="prefix for the subscription filters, e.g. '$share/collectors/' for a shared subscription",
    )
    p.add_argument(
        "--summary-interval",
        type=_positive_float,
        default=60.0,
        metavar="S",
        help="log a summary every S seconds (default: %(default)s)",
    )
    p.set_defaults(func=run)
