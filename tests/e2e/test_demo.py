"""`shopfloor demo` as a user runs it: one command, prints where the API is and a key that works.

By default with nothing but the package (embedded broker, SQLite stores); with --local-services on Mosquitto and
InfluxDB processes.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e
SHOPFLOOR = Path(sys.executable).parent / "shopfloor"


@pytest.mark.parametrize(
    ("options", "services"),
    [
        ([], ["embedded (amqtt", "SQLite "]),
        (["--local-services"], ["Mosquitto, local process", "InfluxDB http://"]),
    ],
    ids=["embedded", "local-services"],
)
def test_demo_command_serves_live_machines(options: list[str], services: list[str]) -> None:
    proc = subprocess.Popen(
        [
            str(SHOPFLOOR),
            "demo",
            "--port",
            "0",
            "--duration",
            "120",
            "--no-browser",
            "--log-level",
            "WARNING",
            *options,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    output: list[str] = []
    try:
        url = key = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (url is None or key is None):
            line = proc.stdout.readline()
            if not line:
                break
            output.append(line)
            if m := re.search(r"API\s+(http://\S+)", line):
                url = m.group(1)
            if m := re.search(r"demo-admin\s+admin\s+(\S+)", line):
                key = m.group(1)
        assert url and key, "".join(output)
        headers = {"Authorization": f"Bearer {key}"}
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        assert httpx.get(f"{url}/v1/machines", timeout=5).status_code == 401

        # Within a few poll intervals every simulated machine has been heard from through the whole chain.
        seen: set[str] = set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            machines = httpx.get(f"{url}/v1/machines", headers=headers, timeout=5).json()["machines"]
            seen = {m["id"] for m in machines if m["last_seen"] is not None and m["link"] == "online"}
            if len(seen) == len(machines):
                break
            time.sleep(0.5)
        assert seen == {"cnc-01", "cnc-02", "laser-01", "press-01", "brake-01"}
        board = [line for line in output if re.search(r"Board\s+http://\S+/board", line)]
        assert board, "".join(output)
        for service in services:  # the banner says what runs where
            assert service in "".join(output), (service, "".join(output))

        # The board: sign in with the key (it becomes a session cookie), and the page and its live stream answer.
        with httpx.Client(base_url=url, timeout=10) as browser:
            signed = browser.post("/signin", data={"key": key})
            assert signed.status_code == 303 and "sf_session" in browser.cookies
            page = browser.get("/board")
            assert page.status_code == 200 and "<html" in page.text
            with browser.stream("GET", "/v1/stream") as events:
                assert events.status_code == 200
                first = b""
                for chunk in events.iter_bytes():
                    first += chunk
                    if b"\n\n" in first and b"event: snapshot" in first:
                        break
                assert b"cnc-01" in first

        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
        output.append(rest)
        assert proc.returncode == 0, "".join(output)
        assert "stopping" in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize(
    ("option", "said"),
    [
        (["--db-url", "nonsense://"], "only sqlite and postgresql are supported, not 'nonsense'"),
        (["--db-url", "sqlite:////nonexistent-dir/x/business.db"], "business database"),
        (["--influx-url", "http://127.0.0.1:1"], "unreachable"),
        (["--mqtt-url", "ftp://127.0.0.1:1883"], "scheme must be mqtt:// or mqtts://"),
    ],
    ids=["db-url-scheme", "db-url-unopenable", "influx-unreachable", "mqtt-url-scheme"],
)
def test_a_bad_service_option_is_one_line_and_nothing_keeps_running(option: list[str], said: str) -> None:
    done = subprocess.run(
        [str(SHOPFLOOR), "demo", "--port", "0", "--duration", "30", "--no-browser", "--log-level", "ERROR", *option],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1, done
    assert "Traceback" not in done.stderr, done.stderr
    [line] = [ln for ln in done.stderr.splitlines() if ln.startswith("shopfloor demo: ")]
    assert said in line, done.stderr
    assert "Shopfloor demo is running" not in done.stdout  # it stopped before serving anything
