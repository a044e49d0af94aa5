"""`shopfloor demo`: simulators, edge agent, MQTT broker, collector, stores and the API in one process.

By default nothing but this package: the embedded broker (amqtt) and the SQLite stores; running services on request.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from launcher.services import InfluxDB, Mosquitto, ServiceError, free_port, free_ports, temp_workdir
from shopfloor.config import ApiKey, Role, SiteConfig, default_site_path, load_site
from shopfloor.influx import InfluxStore
from shopfloor.keys import hash_key, new_key
from shopfloor.mqtt import MqttSettings
from shopfloor.store import LineStore, StoreError

log = logging.getLogger("launcher.demo")


@dataclass
class DemoKeys:
    """Clear-text keys made for this demo run, by name."""

    keys: dict[str, tuple[str, ApiKey]] = field(default_factory=dict)

    def add(self, name: str, role: Role, tenant: str | None = None) -> None:
        """Make a key and remember its clear text."""
        key = new_key()
        self.keys[name] = (key, ApiKey(name=name, sha256=hash_key(key), role=role, tenant=tenant))

    def entries(self) -> list[ApiKey]:
        """Stored (hashed) form of every key."""
        return [entry for _, entry in self.keys.values()]


def prepare_site(site: SiteConfig, keys: DemoKeys, fresh_ports: bool = True) -> SiteConfig:
    """Give every simulated machine a free local port and add the demo's API keys."""
    machines = site.machines
    if fresh_ports:
        ports = free_ports(len(machines))
        machines = [
            m.model_copy(update={"host": "127.0.0.1", "port": port}) for m, port in zip(machines, ports, strict=True)
        ]
    return SiteConfig.model_validate(
        site.model_copy(update={"machines": machines, "api_keys": [*site.api_keys, *keys.entries()]}).model_dump()
    )


def demo_keys(site: SiteConfig) -> DemoKeys:
    """Make an admin, an operator and one tenant key per tenant."""
    keys = DemoKeys()
    keys.add("demo-admin", Role.ADMIN)
    keys.add("demo-operator", Role.OPERATOR)
    for tenant in site.tenants:
        keys.add(f"demo-{tenant.id}", Role.TENANT, tenant.id)
    return keys


def _banner(api_url: str, keys: DemoKeys, mqtt: str, store: str, db: str, workdir: Path) -> str:
    admin = keys.keys["demo-admin"][0]
    lines = [
        "",
        "Shopfloor demo is running.",
        f"  Board          {api_url}/board   (sign in at {api_url}/signin with a key below)",
        f"  API            {api_url}   (OpenAPI docs: {api_url}/docs)",
        f"  MQTT broker    {mqtt}",
        f"  time series    {store}",
        f"  business DB    {db}",
        f"  work dir       {workdir}",
        "",
        "API keys for this run (send as 'Authorization: Bearer KEY'):",
    ]
    for name, (key, entry) in keys.keys.items():
        who = f"{entry.role}" + (f" of {entry.tenant}" if entry.tenant else "")
        lines.append(f"  {name:<16} {who:<18} {key}")
    lines += [
        "",
        "Try:",
        f"  curl -s -H 'Authorization: Bearer {admin}' {api_url}/v1/machines",
        f"  curl -s -H 'Authorization: Bearer {admin}' '{api_url}/v1/usage'",
        f"  curl -s -H 'Authorization: Bearer {admin}' '{api_url}/v1/machines/cnc-01/timeline'",
        "",
        "Press Ctrl-C to stop.",
        "",
    ]
    return "\n".join(lines)


def business_db(url: str, site: SiteConfig) -> Any:
    """Migrate the demo's business DB and import the site's tenants and keys and the example billing data."""
    from api.db import migrate, repo
    from api.db.billingfile import load_billing, parse_billing
    from api.db.engine import open_engine, sessions
    from shopfloor.calendar import zone_of

    migrate.upgrade(url)
    engine = open_engine(url)
    zone = zone_of(site.site.timezone)
    plant = parse_billing(site.model_dump(mode="json", include={"site", "tenants", "api_keys"}), source="site")
    with sessions(engine)() as session:
        repo.import_billing(session, plant, now_ms=int(time.time() * 1000), zone=zone)
        repo.import_billing(session, load_billing(EXAMPLE_BILLING, zone), now_ms=int(time.time() * 1000), zone=zone)
        session.commit()
    return engine


EXAMPLE_BILLING = default_site_path().parent / "billing.yaml"


async def run_demo(args: argparse.Namespace) -> int:
    """Start every component, print where they are, run until interrupted or --duration ends."""
    from api.app import create_app
    from api.db.engine import DbError, display_url, normalize_url
    from api.db.engine import sessions as db_sessions
    from api.directory import OwnersReader
    from api.live import LiveHub
    from api.rollups.derived import deriver_for
    from api.rollups.job import start_rollup_thread
    from api.rollups.store import RollupStore, default_url
    from api.server import serve
    from collector.registry import Registry
    from collector.service import Collector
    from edge_agent.agent import EdgeAgent
    from shopfloor.calendar import zone_of
    from simulators.runtime import Simulator
    from simulators.scenario import default_scenario_path, load_scenario

    site = load_site(args.site)
    scenario = load_scenario(Path(args.scenario) if args.scenario else default_scenario_path())
    keys = demo_keys(site)
    site = prepare_site(site, keys)
    workdir = temp_workdir("shopfloor-demo-")
    started: list[Any] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        if args.mqtt:
            mqtt_url, broker_kind, protocol = args.mqtt, "given", "auto"
        elif args.local_services:
            broker = Mosquitto(workdir).start()
            started.append(broker)
            mqtt_url, broker_kind, protocol = broker.url, "Mosquitto, local process", "auto"
        else:
            from shopfloor.embedded_broker import EmbeddedBroker

            embedded = EmbeddedBroker().start()
            started.append(embedded)
            # It speaks 3.1.1 only: say so instead of trying v5 first (and warning about the fallback).
            mqtt_url, broker_kind, protocol = embedded.url, "embedded (amqtt, in this process)", "3.1.1"
        store: LineStore
        if args.influx_url:
            store, store_text = InfluxStore(args.influx_url, args.influx_db), f"InfluxDB {args.influx_url}"
        elif args.local_services:
            influx = InfluxDB(workdir).start()
            started.append(influx)
            store, store_text = InfluxStore(influx.url, args.influx_db), f"InfluxDB {influx.url} (local process)"
        else:
            from shopfloor.sqlitestore import SqliteStore

            path = workdir / "timeseries.db"
            store, store_text = SqliteStore(path), f"SQLite {path} (embedded)"
        started.append(_Closing(store))
        store.ensure_database()
        mqtt = MqttSettings.from_url(mqtt_url, protocol=protocol)
        # The business DB (tenants, badges, keys, tariffs, invoices) and the roll-ups share one SQLite file. Opened
        # before any component starts: a bad --db-url stops the demo with its reason, nothing left running.
        db_url = args.db_url or default_url(workdir)
        db_engine = business_db(db_url, site)
        started.append(_Closing(db_engine, "dispose"))

        sim = Simulator(site, scenario, seed=args.seed, speed=1.0)
        await sim.start()
        collector = Collector(
            mqtt,
            store,
            client_id="demo-collector",
            dead_letter=workdir / "dead-letter.jsonl",
            registry=Registry.from_site(site),
        )
        collector.start()
        agent = EdgeAgent(site, "edge-1", mqtt, workdir / "agent")
        agent_task = asyncio.create_task(agent.run())

        port = args.port if args.port and _port_free(args.host, args.port) else free_port()
        # Closed hours are rolled up in the background, as `shopfloor api` does (a demo running for hours shows it).
        rollups = RollupStore(db_url)
        owners = OwnersReader(db_sessions(db_engine), zone_of(site.site.timezone))
        stop_rollups = start_rollup_thread(store, rollups, site, derive=deriver_for(store, site, owners))
        # The board's live stream: one subscription on the demo's broker, for every open board.
        live = LiveHub(site, store, mqtt, owners_provider=owners, rollups=rollups)
        live.start()
        # InfluxDB: the API reads through its own HTTP client; the SQLite store is shared (it is thread-safe).
        api_store = InfluxStore(store.url, args.influx_db) if isinstance(store, InfluxStore) else store
        if api_store is not store:
            started.append(_Closing(api_store))
        app = create_app(site, api_store, rollups=rollups, db=db_sessions(db_engine), live=live)
        server, thread = serve(app, args.host, port)
        api_url = f"http://{args.host}:{port}"
        shown_db = display_url(normalize_url(db_url))
        print(_banner(api_url, keys, f"{mqtt_url}  ({broker_kind})", store_text, shown_db, workdir), flush=True)
        if not args.no_browser:
            open_browser(f"{api_url}/signin")

        deadline = time.monotonic() + args.duration if args.duration else None
        while not stop.is_set():
            timeout = 1.0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout)
            if deadline is not None and time.monotonic() >= deadline:
                break

        print("stopping ...", flush=True)
        agent.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(agent_task, 10)
        await sim.stop()
        collector.stop()
        live.stop()
        server.should_exit = True
        thread.join(10)
        stop_rollups()
        rollups.close()
        db_engine.dispose()
        if args.ground_truth:
            Path(args.ground_truth).write_text(sim.ground_truth().to_json())
            print(f"ground truth written to {args.ground_truth}")
        stats = collector.stats
        print(f"collector: {stats}")
        return 0
    except (ServiceError, StoreError, DbError, ValueError) as exc:  # a service that cannot start, a bad option
        print(f"shopfloor demo: {exc}", file=sys.stderr)
        return 1
    finally:
        for proc in reversed(started):
            proc.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


class _Closing:
    """Something with close() (or another method), stopped like a started service (in reverse order of starting)."""

    def __init__(self, thing: Any, method: str = "close") -> None:
        self.thing = thing
        self.method = method

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            getattr(self.thing, self.method)()


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _run(args: argparse.Namespace) -> int:
    return asyncio.run(run_demo(args))


def open_browser(url: str) -> bool:
    """Open url in the user's web browser when one is there (a desktop session); return whether one was."""
    import webbrowser

    if not sys.stdout.isatty() or (
        sys.platform.startswith("linux") and not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY")
    ):
        return False  # a server, a container, a pipe: nobody would see it
    try:
        return webbrowser.open(url, new=2)
    except webbrowser.Error:
        return False


def add_parser(sub: Any) -> None:
    """Register `shopfloor demo`."""
    from shopfloor.cli import add_common

    p = sub.add_parser(
        "demo",
        help="run simulators, agent, broker, collector, store and the API together on this machine",
        description="Start the whole Shopfloor chain in one process, with nothing but this Python package: "
        "simulated machines (the packaged demo scenario), an edge agent, an embedded MQTT broker (amqtt), the "
        "collector, the embedded SQLite time-series store, SQLite for business data, and the API with the live "
        "board, in a temporary directory. --mqtt-url, --influx-url and --db-url use running services instead; "
        "--local-services starts Mosquitto and InfluxDB as local processes (both must be installed). Prints the "
        "board's address and fresh API keys; Ctrl-C stops it.",
    )
    add_common(p)
    p.add_argument("--scenario", help="scenario file (default: the packaged demo scenario)")
    p.add_argument("--seed", type=int, default=1, help="random seed of the simulation (default: %(default)s)")
    p.add_argument("--host", default="127.0.0.1", help="API listen address (default: %(default)s)")
    p.add_argument("--port", type=int, default=8000, help="API port, 0 = any free port (default: %(default)s)")
    p.add_argument(
        "--mqtt-url", "--mqtt", dest="mqtt", metavar="URL", help="use this MQTT broker instead of the embedded one"
    )
    p.add_argument("--influx-url", help="use this InfluxDB instead of the embedded SQLite store")
    p.add_argument("--influx-db", default="shopfloor", help="InfluxDB database name (default: %(default)s)")
    p.add_argument("--db-url", help="SQLAlchemy URL of the business DB (default: SQLite in the work directory)")
    p.add_argument(
        "--local-services",
        action="store_true",
        help="start Mosquitto and InfluxDB as local processes instead of the embedded broker and store",
    )
    p.add_argument("--duration", type=float, default=0, help="stop after this many seconds (default: run until Ctrl-C)")
    p.add_argument(
        "--no-browser", action="store_true", help="do not open the board in a web browser (the URL is printed)"
    )
    p.add_argument("--ground-truth", help="write the simulator's ground truth JSON here on exit")
    p.add_argument("--keep", action="store_true", help="keep the temporary work directory")
    p.set_defaults(func=_run)
