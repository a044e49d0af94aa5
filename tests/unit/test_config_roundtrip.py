"""A SiteConfig survives being written out and read back, as JSON and as Python data (benches, the demo and the
agent's child processes pass it that way)."""

from __future__ import annotations

import json

import pytest

from shopfloor.config import SiteConfig, default_site_path, load_site


def _with_calendar(site: SiteConfig, calendar: dict[str, object]) -> SiteConfig:
    data = site.model_dump(mode="json")
    data["calendar"] = calendar
    return SiteConfig.model_validate(data)


@pytest.fixture(scope="module")
def example() -> SiteConfig:
    return load_site(default_site_path())


def test_the_example_site_round_trips_through_json(example: SiteConfig) -> None:
    assert SiteConfig.model_validate_json(example.model_dump_json()) == example
    assert SiteConfig.model_validate(example.model_dump()) == example


@pytest.mark.parametrize(
    ("shifts", "written"),
    [
        # 24:00 is kept as the next day's 00:00 and written "00:00", which reads back as the same end.
        ([("early", "06:00", "14:00"), ("late", "14:00", "24:00")], [("06:00", "14:00"), ("14:00", "00:00")]),
        ([("night", "22:00", "06:00")], [("22:00", "06:00")]),  # crossing midnight
    ],
)
def test_times_are_written_as_the_site_file_writes_them(
    example: SiteConfig, shifts: list[tuple[str, str, str]], written: list[tuple[str, str]]
) -> None:
    site = _with_calendar(example, {"shifts": [{"name": n, "start": a, "end": b} for n, a, b in shifts]})
    dumped = json.loads(site.model_dump_json())["calendar"]["shifts"]
    assert [(s["start"], s["end"]) for s in dumped] == written
    again = SiteConfig.model_validate_json(site.model_dump_json())
    assert again == site
    assert again.calendar.shifts == site.calendar.shifts
