"""`shopfloor broker`: the embedded MQTT broker on its own, for laptops without Mosquitto that run the components as
separate processes (`shopfloor simulate`, `agent`, `collect`, `api`, each with --mqtt mqtt://127.0.0.1:1883)."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

EPILOG = """\
The embedded broker speaks MQTT 3.1.1 only and has no shared subscriptions: the components fall back by themselves
(MQTT 3.1.1; a collector's $share/ prefix is dropped, so each replica gets every message). Sessions and retained
messages live in memory: they are gone when the broker stops. For a facility, run Mosquitto (deploy/).

--users-file holds one `name:password` line per user (lines starting with # are ignored); without it the broker
is anonymous, which is for a loopback address only.
"""


def read_users(path: Path) -> dict[str, str]:
    """Users from a file of `name:password` lines; raise ValueError naming the file and line."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError(f"--users-file {str(path)!r}: cannot read ({exc})") from exc
    users: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, password = line.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"--users-file {str(path)!r} line {number}: expected name:password")
        if name.strip() in users:
            raise ValueError(f"--users-file {str(path)!r} line {number}: user {name.strip()!r} given twice")
        users[name.strip()] = password
    if not users:
        raise ValueError(f"--users-file {str(path)!r}: no users")
    return users


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _run(args: argparse.Namespace) -> int:
    from shopfloor.embedded_broker import BrokerStartError, EmbeddedBroker

    try:
        users = read_users(args.users_file) if args.users_file is not None else None
        broker = EmbeddedBroker(args.host, args.port, max_inflight=args.max_inflight, users=users)
    except ValueError as exc:
        print(f"shopfloor broker: {exc}", file=sys.stderr)
        return 2
    if users is None and not _is_loopback(args.host):
        log.warning(
            "embedded MQTT broker on %s without --users-file: anyone who reaches this address may publish and "
            "subscribe to anything",
            args.host,
        )
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            broker.start()
        except BrokerStartError as exc:
            print(f"shopfloor broker: {exc}", file=sys.stderr)
            return 1
        print(f"MQTT broker at {broker.url} (Ctrl-C stops it)", flush=True)
        while not stop.wait(1.0):
            if not broker.running():
                log.error("embedded MQTT broker %s stopped by itself", broker.url)
                return 1
        broker.stop()
        log.info("embedded MQTT broker %s stopped", broker.url)
        return 0
    finally:
        broker.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 0..65535 (0: any free port), got {value}")
    return value


def _window(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 1..65535, got {value}")
    return value


def add_parser(sub: Any) -> None:
    """Register `shopfloor broker`."""
    p = sub.add_parser(
        "broker",
        help="run the embedded MQTT broker (MQTT 3.1.1, in memory) until Ctrl-C, for laptops without Mosquitto",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    p.add_argument("--port", type=_port, default=1883, help="port to listen on (default: %(default)s; 0: any free)")
    p.add_argument(
        "--max-inflight",
        type=_window,
        default=1000,
        metavar="N",
        help="QoS 1 messages out to one client unacknowledged at most (default: %(default)s)",
    )
    p.add_argument("--users-file", type=Path, default=None, help="file of name:password lines (default: anonymous)")
    p.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="default: %(default)s"
    )
    p.set_defaults(func=_run)
