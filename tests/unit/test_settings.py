"""Settings come from SHOPFLOOR_* once per process; a bad variable is one line naming it, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shopfloor.settings import SettingsError, read_settings, settings

SHOPFLOOR = Path(sys.executable).parent / "shopfloor"


def test_values_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SHOPFLOOR_INFLUX_DB", "plant_7")
    monkeypatch.setenv("SHOPFLOOR_DATA_DIR", str(tmp_path))
    read = read_settings()
    assert (read.influx_db, read.data_dir) == ("plant_7", tmp_path)


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        ("SHOPFLOOR_INFLUX_DB", "plant 7; DROP", "should match pattern"),
        ("SHOPFLOOR_INFLUX_DB", "x" * 65, "should match pattern"),
        ("SHOPFLOOR_DB_URL", "sqlite:///" + "a" * 3000, "at most 2048 characters"),
    ],
)
def test_a_bad_variable_is_named(monkeypatch: pytest.MonkeyPatch, variable: str, value: str, said: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        read_settings()
    assert str(caught.value).startswith(f"environment variable {variable}: ")
    assert said in str(caught.value) and "\n" not in str(caught.value)


def test_settings_are_read_once(monkeypatch: pytest.MonkeyPatch) -> None:
    settings.cache_clear()
    try:
        monkeypatch.setenv("SHOPFLOOR_INFLUX_DB", "first")
        assert settings().influx_db == "first"
        monkeypatch.setenv("SHOPFLOOR_INFLUX_DB", "second")
        assert settings().influx_db == "first"  # the same object for the whole process
        assert settings() is settings()
    finally:
        settings.cache_clear()


@pytest.mark.parametrize(
    "argv",
    [[str(SHOPFLOOR), "api", "--help"], [str(SHOPFLOOR), "collect", "--help"], [sys.executable, "-m", "edge_agent"]],
    ids=["shopfloor-api", "shopfloor-collect", "python-m-edge_agent"],
)
def test_the_commands_say_which_variable_in_one_line(argv: list[str]) -> None:
    env = {**os.environ, "SHOPFLOOR_INFLUX_DB": "not a name!"}
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert "SHOPFLOOR_INFLUX_DB" in lines[0]
