"""The opt-in container services (launcher/containers.py) say what is missing instead of failing obscurely.

Running them needs a Docker engine, which this machine lacks; with one, `SHOPFLOOR_TEST_SERVICES=containers
./dev test` runs the suite's shared broker and InfluxDB as containers.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from launcher import containers
from launcher.services import ServiceError

ROOT = Path(__file__).resolve().parents[2]


def test_the_reason_names_what_is_missing() -> None:
    reason = containers.unavailable()
    if importlib.util.find_spec("testcontainers") is None:
        assert reason == "testcontainers is not installed (pip install 'shopfloor[containers]')"
    elif reason is not None:
        assert reason.startswith("no Docker engine reachable")


@pytest.mark.skipif(containers.unavailable() is None, reason="a Docker engine is reachable here: nothing to refuse")
@pytest.mark.parametrize("kind", [containers.MosquittoContainer, containers.InfluxDBContainer])
def test_starting_without_docker_is_a_clear_error(kind: type[containers.MosquittoContainer]) -> None:
    with pytest.raises(ServiceError, match=f"cannot start {kind.image}: "):
        kind().start()


def test_the_mosquitto_config_is_tuned_like_the_local_broker() -> None:
    conf = containers.MosquittoContainer().conf.read_text()
    for line in ("allow_anonymous true", "max_inflight_messages 1000", "max_queued_messages 100000"):
        assert line in conf.splitlines()


def test_a_bad_choice_of_services_stops_the_run() -> None:
    env = {**os.environ, "SHOPFLOOR_TEST_SERVICES": "podman"}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/integration/test_mqtt_link.py", "-x"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 4, done.stdout[-2000:]
    assert "SHOPFLOOR_TEST_SERVICES must be 'local' or 'containers', not 'podman'" in done.stdout + done.stderr
