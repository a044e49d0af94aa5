"""docker-compose.yml run for real: the stack comes up healthy, samples land and the API, board and Grafana answer.

Opt-in: runs only with SHOPFLOOR_DOCKER_TESTS=1 where `docker info` reaches an engine (it builds the image and pulls
Mosquitto, InfluxDB, PostgreSQL and Grafana, which takes minutes). Its own project name, fresh random passwords and
free host ports, so it never touches another stack; `docker compose down -v` removes everything it made.
tests/unit/test_compose_file.py checks the same files without Docker.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]
MACHINES = {"cnc-01", "cnc-02", "laser-01", "press-01", "brake-01"}


def _docker_unavailable() -> str | None:
    if os.environ.get("SHOPFLOOR_DOCKER_TESTS") != "1":
        return "opt-in: set SHOPFLOOR_DOCKER_TESTS=1 to run docker-compose.yml on a Docker engine"
    if shutil.which("docker") is None:
        return "SHOPFLOOR_DOCKER_TESTS=1 but there is no docker client"
    for argv in (["docker", "info"], ["docker", "compose", "version"]):
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        except subprocess.TimeoutExpired:
            return f"SHOPFLOOR_DOCKER_TESTS=1 but `{' '.join(argv)}` timed out"
        if done.returncode != 0:
            return (
                f"SHOPFLOOR_DOCKER_TESTS=1 but `{' '.join(argv)}` failed: {(done.stderr or done.stdout).strip()[-300:]}"
            )
    return None


_REASON = _docker_unavailable()
if _REASON is not None:
    pytestmark = [pytest.mark.e2e, pytest.mark.skip(reason=_REASON)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Stack:
    """A running compose project and how to reach it."""

    project: str
    env_file: Path
    env: dict[str, str]

    def compose(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run `docker compose` on this project."""
        argv = ["docker", "compose", "-p", self.project, "--env-file", str(self.env_file), "-f", "docker-compose.yml"]
        done = subprocess.run([*argv, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)
        if check and done.returncode != 0:
            raise AssertionError(
                f"docker compose {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        return done

    def url(self, port_var: str) -> str:
        """The published address of a port (SHOPFLOOR_API_PORT, SHOPFLOOR_GRAFANA_PORT)."""
        return f"http://127.0.0.1:{self.env[port_var]}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {
        "SHOPFLOOR_PUBLISH_ADDR": "127.0.0.1",
        "SHOPFLOOR_API_PORT": str(_free_port()),
        "SHOPFLOOR_GRAFANA_PORT": str(_free_port()),
        "SHOPFLOOR_MQTT_TLS_PORT": str(_free_port()),
        "SHOPFLOOR_SIM_SCENARIO": "demo",
    }
    example = (ROOT / "deploy" / "compose" / ".env.example").read_text()
    for name in re.findall(r"^(\w+_PASSWORD)=$", example, re.M):
        env[name] = secrets.token_hex(16)
    env_file = tmp_path_factory.mktemp("compose") / "test.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    s = Stack(f"shopfloor-e2e-{os.getpid()}", env_file, env)
    try:
        s.compose("up", "-d", "--build", "--wait", "--wait-timeout", "900", timeout=1800)
        yield s
    except BaseException:
        print(s.compose("logs", "--no-color", "--tail", "80", check=False).stdout[-20000:])
        raise
    finally:
        s.compose("down", "-v", "--remove-orphans", timeout=300, check=False)


def test_stack_serves_live_machines_and_grafana(stack: Stack) -> None:
    made = stack.compose("run", "--rm", "--no-deps", "api", "db", "key", "create", "--name", "e2e", "--role", "admin")
    found = re.search(r"\bsfk_\S+", made.stdout)
    assert found, made.stdout
    headers = {"Authorization": f"Bearer {found.group(0)}"}
    api = stack.url("SHOPFLOOR_API_PORT")
    assert httpx.get(f"{api}/healthz", timeout=10).status_code == 200
    assert httpx.get(f"{api}/signin", timeout=10).status_code == 200
    assert httpx.get(f"{api}/v1/machines", timeout=10).status_code == 401

    # Samples went simulator -> agent -> Mosquitto (TLS) -> collectors -> InfluxDB, and the API reads them back.
    deadline = time.monotonic() + 180
    online: set[str] = set()
    while time.monotonic() < deadline and online != MACHINES:
        rows = httpx.get(f"{api}/v1/machines", headers=headers, timeout=10).json()
        online = {r["id"] for r in rows if r["link"] == "online" and r["last_seen"] is not None}
        time.sleep(2)
    assert online == MACHINES, rows

    # Both replicas of the shared subscription wrote messages.
    for replica in ("collector-1", "collector-2"):
        probe = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9103/metrics').read().decode())"
        metrics = stack.compose("exec", "-T", replica, "python", "-c", probe).stdout
        written = re.search(r"^shopfloor_collector_messages_written(?:_total)? (\S+)$", metrics, re.M)
        assert written and float(written.group(1)) > 0, f"{replica} wrote nothing:\n{metrics[-2000:]}"

    grafana = stack.url("SHOPFLOOR_GRAFANA_PORT")
    auth = ("admin", stack.env["SHOPFLOOR_GRAFANA_ADMIN_PASSWORD"])
    assert httpx.get(f"{grafana}/api/health", timeout=10).status_code == 200
    health = httpx.get(f"{grafana}/api/datasources/uid/shopfloor-influxdb/health", auth=auth, timeout=30)
    assert health.status_code == 200 and health.json().get("status") == "OK", health.text
    boards = httpx.get(f"{grafana}/api/search", params={"type": "dash-db"}, auth=auth, timeout=10).json()
    assert len(boards) >= 4, boards
