"""The chain the browser tests drive, and helpers for pages in headless Debian Chromium (playwright).

Chain (one per test session, started on free ports): a Mosquitto of its own; a simulator serving the example site's
machines (a quiet scenario: every machine IDLE, nobody badged in; a test changes registers through overrides); the
edge agent as a subprocess (`python -m shopfloor.cli agent`), so a test can SIGKILL it and the broker's last will
fires; the API under uvicorn with a LiveHub on that broker; a migrated SQLite business DB holding the example site's
tenants, billing.yaml and one key per role; a memory store holding November 2026 (the two-tenant scenario replayed
through the agent's own code) and that month's drafted invoices.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from api.app import create_app
from api.db import repo
from api.db.engine import sessions
from api.directory import OwnersReader
from api.live import LiveHub, LiveMachine
from api.server import serve, stop
from collector.convert import batch_to_points
from launcher.demo import business_db
from launcher.services import Mosquitto, free_port, free_ports, temp_workdir
from shopfloor.calendar import zone_of
from shopfloor.codec import encode
from shopfloor.config import SiteConfig, default_site_path, load_site
from shopfloor.contracts import SignalValue
from shopfloor.memstore import MemoryStore
from shopfloor.mqtt import MqttSettings
from simulators.replay import ReplayOptions, replay_messages
from simulators.runtime import Simulator
from simulators.scenario import load_scenario, scenarios_dir
from simulators.world import World

CHROMIUM = Path("/usr/bin/chromium")
HERE = Path(__file__).resolve().parent
AXE = HERE / "vendor" / "axe-core" / "axe.min.js"
JAKARTA = ZoneInfo("Asia/Jakarta")
# November's history: the two-tenant scenario (acme then batik on cnc-01, cipta on laser-01) on Monday 2 November.
HISTORY_T0 = int(datetime(2026, 11, 2, 9, 0, tzinfo=JAKARTA).timestamp() * 1000)
PERIOD = "2026-11"
POLL_S = 0.5
WAIT_MS = 30_000  # liveness bound for anything to show in a page (never asserted as a duration)
QUIET = "name: browser-quiet\nduration: 4h\nmachines: all\nrandom_stops: false\n"
ROLES = {
    "admin": ("admin", None),
    "operator": ("operator", None),
    "auditor": ("auditor", None),
    "acme": ("tenant", "acme"),
    "batik": ("tenant", "batik"),
}


def artifacts_dir() -> Path:
    """Where screenshots go: $SHOPFLOOR_ARTIFACTS, default tests/browser/artifacts/ (gitignored)."""
    path = Path(os.environ.get("SHOPFLOOR_ARTIFACTS") or HERE / "artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


# ---- the simulator, in a thread with its own event loop -------------------------------------------------------


class SimThread:
    """A Simulator served from a background event loop; overrides replace register values a machine serves."""

    def __init__(self, site: SiteConfig, scenario_path: Path) -> None:
        self.site = site
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="browser-sim", daemon=True)
        self.thread.start()
        self.sim = Simulator(site, load_scenario(scenario_path, site), seed=1)
        self._call(self.sim.start())
        self.overrides: dict[str, dict[str, SignalValue]] = {}
        for machine in site.machines:
            self.sim.memory[machine.id].on_read = partial(self._refresh, machine.id)

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def _refresh(self, machine_id: str) -> None:
        # As the simulator's own refresh, with the test's values on top (a register change at the PLC).
        world = self.sim.world
        assert world is not None
        machine = self.site.machine(machine_id)
        assert machine is not None
        values = dict(world.values(machine_id, self.sim.sim_now_ms()))
        values.update(self.overrides.get(machine_id, {}))
        self.sim.memory[machine_id].set(encode(self.site.profile(machine.profile), values))

    def set(self, machine: str, **values: SignalValue) -> None:
        """Serve these register values for machine from its next read on."""
        self.overrides[machine] = {**self.overrides.get(machine, {}), **values}

    def silence(self, machine: str, on: bool) -> None:
        """Make machine's PLC stop answering (every read hangs) or answer again."""
        memory = self.sim.memory[machine]

        def apply() -> None:
            memory.behaviour.delay_s = 3600.0 if on else 0.0

        self.loop.call_soon_threadsafe(apply)

    def reset(self) -> None:
        """Drop every override and answer every read again."""
        self.overrides.clear()
        for machine in self.site.machines:
            self.silence(machine.id, False)

    def close(self) -> None:
        """Stop serving and end the loop."""
        self._call(self.sim.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


# ---- the chain ----------------------------------------------------------------------------------------------------


@dataclass
class Chain:
    """Everything the browser tests talk to."""

    base: str
    site: SiteConfig
    site_file: Path
    broker: Mosquitto
    hub: LiveHub
    sim: SimThread
    workdir: Path
    closers: list[Callable[[], None]] = field(default_factory=list)
    keys: dict[str, str] = field(default_factory=dict)
    agent: subprocess.Popen[str] | None = None
    agents_started: int = 0

    def call(self, method: str, path: str, who: str = "admin", **kwargs: Any) -> httpx.Response:
        """Call the API with who's key as a bearer token."""
        headers = {"Authorization": f"Bearer {self.keys[who]}"}
        return httpx.request(method, f"{self.base}{path}", headers=headers, timeout=60, **kwargs)

    def get(self, path: str, who: str = "admin", **params: Any) -> Any:
        """GET path as who; the parsed JSON of a 200."""
        resp = self.call("GET", path, who, params=params)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def start_agent(self) -> None:
        """Start the edge agent (a child process) unless one runs; return once the hub has every machine online."""
        if self.agent is not None and self.agent.poll() is None:
            return
        self.agents_started += 1
        data = self.workdir / f"agent-{self.agents_started}"
        cmd = [sys.executable, "-m", "shopfloor.cli", "agent", "--site", str(self.site_file), "--mqtt", self.broker.url]
        cmd += ["--agent-id", "edge-1", "--data-dir", str(data), "--commit-timeout", "3600", "--log-level", "WARNING"]
        self.agent = subprocess.Popen(cmd, env={**os.environ, "PYTHONUNBUFFERED": "1"}, text=True)
        self.wait_hub(
            lambda now: all(m.view.link == "online" and m.reason is None for m in now.values()), "every machine online"
        )

    def close(self) -> None:
        """Stop the agent, then everything else in reverse order of starting."""
        if self.agent is not None and self.agent.poll() is None:
            self.agent.terminate()
            self.agent.wait(15)
        for close in reversed(self.closers):
            close()

    def kill_agent(self) -> None:
        """SIGKILL the agent: no DISCONNECT, so the broker publishes its retained last will."""
        assert self.agent is not None
        self.agent.send_signal(signal.SIGKILL)
        self.agent.wait(10)

    def wait_hub(self, pred: Callable[[dict[str, LiveMachine]], bool], what: str) -> None:
        """Wait until pred holds for the hub's machines (LiveMachine by id)."""
        deadline = time.monotonic() + WAIT_MS / 1000
        while True:
            current = dict(self.hub.snapshot().current)
            if pred(current):
                return
            assert time.monotonic() < deadline, f"the hub never had {what}: {current}"
            time.sleep(0.1)


def site_file(workdir: Path) -> Path:
    """The example site with the simulator's free ports and a fast poll, next to a copy of its profiles."""
    src = default_site_path()
    target = workdir / "site"
    shutil.copytree(src.parent / "profiles", target / "profiles")
    # Edited as text: a YAML round trip would turn the loss map's OFF into false (YAML 1.1).
    text = src.read_text()
    example = load_site(src)
    ports = free_ports(len(example.machines))
    for machine, port in zip(example.machines, ports, strict=True):
        text, n = re.subn(rf"\bport: {machine.port}\b", f"port: {port}", text)
        assert n == 1, f"{src}: port {machine.port} of {machine.id} not found once"
    text, n = re.subn(r"\bpoll_interval_s: 1\.0\b", f"poll_interval_s: {POLL_S}", text)
    assert n == len(example.machines), f"{src}: expected a poll_interval_s per machine"
    path = target / "site.yaml"
    path.write_text(text)
    return path


def history(store: MemoryStore, site: SiteConfig) -> None:
    """November's telemetry as the agent would have sent it, written the way the collector writes it."""
    world = World(site, load_scenario(scenarios_dir() / "e2e-two-tenants.yaml", site), 3, HISTORY_T0)
    points = [p for m in replay_messages(world, "edge-1", ReplayOptions()) if m.batch for p in batch_to_points(m.batch)]
    store.write(points)


# ---- the browser ------------------------------------------------------------------------------------------------


@dataclass
class Tab:
    """A page in a context of its own (its own cookies), recording console errors and every response body."""

    page: Any
    base: str
    errors: list[str] = field(default_factory=list)
    bodies: list[tuple[str, bytes]] = field(default_factory=list)

    def open(self, path: str) -> None:
        """Navigate to path (a page with a live stream never goes network-idle: wait for elements instead)."""
        self.page.goto(f"{self.base}{path}")

    def sign_in(self, key: str) -> None:
        """Sign in through the form, as a person would; land on the role's first page."""
        self.page.goto(f"{self.base}/signin")
        self.page.fill("#key", key)
        with self.page.expect_navigation():
            self.page.click("[data-testid=signin-submit]")
        assert "/signin" not in self.page.url, f"sign-in failed: {self.page.url}"

    def testid(self, name: str) -> Any:
        """The locator of data-testid name."""
        return self.page.get_by_test_id(name)

    def no_console_errors(self) -> None:
        """Assert the page logged no error and threw nothing."""
        assert self.errors == [], "console errors:\n" + "\n".join(self.errors)


def run_axe(tab: Tab, screen: str) -> list[dict[str, Any]]:
    """Run axe-core in the page; return the serious and critical violations (printed readably)."""
    # Evaluated through the DevTools protocol: the page's CSP (no inline script) stays as served, and still applies.
    if not tab.page.evaluate("typeof window.axe === 'object'"):
        tab.page.evaluate(AXE.read_text() + "\n;undefined")
    result = tab.page.evaluate(
        "async () => { const r = await axe.run(document, {resultTypes: ['violations']});"
        " return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.map(n => ({target: n.target.join(' '), summary: n.failureSummary}))})); }"
    )
    bad = [v for v in result if v["impact"] in ("serious", "critical")]
    for v in bad:
        print(f"axe {screen}: {v['impact']} {v['id']}: {v['help']}")
        for node in v["nodes"][:10]:
            print(f"    {node['target']}: {node['summary']}".replace("\n", " | "))
    return bad


def stream_text(tab: Tab, ms: int) -> str:
    """Read the page's own /v1/stream (its cookie) for ms milliseconds through fetch; return every byte as text."""
    text: str = tab.page.evaluate(
        """async (ms) => {
          const ctrl = new AbortController();
          const resp = await fetch('/v1/stream', {credentials: 'same-origin', signal: ctrl.signal});
          const reader = resp.body.getReader();
          const dec = new TextDecoder();
          let out = '';
          const stopAt = Date.now() + ms;
          setTimeout(() => ctrl.abort(), ms);
          try {
            while (Date.now() < stopAt) {
              const {value, done} = await reader.read();
              if (done) break;
              out += dec.decode(value, {stream: true});
            }
          } catch (e) { /* aborted: the time is up */ }
          return out;
        }""",
        ms,
    )
    return text


def start_chain() -> Chain:
    """Start the chain of the module docstring (the agent is started by the tests that need it: start_agent)."""
    workdir = temp_workdir("sf-browser-")
    closers: list[Callable[[], None]] = [lambda: shutil.rmtree(workdir, ignore_errors=True)]
    try:
        path = site_file(workdir)
        site = load_site(path)
        broker = Mosquitto(workdir).start()
        closers.append(broker.stop)
        engine = business_db(f"sqlite:///{workdir / 'business.db'}", site)
        closers.append(engine.dispose)
        factory = sessions(engine)
        keys: dict[str, str] = {}
        now_ms = int(time.time() * 1000)
        with factory() as db:
            for who, (role, tenant) in ROLES.items():
                keys[who] = repo.create_key(db, name=f"browser-{who}", role=role, tenant=tenant, now_ms=now_ms)[1]
            db.commit()
        store = MemoryStore()
        history(store, site)
        owners = OwnersReader(factory, zone_of(site.site.timezone), max_age_s=1.0)
        scenario = workdir / "quiet.yaml"
        scenario.write_text(QUIET)
        sim = SimThread(site, scenario)
        closers.append(sim.close)
        hub = LiveHub(site, store, MqttSettings.from_url(broker.url), owners_provider=owners, tick_s=0.2)
        hub.start()
        port = free_port()
        server, thread = serve(create_app(site, store, db=factory, live=hub), "127.0.0.1", port)
        closers.append(partial(stop, server, thread))
        closers.append(hub.stop)  # first of all: ends open streams, which uvicorn would wait for when it stops
    except BaseException:
        for close in reversed(closers):
            close()
        raise
    chain = Chain(f"http://127.0.0.1:{port}", site, path, broker, hub, sim, workdir, closers, keys)
    drafted = chain.call("POST", f"/v1/invoices/{PERIOD}/draft")
    if drafted.status_code != 200 or not {d["tenant"] for d in drafted.json()["drafts"]} >= {"acme", "batik"}:
        chain.close()
        raise AssertionError(f"drafting {PERIOD} failed: {drafted.status_code} {drafted.text}")
    return chain
