"""Live board latency and the API's cost per open board.

A register change at the simulator (good_count of one machine, every --change-interval s, off the poll grid) is
timed until it reaches: a plain MQTT subscriber (the baseline: simulator -> agent -> broker, nothing of the API),
each board's SSE stream (GET /v1/stream), and, when playwright and /usr/bin/chromium are installed, a headless
page's DOM (an EventSource page that writes each machine's count into an element). The API (hub + uvicorn) runs
in a child process of its own, so its CPU and RSS are read from /proc: with 0 boards (the hub folding the same
traffic, nobody watching: the baseline), 1 board and --boards boards. Prints figures, asserts nothing.

    .venv/bin/python bench/board_latency.py [--boards 100] [--seconds 20] [--change-interval 0.37] [--no-browser]

Goal (issue 10): p95 under 1.5 s at 1 s polling; 100 boards under 10 % of a core.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing as mp
import os
import shutil
import statistics
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from launcher.demo import DemoKeys, prepare_site
from launcher.services import Mosquitto, free_port, temp_workdir
from shopfloor.config import Role, SiteConfig, default_site_path, load_site

CHROMIUM = "/usr/bin/chromium"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SCENARIO = Path(__file__).resolve().parents[1] / "simulators" / "scenarios" / "e2e-two-tenants.yaml"

PAGE = """<!doctype html><html><body><ul id="board"></ul><script>
window.__marks = [];
const es = new EventSource("/v1/stream");
function tile(m) {
  let li = document.getElementById(m.id);
  if (!li) { li = document.createElement("li"); li.id = m.id; document.getElementById("board").appendChild(li); }
  return li;
}
es.addEventListener("snapshot", (e) => { for (const m of JSON.parse(e.data).machines) tile(m).textContent = ""; });
es.addEventListener("machine", (e) => {
  const m = JSON.parse(e.data);
  const li = tile(m);
  const good = m.counters.good_count;
  if (li.textContent !== String(good)) {
    li.textContent = String(good);
    window.__marks.push([m.id, good, Date.now()]);  // after the DOM write
  }
});
</script></body></html>"""


# ---- child: the API --------------------------------------------------------------------------------------------


def run_api(site: SiteConfig, mqtt_url: str, port: int, conn: Connection) -> None:
    """Child process: the API with its live hub on port; stops when the parent sends anything."""
    from api.app import create_app
    from api.directory import load_directory
    from api.live import LiveHub
    from api.routes import stream
    from api.server import serve, stop
    from shopfloor.calendar import zone_of
    from shopfloor.memstore import MemoryStore
    from shopfloor.mqtt import MqttSettings

    logging.basicConfig(level=logging.WARNING, format="api %(levelname)s %(name)s: %(message)s")
    store = MemoryStore()
    app = create_app(site, store)
    zone = zone_of(site.site.timezone)
    cache: dict[str, Any] = {}

    def owners() -> Any:
        # As the lead's provider: read the business DB at most every 10 s.
        if cache.get("at", 0.0) < time.monotonic() - 10:
            with app.state.db() as session:
                cache["owners"] = load_directory(session, zone).owners
            cache["at"] = time.monotonic()
        return cache["owners"]

    hub = LiveHub(site, store, MqttSettings.from_url(mqtt_url), owners_provider=owners)
    app.state.live = hub
    stream.include(app)
    hub.start()
    server, thread = serve(app, "127.0.0.1", port)
    conn.send("ready")
    conn.recv()
    conn.send(hub.stats())
    hub.stop()
    stop(server, thread)


# ---- child: the boards -------------------------------------------------------------------------------------------


def run_boards(url: str, key: str, boards: int, browser: bool, conn: Connection) -> None:
    """Child process: open boards SSE streams (and a headless page); send back (machine, good, time) per board."""
    import httpx

    seen: list[list[tuple[str, int, float]]] = [[] for _ in range(boards)]
    marks: list[Any] = []

    async def board(client: httpx.AsyncClient, k: int, opened: asyncio.Event, count: list[int]) -> None:
        async with client.stream("GET", f"{url}/v1/stream", headers={"Authorization": f"Bearer {key}"}) as resp:
            buffer = b""
            async for chunk in resp.aiter_raw():
                now = time.time()
                buffer += chunk
                while b"\n\n" in buffer:
                    block, buffer = buffer.split(b"\n\n", 1)
                    text = block.decode()
                    if text.startswith("event: snapshot"):
                        count[0] += 1
                        if count[0] == boards:
                            opened.set()
                    elif text.startswith("event: machine"):
                        data = json.loads(text.rsplit("data: ", 1)[1])
                        good = data["counters"]["good_count"]
                        if good is not None:
                            seen[k].append((data["id"], good, now))

    async def main() -> None:
        limits = httpx.Limits(max_connections=boards + 10, max_keepalive_connections=0)
        async with httpx.AsyncClient(limits=limits, timeout=None) as client:
            opened, count = asyncio.Event(), [0]
            tasks = [asyncio.create_task(board(client, k, opened, count)) for k in range(boards)]
            page_ctx = None
            if boards:
                await asyncio.wait_for(opened.wait(), 60)
            if browser:
                page_ctx = await open_page(url, key)
            conn.send("connected")
            await asyncio.to_thread(conn.recv)
            if page_ctx is not None:
                pw, chrome, page = page_ctx
                marks.extend(await page.evaluate("window.__marks"))
                await chrome.close()
                await pw.stop()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())
    conn.send({"boards": seen, "page": marks})


async def open_page(url: str, key: str) -> Any:
    """A headless Chromium page on the API's origin (served by the bench) reading the stream with the key."""
    from playwright.async_api import Route, async_playwright

    pw = await async_playwright().start()
    chrome = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
    context = await chrome.new_context(extra_http_headers={"Authorization": f"Bearer {key}"})
    page = await context.new_page()

    async def fulfil(route: Route) -> None:
        await route.fulfill(status=200, content_type="text/html", body=PAGE)

    await page.route(f"{url}/__bench_board", fulfil)
    await page.goto(f"{url}/__bench_board")
    await page.wait_for_function("document.querySelectorAll('li').length > 0", timeout=30_000)
    return pw, chrome, page


# ---- parent: simulator, agent, changes -----------------------------------------------------------------------------


def cpu_s(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of values, nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def latencies(changes: dict[tuple[str, int], float], seen: list[tuple[str, int, float]]) -> list[float]:
    """Seconds from each change to its first sighting (changes never seen are left out, and counted apart)."""
    first: dict[tuple[str, int], float] = {}
    for machine, good, t in seen:
        first.setdefault((machine, good), t)
    return [first[k] - t0 for k, t0 in changes.items() if k in first]


class Counts:
    """What the simulator serves for good_count, per machine, and when each value appeared."""

    def __init__(self) -> None:
        self.value: dict[str, int] = {}
        self.changed: dict[tuple[str, int], float] = {}
        self.lock = threading.Lock()

    def bump(self, machine: str) -> None:
        with self.lock:
            value = self.value[machine] = self.value.get(machine, 0) + 1
            self.changed[(machine, value)] = time.time()


async def drive(site: SiteConfig, counts: Counts, mqtt_url: str, workdir: Path, stop: asyncio.Event) -> None:
    """Serve the machines (simulator, good_count overridden by counts) and poll them with the edge agent."""
    from edge_agent.agent import EdgeAgent
    from shopfloor.codec import encode
    from shopfloor.mqtt import MqttSettings
    from simulators.runtime import Simulator
    from simulators.scenario import load_scenario

    sim = Simulator(site, load_scenario(SCENARIO, site), seed=1)
    await sim.start()
    assert sim.world is not None
    for machine in site.machines:
        profile = site.profile(machine.profile)
        memory = sim.memory[machine.id]
        counts.value[machine.id] = 0

        def refresh(m: str = machine.id, p: Any = profile, mem: Any = memory) -> None:
            assert sim.world is not None
            values = dict(sim.world.values(m, sim.sim_now_ms()))
            with counts.lock:
                values["good_count"] = counts.value[m]
            mem.set(encode(p, values))

        memory.on_read = refresh
    agent = EdgeAgent(site, "edge-1", MqttSettings.from_url(mqtt_url), workdir / "agent")
    task = asyncio.create_task(agent.run())
    await stop.wait()
    agent.stop()
    await asyncio.wait_for(task, 15)
    await sim.stop()


def mqtt_baseline(mqtt_url: str, site_id: str, seen: list[tuple[str, int, float]]) -> Any:
    """A plain subscriber to the site's telemetry: when each good_count value reached the broker's clients."""
    from shopfloor.contracts import Topic
    from shopfloor.mqtt import InboundMessage, MqttLink, MqttSettings

    def on_message(msg: InboundMessage) -> None:
        now = time.time()
        machine = Topic.parse(msg.topic).machine
        for sample in json.loads(msg.payload)["samples"]:
            good = sample["values"].get("good_count")
            if isinstance(good, int):
                seen.append((machine, good, now))

    link = MqttLink(MqttSettings.from_url(mqtt_url), f"bench-baseline-{free_port()}", on_message=on_message)
    link.subscribe([f"shopfloor/v1/{site_id}/+/telemetry"])
    link.start()
    link.wait_connected(10)
    return link


def browser_available() -> bool:
    """Whether playwright is importable and Debian's chromium is installed."""
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return False
    return Path(CHROMIUM).exists()


def main() -> None:
    """Run the phases and print a table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--boards", type=int, default=100, help="boards of the big phase (default 100)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measuring window per phase (default 20)")
    parser.add_argument("--change-interval", type=float, default=0.37, help="s between register changes")
    parser.add_argument("--no-browser", action="store_true", help="skip the headless page even if available")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    keys = DemoKeys()
    keys.add("bench-admin", Role.ADMIN)
    site = prepare_site(load_site(default_site_path()), keys)
    key = keys.keys["bench-admin"][0]
    workdir = temp_workdir("sf-bench-board-")
    (workdir / "mqtt").mkdir()
    broker = Mosquitto(workdir / "mqtt").start()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    ctx = mp.get_context("spawn")
    api_conn, api_child = ctx.Pipe()
    api = ctx.Process(target=run_api, args=(site, broker.url, port, api_child), daemon=True)
    api.start()
    assert api_conn.poll(60) and api_conn.recv() == "ready", "the API did not start"
    assert api.pid is not None
    api_pid = api.pid
    browser = browser_available() and not args.no_browser
    counts = Counts()
    baseline_seen: list[tuple[str, int, float]] = []
    results: list[dict[str, Any]] = []

    async def run() -> None:
        stop = asyncio.Event()
        driver = asyncio.create_task(drive(site, counts, broker.url, workdir, stop))
        link = mqtt_baseline(broker.url, site.site.id, baseline_seen)
        await asyncio.sleep(5)  # the agent connects, polls, sends its first full samples
        try:
            for boards in (0, 1, args.boards):
                conn, child_conn = ctx.Pipe()
                child = ctx.Process(target=run_boards, args=(url, key, boards, browser and boards == 1, child_conn))
                child.start()
                assert await asyncio.to_thread(conn.poll, 120) and conn.recv() == "connected"
                await asyncio.sleep(1.0)
                with counts.lock:
                    before = set(counts.changed)
                cpu0, wall0 = cpu_s(api_pid), time.monotonic()
                k = 0
                while time.monotonic() - wall0 < args.seconds:
                    counts.bump(site.machines[k % len(site.machines)].id)
                    k += 1
                    await asyncio.sleep(args.change_interval)
                cpu1, wall1 = cpu_s(api_pid), time.monotonic()
                rss = rss_mb(api_pid)
                await asyncio.sleep(3)  # the last changes' next poll and delivery
                conn.send("stop")
                got = await asyncio.to_thread(conn.recv)
                child.join(30)
                with counts.lock:
                    window = {c: t for c, t in counts.changed.items() if c not in before}
                sse = [x for b in got["boards"] for x in latencies(window, b)]
                page = latencies(window, [(m, g, t / 1000) for m, g, t in got["page"]])
                base = latencies(window, baseline_seen)
                results.append(
                    {
                        "boards": boards,
                        "changes": len(window),
                        "cpu_pct": 100 * (cpu1 - cpu0) / (wall1 - wall0),
                        "rss_mb": rss,
                        "mqtt": base,
                        "sse": sse,
                        "sse_expected": len(window) * boards,
                        "page": page,
                    }
                )
        finally:
            link.stop()
            stop.set()
            await driver

    try:
        asyncio.run(run())
    finally:
        api_conn.send("stop")
        stats = api_conn.recv() if api_conn.poll(30) else {}
        api.join(30)
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"board latency: {len(site.machines)} machines polled every 1 s, a change every {args.change_interval} s")
    print(f"{'boards':>6} {'changes':>7} {'to':>6} {'p50 s':>7} {'p95 s':>7} {'seen':>11} {'API CPU':>8} {'RSS MB':>7}")
    idle_cpu = results[0]["cpu_pct"] if results else float("nan")
    for r in results:
        rows = [("mqtt", r["mqtt"], r["changes"])]
        if r["boards"]:
            rows.append(("sse", r["sse"], r["sse_expected"]))
        if r["page"]:
            rows.append(("dom", r["page"], r["changes"]))
        for i, (to, values, expected) in enumerate(rows):
            head = f"{r['boards']:>6} {r['changes']:>7}" if i == 0 else " " * 14
            tail = f" {r['cpu_pct']:>7.1f}% {r['rss_mb']:>7.1f}" if i == 0 else ""
            print(
                f"{head} {to:>6} {pct(values, 0.5):>7.3f} {pct(values, 0.95):>7.3f}"
                f" {len(values):>5}/{expected:<5}{tail}"
            )
    if len(results) == 3:
        big, one = results[2], results[1]
        print(
            f"API CPU with {big['boards']} boards: {big['cpu_pct']:.1f} % of a core ({big['cpu_pct'] - idle_cpu:+.1f} "
            f"points over nobody watching, goal < 10 %); per board {(big['cpu_pct'] - idle_cpu) / big['boards']:.3f} %"
        )
        added = statistics.median(big["sse"]) - statistics.median(big["mqtt"]) if big["sse"] and big["mqtt"] else 0
        print(
            f"SSE p95 with {big['boards']} boards: {pct(big['sse'], 0.95):.3f} s (goal < 1.5 s); the hub adds "
            f"{added * 1000:.1f} ms at the median over the plain MQTT subscriber; "
            f"1 board p95 {pct(one['sse'], 0.95):.3f} s"
        )
    if not browser:
        print("DOM: not measured (playwright or /usr/bin/chromium missing, or --no-browser)")
    print(f"hub: {json.dumps(stats)}")


if __name__ == "__main__":
    main()
