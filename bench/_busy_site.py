"""A site of n busy simulated machines, one port each: shared by the benches that drive the agent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from launcher.services import free_ports
from shopfloor.config import AgentSpec, SiteConfig, load_site

SITE_FILE = Path(__file__).resolve().parents[1] / "examples" / "site.yaml"
MODELS = ["cnc-mill-v1", "fiber-laser-v1", "injection-press-v1", "press-brake-v1"]
BADGES = [1001, 1002, 2001, 3001, 3002]
BENCH_AGENT = "bench"


def make_site(n: int, poll_interval_s: float) -> SiteConfig:
    """Return the example site's profiles and tenants with n machines, each on its own port."""
    base = load_site(SITE_FILE)
    template = base.machines[0]
    machines = [
        template.model_copy(
            update={
                "id": f"m-{i:04d}",
                "name": f"bench machine {i}",
                "profile": MODELS[i % len(MODELS)],
                "host": "127.0.0.1",
                "port": port,
                "unit_id": 1,
                "poll_interval_s": poll_interval_s,
                "heartbeat_s": max(poll_interval_s, template.heartbeat_s),
            }
        )
        for i, port in enumerate(free_ports(n))
    ]
    # The benches' agent is "bench"; it serves every machine (the collector checks the site registry).
    agents = [AgentSpec(id=BENCH_AGENT, machines=[m.id for m in machines])]
    return base.model_copy(update={"machines": machines, "agents": agents})


def scenario_spec(site: SiteConfig) -> dict[str, Any]:
    """Return a scenario that keeps every machine busy: a logged-in tenant running short cycles for 2 hours."""
    sessions = [
        {
            "machine": m.id,
            "badge": BADGES[i % len(BADGES)],
            "at": f"{i % 5}s",
            "duration": "2h",
            "jobs": [{"id": "BENCH", "cycle_s": 3 + i % 7, "reject_rate": 0.05, "setup": "2s"}],
        }
        for i, m in enumerate(site.machines)
    ]
    return {"name": "bench-busy", "duration": "2h", "random_stops": False, "sessions": sessions}
